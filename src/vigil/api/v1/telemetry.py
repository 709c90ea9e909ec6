"""Telemetry: batched ingest (`telemetry:write`) and queries, raw or downsampled
(`telemetry:read`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from vigil.api.deps import services
from vigil.api.params import Cursor
from vigil.auth.actor import Actor
from vigil.auth.scopes import Scope
from vigil.core.errors import InvalidInput
from vigil.core.times import Instant
from vigil.edge.authorization import requires
from vigil.monitoring.devices import DeviceStatus
from vigil.monitoring.telemetry import (
    MAX_BUCKET_SECONDS,
    MAX_PAGE,
    MAX_READINGS,
    METRIC_PATTERN,
    MIN_BUCKET_SECONDS,
    Reading,
)
from vigil.services import Services

router = APIRouter(tags=["telemetry"])
Svc = Annotated[Services, Depends(services)]
TelemetryRead = Annotated[Actor, Depends(requires(Scope.TELEMETRY_READ))]
TelemetryWrite = Annotated[Actor, Depends(requires(Scope.TELEMETRY_WRITE))]


class TelemetryBatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "readings": [
                        {"metric": "heartbeat", "value": 1, "timestamp": "2026-11-27T21:00:00Z"},
                        {
                            "metric": "temperature.c",
                            "value": 21.5,
                            "timestamp": "2026-11-27T21:00:00Z",
                        },
                    ]
                }
            ]
        },
    )
    readings: list[Reading] = Field(min_length=1, max_length=MAX_READINGS)


class IngestOut(BaseModel):
    device_id: str
    ingested: int = Field(description="Readings stored (all of the batch).")
    status: DeviceStatus
    last_seen_at: datetime | None


class ReadingOut(BaseModel):
    metric: str
    value: float
    timestamp: datetime


class BucketOut(BaseModel):
    start: datetime = Field(description="Start of the bucket (epoch-aligned, UTC).")
    count: int
    min: float
    max: float
    avg: float


class TelemetryOut(BaseModel):
    device_id: str
    bucket_seconds: int | None = Field(description="null: raw readings in `data`.")
    data: list[ReadingOut] | list[BucketOut]
    next_cursor: str | None = Field(description="Raw readings only; null on the last page.")


@router.post(
    "/v1/devices/{device_id}/telemetry",
    status_code=201,
    summary="Ingest up to 1,000 readings (heartbeats mark the device seen)",
)
def ingest(device_id: str, body: TelemetryBatch, actor: TelemetryWrite, svc: Svc) -> IngestOut:
    result = svc.telemetry.ingest(actor, device_id, body.readings)
    return IngestOut.model_validate(result, from_attributes=True)


@router.get(
    "/v1/devices/{device_id}/telemetry",
    summary="Query readings: raw (newest first, paginated) or downsampled per bucket",
)
def query(
    device_id: str,
    actor: TelemetryRead,
    svc: Svc,
    metric: Annotated[str | None, Query(pattern=METRIC_PATTERN)] = None,
    since: Annotated[Instant | None, Query(description="Inclusive.")] = None,
    until: Annotated[Instant | None, Query(description="Exclusive.")] = None,
    bucket: Annotated[
        int | None,
        Query(
            ge=MIN_BUCKET_SECONDS,
            le=MAX_BUCKET_SECONDS,
            description="Seconds; min/max/avg/count per bucket of one `metric` (last 24 h "
            "unless `since` says otherwise; at most 1,440 buckets).",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Raw readings per page.")] = 100,
    cursor: Cursor = None,
) -> TelemetryOut:
    if bucket is None:
        page = svc.telemetry.readings(
            actor, device_id, metric=metric, since=since, until=until, limit=limit, cursor=cursor
        )
        data = [ReadingOut.model_validate(r, from_attributes=True) for r in page.items]
        return TelemetryOut(
            device_id=device_id, bucket_seconds=None, data=data, next_cursor=page.next_cursor
        )
    if metric is None or cursor is not None:
        raise InvalidInput("A downsampled query names one metric and takes no cursor.")
    buckets = svc.telemetry.buckets(
        actor, device_id, metric=metric, bucket_seconds=bucket, since=since, until=until
    )
    rows = [BucketOut.model_validate(b, from_attributes=True) for b in buckets]
    return TelemetryOut(device_id=device_id, bucket_seconds=bucket, data=rows, next_cursor=None)
