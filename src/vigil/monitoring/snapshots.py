"""Snapshots and clips: bytes a device captured, kept in the object store, described here.

An upload is streamed, never held whole: `begin` checks everything that can be checked before
the first byte (media type, declared size, that the device and alarm are the caller's), the
front feeds chunks to the returned `SnapshotUpload` (hashed and counted as they pass, refused the
moment they exceed the limit), and `finish` checks the digest, makes the object durable and only
then records it, with its `snapshot.created` event and audit record, in one transaction. A
refused, broken or unrecorded upload leaves no object behind.
"""

from __future__ import annotations

import builtins
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, Select, insert, or_

from vigil.audit.actions import AuditAction
from vigil.audit.log import AuditLog
from vigil.auth.actor import Actor
from vigil.core.chunks import coalesce
from vigil.core.clock import Clock
from vigil.core.errors import InvalidInput, NotFound, PayloadTooLarge, UnsupportedMediaType
from vigil.core.ids import new_id
from vigil.core.pagination import Page, decode_cursor, page_of
from vigil.core.times import optional_utc
from vigil.crypto.fields import FieldCipher
from vigil.events.outbox import emit
from vigil.events.types import EventType
from vigil.monitoring.scoping import TenantScope, scope_of
from vigil.storage.db import Database
from vigil.storage.objects.port import ObjectStore, ObjectWriter
from vigil.storage.tables import alarms, devices, snapshots

# What cameras and recorders send for stills and clips. Anything else (HTML, SVG, scripts, an
# unlabelled `application/octet-stream`) is refused: content is served back with the type
# recorded here, and a type we would have to guess at is one a browser could be tricked with.
MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "video/mp4"})

# Shown on one alarm's page; an alarm carries at most 20 named ones, uploads add a few more.
MAX_PER_ALARM = 100

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Snapshot:
    id: str
    device_id: str
    alarm_id: str | None
    content_type: str
    size: int
    sha256: str
    object_key: str
    captured_at: datetime | None
    created_at: datetime

    @classmethod
    def from_row(cls, m: RowMapping) -> Snapshot:
        return cls(
            id=m["id"],
            device_id=m["device_id"],
            alarm_id=m["alarm_id"],
            content_type=m["content_type"],
            size=int(m["size"]),
            sha256=m["sha256"],
            object_key=m["object_key"],
            captured_at=m["captured_at"],
            created_at=m["created_at"],
        )


def media_type(header: str | None) -> str:
    """The bare media type of a `Content-Type` header, if it is one snapshots may have."""
    value = (header or "").split(";", 1)[0].strip().lower()
    if value not in MEDIA_TYPES:
        allowed = ", ".join(sorted(MEDIA_TYPES))
        shown = f"'{value[:100]}'" if value else "no Content-Type"
        raise UnsupportedMediaType(f"A snapshot is one of {allowed}; got {shown}.")
    return value


class SnapshotUpload:
    """One upload in progress. Not shared between threads: the front feeds it in order."""

    def __init__(
        self,
        *,
        actor: Actor,
        scope: TenantScope,
        snapshot_id: str,
        object_key: str,
        fields: dict[str, Any],
        expected_sha256: str | None,
        limit: int,
        writer: ObjectWriter,
    ) -> None:
        self.actor, self.scope = actor, scope
        self.snapshot_id, self.object_key, self.fields = snapshot_id, object_key, fields
        self.expected_sha256 = expected_sha256
        self.size = 0
        self._limit = limit
        self._hash = hashlib.sha256()
        self._writer: ObjectWriter | None = writer

    def write(self, chunk: bytes) -> None:
        if self._writer is None:
            raise ValueError("this upload is already finished")
        self.size += len(chunk)
        if self.size > self._limit:
            self.abort()
            raise PayloadTooLarge(f"A snapshot may be at most {self._limit} bytes.")
        self._hash.update(chunk)
        self._writer.write(chunk)

    def complete(self) -> str:
        """Check what arrived against what was promised and make it durable; its digest.
        A refusal aborts, so nothing is stored."""
        writer = self._writer
        if writer is None:
            raise ValueError("this upload is already finished")
        try:
            self._check()
            writer.commit()
            self._writer = None
        except BaseException:
            self.abort()
            raise
        return self._hash.hexdigest()

    def _check(self) -> None:
        if self.size == 0:
            raise InvalidInput("The upload is empty.")
        digest = self._hash.hexdigest()
        if self.expected_sha256 is not None and self.expected_sha256 != digest:
            raise InvalidInput(
                "The content's SHA-256 does not match the digest sent with it; nothing was stored.",
                sha256=digest,
            )

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None


