"""S9: every way a key can be wrong is a 401; rotation keeps the old key for its grace window;
secrets never leak into logs, errors or audit records."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from tests.support import factories
from tests.support.server import VigilServer

from vigil.auth.apikeys import format as keyformat
from vigil.auth.apikeys.service import ApiKeyService
from vigil.auth.principal import Environment
from vigil.auth.scopes import Scope
from vigil.core.clock import FrozenClock
from vigil.services import Services
from vigil.storage.tables import audit_events


def with_checksum(body: str) -> str:
    return body + keyformat.checksum(body)


def swap_environment(token: str) -> str:
    """The same key id and secret under the other environment's prefix, checksum fixed up."""
    body = token[: -keyformat.CHECKSUM_WIDTH]
    swapped = (
        body.replace("vgl_test_", "vgl_live_", 1)
        if "vgl_test_" in body
        else body.replace("vgl_live_", "vgl_test_", 1)
    )
    return with_checksum(swapped)


def status_for(server: VigilServer, token: str) -> int:
    with server.client(token) as client:
        return client.get("/v1/me").status_code


@pytest.fixture
def cred(services: Services) -> factories.Credential:
    return factories.credential(services)


def test_valid_key_is_accepted(server: VigilServer, cred: factories.Credential) -> None:
    assert status_for(server, cred.token) == 200


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda t: "not-a-key", id="malformed"),
        pytest.param(lambda t: t[:-1], id="truncated"),
        pytest.param(factories.mistyped, id="bad-checksum"),
        pytest.param(
            lambda t: t[:30] + ("x" if t[30] != "x" else "y") + t[31:], id="typo-in-secret"
        ),
        pytest.param(
            lambda t: with_checksum(t[: t.rindex("_") + 1] + "A" * keyformat.SECRET_WIDTH),
            id="right-id-wrong-secret",
        ),
        pytest.param(
            lambda t: keyformat.mint(Environment.SANDBOX).token, id="unknown-key-valid-format"
        ),
        pytest.param(swap_environment, id="wrong-environment-prefix"),
    ],
)
def test_bad_keys_are_401(server: VigilServer, cred: factories.Credential, mangle: object) -> None:
    bad = mangle(cred.token)  # type: ignore[operator]
    assert bad != cred.token
    with server.client(bad) as client:
        response = client.get("/v1/me")
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.headers["content-type"] == "application/problem+json"


def test_checksum_rejects_any_single_character_change(cred: factories.Credential) -> None:
    token = cred.token
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    for i in range(len("vgl_test_"), len(token)):
        if token[i] == "_":
            continue
        other = alphabet[(alphabet.index(token[i]) + 7) % 62]
        assert keyformat.parse(token[:i] + other + token[i + 1 :]) is None
    assert keyformat.parse(token) is not None


def test_revoked_key_is_401_at_once(
    server: VigilServer, services: Services, cred: factories.Credential
) -> None:
    assert status_for(server, cred.token) == 200
    services.keys.revoke(factories.OPERATOR, cred.key_id)
    assert status_for(server, cred.token) == 401


def test_narrowing_the_app_counts_on_the_next_request_of_a_busy_key(
    server: VigilServer, services: Services, cred: factories.Credential
) -> None:
    # The server keeps a key it has just looked up (SQLite); a change committed by another
    # process (this test's services) must still count from the very next request.
    with server.client(cred.token) as client:
        for _ in range(3):
            assert client.get(f"/v1/apps/{cred.app.id}").status_code == 200
        services.apps.grant(factories.OPERATOR, cred.app.id, [Scope.SITES_READ])
        assert client.get(f"/v1/apps/{cred.app.id}").status_code == 403
        assert client.get("/v1/sites").status_code == 200
        services.keys.revoke(factories.OPERATOR, cred.key_id)
        assert client.get("/v1/sites").status_code == 401


