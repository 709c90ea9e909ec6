"""S16: every kind of tampering is detected and located, in the store and in an export."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from tests.support.audit_world import AuditWorld

from vigil.audit import canonical
from vigil.audit.export import export_lines
from vigil.audit.offline import verify_export
from vigil.audit.proof import Problem
from vigil.audit.verify import verify_store

DEALER = "dlr_tamper"
CHAIN = f"{DEALER}/production"


@pytest.fixture
def populated(world: AuditWorld) -> AuditWorld:
    """25 records for the dealer: checkpoints at #10 and #20, five unsigned after them; plus
    another dealer's chain that must not matter."""
    world.record(DEALER, 25)
    world.record("dlr_other", 12)
    return world


def store_problem(world: AuditWorld, workers: int = 1) -> Problem | None:
    """With several workers, every chain (each in its own process) rather than one dealer's."""
    dealer = DEALER if workers == 1 else None
    reports = verify_store(world.db, world.signer, dealer, workers=workers)
    if workers > 1:
        assert len(reports) > 1
    return next((r.problem for r in reports if r.problem), None)


def exported(world: AuditWorld) -> list[dict[str, object]]:
    with world.db.read() as conn:
        return [json.loads(x) for x in export_lines(conn, DEALER, world.clock.now())]


def export_problem(world: AuditWorld, lines: list[dict[str, object]]) -> Problem | None:
    with world.db.read() as conn:
        jwks = world.signer.jwks(conn)
    report = verify_export([json.dumps(x) for x in lines], jwks)
    return report.first_problem()


def record_line(lines: list[dict[str, object]], seq: int) -> int:
    return next(i for i, x in enumerate(lines) if x["type"] == "record" and x["chain_seq"] == seq)


def test_untouched_log_verifies_in_store_and_export(populated: AuditWorld) -> None:
    assert store_problem(populated) is None
    lines = exported(populated)
    assert export_problem(populated, lines) is None
    # Records #21-25 are not signed yet, so the export stops at the checkpoint at #20.
    assert sum(1 for x in lines if x["type"] == "record") == 20
    assert all(x.get("dealer_id") in (None, DEALER) for x in lines if x["type"] == "record")


# -- in the store, by direct SQL as the database owner ---------------------------------------


def sql(world: AuditWorld, *statements: str) -> None:
    with world.owner() as conn:
        for statement in statements:
            conn.execute(text(statement))


def forged_row(world: AuditWorld, after_seq: int) -> dict[str, object]:
    """A record placed after `after_seq` whose hash is computed correctly for that spot."""
    with world.db.read() as conn:
        prev = conn.execute(
            text("SELECT hash FROM audit_events WHERE chain_id = :c AND chain_seq = :s"),
            {"c": CHAIN, "s": after_seq},
        ).scalar_one()
    fields = {name: None for name in canonical.FIELDS}
    fields.update(
        id="aud_forged", chain_id=CHAIN, chain_seq=after_seq + 1, action="api.request",
        result="200", actor_type="app", dealer_id=DEALER, environment="production",
        details={}, occurred_at=canonical.timestamp(world.clock.now()),
    )  # fmt: skip
    return {"fields": fields, "prev": bytes(prev), "hash": canonical.link(bytes(prev), fields)}


STORE_TAMPERING: dict[str, tuple[Callable[[AuditWorld], None], int, str]] = {
    "changed field": (
        lambda w: sql(
            w,
            f"UPDATE audit_events SET result = '500' WHERE chain_id = '{CHAIN}' AND chain_seq = 7",
        ),
        7,
        "contents changed",
    ),
    "deleted record": (
        lambda w: sql(w, f"DELETE FROM audit_events WHERE chain_id = '{CHAIN}' AND chain_seq = 7"),
        8,
        "missing",
    ),
    "two records swapped": (
        lambda w: sql(
            w,
            f"UPDATE audit_events SET chain_seq = -1 WHERE chain_id = '{CHAIN}' AND chain_seq = 7",
            f"UPDATE audit_events SET chain_seq = 7 WHERE chain_id = '{CHAIN}' AND chain_seq = 8",
            f"UPDATE audit_events SET chain_seq = 8 WHERE chain_id = '{CHAIN}' AND chain_seq = -1",
        ),
        7,
        "does not link",
    ),
    "tail cut after a checkpoint": (
        lambda w: sql(
            w,
            f"DELETE FROM audit_events WHERE chain_id = '{CHAIN}' AND chain_seq >= 18",
            f"UPDATE audit_chain_heads SET seq = 17 WHERE chain_id = '{CHAIN}'",
        ),
        18,
        "missing (the log was cut)",
    ),
    "forged checkpoint signature": (lambda w: _forge_signature(w), 20, "signature is not valid"),
    "record inserted with a valid-looking hash": (lambda w: _insert(w), 8, "does not link"),
}


def _forge_signature(world: AuditWorld) -> None:
    with world.owner() as conn:
        conn.execute(
            text("UPDATE audit_checkpoints SET signature = :sig WHERE chain_id = :c AND seq = 20"),
            {"sig": bytes(64), "c": CHAIN},
        )


