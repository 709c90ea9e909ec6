"""The JWT bearer grant (RFC 7523 section 2.1): a partner trades a short-lived assertion it
signed for an access token acting for the dealer named in `sub` (S11).

The dealer must have authorized the partner; the token carries the partner's scopes
intersected with that authorization (narrowed further by `scope` if asked), lives at most one
hour and has no refresh token: the partner can always sign a fresh assertion.
"""

from __future__ import annotations

from typing import Any

from vigil.audit.actions import AuditAction
from vigil.auth.assertions import AssertionRefused, Expected
from vigil.auth.oauth import token_store
from vigil.auth.oauth.context import Call, OAuthContext, parse_scope_param
from vigil.auth.oauth.errors import InvalidGrant, InvalidRequest, InvalidScope
from vigil.auth.principal import ActorType
from vigil.auth.scopes import encode_scopes
from vigil.core.ids import new_id

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def exchange(ctx: OAuthContext, form: dict[str, str], call: Call) -> Any:
    assertion = form.get("assertion")
    if not assertion:
        raise InvalidRequest("The assertion parameter is required.")
    now = ctx.clock.now()
    expected = Expected(
        issuer_of=ctx.partners.exists,
        audience=ctx.issuer,
        subject_ok=lambda iss, sub: ctx.partners.authorization(iss, sub) is not None,
        now=now,
    )
    try:
        claims = ctx.assertions.verify(assertion, ctx.partners.active_key, expected)
    except AssertionRefused as exc:
        actor = call.actor(ActorType.PARTNER if exc.issuer else ActorType.ANONYMOUS, "-")
        if exc.issuer:
            actor = call.actor(ActorType.PARTNER, exc.issuer[:200])
        ctx.audit.write_now(
            actor.record(
                now,
                AuditAction.ASSERTION_REFUSED,
                target_type="partner",
                target_id=exc.issuer[:200] if exc.issuer else None,
                result="refused",
                details={"reason": exc.reason, "issuer_verified": False},
            )
        )
        raise InvalidGrant(f"Assertion refused: {exc}") from None
    partner = ctx.partners.get(str(claims["iss"]))
    dealer_id = str(claims["sub"])
    authorized = ctx.partners.authorization(partner.id, dealer_id) or frozenset()
    scopes = partner.scopes & authorized
    asked = parse_scope_param(form.get("scope"))
    if asked and not asked <= scopes:
        raise InvalidScope(
            "Outside the partner's authorized scopes: " + encode_scopes(asked - scopes)
        )
    scopes = asked or scopes
    if not scopes:
        raise InvalidScope("The partner holds no scope this dealer authorized.")
    subject = token_store.Subject(
        actor_type=ActorType.PARTNER,
        actor_id=partner.id,
        dealer_id=dealer_id,
        environment=partner.environment,
        scopes=scopes,
        partner_id=partner.id,
    )
    with ctx.db.transaction() as conn:
        issued = token_store.issue(
            conn,
            subject,
            family_id=new_id("fam"),
            now=now,
            access_ttl=ctx.assertion_ttl,
            refresh_until=None,
        )
        ctx.audit.write_in(
            conn,
            call.actor(ActorType.PARTNER, partner.id).record(
                now,
                AuditAction.OAUTH_TOKEN_ISSUED,
                target_type="dealer",
                target_id=dealer_id,
                dealer_id=dealer_id,
                environment=partner.environment.value,
                details={
                    "grant_type": GRANT_TYPE,
                    "jti": str(claims["jti"])[:200],
                    "access_token_id": issued.access.id,
                    "scopes": encode_scopes(scopes),
                },
            ),
        )
    return issued.response()
