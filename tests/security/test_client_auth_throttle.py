"""Guessing a client secret at the OAuth endpoints draws on the same per-address failure budget
as guessing a password at the sign-in forms: once spent, even the right secret waits (429)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import DatabaseFactory
from tests.support import oauth
from tests.support.server import VigilServer


@pytest.fixture
def strict_server(tmp_path: Path, new_database: DatabaseFactory) -> Iterator[VigilServer]:
    server = new_database.server(
        tmp_path / "home", auth_failure_burst=3, auth_failure_per_second=0.01
    )
    server.start()
    yield server
    server.stop()


def test_wrong_client_secrets_are_throttled_per_address(strict_server: VigilServer) -> None:
    svc = strict_server.services()
    try:
        c = oauth.client(svc, confidential=True)
    finally:
        svc.close()
    assert c.secret is not None
    form = {"token": "vgl_at_nothing", "client_id": c.id}
    with strict_server.client() as http:
        # The right secret works while the budget lasts.
        good = http.post("/oauth/introspect", data=form | {"client_secret": c.secret})
        assert good.status_code == 200
        refresh = {"grant_type": "refresh_token", "refresh_token": "vgl_rt_nothing"}
        wrong = [
            http.post(path, data=body | {"client_id": c.id, "client_secret": "wrong"})
            for path, body in (
                ("/oauth/introspect", form),
                ("/oauth/revoke", form),
                ("/oauth/token", refresh),
            )
        ]
        assert [r.status_code for r in wrong] == [401, 401, 401]
        assert all(r.json()["error"] == "invalid_client" for r in wrong)
        throttled = http.post("/oauth/introspect", data=form | {"client_secret": c.secret})
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) >= 1
    assert throttled.headers["cache-control"] == "no-store"
    assert "Too many failed client authentications" in throttled.json()["error_description"]
