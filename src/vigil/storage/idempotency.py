"""Idempotency-Key records: the first response to a keyed POST, replayed for 24 hours.

A key is claimed (state `pending`) before the request runs, so two copies of one request sent at
once cannot both execute: the second sees the claim and is told to retry later (409). When the
first finishes, its response is stored (`done`) before it is released to the client; a retry
then gets exactly that response. Keys are per tenant and per caller, so one app can never read
another's stored response by guessing its key.

The stored body is sealed (S6) with the dealer's records key, bound to dealer / environment /
`idempotency` / the row's seq / `response_body`: a response echoes what the request carried (an
alarm's description), and on PostgreSQL nothing but field encryption keeps it off the disk. It
is sealed before, and opened after, the store's own transactions. The kept headers
(content type, ETag, Location) carry no tenant text and stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from vigil.crypto.binding import Binding, BindingScope
from vigil.crypto.fields import FieldCipher
from vigil.storage.db import Database
from vigil.storage.tables import idempotency_keys

REPLAY_WINDOW = timedelta(hours=24)
# A claim older than this is taken to belong to a request whose process died mid-way.
ABANDONED_AFTER = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class Owner:
    dealer_id: str
    environment: str
    caller: str


@dataclass(frozen=True, slots=True)
class StoredResponse:
    request_hash: bytes
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of claiming a key: ours to run (`seq` names our row), someone else's in
    flight, or answered."""

    claimed: bool
    in_flight: bool = False
    stored: StoredResponse | None = None
    seq: int | None = None


RECORD_TYPE = "idempotency"
FIELD = "response_body"


def body_binding(owner: Owner, seq: int) -> Binding:
    return BindingScope(owner.dealer_id, owner.environment, RECORD_TYPE).bind(str(seq), FIELD)


class IdempotencyStore:
    def __init__(self, db: Database, cipher: FieldCipher) -> None:
        self._db, self._cipher = db, cipher

    def _where(self, owner: Owner, key: str) -> Any:
        c = idempotency_keys.c
        return (
            (c.dealer_id == owner.dealer_id)
            & (c.environment == owner.environment)
            & (c.owner == owner.caller)
            & (c.key == key)
        )

    def claim(self, owner: Owner, key: str, now: datetime) -> Claim:
        """Raises the cipher's errors when a stored response does not open (409 for a
        tampered row, 404 for a destroyed key): never a replay of something else."""
        c = idempotency_keys.c
        done: Any = None
        with self._db.transaction() as conn:
            row = conn.execute(select(idempotency_keys).where(self._where(owner, key))).first()
            if row is not None:
                m = row._mapping
                expired = m["expires_at"] <= now
                abandoned = m["state"] == "pending" and m["created_at"] <= now - ABANDONED_AFTER
                if not (expired or abandoned):
                    if m["state"] == "pending":
                        return Claim(claimed=False, in_flight=True)
                    done = m
                else:
                    conn.execute(delete(idempotency_keys).where(c.seq == m["seq"]))
        if done is not None:  # opened after the transaction: a key lookup never waits on it
            body = self._cipher.open(body_binding(owner, int(done["seq"])), done["response_sealed"])
            stored = StoredResponse(
                bytes(done["request_hash"]),
                int(done["response_status"]),
                [(k, v) for k, v in done["response_headers"]],
                body,
            )
            return Claim(claimed=False, stored=stored)
        try:
            with self._db.transaction() as conn:
                inserted = conn.execute(
                    insert(idempotency_keys).values(
                        dealer_id=owner.dealer_id,
                        environment=owner.environment,
                        owner=owner.caller,
                        key=key,
                        request_hash=b"",
                        state="pending",
                        created_at=now,
                        expires_at=now + REPLAY_WINDOW,
                    )
                )
        except IntegrityError:  # a concurrent copy claimed it between our read and insert
            return Claim(claimed=False, in_flight=True)
        primary_key = inserted.inserted_primary_key
        assert primary_key is not None
        return Claim(claimed=True, seq=int(primary_key[0]))

    def complete(self, owner: Owner, key: str, seq: int, response: StoredResponse) -> None:
        """Store the response of the claim `seq` (sealed before the transaction opens)."""
        sealed = self._cipher.seal(body_binding(owner, seq), response.body)
        with self._db.transaction() as conn:
            conn.execute(
                update(idempotency_keys)
                .where(self._where(owner, key), idempotency_keys.c.seq == seq)
                .values(
                    state="done",
                    request_hash=response.request_hash,
                    response_status=response.status,
                    response_headers=[list(h) for h in response.headers],
                    response_sealed=sealed,
                )
            )

    def release(self, owner: Owner, key: str) -> None:
        """Forget a claim whose request did not succeed, so a corrected retry can run."""
        with self._db.transaction() as conn:
            conn.execute(
                delete(idempotency_keys).where(
                    self._where(owner, key), idempotency_keys.c.state == "pending"
                )
            )

    def purge_expired(self, now: datetime) -> int:
        with self._db.transaction() as conn:
            result = conn.execute(
                delete(idempotency_keys).where(idempotency_keys.c.expires_at <= now)
            )
        return int(result.rowcount or 0)
