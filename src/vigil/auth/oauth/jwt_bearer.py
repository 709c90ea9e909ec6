"""The JWT bearer grant (RFC 7523 section 2.1): a partner trades a short-lived assertion it
signed for an access token acting for the dealer named in `sub` (S11).

The dealer must have authorized the partner; the token carries the partner's scopes
intersected with that authorization (narrowed further by `scope` if asked), lives at most one
hour and has no refresh token: the partner can always sign a fresh assertion.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from vigil.audit.actions import AuditAction
from vigil.audit.record import AuditRecord
from vigil.auth.assertions import (
    AssertionRefused,
    Expected,
    consume_jti,
    consume_jtis,
    replayed,
)
from vigil.auth.oauth import token_store
from vigil.auth.oauth.context import Call, OAuthContext, parse_scope_param
from vigil.auth.oauth.errors import InvalidGrant, InvalidRequest, InvalidScope
from vigil.auth.principal import ActorType
from vigil.auth.scopes import Scope, encode_scopes
from vigil.core.ids import new_id
from vigil.storage.group_commit import GroupCommit
from vigil.tenancy.partners import (
    AssertionFacts,
    AssertionFactsLookup,
    assertion_facts,
    still_authorized,
)

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def exchange(ctx: OAuthContext, form: dict[str, str], call: Call) -> Any:
    """The grant in the calling thread, with its own transaction (one commit per grant)."""
    now = ctx.clock.now()
    facts = partial(assertion_facts, ctx.db)
    try:
        claims, subject = _verified(ctx, form, facts, now)
    except AssertionRefused as exc:
        ctx.audit.write_now(_refusal(ctx, call, exc))
        raise _invalid(exc) from None
    try:
        return _issue(ctx, call, claims, subject, now)
    except IntegrityError:
        replay = replayed(claims)
        ctx.audit.write_now(_refusal(ctx, call, replay))
        raise _invalid(replay) from None


FactsOf = Callable[[str, str, str, datetime], AssertionFacts | None]


def _verified(
    ctx: OAuthContext, form: dict[str, str], facts_of: FactsOf, now: datetime
) -> tuple[dict[str, Any], token_store.Subject]:
    """The verified claims and whom the token will act for; every check but the `jti`'s
    single use, which the transaction issuing the token records."""
    assertion = form.get("assertion")
    if not assertion:
        raise InvalidRequest("The assertion parameter is required.")
    facts: dict[str, AssertionFacts] = {}
    sub = _unverified_sub(assertion)

    def key_of(iss: str, kid: str) -> dict[str, Any] | None:
        """One read for key, partner and authorization; the checks below reuse it."""
        found = facts_of(iss, kid, sub, now)
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
    claims = ctx.assertions.verify(assertion, key_of, expected, consume=False)
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
    return claims, subject


@dataclass(frozen=True, slots=True)
class _Grant:
    claims: dict[str, Any]
    subject: token_store.Subject
    now: datetime
    call: Call
    answered: AuditRecord | None  # the request's own record, should the grant succeed


class BatchedGrants:
    """The grant as the token endpoint runs it: verified on the event loop (signature and
    claims are CPU work; the one read is the raw-driver lookup), then the `jti`, the token
    and the audit record written with the other grants that queued up meanwhile, in one
    transaction and one durable commit (vigil.storage.group_commit). Each grant's writes
    still commit together or not at all, before its response (S11, S15).

    `answered` is the HTTP request's own record for a successful grant (the edge's
    `api.request`, built by the caller): it commits in the same transaction, so a grant costs
    one durable commit, not a second one through the audit writer. A refused grant does not
    write it; the edge then records the refusal as it records any other response."""

    def __init__(self, ctx: OAuthContext) -> None:
        self._ctx = ctx
        self._facts = AssertionFactsLookup(ctx.db)
        self._commits: GroupCommit[_Grant, dict[str, Any]] = GroupCommit(
            ctx.db,
            self._write,
            "oauth-grants",
            before=ctx.audit.prepare_write,
            on_failure=ctx.audit.signer.forget,
        )

    async def exchange(
        self, form: dict[str, str], call: Call, answered: AuditRecord | None = None
    ) -> dict[str, Any]:
        ctx = self._ctx
        now = ctx.clock.now()
        try:
            claims, subject = _verified(ctx, form, self._facts, now)
            return await self._commits.submit(_Grant(claims, subject, now, call, answered))
        except AssertionRefused as exc:
            await ctx.audit.append(_refusal(ctx, call, exc))
            raise _invalid(exc) from None

    def close(self) -> None:
        self._commits.close()

    def _write(self, conn: Connection, grants: Sequence[_Grant]) -> list[Any]:
        ctx = self._ctx
        # Re-read in this transaction, row locked, that each partner may still act for its
        # dealer (vigil.tenancy.partners.still_authorized): a withdrawal either committed first
        # and refuses here, or waits for this batch and then revokes what it issued.
        checked: dict[tuple[str, str, frozenset[Scope]], bool] = {}
        allowed = []
        for g in grants:
            key = (g.subject.actor_id, g.subject.dealer_id, g.subject.scopes)
            if key not in checked:
                checked[key] = still_authorized(conn, *key)
            allowed.append(checked[key])
        admitted = [g for g, ok in zip(grants, allowed, strict=True) if ok]
        consumed = iter(consume_jtis(conn, [g.claims for g in admitted], grants[0].now))
        first = [next(consumed) if ok else False for ok in allowed]
        fresh = [g for g, ok in zip(grants, first, strict=True) if ok]
        issued = iter(
            token_store.issue_access(conn, [(g.subject, g.now) for g in fresh], ctx.assertion_ttl)
        )
        outcomes: list[Any] = []
        records = []
        for grant, ok, authorized in zip(grants, first, allowed, strict=True):
            if not authorized:
                outcomes.append(
                    InvalidGrant("The dealer's authorization of this partner has changed.")
                )
                continue
            if not ok:
                outcomes.append(replayed(grant.claims))
                continue
            token = next(issued)
            records.append(
                _issued_record(grant.call, grant.claims, grant.subject, token, grant.now)
            )
            if grant.answered is not None:
                records.append(grant.answered)
            outcomes.append(token.response())
        # `write_in` for the batch's records at once, as the webhook worker writes its
        # batches: one head read and one multi-row insert instead of one of each per grant.
        ctx.audit.store.append(conn, records)
        return outcomes


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
        ctx.audit.write_in(conn, _issued_record(call, claims, subject, issued, now))
    return issued.response()


def _issued_record(
    call: Call,
    claims: dict[str, Any],
    subject: token_store.Subject,
    issued: token_store.Issued,
    now: datetime,
) -> AuditRecord:
    dealer_id = subject.dealer_id
    return call.actor(ActorType.PARTNER, subject.actor_id).record(
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
    )


def _refusal(ctx: OAuthContext, call: Call, exc: AssertionRefused) -> AuditRecord:
    """The refusal's audit record, naming the claimed (unverified) issuer."""
    issuer = exc.issuer[:200] if exc.issuer else None
    actor = call.actor(ActorType.PARTNER if issuer else ActorType.ANONYMOUS, issuer or "-")
    return actor.record(
        ctx.clock.now(),
        AuditAction.ASSERTION_REFUSED,
        target_type="partner",
        target_id=issuer,
        result="refused",
        details={"reason": exc.reason, "issuer_verified": exc.reason == "jti"},
    )


def _invalid(exc: AssertionRefused) -> InvalidGrant:
    return InvalidGrant(f"Assertion refused: {exc}")
