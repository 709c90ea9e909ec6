"""The refresh token grant (RFC 6749 section 6), rotating on every use (RFC 9700 4.14.2).

Each refresh token works once. Presenting one that was already used means two parties hold it,
and we cannot tell the thief from the client: the whole family is revoked, and the event is
audited as a security event. Scopes can only narrow; a family ends at its absolute lifetime
however often it rotates. The user is re-read, so a disabled user or revoked consent stops at
the next refresh at the latest.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from vigil.audit.actions import AuditAction
from vigil.auth.oauth import token_store, tokens
from vigil.auth.oauth.authorization import delegable
from vigil.auth.oauth.clients import OAuthClient
from vigil.auth.oauth.context import Call, OAuthContext, parse_scope_param
from vigil.auth.oauth.errors import InvalidGrant, InvalidScope
from vigil.auth.principal import ActorType
from vigil.auth.scopes import decode_scopes, encode_scopes
from vigil.storage.tables import oauth_grants, oauth_tokens

INVALID = "The refresh token is invalid, expired, revoked or was issued to another client."


def refresh(ctx: OAuthContext, client: OAuthClient, form: dict[str, str], call: Call) -> Any:
    presented = tokens.parse(form.get("refresh_token", ""), tokens.Kind.REFRESH)
    if presented is None:
        raise InvalidGrant(INVALID)
    now = ctx.clock.now()
    with ctx.db.read() as conn:
        row = (
            conn.execute(select(oauth_tokens).where(oauth_tokens.c.id == presented.id))
            .mappings()
            .first()
        )
        live_grant = (
            row is not None
            and conn.execute(
                select(oauth_grants.c.id).where(
                    oauth_grants.c.id == row["grant_id"], oauth_grants.c.revoked_at.is_(None)
                )
            ).first()
            is not None
        )
    if row is None or not presented.matches(row["secret_hash"]) or row["app_id"] != client.id:
        raise InvalidGrant(INVALID)
    if row["used_at"] is not None and row["revoked_at"] is None:
        _reused(ctx, client, row, call)
    if row["revoked_at"] is not None or now >= row["expires_at"] or not live_grant:
        raise InvalidGrant(INVALID)
    held = decode_scopes(row["scopes"])
    asked = parse_scope_param(form.get("scope")) or held
    if not asked <= held:
        raise InvalidScope("A refresh can only narrow the scopes: " + encode_scopes(asked - held))
    user = ctx.users.get(row["actor_id"])
    if user.disabled_at is not None:
        raise InvalidGrant(INVALID)
    app = client.app
    # What the user may still hand out (their portal role may have changed since consent).
    scopes = asked & app.scopes & delegable(ctx, user)
    if not scopes:
        raise InvalidGrant("The user can no longer grant any of these scopes.")
    with ctx.db.transaction() as conn:
        claimed = token_store.claim_refresh(conn, row["id"], now)
        issued = None
        if claimed:
            subject = token_store.Subject(
                actor_type=ActorType.USER,
                actor_id=user.id,
                dealer_id=app.dealer_id,
                environment=app.environment,
                scopes=scopes,
                site_ids=user.site_ids,
                app_id=app.id,
                grant_id=row["grant_id"],
            )
            issued = token_store.issue(
                conn,
                subject,
                family_id=row["family_id"],
                now=now,
                access_ttl=ctx.access_ttl,
                refresh_until=row["family_expires_at"],
            )
            ctx.audit.write_in(
                conn,
                call.actor(ActorType.APP, app.id).record(
                    now,
                    AuditAction.OAUTH_TOKEN_REFRESHED,
                    target_type="user",
                    target_id=user.id,
                    dealer_id=app.dealer_id,
                    environment=app.environment.value,
                    details={
                        "family_id": row["family_id"],
                        "used_refresh_token_id": row["id"],
                        "access_token_id": issued.access.id,
                        "refresh_token_id": issued.refresh.id if issued.refresh else None,
                        "scopes": encode_scopes(issued.scopes),
                    },
                ),
            )
    if issued is None:
        _reused(ctx, client, row, call)
    assert issued is not None
    return issued.response()


def _reused(ctx: OAuthContext, client: OAuthClient, row: Any, call: Call) -> None:
    now = ctx.clock.now()
    app = client.app
    with ctx.db.transaction() as conn:
        revoked = token_store.revoke_family(conn, row["family_id"], now)
        ctx.audit.write_in(
            conn,
            call.actor(ActorType.APP, app.id).record(
                now,
                AuditAction.OAUTH_TOKEN_REUSED,
                target_type="oauth_token",
                target_id=row["id"],
                result="security_event",
                dealer_id=app.dealer_id,
                environment=app.environment.value,
                details={
                    "family_id": row["family_id"],
                    "user_id": row["actor_id"],
                    "tokens_revoked": revoked,
                },
            ),
        )
    raise InvalidGrant(INVALID)
