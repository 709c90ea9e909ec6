"""OAuth test helpers: users, registered clients, the sign-in form driven over real HTTPS, and
keys for partners. Everything goes through the real services and the running server."""

from __future__ import annotations

import html
import itertools
import re
import secrets
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import ECKey
from tests.support import factories
from tests.support.server import VigilServer

from vigil.auth.oauth import token_store
from vigil.auth.oauth.clients import AuthMethod, ClientType, OAuthClient
from vigil.auth.principal import ActorType, Environment
from vigil.auth.scopes import Scope
from vigil.core.ids import new_id
from vigil.services import Services
from vigil.tenancy.partners import Partner
from vigil.tenancy.roles import PortalRole
from vigil.tenancy.users import Role, User

__all__ = ["AuthMethod", "ClientType", "Role"]

PASSWORD = "correct horse battery staple"
REDIRECT = "https://app.example/callback"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_n = itertools.count(1)


def user(
    services: Services,
    dealer_id: str,
    role: Role = Role.OPERATOR,
    sites: Iterable[str] = (),
    portal_role: PortalRole = PortalRole.OPERATOR,
) -> User:
    """An operator (portal role `operator` unless asked: owners and admins need a second
    factor to consent, see tests/functional/oauth/test_consent_sign_in.py) or a site user."""
    created = services.users.create(
        factories.OPERATOR,
        dealer_id=dealer_id,
        email=f"user{next(_n)}-{uuid.uuid4().hex[:6]}@example.com",
        role=role,
        password=PASSWORD,
        site_ids=sites,
    )
    if role is Role.OPERATOR:
        services.operators.set_role(factories.OPERATOR, created.id, portal_role)
    return created


@dataclass(frozen=True)
class Client:
    cred: factories.Credential
    registration: OAuthClient
    secret: str | None

    @property
    def id(self) -> str:
        return self.cred.app.id


def client(
    services: Services,
    cred: factories.Credential | None = None,
    *,
    redirect_uris: list[str] | None = None,
    confidential: bool = False,
    scopes: Iterable[Scope] = tuple(Scope),
    auth_method: AuthMethod | None = None,
) -> Client:
    """A public client, or a confidential one (`client_secret_post` unless `auth_method`)."""
    cred = cred or factories.credential(services, scopes=scopes)
    confidential = confidential or auth_method not in (None, AuthMethod.NONE)
    registration, secret = services.oauth_clients.register(
        factories.OPERATOR,
        cred.app.id,
        client_type=ClientType.CONFIDENTIAL if confidential else ClientType.PUBLIC,
        auth_method=auth_method or (AuthMethod.SECRET_POST if confidential else AuthMethod.NONE),
        redirect_uris=redirect_uris or [REDIRECT],
    )
    return Client(cred, registration, secret)


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, create_s256_code_challenge(verifier)


def authorize_params(c: Client, challenge: str, **overrides: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": c.id,
        "redirect_uri": REDIRECT,
        "scope": "sites:read",
        "state": "st-" + secrets.token_hex(4),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def form_of(page: str) -> dict[str, str]:
    """The consent page's hidden fields, as a browser would submit them."""
    return {k: html.unescape(v) for k, v in re.findall(r"name='([^']+)' value='([^']*)'", page)}


def sign_in(
    http: httpx.Client,
    params: dict[str, str],
    email: str,
    password: str = PASSWORD,
    code: str = "",
) -> httpx.Response:
    """GET the consent page, then submit its form as a browser would."""
    page = http.get("/oauth/authorize", params=params)
    assert page.status_code == 200, page.text
    form = form_of(page.text) | {"email": email, "password": password, "decision": "approve"}
    return http.post("/oauth/authorize", data=form | ({"code": code} if code else {}))


def consent_redirect(server: VigilServer, url: str, email: str) -> str:
    """What a user's browser does with an authorization URL a client library built: open the
    page, sign in, approve. The redirect back to the client."""
    with httpx.Client(verify=server.ssl_context(), trust_env=False) as browser:
        page = browser.get(url)
        form = form_of(page.text) | {"email": email, "password": PASSWORD, "decision": "approve"}
        landed = browser.post(server.base_url + "/oauth/authorize", data=form)
    assert landed.status_code == 303, landed.text
    return str(landed.headers["location"])


def code_from(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 303, response.text
    query = parse_qs(urlsplit(response.headers["location"]).query)
    return {k: v[0] for k, v in query.items()}


def tokens(
    server: VigilServer, c: Client, u: User, scope: str = "sites:read", **extra: str
) -> dict[str, Any]:
    """The whole code + PKCE flow for `u` through `c`: the token response."""
    verifier, challenge = pkce_pair()
    with server.client() as http:
        params = authorize_params(c, challenge, scope=scope)
        code = code_from(sign_in(http, params, u.email))["code"]
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
            "client_id": c.id,
        } | extra
        response = http.post("/oauth/token", data=form)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def refresh(server: VigilServer, c: Client, refresh_token: str) -> httpx.Response:
    """A refresh_token grant for the public client `c`, over HTTPS."""
    with server.client() as http:
        return http.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": c.id},
        )


@dataclass(frozen=True)
class PartnerKeys:
    partner: Partner
    key: ECKey
    kid: str

    def assertion(self, issuer: str, dealer_id: str, **claims: Any) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.partner.id,
            "sub": dealer_id,
            "aud": issuer,
            "iat": now,
            "exp": now + 120,
            "jti": uuid.uuid4().hex,
        }
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode({"alg": "ES256", "kid": self.kid, "typ": "JWT"}, payload, self.key)


def partner(
    services: Services,
    scopes: Iterable[Scope] = (Scope.SITES_READ, Scope.ALARMS_READ),
    environment: Environment = Environment.SANDBOX,
    authorize: dict[str, Iterable[Scope]] | None = None,
) -> PartnerKeys:
    key = ECKey.generate_key("P-256")
    kid = f"k{next(_n)}"
    public = key.as_dict(private=False) | {"kid": kid}
    created = services.partners.create(
        factories.OPERATOR,
        name=f"Partner {next(_n)}",
        environment=environment,
        scopes=scopes,
        jwks={"keys": [public]},
    )
    for dealer_id, granted in (authorize or {}).items():
        services.partners.authorize(factories.OPERATOR, created.id, dealer_id, granted)
    return PartnerKeys(created, key, kid)


def issued_token(
    services: Services,
    dealer_id: str,
    scopes: Iterable[Scope],
    *,
    kind: str = "oauth_access_token",
    environment: Environment = Environment.SANDBOX,
    site_ids: frozenset[str] | None = None,
) -> str:
    """An access token issued straight through the token store (no HTTP flow): for tests about
    what the edge does with a token, not how it was obtained."""
    granted = frozenset(scopes)
    if kind == "assertion_access_token":
        p = partner(services, scopes=granted, authorize={dealer_id: granted}).partner
        subject = token_store.Subject(
            ActorType.PARTNER, p.id, dealer_id, environment, granted, partner_id=p.id
        )
    else:
        dealer = services.dealers.get(dealer_id)
        app = factories.app(services, dealer, environment)
        role = Role.SITE_USER if site_ids is not None else Role.OPERATOR
        u = user(services, dealer_id, role, site_ids or ())
        subject = token_store.Subject(
            ActorType.USER, u.id, dealer_id, environment, granted, site_ids=site_ids, app_id=app.id
        )
    with services.db.transaction() as conn:
        issued = token_store.issue(
            conn,
            subject,
            family_id=new_id("fam"),
            now=services.clock.now(),
            access_ttl=timedelta(hours=1),
            refresh_until=None,
        )
    return issued.access.value
