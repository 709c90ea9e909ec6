"""Per-credential token bucket: 429 with Retry-After, audited, and other credentials unaffected."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.conftest import DatabaseFactory
from tests.support import factories
from tests.support.server import VigilServer

from vigil.services import Services
from vigil.storage.tables import audit_events


@pytest.fixture(scope="module")
def strict_server(
    tmp_path_factory: pytest.TempPathFactory, new_database: DatabaseFactory
) -> Iterator[VigilServer]:
    home: Path = tmp_path_factory.mktemp("ratelimited")
    srv = new_database.server(
        home,
        rate_limit_per_second=0.5,
        rate_limit_burst=3,
        trusted_proxies="127.0.0.1/32",
        auth_failure_burst=20,
        auth_failure_per_second=0.01,
    )
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def strict_services(strict_server: VigilServer) -> Iterator[Services]:
    svc = strict_server.services()
    yield svc
    svc.close()


def test_burst_then_429_with_retry_after(
    strict_server: VigilServer, strict_services: Services
) -> None:
    cred = factories.credential(strict_services)
    other = factories.credential(strict_services)
    with strict_server.client(cred.token) as client:
        statuses = [client.get("/v1/me").status_code for _ in range(4)]
        limited = client.get("/v1/me")
    assert statuses[:3] == [200, 200, 200]
    assert statuses[3] == 429
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["content-type"] == "application/problem+json"
    with strict_server.client(other.token) as client:
        assert client.get("/v1/me").status_code == 200
    with strict_services.db.read() as conn:
        rows = conn.execute(
            select(audit_events.c.action, audit_events.c.result).where(
                audit_events.c.credential_id == cred.key_id
            )
        ).all()
    assert ("request.rate_limited", "429") in [tuple(r) for r in rows]


def test_repeated_failed_authentication_is_throttled_per_address(
    strict_server: VigilServer, strict_services: Services
) -> None:
    """Guessing keys is refused (429) after a burst, before any lookup; others are unaffected."""
    from vigil.auth.apikeys import format as keyformat
    from vigil.auth.principal import Environment

    cred = factories.credential(strict_services)
    guesser = {"X-Forwarded-For": "198.51.100.77"}
    statuses = []
    for _ in range(25):
        with strict_server.client(keyformat.mint(Environment.SANDBOX).token, headers=guesser) as c:
            statuses.append(c.get("/v1/me").status_code)
    assert statuses[:20] == [401] * 20
    assert set(statuses[20:]) == {429}
    with strict_server.client(cred.token, headers={"X-Forwarded-For": "198.51.100.78"}) as c:
        assert c.get("/v1/me").status_code == 200
