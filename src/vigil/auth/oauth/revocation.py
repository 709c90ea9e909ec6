"""Token revocation (RFC 7009). Revoking a refresh token revokes its whole family; revoking an
access token revokes that token. Effective on the next request: the edge reads the token's row
every time.

Unknown tokens, and tokens of another client, get the same empty 200 as a real revocation
(section 2.2): the endpoint must not become an oracle for which tokens exist.
"""

from __future__ import annotations

from sqlalchemy import select

from vigil.audit.actions import AuditAction
from vigil.auth.actor import Actor
from vigil.auth.oauth import token_store, tokens
from vigil.auth.oauth.clients import OAuthClient
from vigil.auth.oauth.context import Call, OAuthContext
from vigil.auth.oauth.errors import InvalidRequest
from vigil.auth.principal import ActorType
from vigil.storage.tables import oauth_tokens


def presented_token(value: str) -> tokens.Presented | None:
    return tokens.parse(value, tokens.Kind.ACCESS) or tokens.parse(value, tokens.Kind.REFRESH)


def revoke(ctx: OAuthContext, client: OAuthClient, form: dict[str, str], call: Call) -> None:
    value = form.get("token")
    if not value:
        raise InvalidRequest("The token parameter is required.")
    presented = presented_token(value)
    if presented is None:
        return
    with ctx.db.transaction() as conn:
        row = (
            conn.execute(
                select(
                    oauth_tokens.c.secret_hash, oauth_tokens.c.app_id, oauth_tokens.c.family_id
                ).where(oauth_tokens.c.id == presented.id)
            )
            .mappings()
            .first()
        )
        if row is None or not presented.matches(row["secret_hash"]) or row["app_id"] != client.id:
            return
        now = ctx.clock.now()
        if presented.kind is tokens.Kind.REFRESH:
            count = token_store.revoke_family(conn, row["family_id"], now)
        else:
            count = token_store.revoke_token(conn, presented.id, now)
        ctx.audit.write_in(
            conn,
            call.actor(ActorType.APP, client.id).record(
                now,
                AuditAction.OAUTH_TOKEN_REVOKED,
                target_type="oauth_token",
                target_id=presented.id,
                dealer_id=client.app.dealer_id,
                environment=client.app.environment.value,
                details={"family_id": row["family_id"], "tokens_revoked": count},
            ),
        )


def revoke_exposed(ctx: OAuthContext, value: str, actor: Actor) -> bool:
    """A token seen in cleartext (S2) must be assumed stolen: revoked at once, its refresh
    family with it. Only a token whose secret matches is touched."""
    presented = presented_token(value)
    if presented is None:
        return False
    with ctx.db.transaction() as conn:
        row = (
            conn.execute(select(oauth_tokens).where(oauth_tokens.c.id == presented.id))
            .mappings()
            .first()
        )
        if row is None or not presented.matches(row["secret_hash"]):
            return False
        now = ctx.clock.now()
        count = token_store.revoke_family(conn, row["family_id"], now)
        ctx.audit.write_in(
            conn,
            actor.record(
                now,
                AuditAction.OAUTH_TOKEN_REVOKED,
                target_type="oauth_token",
                target_id=presented.id,
                dealer_id=row["dealer_id"],
                environment=row["environment"],
                details={
                    "reason": "exposed",
                    "family_id": row["family_id"],
                    "tokens_revoked": count,
                },
            ),
        )
    return True
