"""`vigil dealers …`"""

from __future__ import annotations

import typer

from vigil.audit.actions import AuditAction
from vigil.cli.context import open_services
from vigil.cli.output import JsonOption, emit, friendly_errors, operator, record_read, table
from vigil.tenancy.models import Plan

app = typer.Typer(help="Manage dealers (tenants).", no_args_is_help=True)


@app.command("create")
def create(
    name: str = typer.Option(..., "--name", help="Dealer name."),
    plan: Plan = typer.Option(Plan.STANDARD, "--plan", help="standard or enterprise."),
    retention_days: int | None = typer.Option(
        None, "--retention-days", help="Audit retention (enterprise: 365-2557)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Create a dealer."""
    with friendly_errors(), open_services() as svc:
        dealer = svc.dealers.create(operator(), name=name, plan=plan, retention_days=retention_days)
        emit(
            dealer.as_json(),
            as_json,
            lambda d: typer.echo(f"Created dealer {d['id']} ({d['name']})"),
        )


@app.command("list")
def list_(as_json: bool = JsonOption) -> None:
    """List dealers."""
    with friendly_errors(), open_services() as svc:
        rows = [d.as_json() for d in svc.dealers.list()]
        record_read(svc, AuditAction.DEALERS_LISTED, "dealer", len(rows))
        emit(
            rows,
            as_json,
            lambda r: table(r, ["id", "name", "plan", "audit_retention_days"], "Dealers"),
        )


@app.command("delete")
def delete(
    dealer_id: str = typer.Argument(..., help="The dealer to delete."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    as_json: bool = JsonOption,
) -> None:
    """Delete a dealer by destroying its keys (crypto-shredding): its rows, objects and every
    backup of them become unreadable. Cannot be undone. Audit records stay."""
    with friendly_errors():
        if not yes:
            typer.confirm(
                f"Destroy every key of dealer {dealer_id}? Its data becomes unreadable for good",
                abort=True,
            )
    with friendly_errors(), open_services() as svc:
        done = svc.tenant_keys.delete_dealer(operator(), dealer_id)
        emit(
            {
                "dealer_id": done.dealer_id,
                "data_keys_destroyed": done.data_keys_destroyed,
                "api_keys_revoked": done.api_keys_revoked,
                "kms_keys_destroyed": list(done.kms_keys_destroyed),
                "kms_keys_left_to_customer": list(done.kms_keys_left_to_customer),
            },
            as_json,
            lambda d: typer.echo(
                f"Deleted dealer {d['dealer_id']}: {d['data_keys_destroyed']} data keys "
                f"destroyed, {d['api_keys_revoked']} API keys revoked, KMS keys destroyed: "
                f"{', '.join(d['kms_keys_destroyed']) or 'none'}."
                + "".join(
                    f" KMS key {k} is the customer's and was left to them: its wraps of this "
                    "dealer are destroyed; backups taken before stay readable with it until "
                    "the customer disables or deletes it."
                    for k in d["kms_keys_left_to_customer"]
                )
            ),
        )
