"""Telemetry: batched readings from devices, and queries over them, raw or downsampled.

Ingest is the hot path of the monitoring API (a fleet's heartbeats and sensor values arrive all
day), so it is shaped for throughput: the batch is validated once, in pydantic's compiled core
(`Reading`), then inserted with ONE `executemany` straight through the driver, in one
transaction with the heartbeat update and one audit record for the whole call. There is no
per-reading object beyond the validated model and one parameter tuple.

Values are sealed (S6): each reading's value is an envelope bound to its tenant, device, metric
and timestamp (`value_sealed`), sealed for the whole batch with one key lookup before the
write transaction opens. The database cannot aggregate what it cannot read, so downsampling
streams the range's readings and aggregates them here, in memory bounded by the bucket count
and in work bounded by `MAX_AGGREGATED` readings per query. Buckets are aligned to the Unix
epoch, so an hour bucket starts on the hour (UTC). Rows from before encryption (plaintext
`value`) are read as they are.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import ConfigDict, Field, TypeAdapter, with_config
from sqlalchemy import Connection, Select, and_, func, or_, select
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from vigil.audit.actions import AuditAction
from vigil.audit.log import AuditLog
from vigil.auth.actor import Actor
from vigil.core.clock import Clock
from vigil.core.errors import InvalidInput
from vigil.core.pagination import Page
from vigil.core.times import Instant
from vigil.crypto.binding import BindingScope
from vigil.crypto.fields import FieldCipher
from vigil.monitoring.devices import DeviceStatus
from vigil.monitoring.presence import record_heartbeat
from vigil.monitoring.scoping import TenantScope, scope_of
from vigil.storage.db import Database
from vigil.storage.tables import devices, telemetry

MAX_READINGS = 1000
HEARTBEAT = "heartbeat"
METRIC_PATTERN = r"^[a-z][a-z0-9_.]{0,63}$"
# A device whose clock was never set reports 1970 (or its firmware's build date); such readings
# would sort before everything real, so they are refused rather than stored.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
# Clock skew is tolerated up to here; further ahead is a misconfigured clock (often a time-zone
# mistake, which is whole hours) whose readings would sort after everything real.
MAX_AHEAD = timedelta(minutes=15)
MIN_BUCKET_SECONDS = 60
MAX_BUCKET_SECONDS = 86_400
# Bounds the work and the response of one downsampled query: a day of minutes, a year of days...
MAX_BUCKETS = 1440
MAX_PAGE = 1000
MAX_METRICS = 50
# Readings one downsampled query may decrypt and aggregate (~0.5 s of CPU): beyond it the caller
# narrows the range. Memory does not depend on it (rows stream; state is one entry per bucket).
MAX_AGGREGATED = 200_000
RECORD_TYPE = "telemetry"
_DOUBLE = struct.Struct(">d")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def reading_id(device_id: str, metric: str, at: datetime) -> str:
    """What a sealed value is bound to besides its tenant: copied to another device, metric or
    time it no longer opens."""
    return f"{device_id}/{metric}/{(at - _EPOCH) // _MICRO}"


Metric = Annotated[
    str,
    Field(
        pattern=METRIC_PATTERN,
        description="Lower case, digits, `_` and `.`; 1 to 64 characters. `heartbeat` "
        "readings also mark the device as seen.",
        examples=["temperature.c"],
    ),
]


@with_config(ConfigDict(extra="forbid", allow_inf_nan=False))
class Reading(TypedDict):
    """One reading. The rules are enforced as the batch is parsed, in pydantic's compiled core:
    finite values only, timezone-aware timestamps, bounded metric names. A TypedDict rather than
    a model: validating a 1,000-reading batch into plain dicts costs half as much."""

    metric: Metric
    value: Annotated[float, Field(description="A finite number.", examples=[21.5])]
    timestamp: Annotated[
        Instant,
        Field(
            description="When it was measured; ISO 8601 with a zone.",
            examples=["2026-11-27T21:00:00Z"],
        ),
    ]


# For fronts other than the API (which validates through its request model).
READINGS = TypeAdapter(list[Reading])


@dataclass(frozen=True, slots=True)
class Ingested:
    device_id: str
    ingested: int
    status: DeviceStatus
    last_seen_at: datetime | None


@dataclass(frozen=True, slots=True)
class StoredReading:
    metric: str
    value: float
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class Bucket:
    start: datetime
    count: int
    min: float
    max: float
    avg: float


_COLUMNS = ("dealer_id", "environment", "device_id", "metric", "value_sealed", "recorded_at")


def _seal(
    cipher: FieldCipher, tenant: dict[str, str], device_id: str, rows: Sequence[Reading]
) -> list[bytes | bytearray]:
    scope = BindingScope(tenant["dealer_id"], tenant["environment"], RECORD_TYPE)
    bind, pack = scope.bind, _DOUBLE.pack
    return cipher.seal_many(
        scope.tenant,
        [
            (bind(reading_id(device_id, r["metric"], r["timestamp"]), "value"), pack(r["value"]))
            for r in rows
        ],
    )


def _insert(
    conn: Connection,
    tenant: dict[str, str],
    device_id: str,
    rows: Sequence[Reading],
    sealed: Sequence[bytes | bytearray],
) -> None:
    """One `executemany` through the driver: SQLAlchemy's per-row bind processing would cost
    more than the insert itself. SQLite stores `UtcDateTime` as UTC text in exactly the format
    written here; PostgreSQL's driver takes the aware datetimes as they are."""
    dealer, env = tenant["dealer_id"], tenant["environment"]
    if conn.dialect.name == "sqlite":
        marker = "?"
        params: list[tuple[Any, ...]] = [
            (
                dealer,
                env,
                device_id,
                r["metric"],
                v,
                r["timestamp"].astimezone(UTC).isoformat(" ", "microseconds")[:26],
            )
            for r, v in zip(rows, sealed, strict=True)
        ]
    else:
        marker = "%s"
        params = [
            (dealer, env, device_id, r["metric"], v, r["timestamp"])
            for r, v in zip(rows, sealed, strict=True)
        ]
    sql = (
        f"INSERT INTO telemetry ({', '.join(_COLUMNS)}) "  # noqa: S608 - fixed names
        f"VALUES ({', '.join([marker] * len(_COLUMNS))})"
    )
    conn.exec_driver_sql(sql, params)