class SnapshotService:
    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        clock: Clock,
        store: ObjectStore,
        max_bytes: int,
        records: FieldCipher,
    ) -> None:
        self._db, self._audit, self._clock = db, audit, clock
        self._store, self.max_bytes, self._records = store, max_bytes, records

    def begin(
        self,
        actor: Actor,
        device_id: str,
        *,
        content_type: str | None,
        alarm_id: str | None = None,
        captured_at: datetime | None = None,
        sha256: str | None = None,
        declared_size: int | None = None,
    ) -> SnapshotUpload:
        """Everything checkable before the body: a refusal here costs the caller no upload."""
        scope = scope_of(actor)
        kind = media_type(content_type)
        if declared_size is not None and declared_size > self.max_bytes:
            raise PayloadTooLarge(f"A snapshot may be at most {self.max_bytes} bytes.")
        if sha256 is not None and not _SHA256_HEX.fullmatch(sha256):
            raise InvalidInput("A SHA-256 digest is 64 lowercase hexadecimal characters.")
        captured_at = optional_utc(captured_at, "captured_at")
        with self._db.read() as conn:
            device = scope.one(conn, devices, device_id, "device")
            if alarm_id is not None:
                alarm = scope.one(conn, alarms, alarm_id, "alarm")
                if alarm["site_id"] != device["site_id"]:
                    raise InvalidInput("The alarm and the device belong to different sites.")
        snapshot_id = new_id("snp")
        key = f"{scope.tenant.dealer_id}/{scope.tenant.environment.value}/{snapshot_id}"
        return SnapshotUpload(
            actor=actor,
            scope=scope,
            snapshot_id=snapshot_id,
            object_key=key,
            fields={
                "device_id": device_id,
                "alarm_id": alarm_id,
                "content_type": kind,
                "captured_at": captured_at,
            },
            expected_sha256=sha256,
            limit=self.max_bytes,
            writer=self._store.writer(key),
        )

    def finish(self, upload: SnapshotUpload) -> Snapshot:
        """Check, store durably, then record; on any failure nothing stays stored."""
        digest = upload.complete()
        try:
            return self._record(upload, digest)
        except BaseException:
            self._store.delete(upload.object_key)
            raise

    def _record(self, upload: SnapshotUpload, digest: str) -> Snapshot:
        scope, actor, fields = upload.scope, upload.actor, upload.fields
        now = self._clock.now()
        sealer = self._records.sealer(scope.tenant.dealer_id)  # the event is sealed (S6)
        with self._db.transaction() as conn:
            scope.one(conn, devices, fields["device_id"], "device")
            conn.execute(
                insert(snapshots).values(
                    id=upload.snapshot_id,
                    **scope.values(),
                    **fields,
                    size=upload.size,
                    sha256=digest,
                    object_key=upload.object_key,
                    created_at=now,
                )
            )
            captured = fields["captured_at"]
            emit(
                conn,
                scope.tenant,
                EventType.SNAPSHOT_CREATED,
                subject_type="snapshot",
                subject_id=upload.snapshot_id,
                data={
                    "snapshot_id": upload.snapshot_id,
                    "device_id": fields["device_id"],
                    "alarm_id": fields["alarm_id"],
                    "content_type": fields["content_type"],
                    "size": upload.size,
                    "sha256": digest,
                    "captured_at": captured.isoformat() if captured else None,
                },
                when=now,
                sealer=sealer,
            )
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.SNAPSHOT_UPLOADED,
                    target_type="snapshot",
                    target_id=upload.snapshot_id,
                    details={
                        "device_id": fields["device_id"],
                        "alarm_id": fields["alarm_id"],
                        "content_type": fields["content_type"],
                        "size": upload.size,
                        "sha256": digest,
                    },
                ),
            )
            return Snapshot.from_row(scope.one(conn, snapshots, upload.snapshot_id, "snapshot"))

    def create(
        self,
        actor: Actor,
        device_id: str,
        chunks: Iterable[bytes],
        *,
        content_type: str,
        alarm_id: str | None = None,
        captured_at: datetime | None = None,
        sha256: str | None = None,
    ) -> Snapshot:
        """Upload from an iterable in one call (CLI, portal, tests)."""
        upload = self.begin(
            actor,
            device_id,
            content_type=content_type,
            alarm_id=alarm_id,
            captured_at=captured_at,
            sha256=sha256,
        )
        try:
            for chunk in chunks:
                upload.write(chunk)
        except BaseException:
            upload.abort()
            raise
        return self.finish(upload)

    def get(self, actor: Actor, snapshot_id: str) -> Snapshot:
        scope = scope_of(actor)
        query = _visible(scope).where(snapshots.c.id == snapshot_id)
        with self._db.read() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            raise NotFound(f"No snapshot '{snapshot_id}'.")
        return Snapshot.from_row(row)

    def list(
        self,
        actor: Actor,
        *,
        device_id: str | None = None,
        alarm_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Snapshot]:
        c = snapshots.c
        query = _visible(scope_of(actor)).order_by(c.seq.desc()).limit(limit + 1)
        if device_id is not None:
            query = query.where(c.device_id == device_id)
        if alarm_id is not None:
            query = query.where(c.alarm_id == alarm_id)
        if cursor is not None:
            query = query.where(c.seq < decode_cursor(cursor))
        with self._db.read() as conn:
            rows = [(int(m["seq"]), Snapshot.from_row(m)) for m in conn.execute(query).mappings()]
        return page_of(rows, limit)

    def of_alarm(
        self, actor: Actor, alarm_id: str, snapshot_ids: Iterable[str]
    ) -> builtins.list[Snapshot]:
        """An alarm's evidence, oldest first: snapshots uploaded for it and those named when it
        was raised (`snapshot_ids`), in one query."""
        c = snapshots.c
        query = (
            _visible(scope_of(actor))
            .where(or_(c.alarm_id == alarm_id, c.id.in_(list(snapshot_ids))))
            .order_by(c.seq)
            .limit(MAX_PER_ALARM)
        )
        with self._db.read() as conn:
            return [Snapshot.from_row(m) for m in conn.execute(query).mappings()]

    def read(self, snapshot: Snapshot, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Content bytes `start` to `end` (exclusive) of a snapshot the caller obtained through
        `get`, which is where the tenant check happened. In pieces of about 1 MiB (see
        `coalesce`); the store has already authenticated the first segment when this returns."""
        return coalesce(self._store.read(snapshot.object_key, start, end))


def _visible(scope: TenantScope) -> Select[Any]:
    """Snapshots carry no site of their own; an end user limited to some sites sees those of
    the devices at those sites."""
    query = scope.select(snapshots)
    if scope.site_ids is not None:
        query = query.where(snapshots.c.device_id.in_(scope.select(devices, devices.c.id)))
    return query
