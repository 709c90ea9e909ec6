"""Pure building blocks: errors, identifiers, time. No I/O."""
