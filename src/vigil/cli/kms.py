"""`vigil kms …`: enterprise KEKs, rotation and rewrap (S7, S8). Thin over `TenantKeyService`."""

from __future__ import annotations

import typer
from rich.progress import Progress

from vigil.cli.context import open_services
from vigil.cli.output import JsonOption, emit, friendly_errors, operator

app = typer.Typer(help="Key management: provision, rotate and rewrap keys.", no_args_is_help=True)

DealerOption = typer.Option(None, "--dealer", help="One dealer (default: the platform key).")


@app.command("provision")
def provision(
    dealer: str = typer.Option(..., "--dealer", help="Enterprise dealer id."),
    as_json: bool = JsonOption,
) -> None:
    """Give an enterprise dealer a KMS key of its own; its new data keys are wrapped by it."""
    with friendly_errors(), open_services() as svc:
        ref = svc.tenant_keys.provision(operator(), dealer)
        emit(
            {"dealer_id": dealer, "kms_key_ref": ref},
            as_json,
            lambda d: typer.echo(f"Dealer {d['dealer_id']} now uses KMS key {d['kms_key_ref']}"),
        )


@app.command("rotate")
def rotate(dealer: str | None = DealerOption, as_json: bool = JsonOption) -> None:
    """New key version: new writes use it, old data stays readable. Run `rewrap` after."""
    with friendly_errors(), open_services() as svc:
        ref = svc.tenant_keys.rotate(operator(), dealer)
        emit(
            {"dealer_id": dealer, "kms_key_ref": ref, "rotated": True},
            as_json,
            lambda d: typer.echo(f"Rotated {d['kms_key_ref']}; run `vigil kms rewrap` next."),
        )


@app.command("rewrap")
def rewrap(dealer: str | None = DealerOption, as_json: bool = JsonOption) -> None:
    """Re-wrap stored data keys under the newest KEK version. Safe beside live traffic;
    interrupted, just run it again (each key is a compare-and-swap)."""
    with friendly_errors(), open_services() as svc:
        total = svc.tenant_keys.pending_rewrap(dealer)
        done = 0
        with Progress(disable=as_json, transient=True) as progress:
            task = progress.add_task("Rewrapping data keys", total=total)
            for _row in svc.tenant_keys.rewrap(dealer):
                done += 1
                progress.advance(task)
        svc.tenant_keys.record_rewrap(operator(), dealer, done)
        emit(
            {"dealer_id": dealer, "rewrapped": done},
            as_json,
            lambda d: typer.echo(f"Rewrapped {d['rewrapped']} data keys."),
        )
