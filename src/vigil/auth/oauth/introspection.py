"""Token introspection (RFC 7662) for resource servers, which authenticate as confidential
clients. A resource server only learns about tokens of its own dealer and environment; anything
else is `{"active": false}`, indistinguishable from a token that does not exist."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from vigil.auth.oauth import tokens
from vigil.auth.oauth.clients import ClientType, OAuthClient
from vigil.auth.oauth.context import OAuthContext
from vigil.auth.oauth.errors import InvalidClient, InvalidRequest
from vigil.auth.oauth.revocation import presented_token
from vigil.storage.tables import oauth_tokens

INACTIVE: dict[str, Any] = {"active": False}


def introspect(ctx: OAuthContext, client: OAuthClient, form: dict[str, str]) -> dict[str, Any]:
    if client.client_type is not ClientType.CONFIDENTIAL:
        raise InvalidClient("Introspection is for authenticated (confidential) clients.")
    value = form.get("token")
    if not value:
        raise InvalidRequest("The token parameter is required.")
    presented = presented_token(value)
    if presented is None:
        return INACTIVE
    with ctx.db.read() as conn:
        row = (
            conn.execute(select(oauth_tokens).where(oauth_tokens.c.id == presented.id))
            .mappings()
            .first()
        )
    now = ctx.clock.now()
    if (
        row is None
        or not presented.matches(row["secret_hash"])
        or row["revoked_at"] is not None
        or row["used_at"] is not None
        or now >= row["expires_at"]
        or row["dealer_id"] != client.app.dealer_id
        or row["environment"] != client.app.environment.value
    ):
        return INACTIVE
    access = presented.kind is tokens.Kind.ACCESS
    return {
        "active": True,
        "scope": row["scopes"],
        "client_id": row["app_id"] or row["partner_id"],
        "sub": row["actor_id"],
        "token_type": "Bearer" if access else "refresh_token",
        "exp": int(row["expires_at"].timestamp()),
        "iat": int(row["created_at"].timestamp()),
        "iss": ctx.issuer,
        "vigil_dealer_id": row["dealer_id"],
        "vigil_environment": row["environment"],
        "vigil_actor_type": row["actor_type"],
        "vigil_site_ids": row["site_ids"],
    }
