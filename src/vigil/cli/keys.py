"""`vigil keys …`"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import typer

from vigil.audit.actions import AuditAction
from vigil.auth.scopes import parse_scopes
from vigil.cli.context import open_services
from vigil.cli.output import (
    JsonOption,
    console,
    emit,
    friendly_errors,
    operator,
    record_read,
    split_csv,
    table,
)

app = typer.Typer(help="Issue, rotate, revoke and list API keys.", no_args_is_help=True)


def _shown_once(data: dict[str, Any]) -> None:
    console.print(f"API key [bold]{data['id']}[/bold] for app {data['app_id']}:")
    console.print(f"  {data['key']}", highlight=False, soft_wrap=True)
    console.print("[yellow]This is the only time the key is shown. Store it now.[/yellow]")


@app.command("create")
def create(
    app_id: str = typer.Option(..., "--app", help="App id."),
    scopes: str | None = typer.Option(
        None, "--scopes", help="Narrow the key below the app's scopes."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Issue an app's API key (shown once)."""
    with friendly_errors(), open_services() as svc:
        wanted = parse_scopes(split_csv(scopes)) if scopes else None
        key, token = svc.keys.create(operator(), app_id, wanted)
        emit(key.as_json() | {"key": token}, as_json, _shown_once)


@app.command("rotate")
def rotate(
    app_id: str = typer.Option(..., "--app", help="App id."),
    grace_hours: float | None = typer.Option(
        None, "--grace-hours", help="How long the old key keeps working (0-168, default 24)."
    ),
    scopes: str | None = typer.Option(
        None, "--scopes", help="Scopes for the new key (default: the current key's)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Issue a new key; the current one keeps working for the grace window."""
    with friendly_errors(), open_services() as svc:
        grace = None if grace_hours is None else timedelta(hours=grace_hours)
        wanted = parse_scopes(split_csv(scopes)) if scopes else None
        key, token, outgoing = svc.keys.rotate(operator(), app_id, grace=grace, scopes=wanted)
        data = key.as_json() | {"key": token, "previous": outgoing.as_json() if outgoing else None}

        def render(d: dict[str, Any]) -> None:
            _shown_once(d)
            if d["previous"]:
                console.print(
                    f"Previous key {d['previous']['id']} works until {d['previous']['expires_at']}."
                )

        emit(data, as_json, render)


@app.command("revoke")
def revoke(
    key_id: str = typer.Argument(..., help="Key id (key_…)."),
    as_json: bool = JsonOption,
) -> None:
    """Revoke a key at once."""
    with friendly_errors(), open_services() as svc:
        key = svc.keys.revoke(operator(), key_id)
        emit(key.as_json(), as_json, lambda k: typer.echo(f"Revoked {k['id']}"))


@app.command("list")
def list_(
    app_id: str | None = typer.Option(None, "--app", help="Only this app's keys."),
    dealer: str | None = typer.Option(None, "--dealer", help="Only this dealer's keys."),
    as_json: bool = JsonOption,
) -> None:
    """List keys: status, exposure, expiry and last use (never secrets)."""
    with friendly_errors(), open_services() as svc:
        rows = [k.as_json() for k in svc.keys.list(None, app_id=app_id, dealer_id=dealer)]
        record_read(
            svc, AuditAction.API_KEYS_LISTED, "api_key", len(rows), app=app_id, dealer=dealer
        )
        cols = [
            "id",
            "app_id",
            "environment",
            "status",
            "exposed",
            "expires_at",
            "last_used_at",
            "last_used_ip",
        ]
        emit(rows, as_json, lambda r: table(r, cols, "API keys"))
