"""Object storage for snapshot and clip content: a port and its adapters."""
