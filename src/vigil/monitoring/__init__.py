"""The monitoring domain: sites, devices, telemetry, alarms and snapshots."""
