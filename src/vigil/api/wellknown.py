"""Public, unauthenticated documents under `/.well-known/`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.responses import PlainTextResponse

from vigil.api.deps import services
from vigil.disclosure import security_txt
from vigil.edge.authorization import public
from vigil.services import Services

router = APIRouter(tags=["disclosure"])


@router.get(
    "/.well-known/security.txt",
    response_class=PlainTextResponse,
    dependencies=[Depends(public("RFC 9116: researchers must reach it without an account"))],
    summary="Security contact (RFC 9116)",
)
async def get_security_txt(svc: Annotated[Services, Depends(services)]) -> PlainTextResponse:
    return PlainTextResponse(security_txt(svc.settings, svc.clock.now()))


@router.get(
    "/.well-known/vigil-audit-keys.json",
    dependencies=[Depends(public("verifiers need the checkpoint keys without an account"))],
    summary="Public keys that sign audit checkpoints (JWKS)",
)
def get_audit_keys(svc: Annotated[Services, Depends(services)]) -> dict[str, Any]:
    with svc.db.read() as conn:
        return svc.audit.signer.jwks(conn)
