"""`/v1/me/grants`: a signed-in user's consents to apps, listed and revoked with the user's own
access token (any scope: managing one's own consent needs no permission beyond being oneself)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from vigil.api.deps import services
from vigil.auth.actor import Actor
from vigil.auth.oauth import grants
from vigil.auth.principal import ActorType
from vigil.core.errors import PermissionDenied
from vigil.edge.authorization import requires
from vigil.services import Services

router = APIRouter(tags=["identity"])
Svc = Annotated[Services, Depends(services)]
AnyCredential = Annotated[Actor, Depends(requires(None))]


def _user_id(actor: Actor) -> str:
    if actor.principal is None or actor.principal.actor_type is not ActorType.USER:
        raise PermissionDenied("Only a user's OAuth access token has grants.")
    return actor.principal.actor_id


@router.get("/v1/me/grants", summary="List the calling user's active grants to apps")
def list_my_grants(actor: AnyCredential, svc: Svc) -> dict[str, Any]:
    return {"data": grants.list_grants(svc.oauth.ctx, _user_id(actor))}


@router.post(
    "/v1/me/grants/{grant_id}/revoke",
    status_code=204,
    summary="Revoke one of the user's grants and every token issued under it",
)
def revoke_my_grant(grant_id: str, actor: AnyCredential, svc: Svc) -> None:
    grants.revoke_grant(svc.oauth.ctx, actor, _user_id(actor), grant_id)
