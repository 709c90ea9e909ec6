"""`vigil oauth-clients …`: register an app as an OAuth client (S10)."""

from __future__ import annotations

from pathlib import Path

import typer

from vigil.auth.oauth.clients import AuthMethod, ClientType
from vigil.cli.context import open_services
from vigil.cli.output import JsonOption, console, emit, friendly_errors, operator, split_csv
from vigil.cli.partners import read_jwks

app = typer.Typer(help="Register apps as OAuth clients.", no_args_is_help=True)


@app.command("register")
def register(
    app_id: str = typer.Option(..., "--app", help="App id (becomes the client id)."),
    client_type: ClientType = typer.Option(..., "--type", help="public or confidential."),
    auth_method: AuthMethod = typer.Option(
        AuthMethod.NONE,
        "--auth",
        help="none, client_secret_basic, client_secret_post or private_key_jwt.",
    ),
    redirect_uris: str = typer.Option(..., "--redirect-uris", help="Comma-separated."),
    jwks: Path | None = typer.Option(None, "--jwks", help="Public JWKS (private_key_jwt)."),
    as_json: bool = JsonOption,
) -> None:
    """Create or replace the registration; a client secret is printed once."""
    with friendly_errors(), open_services() as svc:
        client, secret = svc.oauth_clients.register(
            operator(),
            app_id,
            client_type=client_type,
            auth_method=auth_method,
            redirect_uris=split_csv(redirect_uris),
            jwks=read_jwks(jwks) if jwks else None,
        )
        data = client.as_json() | ({"client_secret": secret} if secret else {})

        def show(d: dict[str, object]) -> None:
            typer.echo(f"Registered OAuth client {d['client_id']} ({d['client_type']})")
            if secret:
                console.print(f"  client secret: {secret}", highlight=False, soft_wrap=True)
                console.print("[yellow]Shown once. Store it now.[/yellow]")

        emit(data, as_json, show)
