"""`python -m vigil` is the `vigil` command (the server re-executes itself this way)."""

from vigil.cli.main import main

main()
