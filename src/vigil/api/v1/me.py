"""`GET /v1/me`: who the presented credential is."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from vigil.auth.actor import Actor
from vigil.edge.authorization import requires
from vigil.edge.direct import DirectRoute

# Answered by the edge itself (no request parsing to do): see edge/direct.py.
router = APIRouter(route_class=DirectRoute)


class Me(BaseModel):
    dealer_id: str
    app_id: str | None
    environment: str
    scopes: list[str]
    credential_id: str
    credential_kind: str
    expires_at: datetime | None = None


@router.get(
    "/v1/me", response_model=Me, tags=["identity"], summary="Describe the calling credential"
)
async def get_me(actor: Annotated[Actor, Depends(requires(None))]) -> Me:
    p = actor.principal
    assert p is not None
    return Me(
        dealer_id=p.dealer_id,
        app_id=p.app_id,
        environment=p.environment.value,
        scopes=sorted(s.value for s in p.scopes),
        credential_id=p.credential_id,
        credential_kind=p.credential_kind,
        expires_at=p.expires_at,
    )