def _range(
    since: datetime | None, until: datetime | None, now: datetime
) -> tuple[datetime | None, datetime | None]:
    """Check a query's [since, until) and clamp it to where readings can be (EARLIEST to
    MAX_AHEAD past now): the answer is the same, and a year-1 bound never reaches the storage
    layer, where converting it to UTC would overflow."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise InvalidInput(f"{name} needs a time zone (e.g. 2026-01-01T00:00:00Z).")
    if since is not None and until is not None and since >= until:
        raise InvalidInput("since must be before until.")
    latest = now + MAX_AHEAD

    def clamp(value: datetime | None) -> datetime | None:
        return None if value is None else min(max(value, EARLIEST), latest)

    return clamp(since), clamp(until)


def _encode(moment: datetime, seq: int) -> str:
    micros = (moment - EARLIEST) // timedelta(microseconds=1)
    return base64.urlsafe_b64encode(f"r:{micros}:{seq}".encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, int]:
    """Readings page by (time, insertion order), newest first; the cursor names that pair."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        text = ""
    kind, _, rest = text.partition(":")
    micros, _, seq = rest.partition(":")
    digits = micros.lstrip("-")
    if kind != "r" or not (digits.isdigit() and seq.isdigit()) or len(rest) > 40:
        raise InvalidInput("The cursor is not one this API returned.")
    try:
        return EARLIEST + timedelta(microseconds=int(micros)), int(seq)
    except OverflowError:
        raise InvalidInput("The cursor is not one this API returned.") from None


