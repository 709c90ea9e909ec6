"""Devices: register, list, read and update (`devices:read`, `devices:write`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from vigil.api.deps import services
from vigil.api.params import DEFAULT, Cursor, IfMatchHeader, Limit, ListPage, if_match, with_etag
from vigil.auth.actor import Actor
from vigil.auth.scopes import Scope
from vigil.edge.authorization import requires
from vigil.monitoring.devices import (
    DEFAULT_HEARTBEAT_SECONDS,
    MAX_HEARTBEAT_SECONDS,
    MIN_HEARTBEAT_SECONDS,
    DeviceKind,
    DeviceStatus,
)
from vigil.services import Services

router = APIRouter(tags=["devices"])
Svc = Annotated[Services, Depends(services)]
DevicesRead = Annotated[Actor, Depends(requires(Scope.DEVICES_READ))]
DevicesWrite = Annotated[Actor, Depends(requires(Scope.DEVICES_WRITE))]
Strict = ConfigDict(extra="forbid")

Id = Annotated[str, Field(min_length=1, max_length=40)]
Serial = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$",
        description="Unique among the dealer's devices in this environment.",
    ),
]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Firmware = Annotated[str, Field(min_length=1, max_length=100)]
Channel = Annotated[int, Field(ge=1, le=16, description="The bridge input, 1 to 16.")]
Window = Annotated[
    int,
    Field(
        ge=MIN_HEARTBEAT_SECONDS,
        le=MAX_HEARTBEAT_SECONDS,
        description="Silence longer than this takes the device offline.",
    ),
]


class DeviceFields(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "site_id": "site_5mDJvW4Zc2G8tQxk",
                    "kind": "camera",
                    "parent_id": "dev_0c8XH1oQm3VnT2sP",
                    "channel": 3,
                    "serial": "CAM-3F9A-0042",
                    "name": "Loading bay",
                    "firmware_version": "4.2.1",
                    "heartbeat_seconds": 300,
                }
            ]
        },
    )
    site_id: Id
    kind: DeviceKind
    parent_id: Id | None = Field(default=None, description="The bridge a camera hangs off.")
    channel: Channel | None = Field(default=None, description="Omit to take the first free one.")
    serial: Serial
    name: Name
    firmware_version: Firmware | None = None
    heartbeat_seconds: Window = DEFAULT_HEARTBEAT_SECONDS


class DevicePatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"firmware_version": "4.3.0", "name": "Loading bay"}]},
    )
    parent_id: Id | None = None
    channel: Channel | None = None
    serial: Serial | None = None
    name: Name | None = None
    firmware_version: Firmware | None = None
    heartbeat_seconds: Window | None = None


class DeviceOut(BaseModel):
    id: str
    site_id: str
    kind: DeviceKind
    parent_id: str | None
    channel: int | None
    serial: str
    name: str
    firmware_version: str | None
    status: DeviceStatus
    heartbeat_seconds: int
    last_seen_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime


def _out(device: object, response: Response) -> DeviceOut:
    out = DeviceOut.model_validate(device, from_attributes=True)
    with_etag(response, out.version)
    return out


@router.get("/v1/devices", summary="List devices, newest first")
def list_devices(
    actor: DevicesRead,
    svc: Svc,
    site_id: Annotated[str | None, Query(max_length=40)] = None,
    parent_id: Annotated[str | None, Query(max_length=40, description="A bridge's id")] = None,
    status: DeviceStatus | None = None,
    kind: DeviceKind | None = None,
    limit: Limit = DEFAULT,
    cursor: Cursor = None,
) -> ListPage[DeviceOut]:
    page = svc.devices.list(
        actor,
        site_id=site_id,
        parent_id=parent_id,
        status=status,
        kind=kind,
        limit=limit,
        cursor=cursor,
    )
    data = [DeviceOut.model_validate(d, from_attributes=True) for d in page.items]
    return ListPage[DeviceOut](data=data, next_cursor=page.next_cursor)


@router.post("/v1/devices", status_code=201, summary="Register a device (starts offline)")
def create_device(
    body: DeviceFields, actor: DevicesWrite, svc: Svc, response: Response
) -> DeviceOut:
    return _out(svc.devices.create(actor, body.model_dump(exclude_unset=True)), response)


@router.get("/v1/devices/{device_id}", summary="Read one device")
def get_device(device_id: str, actor: DevicesRead, svc: Svc, response: Response) -> DeviceOut:
    return _out(svc.devices.get(actor, device_id), response)


@router.patch("/v1/devices/{device_id}", summary="Update a device (If-Match honoured)")
def update_device(
    device_id: str,
    body: DevicePatch,
    actor: DevicesWrite,
    svc: Svc,
    response: Response,
    if_match_header: IfMatchHeader = None,
) -> DeviceOut:
    changes = body.model_dump(exclude_unset=True)
    device = svc.devices.update(actor, device_id, changes, if_match(if_match_header))
    return _out(device, response)
