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
    key: str | None = typer.Option(
        None,
        "--key",
        help="An existing key the customer controls (Transit key name; AWS key id, ARN or "
        "alias). Default: Vigil creates one.",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Give an enterprise dealer a KMS key of its own, created by Vigil or (--key) configured
    from the customer's KMS after a round trip proves Vigil can use it. Its new data keys are
    wrapped by it; `vigil kms rewrap --dealer ID` moves the older ones."""
    with friendly_errors(), open_services() as svc:
        done = svc.tenant_keys.provision(operator(), dealer, key)
        emit(
            {
                "dealer_id": dealer,
                "kms_key_ref": done.kms_key_ref,
                "kms_key_managed": done.managed.value,
                "new": done.new,
            },
            as_json,
            lambda d: typer.echo(
                f"Dealer {d['dealer_id']} now uses KMS key {d['kms_key_ref']} "
                + (
                    "(customer-managed: Vigil will never rotate or destroy it)"
                    if d["kms_key_managed"] == "customer"
                    else "(created and managed by Vigil)"
                )
                + ("; run `vigil kms rewrap --dealer` to move older wraps." if d["new"] else ".")
            ),
        )


@app.command("rotate")
def rotate(dealer: str | None = DealerOption, as_json: bool = JsonOption) -> None:
    """New key version: new writes use it, old data stays readable. Run `rewrap` after. A key
    the customer configured is theirs to rotate: only new data-key generations start."""
    with friendly_errors(), open_services() as svc:
        done = svc.tenant_keys.rotate(operator(), dealer)
        emit(
            {
                "dealer_id": dealer,
                "kms_key_ref": done.kms_key_ref,
                "kms_key_managed": done.managed.value,
                "rotated": done.kek_rotated,
            },
            as_json,
            lambda d: typer.echo(_rotated(d)),
        )


def _rotated(d: dict[str, object]) -> str:
    if d["rotated"]:
        return f"Rotated {d['kms_key_ref']}; run `vigil kms rewrap` next."
    if d["kms_key_managed"] == "customer":
        return (
            f"KMS key {d['kms_key_ref']} is customer-managed: Vigil did not rotate it (rotating "
            "it is the customer's job, in their KMS); new data-key generations started for the "
            "dealer."
        )
    return "The dealer has no KMS key of its own yet; new data-key generations started."


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
