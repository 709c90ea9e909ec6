"""The alarm console: the live queue of open alarms, one alarm's detail and timeline, its
snapshots streamed through the portal, and the operator's actions on it.

Every action calls the alarm service the API calls, as the operator (`via: "portal"`), so it is
checked (scope, tenant, state machine), timelined, announced and audited exactly as an API call
is. Each form carries the alarm's version as the API's `If-Match` would: an operator acting on a
page another operator has since changed is told so (412) instead of acting on stale facts. An
illegal step or a stale page re-renders the alarm with the service's own message, never a 500.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from vigil.auth.actor import Actor
from vigil.auth.scopes import Scope
from vigil.core.errors import Conflict, InvalidInput, NotFound, PreconditionFailed
from vigil.monitoring.alarm_models import MAX_AGENCY, MAX_NOTE, ResolutionCode
from vigil.monitoring.alarm_states import AlarmAction, AlarmStatus, allowed
from vigil.monitoring.alarms import OPEN
from vigil.portal.access import portal_requires, services_of
from vigil.portal.forms import one, read_form
from vigil.portal.pages import render, secure
from vigil.portal.routing import PortalRoute
from vigil.portal.views.static import HTMX, HTMX_INTEGRITY

router = APIRouter(route_class=PortalRoute, include_in_schema=False)
AlarmsRead = Annotated[Actor, Depends(portal_requires(Scope.ALARMS_READ))]
AlarmsWrite = Annotated[Actor, Depends(portal_requires(Scope.ALARMS_WRITE))]
AlarmsDispatch = Annotated[Actor, Depends(portal_requires(Scope.ALARMS_DISPATCH))]
SnapshotsRead = Annotated[Actor, Depends(portal_requires(Scope.SNAPSHOTS_READ))]

# Ids are `<prefix>_<base62>`: anything else is no alarm of anyone's (and a NUL byte, say,
# never reaches PostgreSQL).
_ID = re.compile(r"[A-Za-z0-9_]{1,40}")
REFRESH_SECONDS = 5
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "video/mp4": "mp4"}


def checked_id(value: str, noun: str) -> str:
    if not _ID.fullmatch(value):
        raise NotFound(f"No {noun} '{value[:40]}'.")
    return value


def _age(now: datetime, then: datetime) -> str:
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86_400:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 86_400} d {seconds % 86_400 // 3600} h"


def _filters(status: str, site: str) -> tuple[AlarmStatus | None, str | None]:
    wanted = AlarmStatus(status) if status in {s.value for s in OPEN} else None
    return wanted, (site if _ID.fullmatch(site) else None)


def _queue(request: Request, actor: Actor, status: str, site: str) -> dict[str, Any]:
    svc = services_of(request)
    wanted, site_id = _filters(status, site)
    rows = svc.alarms.queue(actor, status=wanted, site_id=site_id)
    now = svc.clock.now()
    query = "&".join(
        f"{k}={v}" for k, v in (("status", wanted and wanted.value), ("site", site_id)) if v
    )
    return {
        "rows": [(row, _age(now, row.created_at)) for row in rows],
        "chosen_status": wanted.value if wanted else "",
        "site": site_id or "",
        "query": query,
        "updated": now.strftime("%H:%M:%S"),
        "refresh": REFRESH_SECONDS,
    }


@router.get("/portal/alarms")
def console(request: Request, actor: AlarmsRead, status: str = "", site: str = "") -> Response:
    """The queue page; the queue itself is `_queue.html`, which htmx refreshes in place."""
    queue = _queue(request, actor, status, site)
    sites: list[tuple[str, str]] = []
    if request.state.portal.can(Scope.SITES_READ):
        found = services_of(request).sites.list(actor, limit=200).items
        sites = sorted(((s.id, s.name) for s in found), key=lambda pair: pair[1].lower())
    return render(
        request,
        "alarms.html",
        sites=sites,
        htmx=HTMX,
        htmx_integrity=HTMX_INTEGRITY,
        statuses=[s.value for s in OPEN],
        **queue,
    )


@router.get("/portal/alarms/queue")
def queue_fragment(
    request: Request, actor: AlarmsRead, status: str = "", site: str = ""
) -> Response:
    """Just the queue table, for htmx's refresh (a plain GET also gets it: no state changes)."""
    return render(request, "_queue.html", **_queue(request, actor, status, site))


