"""`python -m creatorpulse` is the `creatorpulse` command."""

from creatorpulse.cli import run_cli

run_cli()
