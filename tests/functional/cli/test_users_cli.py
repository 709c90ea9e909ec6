"""`vigil users create`: argon2id passwords read from stdin, never from argv (S10)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from sqlalchemy import select
from tests.support import factories
from tests.support.server import VigilServer

from vigil.services import Services
from vigil.storage.tables import users


def create_user(server: VigilServer, password: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vigil", "users", "create", *args, "--password-stdin", "--json"],
        env=server.env,
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_site_user_is_created_with_an_argon2id_hash(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services)
    site = services.sites.create(factories.actor_of(services, cred), {"name": "Home"}).id
    password = "a long enough passphrase"
    out = create_user(
        server, password, "--dealer", cred.dealer.id, "--email", "Kim@Example.com",
        "--role", "site_user", "--sites", site,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    created = json.loads(out.stdout)
    assert created["email"] == "kim@example.com"
    assert created["site_ids"] == [site]
    assert password not in out.stdout + out.stderr
    with services.db.read() as conn:
        stored = conn.execute(
            select(users.c.password_hash).where(users.c.id == created["id"])
        ).scalar_one()
    assert stored.startswith("$argon2id$")
    signed_in = services.users.authenticate(cred.dealer.id, "kim@example.com", password)
    assert signed_in is not None
    assert signed_in.site_ids == frozenset({site})
    assert services.users.authenticate(cred.dealer.id, "kim@example.com", "wrong password!") is None


@pytest.mark.parametrize(
    ("args", "password", "message"),
    [
        (["--role", "site_user"], "a long enough passphrase", "needs at least one site"),
        (["--role", "operator", "--sites", "site_x"], "a long enough passphrase", "whole dealer"),
        (["--role", "operator"], "short", "12 to 1024"),
        (["--role", "site_user", "--sites", "site_missing"], "a long enough passphrase", "No site"),
    ],
)
def test_bad_user_input_is_a_one_line_error(
    server: VigilServer, services: Services, args: list[str], password: str, message: str
) -> None:
    dealer = factories.dealer(services)
    out = create_user(server, password, "--dealer", dealer.id, "--email", "x@example.com", *args)
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr
