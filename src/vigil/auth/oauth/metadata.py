"""Authorization server metadata (RFC 8414): what a client needs to configure itself."""

from __future__ import annotations

from typing import Any

from vigil.auth.assertions import ALGORITHMS
from vigil.auth.oauth.clients import AuthMethod
from vigil.auth.oauth.jwt_bearer import GRANT_TYPE
from vigil.auth.scopes import Scope

AUTHORIZE = "/oauth/authorize"
TOKEN = "/oauth/token"
REVOKE = "/oauth/revoke"
INTROSPECT = "/oauth/introspect"
WELL_KNOWN = "/.well-known/oauth-authorization-server"


def metadata(issuer: str) -> dict[str, Any]:
    methods = [m.value for m in AuthMethod]
    confidential = [m for m in methods if m != AuthMethod.NONE.value]
    algs = sorted(ALGORITHMS)
    return {
        "issuer": issuer,
        "authorization_endpoint": issuer + AUTHORIZE,
        "token_endpoint": issuer + TOKEN,
        "revocation_endpoint": issuer + REVOKE,
        "introspection_endpoint": issuer + INTROSPECT,
        "scopes_supported": [s.value for s in Scope],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", GRANT_TYPE],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": methods,
        "token_endpoint_auth_signing_alg_values_supported": algs,
        "revocation_endpoint_auth_methods_supported": methods,
        "revocation_endpoint_auth_signing_alg_values_supported": algs,
        "introspection_endpoint_auth_methods_supported": confidential,
        "introspection_endpoint_auth_signing_alg_values_supported": algs,
        "authorization_response_iss_parameter_supported": True,
    }