_Opener = Callable[[str, float | None, bytes | None, datetime], float]


class TelemetryService:
    def __init__(self, db: Database, audit: AuditLog, clock: Clock, cipher: FieldCipher) -> None:
        self._db, self._audit, self._clock, self._cipher = db, audit, clock, cipher

    def ingest(self, actor: Actor, device_id: str, readings: Sequence[Reading]) -> Ingested:
        """Store a batch; all of it or none. Heartbeats mark the device seen (and online)."""
        if not readings:
            raise InvalidInput("Send at least one reading.")
        if len(readings) > MAX_READINGS:
            raise InvalidInput(f"At most {MAX_READINGS} readings per call.")
        scope = scope_of(actor)
        now = self._clock.now()
        if max(r["timestamp"] for r in readings) > now + MAX_AHEAD:
            raise InvalidInput("A reading is timestamped in the future; check the device clock.")
        if min(r["timestamp"] for r in readings) < EARLIEST:
            raise InvalidInput("A reading is timestamped before 2000; check the device clock.")
        heartbeat = max(
            (r["timestamp"] for r in readings if r["metric"] == HEARTBEAT), default=None
        )
        # Sealed before the transaction: a key-store call (first use, budget top-up) must not
        # wait on the write lock this request would be holding.
        sealed = _seal(self._cipher, scope.values(), device_id, readings)
        # A heartbeat may bring the device online, and that event is sealed too.
        sealer = None if heartbeat is None else self._cipher.sealer(scope.tenant.dealer_id)
        with self._db.transaction() as conn:
            device = scope.one(conn, devices, device_id, "device")
            _insert(conn, scope.values(), device_id, readings, sealed)
            status, last_seen = DeviceStatus(device["status"]), device["last_seen_at"]
            if heartbeat is not None and sealer is not None:
                if record_heartbeat(
                    conn, self._audit, sealer, actor, scope.tenant, device, heartbeat, now
                ):
                    status = DeviceStatus.ONLINE
                seen = min(heartbeat, now)
                last_seen = seen if last_seen is None else max(last_seen, seen)
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.TELEMETRY_INGESTED,
                    target_type="device",
                    target_id=device_id,
                    details={"count": len(readings), "heartbeat": heartbeat is not None},
                ),
            )
        return Ingested(device_id, len(readings), status, last_seen)

    def readings(
        self,
        actor: Actor,
        device_id: str,
        *,
        metric: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[StoredReading]:
        """Raw readings in [since, until), newest first, a page at a time."""
        scope = scope_of(actor)
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit is 1 to {MAX_PAGE}.")
        c = telemetry.c
        query = (
            self._series(scope, device_id, metric, since, until)
            .add_columns(c.seq)
            .order_by(c.recorded_at.desc(), c.seq.desc())
            .limit(limit + 1)
        )
        if cursor is not None:
            at, seq = _decode(cursor)
            query = query.where(or_(c.recorded_at < at, and_(c.recorded_at == at, c.seq < seq)))
        with self._db.read() as conn:
            scope.one(conn, devices, device_id, "device")
            rows = conn.execute(query).all()
        opener = self._opener(scope, device_id)
        items = [StoredReading(m, opener(m, v, s, t), t) for m, v, s, t, _ in rows[:limit]]
        more = len(rows) > limit
        last = rows[limit - 1] if more else None
        return Page(items, _encode(last[3], last[4]) if last is not None else None)

    def buckets(
        self,
        actor: Actor,
        device_id: str,
        *,
        metric: str,
        bucket_seconds: int,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Bucket]:
        """min / max / avg / count of one metric per bucket over [since, until), oldest first.

        Defaults to the last 24 hours. Buckets are epoch-aligned, so the first and last may be
        partial: they aggregate only the readings inside the range.
        """
        scope = scope_of(actor)
        if not MIN_BUCKET_SECONDS <= bucket_seconds <= MAX_BUCKET_SECONDS:
            raise InvalidInput(f"bucket is {MIN_BUCKET_SECONDS} to {MAX_BUCKET_SECONDS} seconds.")
        now = self._clock.now()
        since, until = _range(since, until, now)
        until = until or now
        since = since or max(until - timedelta(days=1), EARLIEST)
        if (until - since) > timedelta(seconds=bucket_seconds * MAX_BUCKETS):
            raise InvalidInput(
                f"At most {MAX_BUCKETS} buckets per query: widen the bucket or narrow the range."
            )
        c = telemetry.c
        query = (
            scope.select(telemetry, c.metric, c.value, c.value_sealed, c.recorded_at)
            .where(c.device_id == device_id, c.metric == metric)
            .where(c.recorded_at >= since, c.recorded_at < until)
            .order_by(c.recorded_at)
        )
        opener = self._opener(scope, device_id)
        totals: dict[int, list[float]] = {}  # bucket -> [count, min, max, sum]
        with self._db.read() as conn:
            scope.one(conn, devices, device_id, "device")
            result = conn.execution_options(yield_per=2000).execute(query)
            for n, (name, plain, sealed, at) in enumerate(result, 1):
                if n > MAX_AGGREGATED:
                    raise InvalidInput(
                        f"More than {MAX_AGGREGATED} readings in the range: narrow it."
                    )
                value = opener(name, plain, sealed, at)
                number = int((at - _EPOCH).total_seconds()) // bucket_seconds
                total = totals.get(number)
                if total is None:
                    totals[number] = [1, value, value, value]
                else:
                    total[0] += 1
                    total[1] = min(total[1], value)
                    total[2] = max(total[2], value)
                    total[3] += value
        return [
            Bucket(
                start=datetime.fromtimestamp(number * bucket_seconds, UTC),
                count=int(count),
                min=low,
                max=high,
                avg=total / count,
            )
            for number, (count, low, high, total) in sorted(totals.items())
        ]

    def metrics(self, actor: Actor, device_id: str, limit: int = MAX_METRICS) -> list[str]:
        """The metrics a device has reported, in name order (a chart's picker). A loose index
        scan: one seek per metric down `ix_telemetry_series` (the next name after the last),
        so a device with millions of readings costs as much as one with a few."""
        scope = scope_of(actor)
        c = telemetry.c
        found: list[str] = []
        with self._db.read() as conn:
            scope.one(conn, devices, device_id, "device")
            while len(found) < limit:
                query = select(func.min(c.metric)).where(c.device_id == device_id)
                if found:
                    query = query.where(c.metric > found[-1])
                name = conn.execute(query).scalar_one_or_none()
                if name is None:
                    break
                found.append(name)
        return found

    def _opener(self, scope: TenantScope, device_id: str) -> _Opener:
        """Reads one stored value: sealed (checked against its binding) or, for rows from
        before encryption, the plaintext column."""
        tenant = scope.tenant
        bindings = BindingScope(tenant.dealer_id, tenant.environment.value, RECORD_TYPE)
        open_, unpack = self._cipher.open, _DOUBLE.unpack

        def read(metric: str, plain: float | None, sealed: bytes | None, at: datetime) -> float:
            if sealed is None:
                return float(plain or 0.0)
            binding = bindings.bind(reading_id(device_id, metric, at), "value")
            value: float = unpack(open_(binding, sealed))[0]
            return value

        return read

    def _series(
        self,
        scope: TenantScope,
        device_id: str,
        metric: str | None,
        since: datetime | None,
        until: datetime | None,
    ) -> Select[Any]:
        since, until = _range(since, until, self._clock.now())
        c = telemetry.c
        query = scope.select(telemetry, c.metric, c.value, c.value_sealed, c.recorded_at).where(
            c.device_id == device_id
        )
        if metric is not None:
            query = query.where(c.metric == metric)
        if since is not None:
            query = query.where(c.recorded_at >= since)
        if until is not None:
            query = query.where(c.recorded_at < until)
        return query
