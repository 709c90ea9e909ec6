"""Finding a credential in a request, wherever a client may have put it.

Used by the HTTPS edge to authenticate and by the plain-HTTP guard to spot credentials that
must be refused and treated as exposed (S2).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from vigil.auth.oauth.metadata import INTROSPECT, REVOKE, TOKEN
from vigil.edge.asgi import Scope, header

QUERY_CREDENTIAL_NAMES = frozenset({"api_key", "apikey", "key", "access_token", "token"})
SESSION_COOKIE_PREFIX = "__Host-vigil_session"
# The only routes where `Authorization: Basic` means something: OAuth client authentication
# (RFC 6749 section 2.3.1). The edge leaves it there to the OAuth server; anywhere else it is
# refused, never read as an API key.
CLIENT_AUTH_PATHS = frozenset({TOKEN, REVOKE, INTROSPECT})


def bearer_token(scope: Scope) -> str | None:
    return credential_in(header(scope, b"authorization"))


def credential_in(authorization: str | None) -> str | None:
    """The credential an `Authorization` header value carries (None for no header)."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return authorization  # a credential all the same (Basic, raw key): never ignored
    return token.strip()


def is_basic(authorization: str) -> bool:
    return authorization.lstrip().partition(" ")[0].lower() == "basic"


def query_credentials(scope: Scope) -> list[str]:
    raw = scope.get("query_string", b"")
    if not raw:
        return []
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    return [v for k, v in pairs if k.lower() in QUERY_CREDENTIAL_NAMES and v]


def has_session_cookie(scope: Scope) -> bool:
    cookie = header(scope, b"cookie")
    return cookie is not None and SESSION_COOKIE_PREFIX in cookie


def presented_credentials(scope: Scope) -> list[str]:
    """Every secret-looking value in the request: header, query string."""
    found = query_credentials(scope)
    token = bearer_token(scope)
    if token:
        found.insert(0, token)
    return found


# What an OAuth client may carry in a form body at the token, revocation and introspection
# endpoints: tokens (refresh_token, token) and its own secret (client_secret_post).
FORM_TOKEN_NAMES = ("refresh_token", "token")
FORM_BODY_LIMIT = 16 * 1024


@dataclass(frozen=True, slots=True)
class FormCredentials:
    tokens: list[str]
    client_id: str | None
    client_secret: str | None


def form_credentials(body: bytes) -> FormCredentials:
    """The credentials in an `application/x-www-form-urlencoded` body (first value of each)."""
    fields: dict[str, str] = {}
    for name, value in parse_qsl(body.decode("latin-1"), keep_blank_values=True):
        fields.setdefault(name, value)
    found = [fields[n] for n in FORM_TOKEN_NAMES if fields.get(n)]
    return FormCredentials(found, fields.get("client_id"), fields.get("client_secret") or None)


def is_form(scope: Scope) -> bool:
    content_type = header(scope, b"content-type") or ""
    return content_type.partition(";")[0].strip().lower() == "application/x-www-form-urlencoded"
