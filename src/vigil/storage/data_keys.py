"""The SQL `WrappedKeyStore`: wrapped data keys in the `data_keys` table (docs/encryption.md).

Every method is one short transaction of its own. The keyring calls it on a cache miss, so a
service must never seal a value while it holds a write transaction on SQLite (the store would
wait for the lock the caller holds): services seal before `Database.transaction()`.

The counters and the compare-and-swap are single conditional UPDATEs, so several processes
(N API workers, a CLI `rewrap`) share one table without locks of their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import RowMapping, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from vigil.crypto.keystore import Purpose, WrappedDataKey
from vigil.storage.db import Database
from vigil.storage.tables import data_keys

_C = data_keys.c


def _key(m: RowMapping) -> WrappedDataKey:
    return WrappedDataKey(
        keyset_id=bytes(m["keyset_id"]),
        version=int(m["version"]),
        dealer_id=m["dealer_id"],
        purpose=Purpose(m["purpose"]),
        kms_key_ref=m["kms_key_ref"],
        wrapped=bytes(m["wrapped"]),
        created_at=m["created_at"],
        messages_reserved=int(m["messages_reserved"]),
        retired=bool(m["retired"]),
    )


def _row(keyset_id: bytes, version: int) -> Any:
    return (_C.keyset_id == keyset_id) & (_C.version == version)


class SqlWrappedKeyStore:
    """`crypto.keystore.WrappedKeyStore` over the application database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def current(self, dealer_id: str, purpose: Purpose) -> WrappedDataKey | None:
        query = (
            select(data_keys)
            .where(_C.dealer_id == dealer_id, _C.purpose == purpose.value, _C.retired.is_(False))
            .order_by(_C.version.desc())
            .limit(1)
        )
        with self._db.read() as conn:
            m = conn.execute(query).mappings().first()
        return None if m is None else _key(m)

    def get(self, keyset_id: bytes, version: int) -> WrappedDataKey | None:
        with self._db.read() as conn:
            m = conn.execute(select(data_keys).where(_row(keyset_id, version))).mappings().first()
        return None if m is None else _key(m)

    def add(self, key: WrappedDataKey) -> bool:
        values = {
            "keyset_id": key.keyset_id,
            "version": key.version,
            "dealer_id": key.dealer_id,
            "purpose": key.purpose.value,
            "kms_key_ref": key.kms_key_ref,
            "wrapped": key.wrapped,
            "messages_reserved": key.messages_reserved,
            "retired": key.retired,
            "created_at": key.created_at,
        }
        try:
            with self._db.transaction() as conn:
                conn.execute(insert(data_keys).values(values))
        except IntegrityError:
            return False  # another process created this generation first
        return True

    def reserve(self, keyset_id: bytes, version: int, messages: int, limit: int) -> bool:
        stmt = (
            update(data_keys)
            .where(_row(keyset_id, version), _C.messages_reserved + messages <= limit)
            .values(messages_reserved=_C.messages_reserved + messages)
        )
        with self._db.transaction() as conn:
            return conn.execute(stmt).rowcount == 1

    def retire(self, keyset_id: bytes, version: int) -> None:
        with self._db.transaction() as conn:
            conn.execute(update(data_keys).where(_row(keyset_id, version)).values(retired=True))

    def replace_wrapped(
        self, keyset_id: bytes, version: int, old: bytes, new: bytes, kms_key_ref: str
    ) -> bool:
        stmt = (
            update(data_keys)
            .where(_row(keyset_id, version), _C.wrapped == old)
            .values(wrapped=new, kms_key_ref=kms_key_ref)
        )
        with self._db.transaction() as conn:
            return conn.execute(stmt).rowcount == 1

    def list_keys(self, dealer_id: str | None = None) -> Iterator[WrappedDataKey]:
        query = select(data_keys).order_by(_C.dealer_id, _C.purpose, _C.version)
        if dealer_id is not None:
            query = query.where(_C.dealer_id == dealer_id)
        with self._db.read() as conn:
            rows = [_key(m) for m in conn.execute(query).mappings()]
        return iter(rows)

    def delete_dealer(self, dealer_id: str) -> int:
        with self._db.transaction() as conn:
            return conn.execute(delete(data_keys).where(_C.dealer_id == dealer_id)).rowcount
