"""`vigil apps …`"""

from __future__ import annotations

import typer

from vigil.audit.actions import AuditAction
from vigil.auth.principal import Environment
from vigil.auth.scopes import parse_scopes
from vigil.cli.context import open_services
from vigil.cli.output import (
    JsonOption,
    emit,
    friendly_errors,
    operator,
    record_read,
    split_csv,
    table,
)

app = typer.Typer(help="Manage apps and the scopes granted to them.", no_args_is_help=True)


@app.command("create")
def create(
    dealer: str = typer.Option(..., "--dealer", help="Dealer id."),
    name: str = typer.Option(..., "--name", help="App name."),
    environment: Environment = typer.Option(..., "--environment", help="sandbox or production."),
    scopes: str = typer.Option(
        ..., "--scopes", help="Comma-separated scopes, e.g. alarms:read,sites:read."
    ),
    ip_allow: str | None = typer.Option(
        None, "--ip-allow", help="Comma-separated CIDRs allowed to call."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Create an app for a dealer."""
    with friendly_errors(), open_services() as svc:
        created = svc.apps.create(
            operator(),
            dealer_id=dealer,
            name=name,
            environment=environment,
            scopes=parse_scopes(split_csv(scopes)),
            ip_allow_list=split_csv(ip_allow),
        )
        emit(
            created.as_json(),
            as_json,
            lambda a: typer.echo(f"Created app {a['id']} ({a['environment']})"),
        )


@app.command("list")
def list_(
    dealer: str | None = typer.Option(None, "--dealer", help="Only this dealer's apps."),
    as_json: bool = JsonOption,
) -> None:
    """List apps."""
    with friendly_errors(), open_services() as svc:
        rows = [a.as_json() for a in svc.apps.list(None, dealer_id=dealer)]
        record_read(svc, AuditAction.APPS_LISTED, "app", len(rows), dealer=dealer)
        emit(
            rows,
            as_json,
            lambda r: table(r, ["id", "dealer_id", "name", "environment", "scopes"], "Apps"),
        )


@app.command("grant")
def grant(
    app_id: str = typer.Option(..., "--app", help="App id."),
    scopes: str = typer.Option(
        ..., "--scopes", help="The complete new set of scopes, comma-separated."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Set the scopes granted to an app (narrowing applies to its keys at once)."""
    with friendly_errors(), open_services() as svc:
        updated = svc.apps.grant(operator(), app_id, parse_scopes(split_csv(scopes)))
        emit(
            updated.as_json(),
            as_json,
            lambda a: typer.echo(f"App {a['id']} scopes: {' '.join(a['scopes'])}"),
        )
