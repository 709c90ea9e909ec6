"""The authorization code grant at the token endpoint (RFC 6749 section 4.1.3, RFC 7636 4.6).

A code works once, for the client it was issued to, with the exact redirect URI of the request
and the PKCE verifier of its challenge. A second use means the code leaked: every token issued
from it is revoked (RFC 6749 section 4.1.2) and the replay is audited as a security event.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from vigil.audit.actions import AuditAction
from vigil.auth.oauth import pkce, token_store, tokens
from vigil.auth.oauth.clients import OAuthClient
from vigil.auth.oauth.context import Call, OAuthContext
from vigil.auth.oauth.errors import InvalidGrant
from vigil.auth.principal import ActorType
from vigil.auth.scopes import decode_scopes
from vigil.storage.tables import oauth_codes, oauth_grants

INVALID = "The authorization code is invalid, expired or was issued to another client."


def exchange(ctx: OAuthContext, client: OAuthClient, form: dict[str, str], call: Call) -> Any:
    presented = tokens.parse(form.get("code", ""), tokens.Kind.CODE)
    if presented is None:
        raise InvalidGrant(INVALID)
    now = ctx.clock.now()
    with ctx.db.read() as conn:
        code = (
            conn.execute(select(oauth_codes).where(oauth_codes.c.id == presented.id))
            .mappings()
            .first()
        )
    if code is None or not presented.matches(code["secret_hash"]) or code["app_id"] != client.id:
        raise InvalidGrant(INVALID)
    if code["used_at"] is not None:
        _replayed(ctx, client, code["family_id"], code["id"], call)
    if now >= code["expires_at"]:
        raise InvalidGrant(INVALID)
    if form.get("redirect_uri") != code["redirect_uri"]:
        raise InvalidGrant("redirect_uri must be exactly the one of the authorization request.")
    if not pkce.verifier_matches(form.get("code_verifier"), code["code_challenge"]):
        raise InvalidGrant("The PKCE code_verifier does not match the code_challenge.")
    user = ctx.users.get(code["user_id"])
    if user.disabled_at is not None:
        raise InvalidGrant(INVALID)
    app = client.app
    with ctx.db.transaction() as conn:
        claimed = conn.execute(
            update(oauth_codes)
            .where(oauth_codes.c.id == code["id"], oauth_codes.c.used_at.is_(None))
            .values(used_at=now)
        ).rowcount
        grant_live = conn.execute(
            select(oauth_grants.c.id).where(
                oauth_grants.c.id == code["grant_id"], oauth_grants.c.revoked_at.is_(None)
            )
        ).first()
        issued = None
        if claimed == 1 and grant_live is not None:
            subject = token_store.Subject(
                actor_type=ActorType.USER,
                actor_id=user.id,
                dealer_id=app.dealer_id,
                environment=app.environment,
                scopes=decode_scopes(code["scopes"]) & app.scopes & user.delegable,
                site_ids=user.site_ids,
                app_id=app.id,
                grant_id=code["grant_id"],
            )
            issued = token_store.issue(
                conn,
                subject,
                family_id=code["family_id"],
                now=now,
                access_ttl=ctx.access_ttl,
                refresh_until=now + ctx.refresh_ttl,
            )
            ctx.audit.write_in(
                conn,
                call.actor(ActorType.APP, app.id).record(
                    now,
                    AuditAction.OAUTH_TOKEN_ISSUED,
                    target_type="user",
                    target_id=user.id,
                    dealer_id=app.dealer_id,
                    environment=app.environment.value,
                    details={
                        "grant_type": "authorization_code",
                        "grant_id": code["grant_id"],
                        "family_id": code["family_id"],
                        "access_token_id": issued.access.id,
                        "refresh_token_id": issued.refresh.id if issued.refresh else None,
                        "scopes": " ".join(sorted(s.value for s in issued.scopes)),
                    },
                ),
            )
    if claimed != 1:
        _replayed(ctx, client, code["family_id"], code["id"], call)
    if issued is None:
        raise InvalidGrant(INVALID)
    return issued.response()


def _replayed(
    ctx: OAuthContext, client: OAuthClient, family_id: str, code_id: str, call: Call
) -> None:
    now = ctx.clock.now()
    app = client.app
    with ctx.db.transaction() as conn:
        revoked = token_store.revoke_family(conn, family_id, now)
        ctx.audit.write_in(
            conn,
            call.actor(ActorType.APP, app.id).record(
                now,
                AuditAction.OAUTH_CODE_REUSED,
                target_type="oauth_code",
                target_id=code_id,
                result="security_event",
                dealer_id=app.dealer_id,
                environment=app.environment.value,
                details={"family_id": family_id, "tokens_revoked": revoked},
            ),
        )
    raise InvalidGrant(INVALID)
