"""The JWT bearer grant (RFC 7523 section 2.1): a partner trades a short-lived assertion it
signed for an access token acting for the dealer named in `sub` (S11).

The dealer must have authorized the partner; the token carries the partner's scopes
intersected with that authorization (narrowed further by `scope` if asked), lives at most one
hour and has no refresh token: the partner can always sign a fresh assertion.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from vigil.audit.actions import AuditAction
from vigil.auth.assertions import AssertionRefused, Expected, consume_jti, replayed
from vigil.auth.oauth import token_store
from vigil.auth.oauth.context import Call, OAuthContext, parse_scope_param
from vigil.auth.oauth.errors import InvalidGrant, InvalidRequest, InvalidScope
from vigil.auth.principal import ActorType
from vigil.auth.scopes import encode_scopes
from vigil.core.ids import new_id
from vigil.tenancy.partners import AssertionFacts, assertion_facts, still_authorized

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def exchange(ctx: OAuthContext, form: dict[str, str], call: Call) -> Any:
    assertion = form.get("assertion")
    if not assertion:
        raise InvalidRequest("The assertion parameter is required.")
    now = ctx.clock.now()
    facts: dict[str, AssertionFacts] = {}
    sub = _unverified_sub(assertion)

    def key_of(iss: str, kid: str) -> dict[str, Any] | None:
        """One read for key, partner and authorization; the checks below reuse it."""
        found = assertion_facts(ctx.db, iss, kid, sub, now)
        if found is None:
            return None
        facts["row"] = found
        return found.jwk

    expected = Expected(
        issuer_of=lambda iss: "row" in facts,  # a key of this issuer verified the token
        audience=ctx.issuer,
        subject_ok=lambda iss, s: s == sub and facts["row"].authorized is not None,
        now=now,
    )
    try:
        claims = ctx.assertions.verify(assertion, key_of, expected, consume=False)
    except AssertionRefused as exc:
        raise _refused(ctx, call, exc) from None
    row = facts["row"]
    partner_id, dealer_id = str(claims["iss"]), str(claims["sub"])
    scopes = row.scopes & (row.authorized or frozenset())
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
        actor_id=partner_id,
        dealer_id=dealer_id,
        environment=row.environment,
        scopes=scopes,
        partner_id=partner_id,
    )
    try:
        return _issue(ctx, call, claims, subject, now)
    except IntegrityError:
        raise _refused(ctx, call, replayed(claims)) from None


def _unverified_sub(assertion: str) -> str:
    """`sub` as the assertion claims it, only to read the matching authorization in the same
    query as the key; the verified claims are checked against that row afterwards."""
    try:
        payload = assertion.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return ""
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return sub[:40] if isinstance(sub, str) else ""


def _issue(
    ctx: OAuthContext,
    call: Call,
    claims: dict[str, Any],
    subject: token_store.Subject,
    now: datetime,
) -> Any:
    """The `jti`, the token and the audit record commit together, or nothing does."""
    partner_id, dealer_id = subject.actor_id, subject.dealer_id
    with ctx.db.transaction() as conn:
        if not still_authorized(conn, partner_id, dealer_id, subject.scopes):
            raise InvalidGrant("The dealer's authorization of this partner has changed.")
        consume_jti(conn, claims, now)
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
            call.actor(ActorType.PARTNER, partner_id).record(
                now,
                AuditAction.OAUTH_TOKEN_ISSUED,
                target_type="dealer",
                target_id=dealer_id,
                dealer_id=dealer_id,
                environment=subject.environment.value,
                details={
                    "grant_type": GRANT_TYPE,
                    "jti": str(claims["jti"])[:200],
                    "access_token_id": issued.access.id,
                    "scopes": encode_scopes(subject.scopes),
                },
            ),
        )
    return issued.response()


def _refused(ctx: OAuthContext, call: Call, exc: AssertionRefused) -> InvalidGrant:
    """Audit the refusal (naming the claimed, unverified issuer) and build the error."""
    issuer = exc.issuer[:200] if exc.issuer else None
    actor = call.actor(ActorType.PARTNER if issuer else ActorType.ANONYMOUS, issuer or "-")
    ctx.audit.write_now(
        actor.record(
            ctx.clock.now(),
            AuditAction.ASSERTION_REFUSED,
            target_type="partner",
            target_id=issuer,
            result="refused",
            details={"reason": exc.reason, "issuer_verified": exc.reason == "jti"},
        )
    )
    return InvalidGrant(f"Assertion refused: {exc}")
