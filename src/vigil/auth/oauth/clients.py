"""OAuth clients (RFC 6749 section 2): an app with a client type, registered redirect URIs and a
way to authenticate at the token endpoint.

- public (native and browser apps): no secret it could keep; authenticated by nothing but PKCE.
- confidential with a secret: a high-entropy secret, stored as SHA-256, shown once, sent either
  with HTTP Basic (`client_secret_basic`, RFC 6749 section 2.3.1) or in the form body
  (`client_secret_post`).
- confidential with `private_key_jwt` (RFC 7523 section 2.2): a JWT signed with a key from the
  JWKS the client registered, checked by the same verifier as partners' assertions.

Each client is registered with exactly one method (RFC 7591 `token_endpoint_auth_method`) and
must use that one and only that one (RFC 6749 section 2.3: "MUST NOT use more than one
authentication method in each request"). A secret sent the other way, or two methods at once,
is `invalid_client`: a client that switches method is either misconfigured or not the client.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import unquote_plus

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
FAILED = "Client authentication failed."
MAX_BASIC = 512  # an id (<= 40) and a vgl_cs_ secret (~80), encoded twice, with room to spare


@dataclass(frozen=True, slots=True)
class BasicCredentials:
    """The client id and secret of an `Authorization: Basic` header (RFC 6749 section 2.3.1)."""

    client_id: str
    secret: str

    def __repr__(self) -> str:
        return f"BasicCredentials(client_id={self.client_id!r}, secret=***)"


def basic_credentials(authorization: str | None) -> BasicCredentials | None:
    """None without a Basic header; InvalidClient when one is present but malformed. Both parts
    are form-urlencoded before base64 (section 2.3.1), so they are decoded after it."""
    if authorization is None:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    value = value.strip()
    text = ""
    if 0 < len(value) <= MAX_BASIC:
        try:
            text = base64.b64decode(value, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            text = ""
    client_id, colon, secret = text.partition(":")
    if not colon or not client_id or not secret:
        raise InvalidClient("The Basic credentials are not base64 of 'id:secret'.")
    return BasicCredentials(unquote_plus(client_id), unquote_plus(secret))


class ClientType(StrEnum):
    PUBLIC = "public"
    CONFIDENTIAL = "confidential"


class AuthMethod(StrEnum):
    NONE = "none"
    SECRET_BASIC = "client_secret_basic"
    SECRET_POST = "client_secret_post"
    PRIVATE_KEY_JWT = "private_key_jwt"


SECRET_METHODS = frozenset({AuthMethod.SECRET_BASIC, AuthMethod.SECRET_POST})


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


def _methods(
    form: Mapping[str, str], basic: BasicCredentials | None
) -> list[tuple[AuthMethod, bool]]:
    """Which methods the request uses (a method counts when its credential is present)."""
    return [
        (AuthMethod.SECRET_BASIC, basic is not None),
        (AuthMethod.SECRET_POST, "client_secret" in form),
        (AuthMethod.PRIVATE_KEY_JWT, "client_assertion" in form),
    ]


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
        secret = tokens.mint(tokens.Kind.CLIENT_SECRET) if auth_method in SECRET_METHODS else None
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

    def mark_exposed(self, actor: Actor, client_id: str, secret: str) -> bool:
        """A client secret seen in cleartext (S2) must be assumed stolen: it stops
        authenticating at once, until a re-registration (`vigil oauth-clients register`) issues
        a new one; audited. Only the client's real secret does this: a made-up one sent with a
        client id (ids are not secret) changes nothing."""
        candidate = tokens.parse(secret, tokens.Kind.CLIENT_SECRET)
        if candidate is None or not client_id or len(client_id) > 40:
            return False
        with self._db.transaction() as conn:
            where = oauth_clients.c.app_id == client_id
            stored = conn.execute(select(oauth_clients.c.secret_hash).where(where)).first()
            if stored is None or stored.secret_hash is None:
                return False
            if not candidate.matches(stored.secret_hash):
                return False
            now = self._clock.now()
            conn.execute(
                update(oauth_clients).where(where).values(secret_hash=None, updated_at=now)
            )
            app = self._apps.get(client_id, None)
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.OAUTH_CLIENT_SECRET_EXPOSED,
                    target_type="app",
                    target_id=app.id,
                    dealer_id=app.dealer_id,
                    environment=app.environment.value,
                    details={"reason": "sent over plain HTTP", "secret_withdrawn": True},
                ),
            )
        return True

    def authenticate(
        self, form: Mapping[str, str], now: datetime, basic: BasicCredentials | None = None
    ) -> OAuthClient:
        """Client authentication at the token, revocation and introspection endpoints (RFC 6749
        section 2.3), by the one method the client registered. Every failure reads alike:
        invalid_client."""
        assertion = form.get("client_assertion")
        presented = [m for m, v in _methods(form, basic) if v]
        if len(presented) > 1:
            raise InvalidClient("Use one client authentication method, not several.")
        if assertion is not None:
            return self._by_assertion(form, assertion, form.get("client_id"), now)
        client_id = form.get("client_id")
        if basic is not None:
            if client_id is not None and client_id != basic.client_id:
                raise InvalidClient(FAILED)
            client_id = basic.client_id
        found = self.find(client_id) if client_id and len(client_id) <= 40 else None
        if found is None:
            raise InvalidClient(FAILED)
        client, secret_hash = found
        used = presented[0] if presented else AuthMethod.NONE
        if used is not client.auth_method:
            raise InvalidClient(FAILED)
        if used is AuthMethod.NONE:
            return client
        secret = basic.secret if basic is not None else form.get("client_secret", "")
        candidate = tokens.parse(secret, tokens.Kind.CLIENT_SECRET)
        if candidate is not None and secret_hash is not None and candidate.matches(secret_hash):
            return client
        raise InvalidClient(FAILED)

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
            raise InvalidClient(FAILED)
        return client
