"""OAuth clients (RFC 6749 section 2): an app with a client type, registered redirect URIs and a
way to authenticate at the token endpoint.

- public (native and browser apps): no secret it could keep; authenticated by nothing but PKCE.
- confidential with `client_secret_post`: a high-entropy secret, stored as SHA-256, shown once.
- confidential with `private_key_jwt` (RFC 7523 section 2.2): a JWT signed with a key from the
  JWKS the client registered, checked by the same verifier as partners' assertions.

`client_secret_basic` is not offered: the API edge reads every `Authorization` header as a
bearer credential, and a second meaning for it on three routes is a trap (docs/oauth.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import insert, select, update

from vigil.audit.actions import AuditAction
from vigil.audit.log import AuditLog
from vigil.auth.actor import Actor
from vigil.auth.assertions import AssertionRefused, AssertionVerifier, Expected
from vigil.auth.oauth import redirects, tokens
from vigil.auth.oauth.errors import InvalidClient
from vigil.core.clock import Clock
from vigil.core.errors import InvalidInput
from vigil.storage.db import Database
from vigil.storage.tables import oauth_clients
from vigil.tenancy.apps import AppService, ensure_can_manage
from vigil.tenancy.models import App
from vigil.tenancy.partners import public_keys_of

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class ClientType(StrEnum):
    PUBLIC = "public"
    CONFIDENTIAL = "confidential"


class AuthMethod(StrEnum):
    NONE = "none"
    SECRET_POST = "client_secret_post"
    PRIVATE_KEY_JWT = "private_key_jwt"


@dataclass(frozen=True, slots=True)
class OAuthClient:
    app: App
    client_type: ClientType
    auth_method: AuthMethod
    redirect_uris: tuple[str, ...]
    jwks: dict[str, Any] | None

    @property
    def id(self) -> str:
        return self.app.id

    def as_json(self) -> dict[str, Any]:
        return {
            "client_id": self.app.id,
            "client_type": self.client_type.value,
            "token_endpoint_auth_method": self.auth_method.value,
            "redirect_uris": list(self.redirect_uris),
            "jwks": self.jwks,
        }


class ClientService:
    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        clock: Clock,
        apps: AppService,
        assertions: AssertionVerifier,
        issuer: str,
    ) -> None:
        self._db, self._audit, self._clock, self._apps = db, audit, clock, apps
        self._assertions, self._issuer = assertions, issuer

    def register(
        self,
        actor: Actor,
        app_id: str,
        *,
        client_type: ClientType,
        auth_method: AuthMethod,
        redirect_uris: list[str],
        jwks: Mapping[str, Any] | None = None,
    ) -> tuple[OAuthClient, str | None]:
        """Create or replace the app's OAuth registration. Returns the client secret, once,
        when one was made (a new registration or a re-registration rotates it)."""
        app = self._apps.get(app_id, actor.tenant)
        ensure_can_manage(actor, app)
        if (client_type is ClientType.PUBLIC) != (auth_method is AuthMethod.NONE):
            raise InvalidInput("Public clients use 'none'; confidential clients a secret or JWT.")
        if not 0 < len(redirect_uris) <= redirects.MAX_URIS:
            raise InvalidInput(f"Register 1 to {redirects.MAX_URIS} redirect URIs.")
        try:
            uris = tuple(redirects.validate_registration(u) for u in redirect_uris)
        except redirects.RedirectUriError as exc:
            raise InvalidInput(str(exc)) from None
        keys: dict[str, Any] | None = None
        if auth_method is AuthMethod.PRIVATE_KEY_JWT:
            if jwks is None:
                raise InvalidInput("private_key_jwt needs the client's public keys (jwks).")
            keys = {"keys": [jwk for _, jwk in public_keys_of(jwks)]}
        elif jwks is not None:
            raise InvalidInput("jwks is only for private_key_jwt clients.")
        secret = (
            tokens.mint(tokens.Kind.CLIENT_SECRET)
            if auth_method is AuthMethod.SECRET_POST
            else None
        )
        now = self._clock.now()
        values = {
            "client_type": client_type.value,
            "auth_method": auth_method.value,
            "secret_hash": secret.secret_hash if secret else None,
            "jwks": keys,
            "redirect_uris": list(uris),
            "updated_at": now,
        }
        with self._db.transaction() as conn:
            where = oauth_clients.c.app_id == app.id
            if conn.execute(select(oauth_clients.c.app_id).where(where)).first():
                conn.execute(update(oauth_clients).where(where).values(**values))
            else:
                conn.execute(insert(oauth_clients).values(app_id=app.id, created_at=now, **values))
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.OAUTH_CLIENT_REGISTERED,
                    target_type="app",
                    target_id=app.id,
                    dealer_id=app.dealer_id,
                    environment=app.environment.value,
                    details={
                        "client_type": client_type.value,
                        "auth_method": auth_method.value,
                        "redirect_uris": list(uris),
                        "secret_issued": secret is not None,
                    },
                ),
            )
        client = OAuthClient(app, client_type, auth_method, uris, keys)
        return client, secret.value if secret else None

    def find(self, client_id: str) -> tuple[OAuthClient, bytes | None] | None:
        with self._db.read() as conn:
            row = (
                conn.execute(select(oauth_clients).where(oauth_clients.c.app_id == client_id))
                .mappings()
                .first()
            )
        if row is None:
            return None
        app = self._apps.get(client_id, None)
        client = OAuthClient(
            app,
            ClientType(row["client_type"]),
            AuthMethod(row["auth_method"]),
            tuple(row["redirect_uris"]),
            row["jwks"],
        )
        return client, row["secret_hash"]

    def get(self, client_id: str) -> OAuthClient | None:
        found = (
            self.find(client_id) if isinstance(client_id, str) and len(client_id) <= 40 else None
        )
        return found[0] if found else None

    def authenticate(self, form: Mapping[str, str], now: datetime) -> OAuthClient:
        """Client authentication at the token, revocation and introspection endpoints (RFC 6749
        section 2.3). Every failure reads alike: invalid_client."""
        assertion = form.get("client_assertion")
        client_id = form.get("client_id")
        if assertion is not None:
            return self._by_assertion(form, assertion, client_id, now)
        found = self.find(client_id) if client_id and len(client_id) <= 40 else None
        if found is None:
            raise InvalidClient("Client authentication failed.")
        client, secret_hash = found
        secret = form.get("client_secret")
        if client.auth_method is AuthMethod.NONE:
            if secret is not None:
                raise InvalidClient("Client authentication failed.")
            return client
        if client.auth_method is AuthMethod.SECRET_POST and secret is not None:
            presented = tokens.parse(secret, tokens.Kind.CLIENT_SECRET)
            if presented is not None and secret_hash is not None and presented.matches(secret_hash):
                return client
        raise InvalidClient("Client authentication failed.")

    def _by_assertion(
        self, form: Mapping[str, str], assertion: str, client_id: str | None, now: datetime
    ) -> OAuthClient:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise InvalidClient("client_assertion_type must be " + ASSERTION_TYPE + ".")

        def key_of(iss: str, kid: str) -> Mapping[str, Any] | None:
            client = self.get(iss)
            if client is None or client.auth_method is not AuthMethod.PRIVATE_KEY_JWT:
                return None
            return next(
                (k for k in (client.jwks or {}).get("keys", []) if k.get("kid") == kid), None
            )

        expected = Expected(
            issuer_of=lambda iss: client_id in (None, iss),
            audience=self._issuer,
            subject_ok=lambda iss, sub: sub == iss,
            now=now,
        )
        try:
            claims = self._assertions.verify(assertion, key_of, expected)
        except AssertionRefused as exc:
            raise InvalidClient(f"Client assertion refused: {exc}") from None
        client = self.get(str(claims["iss"]))
        if client is None:
            raise InvalidClient("Client authentication failed.")
        return client
