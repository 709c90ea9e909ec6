"""Schemathesis over the OAuth endpoints: no input makes them fail with a 5xx.

The OAuth endpoints are not in /openapi.json (form-encoded, RFC 6749 error bodies rather than
problem+json: docs/oauth.md), so they are described here, loosely on purpose: every parameter a
client may send, as free strings, plus whatever else the generator adds.
"""

from __future__ import annotations

import os
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from tests.support import oauth
from tests.support.server import VigilServer

from vigil.services import Services

EXAMPLES = int(os.environ.get("VIGIL_FUZZ_EXAMPLES", "25"))
TOKEN_FIELDS = [
    "grant_type", "code", "redirect_uri", "code_verifier", "client_id", "client_secret",
    "refresh_token", "scope", "assertion", "client_assertion", "client_assertion_type",
    "token", "token_type_hint",
]  # fmt: skip
AUTHORIZE_FIELDS = [
    "response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge",
    "code_challenge_method", "csrf", "email", "password", "decision",
]  # fmt: skip


def _form(fields: list[str]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {f: {"type": "string"} for f in fields},
                }
            }
        },
    }


def _post(fields: list[str]) -> dict[str, Any]:
    return {"post": {"requestBody": _form(fields), "responses": {"default": {"description": "x"}}}}


def document(client_id: str) -> dict[str, Any]:
    query = [
        {"name": f, "in": "query", "required": False, "schema": {"type": "string"}}
        for f in AUTHORIZE_FIELDS
    ]
    query[1]["schema"] = {"type": "string", "enum": [client_id, "app_unknown"]}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Vigil OAuth", "version": "1"},
        "paths": {
            "/oauth/token": _post(TOKEN_FIELDS),
            "/oauth/revoke": _post(TOKEN_FIELDS),
            "/oauth/introspect": _post(TOKEN_FIELDS),
            "/oauth/authorize": {
                "get": {"parameters": query, "responses": {"default": {"description": "x"}}},
                **_post(AUTHORIZE_FIELDS),
            },
        },
    }


def test_oauth_endpoints_never_answer_5xx(server: VigilServer, services: Services) -> None:
    c = oauth.client(services)
    schema = schemathesis.openapi.from_dict(document(c.id))
    schema.config.update(base_url=server.base_url)
    session = requests.Session()
    session.trust_env = False
    session.verify = str(server.ca_pem)
    statuses: set[int] = set()
    failures: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 5
    for operation in operations:
        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @given(case=strategy)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def exercise(case: schemathesis.Case) -> None:
            response = case.call(session=session, verify=str(server.ca_pem))
            statuses.add(response.status_code)
            assert response.status_code < 500, response.text[:500]

        try:
            exercise()
        except (Exception, BaseExceptionGroup) as failure:
            failures[operation.label] = str(failure)[:2000]
    assert failures == {}, "\n\n".join(f"{k}: {v}" for k, v in failures.items())
    assert statuses & {400, 401}
