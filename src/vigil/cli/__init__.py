"""The `vigil` command line: operator actions, each audited with the local OS user as actor."""
