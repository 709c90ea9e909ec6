"""Snapshots and clips: streamed upload (`snapshots:write`), metadata and ranged download
(`snapshots:read`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from vigil.api.deps import services
from vigil.api.digest_fields import expected_sha256
from vigil.api.params import DEFAULT, Cursor, Limit, ListPage
from vigil.api.uploads import stream_into
from vigil.auth.actor import Actor
from vigil.auth.scopes import Scope
from vigil.core.byte_ranges import parse_range
from vigil.core.errors import InvalidInput
from vigil.core.times import DATE_TIME_TEXT
from vigil.edge.authorization import requires
from vigil.monitoring.snapshots import MEDIA_TYPES, Snapshot
from vigil.services import Services

router = APIRouter(tags=["snapshots"])
Svc = Annotated[Services, Depends(services)]
SnapshotsRead = Annotated[Actor, Depends(requires(Scope.SNAPSHOTS_READ))]
SnapshotsWrite = Annotated[Actor, Depends(requires(Scope.SNAPSHOTS_WRITE))]
# Ids are `<prefix>_<base62>`; anything else (a NUL byte, say, which PostgreSQL refuses in text)
# is bad input, answered before any query.
ID_PATTERN = r"^[A-Za-z0-9_]{1,40}$"
Id = Annotated[str, Query(pattern=ID_PATTERN)]
DeviceId = Annotated[str, Path(pattern=ID_PATTERN)]
SnapshotId = Annotated[str, Path(pattern=ID_PATTERN)]
BINARY = {"schema": {"type": "string", "format": "binary"}}
BINARY_TYPES = {t: BINARY for t in sorted(MEDIA_TYPES)}


class SnapshotOut(BaseModel):
    id: str
    device_id: str
    alarm_id: str | None
    content_type: str
    size: int = Field(description="Bytes.")
    sha256: str = Field(description="Lowercase hex SHA-256 of the content; also its ETag.")
    captured_at: datetime | None
    created_at: datetime


def _out(snapshot: Snapshot) -> SnapshotOut:
    return SnapshotOut.model_validate(snapshot, from_attributes=True)


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 19:
        raise InvalidInput("Content-Length is not a number of bytes.")
    return int(value)


@router.post(
    "/v1/devices/{device_id}/snapshots",
    status_code=201,
    summary="Upload a snapshot or clip from a device (the body is the content, streamed)",
    openapi_extra={"requestBody": {"required": True, "content": BINARY_TYPES}},
    responses={
        413: {"description": "Larger than `VIGIL_SNAPSHOT_MAX_BYTES`; nothing stored"},
        415: {"description": "Not one of the accepted media types"},
    },
)
async def upload_snapshot(
    device_id: DeviceId,
    request: Request,
    actor: SnapshotsWrite,
    svc: Svc,
    response: Response,
    alarm_id: Id | None = None,
    captured_at: Annotated[datetime | None, DATE_TIME_TEXT] = None,
    sha256: Annotated[str | None, Query(pattern="^[0-9a-fA-F]{64}$")] = None,
    repr_digest: Annotated[str | None, Header(alias="Repr-Digest", max_length=1000)] = None,
    content_digest: Annotated[str | None, Header(alias="Content-Digest", max_length=1000)] = None,
) -> SnapshotOut:
    upload = await run_in_threadpool(
        lambda: svc.snapshots.begin(
            actor,
            device_id,
            content_type=request.headers.get("content-type"),
            alarm_id=alarm_id,
            captured_at=captured_at,
            sha256=expected_sha256(sha256, repr_digest, content_digest),
            declared_size=_declared_length(request),
        )
    )
    await stream_into(request, upload)
    snapshot = await run_in_threadpool(svc.snapshots.finish, upload)
    response.headers["Location"] = f"/v1/snapshots/{snapshot.id}"
    return _out(snapshot)


@router.get("/v1/snapshots", summary="List snapshots, newest first")
def list_snapshots(
    actor: SnapshotsRead,
    svc: Svc,
    device_id: Id | None = None,
    alarm_id: Id | None = None,
    limit: Limit = DEFAULT,
    cursor: Cursor = None,
) -> ListPage[SnapshotOut]:
    page = svc.snapshots.list(
        actor, device_id=device_id, alarm_id=alarm_id, limit=limit, cursor=cursor
    )
    return ListPage[SnapshotOut](data=[_out(s) for s in page.items], next_cursor=page.next_cursor)


@router.get("/v1/snapshots/{snapshot_id}", summary="Read one snapshot's description")
def get_snapshot(snapshot_id: SnapshotId, actor: SnapshotsRead, svc: Svc) -> SnapshotOut:
    return _out(svc.snapshots.get(actor, snapshot_id))


CONTENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The whole content", "content": BINARY_TYPES},
    206: {"description": "One byte range of it", "content": BINARY_TYPES},
    304: {"description": "Unchanged since the ETag sent in If-None-Match"},
    416: {"description": "The range starts past the end"},
}


@router.get(
    "/v1/snapshots/{snapshot_id}/content",
    summary="Download the content, whole or one byte range (Range: bytes=…)",
    response_class=StreamingResponse,
    responses=CONTENT_RESPONSES,
)
def snapshot_content(
    snapshot_id: SnapshotId,
    actor: SnapshotsRead,
    svc: Svc,
    range_: Annotated[str | None, Header(alias="Range")] = None,
    if_range: Annotated[str | None, Header(alias="If-Range", max_length=200)] = None,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match", max_length=2000)] = None,
) -> Response:
    snapshot = svc.snapshots.get(actor, snapshot_id)
    tag = f'"{snapshot.sha256}"'  # content never changes, so its digest is a strong validator
    headers = {"ETag": tag, "Accept-Ranges": "bytes", "Cache-Control": "private, no-cache"}
    if if_none_match is not None and {tag, "*"} & {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    # If-Range naming an older representation means "send it all" (RFC 9110 section 13.1.5).
    wanted = parse_range(range_ if if_range in (None, tag) else None, snapshot.size)
    if wanted is None:
        body, status, length = svc.snapshots.read(snapshot), 200, snapshot.size
    else:
        body = svc.snapshots.read(snapshot, wanted.start, wanted.end + 1)
        status, length = 206, wanted.length
        headers["Content-Range"] = wanted.content_range
    headers["Content-Length"] = str(length)
    return StreamingResponse(body, status, headers, media_type=snapshot.content_type)
