"""Hostile input is a clear 4xx problem document on every engine, never a 500 or a 503:
NUL characters in paths, queries and bodies, and times with no UTC equivalent."""

from __future__ import annotations

import pytest
from tests.support import factories
from tests.support.server import VigilServer

from vigil.services import Services


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
