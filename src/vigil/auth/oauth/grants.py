"""A user's consents (grants): listed and revoked by the user. Revoking a grant revokes every
token issued under it, effective on the next request."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from vigil.audit.actions import AuditAction
from vigil.auth.actor import Actor
from vigil.auth.oauth.context import OAuthContext
from vigil.core.errors import NotFound
from vigil.storage.tables import apps, oauth_grants, oauth_tokens


def list_grants(ctx: OAuthContext, user_id: str) -> list[dict[str, Any]]:
    query = (
        select(oauth_grants, apps.c.name.label("app_name"))
        .join(apps, apps.c.id == oauth_grants.c.app_id)
        .where(oauth_grants.c.user_id == user_id, oauth_grants.c.revoked_at.is_(None))
        .order_by(oauth_grants.c.created_at.desc(), oauth_grants.c.id)
    )
    with ctx.db.read() as conn:
        return [
            {
                "id": g["id"],
                "app_id": g["app_id"],
                "app_name": g["app_name"],
                "environment": g["environment"],
                "scopes": g["scopes"].split(),
                "created_at": g["created_at"].isoformat(),
            }
            for g in conn.execute(query).mappings()
        ]


def revoke_grant(ctx: OAuthContext, actor: Actor, user_id: str, grant_id: str) -> None:
    """Another user's grant is indistinguishable from a missing one (404)."""
    now = ctx.clock.now()
    with ctx.db.transaction() as conn:
        grant = (
            conn.execute(
                select(oauth_grants).where(
                    oauth_grants.c.id == grant_id,
                    oauth_grants.c.user_id == user_id,
                    oauth_grants.c.revoked_at.is_(None),
                )
            )
            .mappings()
            .first()
        )
        if grant is None:
            raise NotFound(f"No grant '{grant_id}'.")
        conn.execute(
            update(oauth_grants).where(oauth_grants.c.id == grant_id).values(revoked_at=now)
        )
        revoked = conn.execute(
            update(oauth_tokens)
            .where(oauth_tokens.c.grant_id == grant_id, oauth_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        ).rowcount
        ctx.audit.write_in(
            conn,
            actor.record(
                now,
                AuditAction.OAUTH_GRANT_REVOKED,
                target_type="oauth_grant",
                target_id=grant_id,
                details={"app_id": grant["app_id"], "tokens_revoked": int(revoked)},
            ),
        )