def _detail(
    request: Request, actor: Actor, alarm_id: str, status: int = 200, error: str | None = None
) -> Response:
    svc, view = services_of(request), request.state.portal
    alarm = svc.alarms.get(actor, checked_id(alarm_id, "alarm"))
    timeline = svc.alarms.timeline(actor, alarm.id, limit=200).items
    site = svc.sites.get(actor, alarm.site_id) if view.can(Scope.SITES_READ) else None
    snapshots = (
        svc.snapshots.of_alarm(actor, alarm.id, alarm.snapshot_ids)
        if view.can(Scope.SNAPSHOTS_READ)
        else None
    )
    legal = set(allowed(alarm.status))
    actions = {
        "acknowledge": view.can(Scope.ALARMS_WRITE) and AlarmAction.ACKNOWLEDGE in legal,
        "dispatch": view.can(Scope.ALARMS_DISPATCH) and AlarmAction.DISPATCH in legal,
        "resolve": view.can(Scope.ALARMS_WRITE) and AlarmAction.RESOLVE in legal,
        "annotate": view.can(Scope.ALARMS_WRITE),
    }
    return render(
        request,
        "alarm.html",
        status,
        alarm=alarm,
        site=site,
        timeline=timeline,
        snapshots=snapshots,
        actions=actions,
        codes=[c.value for c in ResolutionCode],
        age=_age(svc.clock.now(), alarm.created_at),
        error=error,
        max_note=MAX_NOTE,
        max_agency=MAX_AGENCY,
    )


@router.get("/portal/alarms/{alarm_id}")
def alarm_detail(request: Request, alarm_id: str, actor: AlarmsRead) -> Response:
    return _detail(request, actor, alarm_id)


def _resolution(value: str) -> ResolutionCode:
    if value not in {c.value for c in ResolutionCode}:
        raise InvalidInput("Choose a resolution code.")
    return ResolutionCode(value)


async def _act(request: Request, actor: Actor, alarm_id: str, action: AlarmAction) -> Response:
    """Run one action through the alarm service; a refusal the operator can act on (an illegal
    step, a stale page, a bad field) comes back on the alarm's page with the service's words."""
    checked_id(alarm_id, "alarm")
    form = await read_form(request)
    note = one(form, "note", MAX_NOTE) or None
    version = one(form, "version", 12)
    expected = int(version) if version.isdigit() else None
    alarms = services_of(request).alarms
    try:
        if action is AlarmAction.ACKNOWLEDGE:
            alarms.acknowledge(actor, alarm_id, note=note, if_match=expected)
        elif action is AlarmAction.DISPATCH:
            agency = one(form, "agency", MAX_AGENCY) or None
            alarms.dispatch(actor, alarm_id, agency=agency, note=note, if_match=expected)
        elif action is AlarmAction.RESOLVE:
            code = _resolution(one(form, "resolution_code", 40))
            alarms.resolve(actor, alarm_id, code, note=note, if_match=expected)
        else:
            alarms.annotate(actor, alarm_id, note or "", if_match=expected)
    except PreconditionFailed as stale:
        request.state.error = stale
        message = "Someone changed this alarm after you opened it. Here it is now; try again."
        return _detail(request, actor, alarm_id, 412, message)
    except (Conflict, InvalidInput) as refused:
        request.state.error = refused
        return _detail(request, actor, alarm_id, refused.status, refused.detail)
    return RedirectResponse(f"/portal/alarms/{alarm_id}", 303)


@router.post("/portal/alarms/{alarm_id}/acknowledge")
async def acknowledge(request: Request, alarm_id: str, actor: AlarmsWrite) -> Response:
    return await _act(request, actor, alarm_id, AlarmAction.ACKNOWLEDGE)


@router.post("/portal/alarms/{alarm_id}/annotate")
async def annotate(request: Request, alarm_id: str, actor: AlarmsWrite) -> Response:
    return await _act(request, actor, alarm_id, AlarmAction.ANNOTATE)


@router.post("/portal/alarms/{alarm_id}/dispatch")
async def dispatch(request: Request, alarm_id: str, actor: AlarmsDispatch) -> Response:
    return await _act(request, actor, alarm_id, AlarmAction.DISPATCH)


@router.post("/portal/alarms/{alarm_id}/resolve")
async def resolve(request: Request, alarm_id: str, actor: AlarmsWrite) -> Response:
    return await _act(request, actor, alarm_id, AlarmAction.RESOLVE)


@router.get("/portal/snapshots/{snapshot_id}")
def snapshot_content(request: Request, snapshot_id: str, actor: SnapshotsRead) -> Response:
    """A snapshot's content, streamed from the object store chunk by chunk (never held whole),
    after the snapshot service has found it among this operator's tenant's (another dealer's id
    is a 404). The type is the one recorded at upload, which only ever is an image or MP4;
    nosniff (from the edge) keeps browsers to it. Stills show inline; clips download."""
    svc = services_of(request)
    snapshot = svc.snapshots.get(actor, checked_id(snapshot_id, "snapshot"))
    kind = snapshot.content_type
    disposition = "inline" if kind.startswith("image/") else "attachment"
    name = f"{snapshot.id}.{EXTENSIONS.get(kind, 'bin')}"  # the id is [A-Za-z0-9_] only
    headers = {
        "content-length": str(snapshot.size),
        "content-disposition": f'{disposition}; filename="{name}"',
        "cache-control": "private, no-store",
        "etag": f'"{snapshot.sha256}"',
    }
    body = svc.snapshots.read(snapshot)
    return secure(StreamingResponse(body, 200, headers, media_type=kind))
