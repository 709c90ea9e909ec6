"""Sites: CRUD, arming state and its history (`sites:read`, `sites:write`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from vigil.api.deps import services
from vigil.api.params import DEFAULT, Cursor, IfMatchHeader, Limit, ListPage, if_match, with_etag
from vigil.auth.actor import Actor
from vigil.auth.scopes import Scope
from vigil.edge.authorization import requires
from vigil.monitoring.sites import ArmingState
from vigil.services import Services

router = APIRouter(tags=["sites"])
Svc = Annotated[Services, Depends(services)]
SitesRead = Annotated[Actor, Depends(requires(Scope.SITES_READ))]
SitesWrite = Annotated[Actor, Depends(requires(Scope.SITES_WRITE))]
Strict = ConfigDict(extra="forbid")


class Address(BaseModel):
    model_config = Strict
    line1: str | None = Field(default=None, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    city: str | None = Field(default=None, max_length=100)
    region: str | None = Field(default=None, max_length=100)
    postal_code: str | None = Field(default=None, max_length=20)
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$", description="ISO 3166-1")


class SiteFields(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Warehouse 7",
                    "external_id": "crm-4411",
                    "account_number": "C-100234",
                    "address": {"line1": "7 Dock Rd", "city": "Leeds", "country": "GB"},
                    "timezone": "Europe/London",
                    "monitoring_station": "Northern ARC",
                }
            ]
        },
    )
    name: str = Field(min_length=1, max_length=200)
    external_id: str | None = Field(default=None, min_length=1, max_length=100)
    account_number: str | None = Field(default=None, pattern=r"^[A-Za-z0-9-]{1,40}$")
    address: Address = Field(default_factory=Address)
    timezone: str = Field(default="UTC", min_length=1, max_length=64, description="IANA name")
    monitoring_station: str | None = Field(default=None, max_length=200)


class SitePatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "Warehouse 7 (north)", "timezone": "UTC"}]},
    )
    name: str | None = Field(default=None, min_length=1, max_length=200)
    external_id: str | None = Field(default=None, min_length=1, max_length=100)
    account_number: str | None = Field(default=None, pattern=r"^[A-Za-z0-9-]{1,40}$")
    address: Address | None = None
    timezone: str | None = Field(default=None, min_length=1, max_length=64)
    monitoring_station: str | None = Field(default=None, max_length=200)


class SiteOut(BaseModel):
    id: str
    name: str
    external_id: str | None
    account_number: str | None
    address: dict[str, Any]
    timezone: str
    monitoring_station: str | None
    arming_state: ArmingState
    version: int
    created_at: datetime
    updated_at: datetime


class ArmingRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"state": "armed_away", "reason": "closing time"}]},
    )
    state: ArmingState
    reason: str | None = Field(default=None, max_length=500)


class ArmingChangeOut(BaseModel):
    id: str
    site_id: str
    from_state: ArmingState
    to_state: ArmingState
    actor_type: str
    actor_id: str
    reason: str | None
    occurred_at: datetime


def _out(site: object, response: Response) -> SiteOut:
    out = SiteOut.model_validate(site, from_attributes=True)
    with_etag(response, out.version)
    return out


@router.get("/v1/sites", summary="List sites, newest first")
def list_sites(
    actor: SitesRead,
    svc: Svc,
    arming_state: ArmingState | None = None,
    external_id: Annotated[str | None, Query(max_length=100)] = None,
    limit: Limit = DEFAULT,
    cursor: Cursor = None,
) -> ListPage[SiteOut]:
    page = svc.sites.list(
        actor, arming_state=arming_state, external_id=external_id, limit=limit, cursor=cursor
    )
    data = [SiteOut.model_validate(s, from_attributes=True) for s in page.items]
    return ListPage[SiteOut](data=data, next_cursor=page.next_cursor)


@router.post("/v1/sites", status_code=201, summary="Create a site (starts disarmed)")
def create_site(body: SiteFields, actor: SitesWrite, svc: Svc, response: Response) -> SiteOut:
    return _out(svc.sites.create(actor, body.model_dump()), response)


@router.get("/v1/sites/{site_id}", summary="Read one site")
def get_site(site_id: str, actor: SitesRead, svc: Svc, response: Response) -> SiteOut:
    return _out(svc.sites.get(actor, site_id), response)


@router.patch("/v1/sites/{site_id}", summary="Update a site's details (If-Match honoured)")
def update_site(
    site_id: str,
    body: SitePatch,
    actor: SitesWrite,
    svc: Svc,
    response: Response,
    if_match_header: IfMatchHeader = None,
) -> SiteOut:
    changes = body.model_dump(exclude_unset=True)
    site = svc.sites.update(actor, site_id, changes, if_match(if_match_header))
    return _out(site, response)


@router.post("/v1/sites/{site_id}/arming-state", summary="Arm or disarm a site")
def set_arming_state(
    site_id: str,
    body: ArmingRequest,
    actor: SitesWrite,
    svc: Svc,
    response: Response,
    if_match_header: IfMatchHeader = None,
) -> SiteOut:
    site = svc.sites.set_arming_state(
        actor, site_id, body.state, reason=body.reason, if_match=if_match(if_match_header)
    )
    return _out(site, response)


@router.get("/v1/sites/{site_id}/arming-history", summary="Arming changes, newest first")
def arming_history(
    site_id: str, actor: SitesRead, svc: Svc, limit: Limit = DEFAULT, cursor: Cursor = None
) -> ListPage[ArmingChangeOut]:
    page = svc.sites.arming_history(actor, site_id, limit=limit, cursor=cursor)
    data = [ArmingChangeOut.model_validate(c, from_attributes=True) for c in page.items]
    return ListPage[ArmingChangeOut](data=data, next_cursor=page.next_cursor)