def test_rotated_key_works_until_grace_ends_and_reports_expiry(
    server: VigilServer, services: Services, cred: factories.Credential
) -> None:
    _, new_token, outgoing = services.keys.rotate(
        factories.OPERATOR, cred.app.id, grace=timedelta(hours=1)
    )
    assert outgoing is not None
    assert outgoing.expires_at is not None
    with server.client(cred.token) as client:
        response = client.get("/v1/me")
    assert response.status_code == 200
    assert response.json()["expires_at"] is not None
    assert response.json()["credential_id"] == cred.key_id
    assert status_for(server, new_token) == 200


def test_rotated_key_fails_after_grace(server: VigilServer, services: Services) -> None:
    # Rotate "two hours ago" with a one-hour grace: the window has already closed.
    past = FrozenClock(services.clock.now() - timedelta(hours=2))
    keys_then = ApiKeyService(services.db, services.audit, past, services.apps, timedelta(hours=24))
    cred = factories.credential(services)
    _, new_token, _ = keys_then.rotate(factories.OPERATOR, cred.app.id, grace=timedelta(hours=1))
    assert status_for(server, cred.token) == 401
    assert status_for(server, new_token) == 200


def test_zero_grace_rotation_revokes_old_key_now(
    server: VigilServer, services: Services, cred: factories.Credential
) -> None:
    _, new_token, outgoing = services.keys.rotate(
        factories.OPERATOR, cred.app.id, grace=timedelta(0)
    )
    assert outgoing is None
    assert status_for(server, cred.token) == 401
    assert status_for(server, new_token) == 200


def test_at_most_one_key_rotating_out(
    server: VigilServer, services: Services, cred: factories.Credential
) -> None:
    _, second, _ = services.keys.rotate(factories.OPERATOR, cred.app.id)
    _, third, _ = services.keys.rotate(factories.OPERATOR, cred.app.id)
    assert status_for(server, cred.token) == 401  # the first rotating-out key was revoked
    assert status_for(server, second) == 200
    assert status_for(server, third) == 200


def test_last_used_time_and_ip_are_kept(
    server: VigilServer, services: Services, cred: factories.Credential
) -> None:
    assert status_for(server, cred.token) == 200
    key = services.keys.get(cred.key_id, None)
    assert key.last_used_at is not None
    assert key.last_used_ip == "127.0.0.1"


def test_key_cannot_widen_beyond_its_app(services: Services) -> None:
    from vigil.auth.scopes import Scope
    from vigil.core.errors import PermissionDenied

    dealer = factories.dealer(services)
    app = factories.app(services, dealer, scopes=[Scope.SITES_READ])
    with pytest.raises(PermissionDenied):
        services.keys.create(factories.OPERATOR, app.id, [Scope.SITES_READ, Scope.SITES_WRITE])


def test_narrowing_the_app_narrows_its_keys_at_once(
    server: VigilServer, services: Services
) -> None:
    from vigil.auth.scopes import Scope

    cred = factories.credential(services, scopes=[Scope.APPS_READ, Scope.SITES_READ])
    services.apps.grant(factories.OPERATOR, cred.app.id, [Scope.SITES_READ])
    with server.client(cred.token) as client:
        assert client.get("/v1/me").json()["scopes"] == ["sites:read"]
        assert client.get("/v1/apps").status_code == 403


def test_secrets_never_appear_in_logs_errors_or_audit(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services)
    secret = cred.token.split("_")[3][: keyformat.SECRET_WIDTH]
    bodies = []
    with server.client(cred.token) as client:
        bodies.append(client.get("/v1/me").text)
        bodies.append(client.get("/v1/apps/app_missing").text)
        bodies.append(client.post("/v1/apps", json={"bogus": True}).text)
    wrong = factories.mistyped(cred.token)
    with server.client(wrong) as client:
        bodies.append(client.get("/v1/me").text)
    bodies.append(server.run_cli("keys", "list", "--json").stdout)
    with services.db.read() as conn:
        audit_dump = repr(conn.execute(select(audit_events)).all())
    for text in [*bodies, server.log(), audit_dump]:
        assert secret not in text
        assert cred.token not in text
