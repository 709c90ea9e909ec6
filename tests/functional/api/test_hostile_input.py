"""Hostile input is a clear 4xx problem document on every engine, never a 500 or a 503:
NUL characters in paths, queries and bodies, and times with no UTC equivalent."""

from __future__ import annotations

import base64
import json

import pytest
from sqlalchemy import select
from tests.support import factories
from tests.support.audit_trail import opened_rows
from tests.support.server import VigilServer

from vigil.auth.oauth.jwt_bearer import GRANT_TYPE as JWT_BEARER
from vigil.services import Services
from vigil.storage.tables import audit_events


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/sites/site_a%00b", None),
        ("GET", "/v1/sites?external_id=a%00b", None),
        ("POST", "/v1/sites", {"name": "nul\u0000name"}),
        ("GET", "/v1/alarms/alm_a%00b/timeline", None),
        ("GET", "/v1/devices/dev_a%00b", None),
        (
            "POST",
            "/v1/devices",
            {"site_id": "s", "kind": "panel", "serial": "a\u0000", "name": "x"},
        ),
        ("GET", "/v1/devices/dev_x/telemetry?metric=a%00", None),
        ("GET", "/v1/audit-events?since=0001-01-01T00:00:00%2B01:00", None),
        ("GET", "/v1/alarms?since=0001-01-01T00:00:00%2B01:00", None),
    ],
)
def test_hostile_input_is_a_client_error(
    server: VigilServer, services: Services, method: str, path: str, body: object
) -> None:
    cred = factories.credential(services)
    with server.client(cred.token) as client:
        response = client.request(method, path, json=body)
        after = client.get("/v1/me")
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert after.status_code == 200
    # ... and the refusal itself is on the record (S14): the hostile value did not make the
    # record, or the batch it was written with, fail.
    with services.db.read() as conn:
        results = conn.execute(
            select(audit_events.c.result).where(
                audit_events.c.request_id == response.headers["x-request-id"]
            )
        ).scalars()
        assert list(results) == [str(response.status_code)]


def test_unknown_query_parameters_are_refused_not_ignored(
    server: VigilServer, services: Services
) -> None:
    """A misspelt filter must not silently widen a listing."""
    cred = factories.credential(services)
    with server.client(cred.token) as client:
        misspelt = client.get("/v1/alarms", params={"stauts": "new"})
        known = client.get("/v1/alarms", params={"status": "new", "limit": 5})
    assert misspelt.status_code == 422
    assert "stauts" in misspelt.json()["detail"]
    assert known.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/alarms?until=0.0", None),
        ("GET", "/v1/alarms?since=1700000000", None),
        ("GET", "/v1/audit-events?since=-3127", None),
        ("GET", "/v1/audit-events/export?since=-427942&until=-3127", None),
        ("GET", "/v1/devices/dev_x/telemetry?since=1700000000", None),
        ("POST", "/v1/alarms", {"site_id": "site_x", "type": "fire", "occurred_at": 0}),
        ("POST", "/v1/webhooks/endpoints/whe_x/replay", {"since": 1700000000}),
        ("POST", "/v1/devices/dev_x/snapshots?captured_at=1700000000", None),
    ],
)
def test_times_are_rfc3339_text_never_numbers(
    server: VigilServer, services: Services, method: str, path: str, body: object
) -> None:
    """Pydantic alone would read `until=0.0` as seconds since 1970 (found by `make fuzz`): the
    OpenAPI document says RFC 3339 text, so a number is refused, naming the parameter."""
    cred = factories.credential(services)
    with server.client(cred.token) as client:
        response = client.request(method, path, json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "RFC 3339" in response.text
    assert (
        ("since" in response.text)
        or ("until" in response.text)
        or ("occurred_at" in response.text)
        or ("captured_at" in response.text)
    )


def test_rfc3339_times_with_a_zone_are_accepted_in_queries_and_bodies(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services)
    actor = factories.actor_of(services, cred)
    site_id = factories.site(services, actor)
    with server.client(cred.token) as client:
        made = client.post(
            "/v1/alarms",
            json={"site_id": site_id, "type": "fire", "occurred_at": "2026-11-28T10:00:00+01:00"},
        )
        listed = client.get(
            "/v1/alarms",
            params={"since": "2026-11-28T08:59:59Z", "until": "2026-11-28 09:00:01+00:00"},
        )
        audited = client.get("/v1/audit-events", params={"since": "2026-01-01T00:00:00Z"})
        naive = client.get("/v1/alarms", params={"since": "2026-11-28T08:59:59"})
    assert made.status_code == 201, made.text
    assert [a["id"] for a in listed.json()["data"]] == [made.json()["id"]]
    assert audited.status_code == 200
    assert naive.status_code == 422  # a time with no zone is still refused


def _forged_assertion(issuer: str) -> str:
    """A JWT-bearer assertion that names `issuer` and fails verification (no real signature)."""

    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {"iss": issuer, "sub": "dlr_x", "aud": "x", "exp": 4102444800, "jti": "j\u0000"}
    return f"{part({'alg': 'ES256', 'kid': 'k'})}.{part(claims)}.AAAA"


@pytest.mark.parametrize(
    ("form", "claimed"),
    [
        ({"grant_type": "nope\u0000", "client_id": "cli\u0000ent"}, "cli\ufffdent"),
        (
            {"grant_type": JWT_BEARER, "assertion": _forged_assertion("par\u0000tner")},
            "par\ufffdtner",
        ),
    ],
)
def test_nul_in_a_claimed_identity_is_refused_and_still_recorded(
    server: VigilServer, services: Services, form: dict[str, str], claimed: str
) -> None:
    """The refusal's record names the client or issuer the caller claimed; PostgreSQL cannot
    store NUL in text, and the record (with its whole batch) used to fail there: a 500 (found
    by `make fuzz` on PostgreSQL). NUL becomes U+FFFD in every text field of a record."""
    with server.client() as client:
        refused = client.post("/oauth/token", data=form)
        fine = client.post("/oauth/token", data={"grant_type": "nope", "client_id": "client"})
    assert refused.status_code == 400, refused.text
    assert fine.status_code == 400
    request_id = refused.headers["x-request-id"]
    rows = opened_rows(
        services,
        select(audit_events.c.id, audit_events.c.actor_id, audit_events.c.action).where(
            audit_events.c.request_id == request_id
        ),
    )
    assert {(r["action"], r["actor_id"]) for r in rows} >= {
        ("oauth_token.refused" if "client_id" in form else "assertion.refused", claimed)
    }


def test_a_query_parameter_given_twice_is_refused_not_picked(
    server: VigilServer, services: Services
) -> None:
    """`?site_id=a&site_id=b` is ambiguous (which one did a proxy, a log, the server read?):
    refused, naming the parameter, instead of silently using one (found by `make fuzz`)."""
    cred = factories.credential(services)
    with server.client(cred.token) as client:
        twice = client.get("/v1/alarms?status=new&status=resolved")
        once = client.get("/v1/alarms?status=new&limit=5")
        devices = client.get("/v1/devices?parent_id=dev_a&parent_id=dev_b")
    assert twice.status_code == 422
    assert twice.headers["content-type"] == "application/problem+json"
    assert "given more than once: status" in twice.json()["detail"]
    assert devices.status_code == 422
    assert "parent_id" in devices.json()["detail"]
    assert once.status_code == 200