def _insert(world: AuditWorld) -> None:
    forged = forged_row(world, 6)
    with world.owner() as conn:
        for seq in range(25, 6, -1):  # make room at #7, highest first for the unique index
            conn.execute(
                text(
                    "UPDATE audit_events SET chain_seq = :n WHERE chain_id = :c AND chain_seq = :s"
                ),
                {"n": seq + 1, "c": CHAIN, "s": seq},
            )
        f = forged["fields"]
        assert isinstance(f, dict)
        conn.execute(
            text(
                "INSERT INTO audit_events (id, chain_id, chain_seq, prev_hash, hash, occurred_at,"
                " actor_type, dealer_id, environment, action, result, details)"
                " VALUES (:id, :c, 7, :p, :h, :t, 'app', :d, 'production', 'api.request',"
                " '200', '{}')"
            ),
            {"id": f["id"], "c": CHAIN, "p": forged["prev"], "h": forged["hash"],
             "t": world.clock.now().replace(tzinfo=None), "d": DEALER},
        )  # fmt: skip


@pytest.mark.parametrize("workers", [1, 2], ids=["one process", "two processes"])
@pytest.mark.parametrize("case", list(STORE_TAMPERING))
def test_tampering_in_the_store_is_detected_and_located(
    populated: AuditWorld, case: str, workers: int
) -> None:
    tamper, seq, reason = STORE_TAMPERING[case]
    assert store_problem(populated, workers) is None
    tamper(populated)
    problem = store_problem(populated, workers)
    assert problem is not None, case
    assert problem.chain_id == CHAIN
    assert problem.seq == seq, str(problem)
    assert reason in problem.reason


def respell_details(world: AuditWorld, spell: Callable[[object], str]) -> None:
    with world.db.read() as conn:
        rows = conn.execute(
            text("SELECT id, details FROM audit_events WHERE chain_id = :c"), {"c": CHAIN}
        ).all()
    with world.owner() as conn:
        for rid, details in rows:
            value = json.loads(details) if isinstance(details, str) else details
            conn.execute(
                text("UPDATE audit_events SET details = :d WHERE id = :i"),
                {"d": spell(value), "i": rid},
            )


def test_details_stored_in_another_json_spelling_still_verify(populated: AuditWorld) -> None:
    """Records written before details were stored in canonical form hold `json.dumps` text
    (with spaces): the same values, so they verify, through the slower re-encoding path."""
    respell_details(populated, json.dumps)
    reports = verify_store(populated.db, populated.signer, DEALER)
    assert [r.problem for r in reports] == [None]
    assert reports[0].records == 25


def test_a_changed_value_in_details_is_detected_whatever_its_spelling(
    populated: AuditWorld,
) -> None:
    respell_details(populated, lambda v: json.dumps(v) if v != {"n": 6} else '{"n": 66}')
    problem = store_problem(populated)
    assert problem is not None
    assert (problem.seq, problem.chain_id) == (7, CHAIN)
    assert "contents changed" in problem.reason


# -- in an exported file ----------------------------------------------------------------------


def _change(lines: list[dict[str, object]]) -> None:
    lines[record_line(lines, 7)]["result"] = "500"


def _delete(lines: list[dict[str, object]]) -> None:
    del lines[record_line(lines, 7)]


def _swap(lines: list[dict[str, object]]) -> None:
    a, b = record_line(lines, 7), record_line(lines, 8)
    lines[a]["chain_seq"], lines[b]["chain_seq"] = 8, 7


def _cut(lines: list[dict[str, object]]) -> None:
    del lines[record_line(lines, 18) :]


def _forge(lines: list[dict[str, object]]) -> None:
    cp = next(x for x in lines if x["type"] == "checkpoint" and x["seq"] == 20)
    cp["head_hash"] = "00" * 32


def _insert_line(lines: list[dict[str, object]]) -> None:
    six = lines[record_line(lines, 6)]
    fields = {name: six[name] for name in canonical.FIELDS} | {"id": "aud_forged", "chain_seq": 7}
    forged = {"type": "record", **fields, "prev_hash": six["hash"]}
    forged["hash"] = canonical.link(bytes.fromhex(str(six["hash"])), fields).hex()
    index = record_line(lines, 7)
    for line in lines[index:]:
        if line["type"] == "record":
            line["chain_seq"] = int(str(line["chain_seq"])) + 1
    lines.insert(index, forged)


EXPORT_TAMPERING = {
    "changed field": (_change, 7, "contents changed"),
    "deleted record": (_delete, 8, "missing"),
    "two records swapped": (_swap, 7, "does not link"),
    "tail cut after a checkpoint": (_cut, 18, "missing (the log was cut)"),
    "forged checkpoint signature": (_forge, 20, "signature is not valid"),
    "record inserted with a valid-looking hash": (_insert_line, 8, "does not link"),
}


@pytest.mark.parametrize("case", list(EXPORT_TAMPERING))
def test_tampering_in_an_export_is_detected_and_located(
    populated: AuditWorld, case: str, tmp_path: Path
) -> None:
    tamper, seq, reason = EXPORT_TAMPERING[case]
    lines = exported(populated)
    tamper(lines)
    problem = export_problem(populated, lines)
    assert problem is not None, case
    assert problem.seq == seq, str(problem)
    assert reason in problem.reason


def test_an_export_stripped_of_its_checkpoints_and_rehashed_is_refused(
    populated: AuditWorld,
) -> None:
    """Editing a record and recomputing every later hash only works if no signature covers
    them; an export with no signature over its records proves nothing and is refused."""
    lines = [x for x in exported(populated) if x["type"] != "checkpoint"]
    records = [x for x in lines if x["type"] == "record"]
    records[3]["result"] = "500"
    prev = canonical.GENESIS
    for rec in records:
        fields = {name: rec[name] for name in canonical.FIELDS}
        rec["prev_hash"] = prev.hex()
        prev = canonical.link(prev, fields)
        rec["hash"] = prev.hex()
    problem = export_problem(populated, lines)
    assert problem is not None
    assert "not covered by any signed checkpoint" in problem.reason
