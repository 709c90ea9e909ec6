"""The CLI: JSON for scripts, one-line errors with non-zero exits, demo printed once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import DatabaseFactory
from tests.support.server import VigilServer


def cli_json(server: VigilServer, *args: str) -> dict[str, object]:
    out = server.run_cli(*args, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert isinstance(data, dict)
    return data


def test_dealer_app_key_lifecycle_as_json(server: VigilServer) -> None:
    dealer = cli_json(server, "dealers", "create", "--name", "Acme", "--plan", "standard")
    app = cli_json(
        server,
        "apps", "create", "--dealer", str(dealer["id"]), "--name", "Integration",
        "--environment", "production", "--scopes", "apps:read,sites:read",
    )  # fmt: skip
    assert app["scopes"] == ["apps:read", "sites:read"]
    key = cli_json(server, "keys", "create", "--app", str(app["id"]))
    assert str(key["key"]).startswith("vgl_live_")
    assert str(key["id"]).startswith("key_")
    with server.client(str(key["key"])) as client:
        assert client.get("/v1/me").json()["app_id"] == app["id"]
    rotated = cli_json(server, "keys", "rotate", "--app", str(app["id"]), "--grace-hours", "2")
    assert rotated["previous"]["id"] == key["id"]  # type: ignore[index]
    revoked = cli_json(server, "keys", "revoke", str(rotated["id"]))
    assert revoked["status"] == "revoked"
    listed = json.loads(server.run_cli("keys", "list", "--app", str(app["id"]), "--json").stdout)
    statuses = {k["id"]: k["status"] for k in listed}
    assert statuses == {key["id"]: "rotating", rotated["id"]: "revoked"}
    granted = cli_json(server, "apps", "grant", "--app", str(app["id"]), "--scopes", "sites:read")
    assert granted["scopes"] == ["sites:read"]
    dealers = json.loads(server.run_cli("dealers", "list", "--json").stdout)
    assert any(d["id"] == dealer["id"] for d in dealers)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["apps", "create", "--dealer", "dlr_missing", "--name", "x", "--environment", "sandbox",
          "--scopes", "sites:read"], "No dealer"),
        (["apps", "create", "--dealer", "dlr_x", "--name", "x", "--environment", "sandbox",
          "--scopes", "sites:fly"], "unknown scope 'sites:fly'"),
        (["keys", "revoke", "key_missing"], "No API key"),
        (["dealers", "create", "--name", "x", "--plan", "standard", "--retention-days", "900"],
         "fixed at 365 days"),
        (["keys", "rotate", "--app", "app_x", "--grace-hours", "500"], "between 0 and 7 days"),
    ],
)  # fmt: skip
def test_errors_are_one_line_and_non_zero(
    server: VigilServer, args: list[str], message: str
) -> None:
    out = server.run_cli(*args, check=False)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr + out.stdout
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_init_prints_the_demo_key_once(tmp_path: Path, new_database: DatabaseFactory) -> None:
    home = tmp_path / "home"
    srv = new_database.server(home)
    first = srv.run_cli("init", "--json")
    data = json.loads(first.stdout)
    assert data["demo"]["key"].startswith("vgl_test_")
    assert (home / "tls" / "server.key").stat().st_mode & 0o777 == 0o600
    second = json.loads(srv.run_cli("init", "--json").stdout)
    assert second["demo"] is None
    assert second["tls_created"] is False
    human = srv.run_cli("init")
    assert "vgl_test_" not in human.stdout


def test_audit_verify_passes_and_is_itself_audited(server: VigilServer) -> None:
    out = server.run_cli("audit", "verify", "--json", check=False)
    assert out.returncode == 0, out.stderr
    chains = json.loads(out.stdout)
    assert chains
    assert all(c["ok"] for c in chains)
    again = server.run_cli("audit", "verify", "--json")
    assert any(c["records"] > 0 for c in json.loads(again.stdout))
    from sqlalchemy import text

    engine = server.owner_engine()
    with engine.connect() as conn:
        n = conn.execute(
            text("SELECT count(*) FROM audit_events WHERE action = 'audit.verified'")
        ).scalar_one()
    engine.dispose()
    assert n >= 2


@pytest.mark.parametrize(
    ("args", "action"),
    [
        (["dealers", "list", "--json"], "dealer.listed"),
        (["apps", "list", "--json"], "app.listed"),
        (["keys", "list", "--json"], "api_key.listed"),
        (["audit", "keys"], "audit_signing_key.listed"),
    ],
)
def test_reading_the_platform_is_an_audited_operator_action(
    server: VigilServer, args: list[str], action: str
) -> None:
    from sqlalchemy import text

    engine = server.owner_engine()
    query = text("SELECT actor_type, actor_id FROM audit_events WHERE action = :a ORDER BY seq")
    with engine.connect() as conn:
        before = conn.execute(query, {"a": action}).all()
    out = server.run_cli(*args)
    with engine.connect() as conn:
        after = conn.execute(query, {"a": action}).all()
    engine.dispose()
    assert out.returncode == 0, out.stderr
    assert len(after) == len(before) + 1
    assert after[-1][0] == "operator"
    assert str(after[-1][1]).startswith("cli:")
