"""Devices: the dealer's devices with their presence, and one device's detail with a telemetry
chart (server-rendered SVG over the telemetry service's downsampled buckets)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from vigil.auth.actor import Actor
from vigil.auth.scopes import Scope
from vigil.monitoring.devices import DeviceStatus
from vigil.monitoring.telemetry import HEARTBEAT
from vigil.portal.access import portal_requires, services_of
from vigil.portal.charts import DEFAULT_RANGE, RANGES, line_chart
from vigil.portal.pages import render
from vigil.portal.routing import PortalRoute
from vigil.portal.views.alarms import checked_id

router = APIRouter(route_class=PortalRoute, include_in_schema=False)
DevicesRead = Annotated[Actor, Depends(portal_requires(Scope.DEVICES_READ))]


def site_names(request: Request, actor: Actor) -> dict[str, str]:
    """Site ids to names in one query, where the operator may read sites (else ids show)."""
    if not request.state.portal.can(Scope.SITES_READ):
        return {}
    return {s.id: s.name for s in services_of(request).sites.list(actor, limit=200).items}


@router.get("/portal/devices")
def list_devices(
    request: Request,
    actor: DevicesRead,
    status: str = "",
    site: str = "",
    cursor: str | None = None,
) -> Response:
    wanted = DeviceStatus(status) if status in {s.value for s in DeviceStatus} else None
    site_id = checked_id(site, "site") if site else None
    page = services_of(request).devices.list(
        actor, status=wanted, site_id=site_id, limit=50, cursor=cursor
    )
    query = "&".join(
        f"{k}={v}" for k, v in (("status", status if wanted else ""), ("site", site)) if v
    )
    return render(
        request,
        "devices.html",
        devices=page.items,
        next_cursor=page.next_cursor,
        names=site_names(request, actor),
        chosen_status=wanted.value if wanted else "",
        site=site_id or "",
        query=query,
        statuses=[s.value for s in DeviceStatus],
    )


@router.get("/portal/devices/{device_id}")
def device_detail(
    request: Request,
    device_id: str,
    actor: DevicesRead,
    metric: str = "",
    range: str = DEFAULT_RANGE,
) -> Response:
    svc, view = services_of(request), request.state.portal
    device = svc.devices.get(actor, checked_id(device_id, "device"))
    site = svc.sites.get(actor, device.site_id) if view.can(Scope.SITES_READ) else None
    window = RANGES.get(range, RANGES[DEFAULT_RANGE])
    metrics: list[str] | None = None
    chart, buckets, until, since = None, [], svc.clock.now(), None
    if view.can(Scope.TELEMETRY_READ):
        metrics = svc.telemetry.metrics(actor, device.id)
        # Heartbeats are all 1s: a chart of anything else is the better first view.
        measured = [m for m in metrics if m != HEARTBEAT] or metrics
        chosen = metric if metric in metrics else (measured[0] if measured else "")
        metric = chosen
        if chosen:
            since = until - window.span
            buckets = svc.telemetry.buckets(
                actor,
                device.id,
                metric=chosen,
                bucket_seconds=window.bucket_seconds,
                since=since,
                until=until,
            )
            chart = line_chart(buckets, since, until, window.bucket_seconds)
    return render(
        request,
        "device.html",
        device=device,
        site=site,
        metrics=metrics,
        metric=metric,
        window=window,
        ranges=list(RANGES.values()),
        chart=chart,
        buckets=buckets,
        since=since,
        until=until,
    )
