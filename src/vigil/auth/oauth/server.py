"""The authorization server's endpoints as plain functions of parsed form parameters: the HTTP
layer (vigil.api.oauth) only parses, calls one of these and shapes the response.

Why not Authlib's `AuthorizationServer`: it is written around framework request objects and
mixin hooks (untyped `NotImplementedError` interfaces, STYLE.md), has no Starlette server
integration, and would still need our own code for exact loopback matching, family revocation
on reuse, the `jti` store and the audit trail. We use its vetted pieces instead (the RFC 7636
S256 transform; its RFC 8414 metadata validator in the tests) and keep one small typed module
per RFC concept.
"""

from __future__ import annotations

from typing import Any

from vigil.audit.actions import AuditAction
from vigil.audit.record import AuditRecord
from vigil.auth.actor import Actor
from vigil.auth.oauth import code_grant, introspection, jwt_bearer, refresh_grant, revocation
from vigil.auth.oauth.clients import OAuthClient, basic_credentials
from vigil.auth.oauth.context import Call, OAuthContext
from vigil.auth.oauth.csrf import CsrfTokens
from vigil.auth.oauth.errors import OAuthError, UnsupportedGrantType
from vigil.auth.oauth.purge import Purged, purge
from vigil.auth.principal import ActorType

GRANTS = {
    "authorization_code": code_grant.exchange,
    "refresh_token": refresh_grant.refresh,
}


class OAuthServer:
    def __init__(self, ctx: OAuthContext, csrf: CsrfTokens) -> None:
        self.ctx, self.csrf = ctx, csrf
        self.assertion_grants = jwt_bearer.BatchedGrants(ctx)

    async def assertion_token(
        self, form: dict[str, str], call: Call, answered: AuditRecord | None = None
    ) -> Any:
        """The JWT-bearer grant as the token endpoint serves it: on the event loop, its
        writes group-committed with concurrent grants (jwt_bearer.BatchedGrants), with
        `answered` (the request's own record) when it succeeds; refusals audited as `token`
        audits them, durable before the error leaves."""
        try:
            return await self.assertion_grants.exchange(form, call, answered)
        except OAuthError as error:
            await self.ctx.audit.append(self._refusal(error, form, call, jwt_bearer.GRANT_TYPE))
            raise

    def close(self) -> None:
        self.assertion_grants.close()

    def _client(self, form: dict[str, str], authorization: str | None) -> OAuthClient:
        basic = basic_credentials(authorization)
        return self.ctx.clients.authenticate(form, self.ctx.clock.now(), basic)

    def token(self, form: dict[str, str], call: Call, authorization: str | None = None) -> Any:
        """`authorization` is the request's Authorization header: HTTP Basic client
        credentials, when the client was registered for `client_secret_basic`."""
        grant_type = form.get("grant_type", "")
        try:
            if grant_type == jwt_bearer.GRANT_TYPE:
                return jwt_bearer.exchange(self.ctx, form, call)
            grant = GRANTS.get(grant_type)
            if grant is None:
                raise UnsupportedGrantType(
                    "Offered: authorization_code, refresh_token, " + jwt_bearer.GRANT_TYPE + "."
                )
            client = self._client(form, authorization)
            return grant(self.ctx, client, form, call)
        except OAuthError as error:
            self._refused(error, form, call, grant_type, authorization)
            raise

    def revoke(self, form: dict[str, str], call: Call, authorization: str | None = None) -> None:
        revocation.revoke(self.ctx, self._client(form, authorization), form, call)

    def purge(self, actor: Actor) -> Purged:
        """Delete expired tokens, spent codes and expired `jti` entries (see purge.py)."""
        return purge(self.ctx.db, self.ctx.audit, self.ctx.clock, actor)

    def mark_exposed(self, actor: Actor, value: str) -> bool:
        return revocation.revoke_exposed(self.ctx, value, actor)

    def introspect(
        self, form: dict[str, str], call: Call, authorization: str | None = None
    ) -> dict[str, Any]:
        return introspection.introspect(self.ctx, self._client(form, authorization), form)

    def _refused(
        self,
        error: OAuthError,
        form: dict[str, str],
        call: Call,
        grant: str,
        authorization: str | None,
    ) -> None:
        """Every refused token request is on the record, naming the client it claimed to be."""
        self.ctx.audit.write_now(self._refusal(error, form, call, grant, authorization))

    def _refusal(
        self,
        error: OAuthError,
        form: dict[str, str],
        call: Call,
        grant: str,
        authorization: str | None = None,
    ) -> AuditRecord:
        try:
            basic = basic_credentials(authorization)
        except OAuthError:
            basic = None
        claimed = (basic.client_id if basic else form.get("client_id", ""))[:40] or "-"
        return call.actor(ActorType.APP if claimed != "-" else ActorType.ANONYMOUS, claimed).record(
            self.ctx.clock.now(),
            AuditAction.OAUTH_TOKEN_REFUSED,
            target_type="oauth_client",
            target_id=claimed if claimed != "-" else None,
            result=error.error,
            details={"grant_type": grant[:100], "error": error.error},
        )
