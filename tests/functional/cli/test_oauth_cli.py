"""The OAuth operator commands: register clients, partners with uploaded JWKS, key rotation by
date and dealers' authorizations (S10, S11). And S2 for tokens: one sent over plain HTTP is
revoked at once."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey
from tests.support import factories, oauth
from tests.support.server import VigilServer

from vigil.services import Services


def cli_json(server: VigilServer, *args: str) -> dict[str, object]:
    out = server.run_cli(*args, "--json", check=False)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert isinstance(data, dict)
    return data


def test_register_a_confidential_client_prints_its_secret_once(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services)
    made = cli_json(
        server, "oauth-clients", "register", "--app", cred.app.id, "--type", "confidential",
        "--auth", "client_secret_post", "--redirect-uris", "https://a.example/cb",
    )  # fmt: skip
    assert str(made["client_secret"]).startswith("vgl_cs_")
    assert made["redirect_uris"] == ["https://a.example/cb"]
    with server.client(cred.token) as api:
        shown = api.get(f"/v1/apps/{cred.app.id}/oauth-client").json()
    assert "client_secret" not in shown
    refused = server.run_cli(
        "oauth-clients", "register", "--app", cred.app.id, "--type", "public",
        "--redirect-uris", "http://a.example/cb", check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "must be https://" in refused.stderr


def test_partner_lifecycle_through_the_cli(
    server: VigilServer, services: Services, tmp_path: Path
) -> None:
    dealer = factories.dealer(services)
    old, new = ECKey.generate_key("P-256"), ECKey.generate_key("P-256")
    first = tmp_path / "first.json"
    first.write_text(json.dumps({"keys": [old.as_dict(private=False) | {"kid": "old"}]}))
    second = tmp_path / "second.json"
    second.write_text(json.dumps({"keys": [new.as_dict(private=False) | {"kid": "new"}]}))
    partner = cli_json(
        server, "partners", "create", "--name", "Central station", "--environment", "sandbox",
        "--scopes", "sites:read,alarms:read", "--jwks", str(first),
    )  # fmt: skip
    pid = str(partner["id"])
    cli_json(server, "partners", "authorize", "--partner", pid, "--dealer", dealer.id,
             "--scopes", "alarms:read")  # fmt: skip

    def exchange(key: ECKey, kid: str) -> httpx.Response:
        now = int(time.time())
        claims = {"iss": pid, "sub": dealer.id, "aud": server.base_url, "exp": now + 60,
                  "iat": now, "jti": uuid.uuid4().hex}  # fmt: skip
        assertion = jwt.encode({"alg": "ES256", "kid": kid}, claims, key)
        with server.client() as http:
            return http.post(
                "/oauth/token",
                data={"grant_type": oauth.GRANT_TYPE, "assertion": assertion},
            )

    assert exchange(old, "old").json()["scope"] == "alarms:read"
    assert cli_json(server, "partners", "add-keys", "--partner", pid, "--jwks", str(second))
    retired = server.run_cli("partners", "retire-key", "--partner", pid, "--kid", "old")
    assert retired.returncode == 0
    assert exchange(old, "old").status_code == 400
    assert exchange(new, "new").status_code == 200
    cli_json(server, "partners", "authorize", "--partner", pid, "--dealer", dealer.id)
    assert exchange(new, "new").status_code == 400  # authorization withdrawn


def test_access_token_sent_over_plain_http_is_revoked(
    server: VigilServer, services: Services
) -> None:
    c = oauth.client(services)
    tokens = oauth.tokens(server, c, oauth.user(services, c.cred.dealer.id))
    with server.client(tokens["access_token"]) as api:
        assert api.get("/v1/me").status_code == 200
        leaked = httpx.get(
            server.http_url + "/v1/me",
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )
        assert leaked.status_code == 403
        assert api.get("/v1/me").status_code == 401
