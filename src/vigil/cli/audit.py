"""`vigil audit …`: verify, export, verify an export offline, purge, rotate the signing key."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from vigil.audit.actions import AuditAction
from vigil.cli.context import open_services
from vigil.cli.output import (
    JsonOption,
    console,
    emit,
    fail,
    friendly_errors,
    operator,
    record_read,
    table,
)

app = typer.Typer(help="Verify, export and retain the audit log.", no_args_is_help=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"'{value}' has no time zone; use e.g. 2026-01-01T00:00:00Z")
    return moment


@app.command("verify")
def verify(
    dealer: str | None = typer.Option(None, "--dealer", help="Only this dealer's chains."),
    as_json: bool = JsonOption,
) -> None:
    """Check every record against its hash chain and signed checkpoints."""
    from vigil.audit.verify import count_records, verify_store

    with friendly_errors(), open_services() as svc:
        total = count_records(svc.db, dealer)
        with _progress() as bar:
            task = bar.add_task("Verifying", total=total)
            reports = verify_store(
                svc.db,
                svc.audit.signer,
                dealer,
                progress=lambda n: bar.advance(task, n),
                details=svc.audit.details,
            )
        rows = [
            {
                "chain": r.chain_id,
                "records": r.records,
                "checkpoints": r.checkpoints,
                "unsigned_tail": r.unsigned_tail,
                "ok": r.ok,
                "problem": str(r.problem) if r.problem else None,
            }
            for r in reports
        ]
        emit(
            rows,
            as_json,
            lambda d: table(
                d, ["chain", "records", "checkpoints", "unsigned_tail", "ok"], "Audit chains"
            ),
        )
        broken = next((r.problem for r in reports if r.problem), None)

        svc.audit.write_now(
            operator().record(
                svc.clock.now(),
                AuditAction.AUDIT_VERIFIED,
                target_type="audit_log",
                target_id=dealer or "all",
                dealer_id=dealer,
                result="success" if broken is None else "failure",
                details={
                    "records": sum(r.records for r in reports),
                    "problem": str(broken) if broken else None,
                },
            )
        )
        if broken is not None:
            fail(f"audit log verification FAILED: {broken}")
        if not as_json:
            n = sum(r.records for r in reports)
            console.print(f"[green]OK[/green]: {n} records in {len(reports)} chains verified.")


@app.command("export")
def export(
    dealer: str = typer.Option(..., "--dealer", help="Dealer id."),
    out: Path = typer.Option(..., "--out", help="File to write (JSON Lines)."),
    since: str | None = typer.Option(
        None, "--since", help="ISO 8601 time, e.g. 2026-01-01T00:00:00Z"
    ),
    until: str | None = typer.Option(None, "--until", help="ISO 8601 time."),
    environment: str | None = typer.Option(None, "--environment", help="sandbox or production."),
) -> None:
    """Write a dealer's records with the checkpoints that prove them."""
    from vigil.audit.export import export_lines

    with friendly_errors(), open_services() as svc:
        svc.dealers.get(dealer)
        svc.audit.checkpoint_all()  # sign the newest records so the export is fully provable
        count = 0
        with svc.db.read() as conn, out.open("w", encoding="utf-8") as handle:
            for line in export_lines(
                conn,
                dealer,
                svc.clock.now(),
                environment=environment,
                since=_when(since),
                until=_when(until),
                details=svc.audit.details,
            ):
                handle.write(line)
                count += line.startswith('{"type":"record"')

        svc.audit.write_now(
            operator().record(
                svc.clock.now(), AuditAction.AUDIT_EXPORTED, target_type="dealer", target_id=dealer,
                dealer_id=dealer, details={"records": count},
            )
        )  # fmt: skip
        console.print(f"Wrote {count} records to {out}")


@app.command("verify-export")
def verify_export(
    file: Path = typer.Argument(..., help="An export written by `vigil audit export`."),
    keys: Path = typer.Option(..., "--keys", help="JWKS from /.well-known/vigil-audit-keys.json."),
    as_json: bool = JsonOption,
) -> None:
    """Verify an export offline: no database, no server."""
    from vigil.audit.offline import verify_export as check

    with friendly_errors():
        jwks = json.loads(keys.read_text(encoding="utf-8"))
        with file.open(encoding="utf-8") as handle:
            report = check(handle, jwks)
        problem = report.first_problem()
        data: dict[str, Any] = {
            "ok": report.ok,
            "records": report.records,
            "chains": [
                {"chain": c.chain_id, "records": c.records, "first_seq": c.first_seq,
                 "last_seq": c.last_seq, "unsigned_tail": c.unsigned_tail}
                for c in report.chains
            ],
            "problem": str(problem) if problem else None,
        }  # fmt: skip
        if as_json:
            sys.stdout.write(json.dumps(data, indent=2) + "\n")
        if problem is not None:
            fail(f"export verification FAILED: {problem}")
        if not as_json:
            console.print(f"[green]OK[/green]: {report.records} records verified offline.")


@app.command("purge")
def purge(as_json: bool = JsonOption) -> None:
    """Remove records past their dealer's retention, in whole signed segments."""
    from vigil.audit.retention import purge as run

    with friendly_errors(), open_services() as svc:
        svc.audit.checkpoint_all()
        done = run(svc.db, svc.audit, svc.clock, operator().id, "cli")
        rows = [
            {"chain": p.chain_id, "through_seq": p.through_seq, "removed": p.removed} for p in done
        ]
        emit(rows, as_json, lambda d: table(d, ["chain", "through_seq", "removed"], "Purged"))


@app.command("rotate-key")
def rotate_key(as_json: bool = JsonOption) -> None:
    """Start signing checkpoints with a new Ed25519 key (old keys stay published)."""

    with friendly_errors(), open_services() as svc:
        with svc.db.transaction() as conn:
            key = svc.audit.signer.rotate(conn)
            svc.audit.write_in(
                conn,
                operator().record(
                    svc.clock.now(),
                    AuditAction.AUDIT_KEY_ROTATED,
                    target_type="signing_key",
                    target_id=key.kid,
                ),
            )
        emit({"kid": key.kid}, as_json, lambda d: console.print(f"Now signing with {d['kid']}"))


@app.command("keys")
def keys() -> None:
    """Print the checkpoint public keys (JWKS), as served at /.well-known/vigil-audit-keys.json."""
    with friendly_errors(), open_services() as svc:
        with svc.db.read() as conn:
            jwks = svc.audit.signer.jwks(conn)
        record_read(svc, AuditAction.AUDIT_KEYS_LISTED, "audit_signing_key", len(jwks["keys"]))
        sys.stdout.write(json.dumps(jwks, indent=2) + "\n")
