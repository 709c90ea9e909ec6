"""Telemetry: batched readings from devices, and queries over them, raw or downsampled.

Ingest is the hot path of the monitoring API (a fleet's heartbeats and sensor values arrive all
day), so it is shaped for throughput: the batch is validated once, in pydantic's compiled core
(`Reading`), then inserted with ONE `executemany` straight through the driver, in one
transaction with the heartbeat update and one audit record for the whole call. There is no
per-reading object beyond the validated model and one parameter tuple.

Downsampling groups by integer division of whole epoch seconds, computed by the database
(`storage/epoch.py`): the same SQL shape on SQLite and PostgreSQL, only the epoch expression
differs, and the database returns one row per bucket rather than every reading. Buckets are
aligned to the Unix epoch, so an hour bucket starts on the hour (UTC).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import AwareDatetime, ConfigDict, Field, TypeAdapter, with_config
from sqlalchemy import Connection, Integer, Select, and_, func, literal_column, or_
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from vigil.audit.actions import AuditAction
from vigil.audit.log import AuditLog
from vigil.auth.actor import Actor
from vigil.core.clock import Clock
from vigil.core.errors import InvalidInput
from vigil.core.pagination import Page
from vigil.monitoring.devices import DeviceStatus
from vigil.monitoring.presence import record_heartbeat
from vigil.monitoring.scoping import TenantScope, scope_of
from vigil.storage.db import Database
from vigil.storage.epoch import epoch_seconds
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
        AwareDatetime,
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


_COLUMNS = ("dealer_id", "environment", "device_id", "metric", "value", "recorded_at")


def _insert(
    conn: Connection, tenant: dict[str, str], device_id: str, rows: Sequence[Reading]
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
                r["value"],
                r["timestamp"].astimezone(UTC).isoformat(" ", "microseconds")[:26],
            )
            for r in rows
        ]
    else:
        marker = "%s"
        params = [(dealer, env, device_id, r["metric"], r["value"], r["timestamp"]) for r in rows]
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


class TelemetryService:
    def __init__(self, db: Database, audit: AuditLog, clock: Clock) -> None:
        self._db, self._audit, self._clock = db, audit, clock

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
        with self._db.transaction() as conn:
            device = scope.one(conn, devices, device_id, "device")
            _insert(conn, scope.values(), device_id, readings)
            status, last_seen = DeviceStatus(device["status"]), device["last_seen_at"]
            if heartbeat is not None:
                if record_heartbeat(conn, self._audit, actor, scope.tenant, device, heartbeat, now):
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
        items = [StoredReading(m, v, t) for m, v, t, _ in rows[:limit]]
        more = len(rows) > limit
        last = rows[limit - 1] if more else None
        return Page(items, _encode(last[2], last[3]) if last is not None else None)

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
        # The width is a validated int rendered inline: a bound parameter would differ between
        # the SELECT and GROUP BY expressions and PostgreSQL would refuse the grouping.
        width = literal_column(str(int(bucket_seconds)), Integer)
        number = (epoch_seconds(c.recorded_at) // width).label("bucket")
        query = (
            scope.select(
                telemetry,
                number,
                func.count(),
                func.min(c.value),
                func.max(c.value),
                func.avg(c.value),
            )
            .where(c.device_id == device_id, c.metric == metric)
            .where(c.recorded_at >= since, c.recorded_at < until)
            .group_by(number)
            .order_by(number)
        )
        with self._db.read() as conn:
            scope.one(conn, devices, device_id, "device")
            rows = conn.execute(query).all()
        return [
            Bucket(
                start=datetime.fromtimestamp(int(n) * bucket_seconds, UTC),
                count=int(count),
                min=float(low),
                max=float(high),
                avg=float(mean),
            )
            for n, count, low, high, mean in rows
        ]

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
        query = scope.select(telemetry, c.metric, c.value, c.recorded_at).where(
            c.device_id == device_id
        )
        if metric is not None:
            query = query.where(c.metric == metric)
        if since is not None:
            query = query.where(c.recorded_at >= since)
        if until is not None:
            query = query.where(c.recorded_at < until)
        return query
