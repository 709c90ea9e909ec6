"""End to end through `vigil serve`: its built-in worker delivers a state change committed by an
API call, and `vigil webhooks approve-ca` (audited) makes an internal CA work for one endpoint."""

from __future__ import annotations

import json
import time

from standardwebhooks.webhooks import Webhook
from tests.support.hooks_world import HooksWorld
from tests.support.server import VigilServer

HOOKS = "/v1/webhooks/endpoints"


def test_serve_delivers_api_changes_and_approve_ca_is_audited(hooks: HooksWorld) -> None:
    env = {k: v for k, v in hooks.settings_env.items() if k not in ("home", "database_url")}
    server = VigilServer(hooks.home, hooks.settings_env["database_url"], **env).start()
    try:
        valid, internal = hooks.receivers.valid, hooks.receivers.internal
        with server.client(hooks.cred.token) as client:
            hook = client.post(
                HOOKS, json={"url": valid.url("/serve"), "event_types": ["site.armed"]}
            )
            site = client.post("/v1/sites", json={"name": "Depot"}).json()
            started = time.monotonic()
            client.post(f"/v1/sites/{site['id']}/arming-state", json={"state": "armed_away"})
            [got] = valid.wait_for(1)
            latency = time.monotonic() - started
            internal_hook = client.post(HOOKS, json={"url": internal.url("/serve-internal")})
            request = client.post(
                f"{HOOKS}/{internal_hook.json()['id']}/ca-requests",
                json={"ca_bundle": hooks.receivers.internal_ca_pem},
            ).json()
        assert latency < 5
        event = Webhook(hook.json()["secret"]).verify(got.body, got.headers)
        assert event["data"]["site_id"] == site["id"]

        pending = server.run_cli("webhooks", "ca-requests", "--status", "pending", "--json")
        assert request["id"] in [r["id"] for r in json.loads(pending.stdout)]
        approved = server.run_cli("webhooks", "approve-ca", request["id"], "--json")
        assert json.loads(approved.stdout)["status"] == "approved"
        again = server.run_cli("webhooks", "approve-ca", request["id"], check=False)
        assert again.returncode != 0
        with server.client(hooks.cred.token) as client:
            client.post(f"{HOOKS}/{internal_hook.json()['id']}/test")
            [delivered] = internal.wait_for(1)
            audit = client.get("/v1/audit-events", params={"action": "webhook_ca.approved"})
        assert json.loads(delivered.body)["type"] == "webhook.test"
        [record] = audit.json()["data"]
        assert record["target_id"] == request["id"]
        assert record["actor_type"] == "operator"

        ca_file = hooks.home / "internal-ca.pem"
        ca_file.write_text(hooks.receivers.internal_ca_pem)
        filed = server.run_cli(
            "webhooks",
            "request-ca",
            "--endpoint",
            hook.json()["id"],
            "--ca-file",
            str(ca_file),
            "--json",
        )
        assert json.loads(filed.stdout)["status"] == "pending"
        bad = server.run_cli(
            "webhooks",
            "request-ca",
            "--endpoint",
            hook.json()["id"],
            "--ca-file",
            str(hooks.receivers.trust_store.parent / "self.key"),
            check=False,
        )
        assert bad.returncode == 2
        assert "PEM" in bad.stderr
    finally:
        server.stop()
