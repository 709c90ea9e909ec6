"""VIGIL_PORTAL_HOST: the portal on a host name of its own. Its pages answer only requests for
that host; the API keeps answering on the listener as before."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.conftest import DatabaseFactory
from tests.support import factories
from tests.support.server import VigilServer

from vigil.auth.scopes import Scope
from vigil.portal.routing import request_host

PORTAL = "portal.vigil.test"


@pytest.fixture(scope="module")
def portal_server(
    tmp_path_factory: pytest.TempPathFactory, new_database: DatabaseFactory
) -> Iterator[VigilServer]:
    srv = new_database.server(tmp_path_factory.mktemp("portal-host"), portal_host=PORTAL)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_the_portal_answers_only_on_its_own_host_name(portal_server: VigilServer) -> None:
    with portal_server.client() as http:
        mine = http.get("/portal/sign-in", headers={"host": f"{PORTAL}:8443"})
        other = http.get("/portal/sign-in")  # Host: the listener's address
        elsewhere = http.get("/portal/sign-in", headers={"host": "evil.example"})
    assert mine.status_code == 200
    assert "Sign in" in mine.text
    assert other.status_code == 404
    assert elsewhere.status_code == 404
    assert other.headers["content-type"].startswith("application/problem+json")


def test_the_api_keeps_answering_on_the_listener(portal_server: VigilServer) -> None:
    svc = portal_server.services()
    try:
        cred = factories.credential(svc, scopes=[Scope.SITES_READ])
    finally:
        svc.close()
    with portal_server.client(cred.token) as api:
        assert api.get("/v1/me").status_code == 200


@pytest.mark.parametrize(
    ("header", "host"),
    [
        (b"Portal.Vigil.Test", "portal.vigil.test"),
        (b"portal.vigil.test:8443", "portal.vigil.test"),
        (b"[::1]:8443", "[::1]"),
        (b"127.0.0.1", "127.0.0.1"),
    ],
)
def test_the_host_name_is_read_without_port_or_case(header: bytes, host: str) -> None:
    assert request_host({"headers": [(b"host", header)]}) == host
