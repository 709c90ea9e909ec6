"""An app's OAuth client registration (S10): client type, authentication and redirect URIs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from vigil.api.deps import services
from vigil.auth.actor import Actor
from vigil.auth.oauth.clients import AuthMethod, ClientType
from vigil.auth.scopes import Scope
from vigil.core.errors import NotFound
from vigil.edge.authorization import requires
from vigil.services import Services

router = APIRouter(tags=["apps"])
Svc = Annotated[Services, Depends(services)]
AppsRead = Annotated[Actor, Depends(requires(Scope.APPS_READ))]
AppsWrite = Annotated[Actor, Depends(requires(Scope.APPS_WRITE))]


class ClientRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    client_type: ClientType
    token_endpoint_auth_method: AuthMethod = Field(
        description=(
            "`none` for public clients; `client_secret_basic`, `client_secret_post` or "
            "`private_key_jwt` for confidential ones (the client must use exactly this one)."
        )
    )
    redirect_uris: list[str] = Field(
        min_length=1,
        max_length=10,
        examples=[["https://app.example/callback", "http://127.0.0.1/callback"]],
        description="https://, or http://127.0.0.1 / http://[::1] for native apps (any port).",
    )
    jwks: dict[str, Any] | None = Field(
        default=None, description="Public keys, for `private_key_jwt` only."
    )


@router.put(
    "/v1/apps/{app_id}/oauth-client",
    summary="Register the app as an OAuth client (a client secret is returned once)",
)
def register_client(
    app_id: str, body: ClientRegistration, actor: AppsWrite, svc: Svc
) -> dict[str, Any]:
    client, secret = svc.oauth_clients.register(
        actor,
        app_id,
        client_type=body.client_type,
        auth_method=body.token_endpoint_auth_method,
        redirect_uris=body.redirect_uris,
        jwks=body.jwks,
    )
    return client.as_json() | ({"client_secret": secret} if secret else {})


@router.get("/v1/apps/{app_id}/oauth-client", summary="Read the app's OAuth registration")
def get_client(app_id: str, actor: AppsRead, svc: Svc) -> dict[str, Any]:
    app = svc.apps.get(app_id, actor.tenant)
    client = svc.oauth_clients.get(app.id)
    if client is None:
        raise NotFound(f"App '{app_id}' is not registered for OAuth.")
    return client.as_json()
