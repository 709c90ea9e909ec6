"""Alarms: raise, list, read, and work them through their states (`alarms:read`, `alarms:write`,
`alarms:dispatch`). Every transition honours `If-Match`, so of two operators acting at once one
succeeds and the other gets 412."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from vigil.api.deps import services
from vigil.api.params import DEFAULT, Cursor, IfMatchHeader, Limit, ListPage, if_match, with_etag
from vigil.auth.actor import Actor
from vigil.auth.scopes import Scope
from vigil.core.times import Instant
from vigil.edge.authorization import requires
from vigil.monitoring import alarm_models as m
from vigil.monitoring.alarm_states import AlarmStatus
from vigil.services import Services

router = APIRouter(tags=["alarms"])
Svc = Annotated[Services, Depends(services)]
AlarmsRead = Annotated[Actor, Depends(requires(Scope.ALARMS_READ))]
AlarmsWrite = Annotated[Actor, Depends(requires(Scope.ALARMS_WRITE))]
AlarmsDispatch = Annotated[Actor, Depends(requires(Scope.ALARMS_DISPATCH))]
Id = Annotated[str, Field(min_length=1, max_length=m.MAX_ID)]
Note = Annotated[str, Field(min_length=1, max_length=m.MAX_NOTE)]


def _strict(example: dict[str, Any]) -> ConfigDict:
    return ConfigDict(extra="forbid", json_schema_extra={"examples": [example]})


class AlarmFields(BaseModel):
    model_config = _strict(
        {
            "site_id": "site_4mQe1lUq3kS0eDbq5Gm9Xx",
            "device_id": "dev_1bA5x9TzP0qLw7cVn3Hs2K",
            "zone": "Zone 4 - loading bay PIR",
            "type": "burglary",
            "priority": 2,
            "occurred_at": "2026-11-27T22:14:05Z",
            "description": "Loading bay motion while armed away",
            "snapshot_ids": ["snap_0Xy7b2ZpQ4eRk1LmN8sT5v"],
            "verification_requested": True,
        }
    )
    site_id: Id
    device_id: Id | None = None
    zone: str | None = Field(default=None, max_length=m.MAX_ZONE)
    type: m.AlarmType
    priority: int | None = Field(
        default=None, ge=1, le=5, description="1 is most urgent; default by type (fire 1 .. 4)."
    )
    occurred_at: Instant = Field(description="When the device saw it; needs a time zone.")
    description: str | None = Field(default=None, max_length=m.MAX_DESCRIPTION)
    snapshot_ids: list[Id] = Field(default_factory=list, max_length=m.MAX_SNAPSHOTS)
    verification_requested: bool = Field(
        default=False, description="Ask an operator to verify video (`verification.requested`)."
    )


class AlarmOut(BaseModel):
    id: str
    site_id: str
    device_id: str | None
    zone: str | None
    type: m.AlarmType
    priority: int
    status: AlarmStatus
    description: str | None
    snapshot_ids: list[str]
    verification_requested: bool
    resolution_code: m.ResolutionCode | None
    occurred_at: datetime
    version: int
    created_at: datetime
    updated_at: datetime


class TimelineOut(BaseModel):
    id: str
    alarm_id: str
    action: str = Field(description="created, acknowledged, dispatched, resolved or annotated")
    actor_type: str
    actor_id: str
    note: str | None
    details: dict[str, Any]
    occurred_at: datetime


class AcknowledgeRequest(BaseModel):
    model_config = _strict({"note": "Watching cameras 2 and 3"})
    note: Note | None = None


class DispatchRequest(BaseModel):
    model_config = _strict({"agency": "police", "note": "Intruder on camera 3, ref 4471"})
    agency: str | None = Field(default=None, min_length=1, max_length=m.MAX_AGENCY)
    note: Note | None = None


class ResolveRequest(BaseModel):
    model_config = _strict({"resolution_code": "false_alarm", "note": "Cat on camera 2"})
    resolution_code: m.ResolutionCode
    note: Note | None = Field(default=None, description="Required when the code is `other`.")


class AnnotateRequest(BaseModel):
    model_config = _strict({"note": "Keyholder called back: on the way"})
    note: Note


def _out(alarm: m.Alarm, response: Response) -> AlarmOut:
    out = AlarmOut.model_validate(alarm, from_attributes=True)
    with_etag(response, out.version)
    return out


@router.post("/v1/alarms", status_code=201, summary="Raise an alarm (starts `new`)")
def create_alarm(body: AlarmFields, actor: AlarmsWrite, svc: Svc, response: Response) -> AlarmOut:
    fields = body.model_dump() | {"snapshot_ids": tuple(body.snapshot_ids)}
    return _out(svc.alarms.create(actor, m.NewAlarm(**fields)), response)


@router.get("/v1/alarms", summary="List alarms, newest first")
def list_alarms(
    actor: AlarmsRead,
    svc: Svc,
    status: AlarmStatus | None = None,
    site_id: Annotated[str | None, Query(max_length=m.MAX_ID)] = None,
    type: m.AlarmType | None = None,
    priority: Annotated[int | None, Query(ge=1, le=5)] = None,
    since: Annotated[Instant | None, Query(description="occurred_at at or after")] = None,
    until: Annotated[Instant | None, Query(description="occurred_at at or before")] = None,
    limit: Limit = DEFAULT,
    cursor: Cursor = None,
) -> ListPage[AlarmOut]:
    flt = m.AlarmFilter(status, site_id, type, priority, since, until)
    page = svc.alarms.list(actor, flt, limit=limit, cursor=cursor)
    data = [AlarmOut.model_validate(a, from_attributes=True) for a in page.items]
    return ListPage[AlarmOut](data=data, next_cursor=page.next_cursor)


@router.get("/v1/alarms/{alarm_id}", summary="Read one alarm (with its ETag)")
def get_alarm(alarm_id: str, actor: AlarmsRead, svc: Svc, response: Response) -> AlarmOut:
    return _out(svc.alarms.get(actor, alarm_id), response)


@router.get("/v1/alarms/{alarm_id}/timeline", summary="Who did what to an alarm, oldest first")
def alarm_timeline(
    alarm_id: str, actor: AlarmsRead, svc: Svc, limit: Limit = DEFAULT, cursor: Cursor = None
) -> ListPage[TimelineOut]:
    page = svc.alarms.timeline(actor, alarm_id, limit=limit, cursor=cursor)
    data = [TimelineOut.model_validate(e, from_attributes=True) for e in page.items]
    return ListPage[TimelineOut](data=data, next_cursor=page.next_cursor)


@router.post("/v1/alarms/{alarm_id}/acknowledge", summary="Acknowledge a new alarm")
def acknowledge_alarm(
    alarm_id: str,
    actor: AlarmsWrite,
    svc: Svc,
    response: Response,
    body: AcknowledgeRequest | None = None,
    if_match_header: IfMatchHeader = None,
) -> AlarmOut:
    note = body.note if body else None
    alarm = svc.alarms.acknowledge(actor, alarm_id, note=note, if_match=if_match(if_match_header))
    return _out(alarm, response)


@router.post("/v1/alarms/{alarm_id}/dispatch", summary="Send responders to an acknowledged alarm")
def dispatch_alarm(
    alarm_id: str,
    actor: AlarmsDispatch,
    svc: Svc,
    response: Response,
    body: DispatchRequest | None = None,
    if_match_header: IfMatchHeader = None,
) -> AlarmOut:
    body = body or DispatchRequest()
    alarm = svc.alarms.dispatch(
        actor, alarm_id, agency=body.agency, note=body.note, if_match=if_match(if_match_header)
    )
    return _out(alarm, response)


@router.post("/v1/alarms/{alarm_id}/resolve", summary="Close an alarm with a resolution code")
def resolve_alarm(
    alarm_id: str,
    body: ResolveRequest,
    actor: AlarmsWrite,
    svc: Svc,
    response: Response,
    if_match_header: IfMatchHeader = None,
) -> AlarmOut:
    alarm = svc.alarms.resolve(
        actor, alarm_id, body.resolution_code, note=body.note, if_match=if_match(if_match_header)
    )
    return _out(alarm, response)


@router.post("/v1/alarms/{alarm_id}/annotate", summary="Add a note (status unchanged)")
def annotate_alarm(
    alarm_id: str,
    body: AnnotateRequest,
    actor: AlarmsWrite,
    svc: Svc,
    response: Response,
    if_match_header: IfMatchHeader = None,
) -> AlarmOut:
    alarm = svc.alarms.annotate(actor, alarm_id, body.note, if_match=if_match(if_match_header))
    return _out(alarm, response)
