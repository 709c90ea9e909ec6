"""`vigil audit verify`: check every chain in the store against its signed checkpoints."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, select, union

from vigil.audit import canonical
from vigil.audit.jwks import public_key_from_jwk
from vigil.audit.proof import ChainReport, ChainVerifier, Checkpoint
from vigil.audit.sealing import PLAINTEXT, Details
from vigil.audit.signing import AuditSigner
from vigil.audit.statements import statements_for
from vigil.core.errors import VigilError
from vigil.storage.db import Database
from vigil.storage.tables import audit_chain_heads, audit_checkpoints, audit_events

Progress = Callable[[int], None]

RECORD_COLUMNS = [audit_events.c[name] for name in canonical.FIELDS]

FETCH = 5000  # rows per round trip: large enough to amortize it, small enough for any memory
# Below this many records, starting worker processes costs more than it saves.
PARALLEL_FROM = 20_000


def record_fields(row: Any, details: Details = PLAINTEXT) -> tuple[dict[str, Any], bytes, bytes]:
    """A database row in the canonical form the hash covers (sealed details opened)."""
    fields = dict(zip(canonical.FIELDS, row[:-2], strict=True))
    fields["occurred_at"] = canonical.timestamp(fields["occurred_at"])
    fields["details"] = details.value(fields["id"], fields["details"])
    return fields, bytes(row[-2]), bytes(row[-1])


def _unreadable(error: Exception) -> str:
    detail = error.detail if isinstance(error, VigilError) else type(error).__name__
    return f"details cannot be opened ({detail})"


def chain_ids(conn: Connection, dealer_id: str | None) -> list[str]:
    query = union(select(audit_chain_heads.c.chain_id), select(audit_events.c.chain_id).distinct())
    ids = sorted(r[0] for r in conn.execute(query))
    if dealer_id is not None:
        ids = [c for c in ids if c.split("/", 1)[0] == dealer_id]
    return ids


def checkpoints_of(conn: Connection, chain_id: str) -> list[Checkpoint]:
    rows = conn.execute(
        select(audit_checkpoints).where(audit_checkpoints.c.chain_id == chain_id)
    ).mappings()
    return [
        Checkpoint(
            r["chain_id"],
            int(r["seq"]),
            bytes(r["head_hash"]),
            r["signed_at"],
            r["kid"],
            bytes(r["signature"]),
        )
        for r in rows
    ]


def stream_records(
    conn: Connection, chain_id: str, first_seq: int = 0, last_seq: int | None = None
) -> Iterator[Any]:
    query = (
        select(*RECORD_COLUMNS, audit_events.c.prev_hash, audit_events.c.hash)
        .where(audit_events.c.chain_id == chain_id, audit_events.c.chain_seq >= first_seq)
        .order_by(audit_events.c.chain_seq)
    )
    if last_seq is not None:
        query = query.where(audit_events.c.chain_seq <= last_seq)
    yield from conn.execution_options(yield_per=5000).execute(query)


def verify_store(
    db: Database,
    signer: AuditSigner,
    dealer_id: str | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
    details: Details = PLAINTEXT,
) -> list[ChainReport]:
    """Verify every chain (of one dealer, or all), in chain order.

    Chains are independent, so a large store is checked by `workers` processes at once (by
    default one per core, up to 4, from PARALLEL_FROM records on); each process opens its own
    connections. `details` opens sealed details (the hash covers their plaintext); without the
    platform audit key a chain with sealed details cannot be confirmed and is reported.
    """
    with db.read() as conn:
        keys = {k["kid"]: public_key_from_jwk(k) for k in signer.jwks(conn)["keys"]}
        ids = chain_ids(conn, dealer_id)
        sizes = {
            c: int(s)
            for c, s in conn.execute(select(audit_chain_heads.c.chain_id, audit_chain_heads.c.seq))
        }
    if workers is None:
        total = sum(sizes.get(c, 0) for c in ids)
        workers = min(os.cpu_count() or 1, 4) if total >= PARALLEL_FROM else 1
    if workers > 1 and len(ids) > 1:
        return verify_parallel(db, keys, ids, sizes, workers, progress, details)
    with db.read() as conn:
        return [verify_chain(conn, keys, chain_id, progress, details) for chain_id in ids]


def verify_chain(
    conn: Connection,
    keys: Mapping[str, Ed25519PublicKey],
    chain_id: str,
    progress: Progress | None = None,
    details: Details = PLAINTEXT,
) -> ChainReport:
    head = conn.execute(
        select(audit_chain_heads.c.seq).where(audit_chain_heads.c.chain_id == chain_id)
    ).scalar()
    checkpoints = checkpoints_of(conn, chain_id)
    verifier = ChainVerifier(chain_id, keys, checkpoints)
    counted = _verify_fast(conn, verifier, chain_id, progress, details)
    if counted is not None:
        # A record the fast path could not confirm (tampering, or a value in a form the writer
        # does not produce): check this chain again the general way, which finds and words any
        # problem exactly as it always has.
        verifier = ChainVerifier(chain_id, keys, checkpoints)
        n = 0
        for row in stream_records(conn, chain_id):
            try:
                fed = verifier.feed(*record_fields(row, details))
            except Exception as error:  # sealed details that cannot be opened
                verifier.fail(int(row[2]), str(row[0]), _unreadable(error))
                break
            if not fed:
                break
            n += 1
        if progress is not None and n > counted:
            progress(n - counted)
    return verifier.finish(None if head is None else int(head))


def _verify_fast(
    conn: Connection,
    verifier: ChainVerifier,
    chain_id: str,
    progress: Progress | None,
    details_codec: Details = PLAINTEXT,
) -> int | None:
    """Feed the chain from raw driver rows already in canonical form; None when every record
    was confirmed, else how many were reported to `progress` before one was not.

    Per record: the database's spelling of the record (see `Statements.chain_rows`) with the
    stored `details` text spliced in, one SHA-256, a few comparisons. A stored `details` in
    another JSON spelling (records written before details were stored canonically) is decoded
    and re-encoded, as the general path does. Sealed details are opened first.
    """
    sql = statements_for(conn)
    raw: Any = conn.connection.dbapi_connection
    rows = sql.chain_records(raw, chain_id)
    feed, recode, spell = verifier.feed_encoded, canonical.details_text, sql.spell_head
    opened = details_codec.canonical
    n = 0
    confirmed = False
    try:
        for row in rows:
            seq, chain, head, details = row[0], row[1], spell(row)[:-1], row[-3]
            if details[0] == '"':
                details = opened(row[2], details)
            if not feed(seq, chain, f"{head},{details}]".encode(), row[-2], row[-1]):
                again = f"{head},{recode(json.loads(details))}]".encode()
                if not feed(seq, chain, again, row[-2], row[-1]):
                    break
            n += 1
            if progress is not None and n % FETCH == 0:
                progress(FETCH)
        else:
            confirmed = True
    except (TypeError, ValueError, raw.Error, VigilError):
        # A stored value of an unexpected type or form, or sealed details that do not open:
        # the general path finds and words the problem.
        pass
    finally:
        if not confirmed:
            # Read the rest so the connection is free (and its transaction intact) for the
            # general path that follows.
            with contextlib.suppress(Exception):
                for _ in rows:
                    pass
        rows.close()
    if confirmed:
        if progress is not None:
            progress(n % FETCH)
        return None
    return n - n % FETCH


# -- several processes -----------------------------------------------------------------------

_child: tuple[Database, Mapping[str, Ed25519PublicKey], Details] | None = None
_inherited: list[object] = []


def _child_start(db: Database, keys: Mapping[str, Ed25519PublicKey], details: Details) -> None:
    """In a forked worker: never use (or let the garbage collector close) the parent's
    connections, which would end the parent's sessions; open fresh ones through the same
    engine configuration."""
    global _child
    _inherited.append(db.engine.pool)
    db.engine.dispose(close=False)
    _child = (db, keys, details)


def _child_verify(chain_id: str) -> ChainReport:
    assert _child is not None
    db, keys, details = _child
    with db.read() as conn:
        return verify_chain(conn, keys, chain_id, details=details)


def verify_parallel(
    db: Database,
    keys: Mapping[str, Ed25519PublicKey],
    ids: list[str],
    sizes: Mapping[str, int],
    workers: int,
    progress: Progress | None = None,
    details: Details = PLAINTEXT,
) -> list[ChainReport]:
    """Largest chains first, so no process is left with a big one at the end. Forked (not
    spawned) workers: they start in milliseconds with keys and engine settings in hand."""
    order = sorted(ids, key=lambda c: -sizes.get(c, 0))
    context = multiprocessing.get_context("fork")
    done: dict[str, ChainReport] = {}
    with context.Pool(min(workers, len(ids)), _child_start, (db, keys, details)) as pool:
        for report in pool.imap_unordered(_child_verify, order):
            done[report.chain_id] = report
            if progress is not None:
                progress(report.records)
    return [done[chain_id] for chain_id in ids]


def count_records(db: Database, dealer_id: str | None = None) -> int:
    from sqlalchemy import func

    query = select(func.count()).select_from(audit_events)
    if dealer_id is not None:
        query = query.where(audit_events.c.dealer_id == dealer_id)
    with db.read() as conn:
        return int(conn.execute(query).scalar_one())
