"""Portal benchmark (issue 8): does a server-rendered portal page cost no more than 2x the API
call that returns the same data?

Issue 8 names the alarm console with 200 open alarms against `GET /v1/alarms`. This branch has
no alarm service yet (issue 4), so this measures the screen that exists and has an API twin:
the audit log page (`/portal/audit`, 50 records, every filter field and detail rendered)
against `GET /v1/audit-events?limit=50` (the same 50 records as JSON), in the same run, with
bench/edge.py's machinery (server pinned to core 0, wrk on core 1, alternating rounds, best of).
Both requests are authenticated (a portal session cookie; an API key of the same dealer with
`audit:read`) and both are audited by the edge. When the alarm service lands, the console page
takes this one's place. Exit status 0 when page >= 0.5 x API (i.e. within 2x), else 1.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import edge
from oauth import measured

TARGET = 0.5
RECORDS = 400


def prepare(home: Path) -> tuple[str, str]:
    """(API key, portal session token) of one dealer whose log holds RECORDS records."""
    from vigil.auth.actor import Actor
    from vigil.auth.principal import ActorType, Environment
    from vigil.auth.scopes import Scope
    from vigil.config import Settings
    from vigil.portal.sessions import SessionStore
    from vigil.services import Services
    from vigil.tenancy.models import Plan
    from vigil.tenancy.roles import PortalRole
    from vigil.tenancy.users import Role

    op = Actor(type=ActorType.OPERATOR, id="bench", via="cli")
    svc = Services.build(Settings(home=home))
    try:
        dealer = svc.dealers.create(op, name="Bench dealer", plan=Plan.STANDARD)
        app = svc.apps.create(
            op,
            dealer_id=dealer.id,
            name="bench",
            environment=Environment.PRODUCTION,
            scopes={Scope.AUDIT_READ, Scope.SITES_READ, Scope.SITES_WRITE},
        )
        _, key = svc.keys.create(op, app.id)
        user = svc.users.create(
            op,
            dealer_id=dealer.id,
            email="bench@example.com",
            role=Role.OPERATOR,
            password="bench password 123",
        )
        svc.operators.set_role(op, user.id, PortalRole.VIEWER)
        principal = svc.key_verifier.verify(key, "127.0.0.1")
        actor = Actor.for_principal(principal, request_id=None, source_ip="127.0.0.1")
        for n in range(RECORDS):
            svc.sites.create(actor, {"name": f"Site {n}", "timezone": "UTC"})
        store = SessionStore(svc.db, svc.audit, svc.clock)
        session = store.open(user.id, dealer.id, Environment.PRODUCTION, mfa_pending=False)
        svc.audit.checkpoint_all()
        return key, session.token
    finally:
        svc.close()


def wrk(url: str, seconds: int, connections: int, header: str) -> list[str]:
    return [
        "taskset", "-c", str(edge.LOAD_CORE), "wrk", "-t1", f"-c{connections}",
        f"-d{seconds}s", "--latency", "-H", header, url,
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    edge.check_cores()
    with tempfile.TemporaryDirectory(prefix="vigil-bench-portal-") as tmp:
        home = Path(tmp)
        port = edge.free_port()
        key, session = prepare(home)
        env = edge.clean_env() | {
            "VIGIL_HOME": str(home),
            "VIGIL_HTTPS_PORT": str(port),
            "VIGIL_HTTP_PORT": str(edge.free_port()),
            "VIGIL_RATE_LIMIT_PER_SECOND": "1e9",
            "VIGIL_RATE_LIMIT_BURST": "1000000000",
        }
        from vigil.edge.certificates import ensure_local_tls

        ensure_local_tls(home / "tls")
        server = edge.PinnedServer(
            "vigil", [sys.executable, "-m", "vigil", "serve"], env, port, home
        )
        server.start()
        base = f"https://{edge.HOST}:{port}"
        cases = {
            "GET /v1/audit-events": (
                f"{base}/v1/audit-events?limit=50",
                f"Authorization: Bearer {key}",
            ),
            "portal audit page": (
                f"{base}/portal/audit",
                f"Cookie: __Host-vigil_session={session}",
            ),
        }
        runs: dict[str, list[edge.WrkResult]] = {label: [] for label in cases}
        try:
            for _ in range(args.rounds):
                for label, (url, header) in cases.items():
                    measured(server.pid, wrk(url, 2, args.connections, header), 2)  # warm-up
                    result = measured(
                        server.pid, wrk(url, args.duration, args.connections, header), args.duration
                    )
                    runs[label].append(result)
                    print(edge.describe(label, result))
        finally:
            server.stop()
    best = {k: max(v, key=lambda r: r.requests_per_second) for k, v in runs.items()}
    api, page = best["GET /v1/audit-events"], best["portal audit page"]
    ratio = page.requests_per_second / api.requests_per_second if api.requests_per_second else 0
    ok = ratio >= TARGET and page.non_2xx == 0 and api.non_2xx == 0
    print()
    print(f"portal audit page / GET /v1/audit-events (50 records): {ratio:.2f}"
          f"  (target >= {TARGET}, i.e. within 2x)  {'met' if ok else 'NOT met'}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
