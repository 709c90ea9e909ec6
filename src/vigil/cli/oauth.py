"""`vigil oauth …`: upkeep of the authorization server's own tables."""

from __future__ import annotations

import typer

from vigil.cli.context import open_services
from vigil.cli.output import JsonOption, emit, friendly_errors, operator

app = typer.Typer(help="Authorization server upkeep.", no_args_is_help=True)


@app.command("purge")
def purge(as_json: bool = JsonOption) -> None:
    """Delete expired tokens, spent codes and expired jti entries now (vigil serve does it too)."""
    with friendly_errors(), open_services() as svc:
        done = svc.oauth.purge(operator())
        emit(
            done.as_json(),
            as_json,
            lambda d: typer.echo(
                f"Deleted {d['tokens']} token(s), {d['codes']} code(s), {d['jtis']} jti entr(ies)"
            ),
        )
