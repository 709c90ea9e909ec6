"""Apps and their API keys, managed by an app of the same dealer and environment."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from vigil.api.deps import services
from vigil.auth.actor import Actor
from vigil.auth.scopes import Scope
from vigil.edge.authorization import requires
from vigil.services import Services

router = APIRouter(tags=["apps"])
Svc = Annotated[Services, Depends(services)]
AppsRead = Annotated[Actor, Depends(requires(Scope.APPS_READ))]
AppsWrite = Annotated[Actor, Depends(requires(Scope.APPS_WRITE))]


class AppCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Central station bridge",
                    "scopes": ["alarms:read", "alarms:write"],
                    "ip_allow_list": ["203.0.113.0/24"],
                }
            ]
        },
    )
    name: str = Field(min_length=1, max_length=200)
    scopes: list[Scope] = Field(min_length=1, max_length=len(Scope))
    ip_allow_list: list[str] = Field(default_factory=list, max_length=100)


class KeyRotate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"grace_seconds": 86400, "scopes": ["alarms:read"]}]},
    )
    grace_seconds: int | None = Field(default=None, ge=0, le=7 * 24 * 3600)
    scopes: list[Scope] | None = Field(default=None, min_length=1, max_length=len(Scope))


@router.get("/v1/apps", summary="List the dealer's apps in this environment")
def list_apps(actor: AppsRead, svc: Svc) -> dict[str, Any]:
    return {"data": [a.as_json() for a in svc.apps.list(actor.tenant)]}


@router.post("/v1/apps", status_code=201, summary="Create an app (scopes at most the caller's)")
def create_app(body: AppCreate, actor: AppsWrite, svc: Svc) -> dict[str, Any]:
    p = actor.principal
    assert p is not None
    app = svc.apps.create(
        actor,
        dealer_id=p.dealer_id,
        name=body.name,
        environment=p.environment,
        scopes=body.scopes,
        ip_allow_list=body.ip_allow_list,
    )
    return app.as_json()


@router.get("/v1/apps/{app_id}", summary="Read one app")
def get_app(app_id: str, actor: AppsRead, svc: Svc) -> dict[str, Any]:
    return svc.apps.get(app_id, actor.tenant).as_json()


@router.get("/v1/apps/{app_id}/keys", summary="List an app's API keys (never their secrets)")
def list_keys(app_id: str, actor: AppsRead, svc: Svc) -> dict[str, Any]:
    app = svc.apps.get(app_id, actor.tenant)
    return {"data": [k.as_json() for k in svc.keys.list(actor.tenant, app_id=app.id)]}


@router.post("/v1/apps/{app_id}/keys", status_code=201, summary="Issue an app's first API key")
def create_key(app_id: str, actor: AppsWrite, svc: Svc) -> dict[str, Any]:
    key, token = svc.keys.create(actor, app_id)
    return key.as_json() | {"key": token}


@router.post("/v1/apps/{app_id}/keys/rotate", status_code=201, summary="Rotate with a grace window")
def rotate_key(app_id: str, body: KeyRotate, actor: AppsWrite, svc: Svc) -> dict[str, Any]:
    grace = None if body.grace_seconds is None else timedelta(seconds=body.grace_seconds)
    key, token, outgoing = svc.keys.rotate(actor, app_id, grace=grace, scopes=body.scopes)
    return key.as_json() | {"key": token, "previous": outgoing.as_json() if outgoing else None}


@router.post("/v1/keys/{key_id}/revoke", summary="Revoke an API key at once")
def revoke_key(key_id: str, actor: AppsWrite, svc: Svc) -> dict[str, Any]:
    return svc.keys.revoke(actor, key_id).as_json()
