"""Portal benchmark (issue 8): does the alarm console with 200 open alarms render server-side
within 2x the time of the same alarms from `GET /v1/alarms`?

One dealer with ALARMS open alarms (new, acknowledged and dispatched, priorities 1 to 4, spread
over SITES sites, each with a sealed description). The page is `/portal/alarms` as an operator
sees it (filters, the whole queue, an Acknowledge form on every new alarm); the API twin is
`GET /v1/alarms?limit=200` with an API key of the same dealer (`alarms:read`). Same run,
bench/edge.py's machinery (server pinned to core 0, wrk on core 1, alternating rounds, best
of). Both requests are authenticated and audited by the edge. The API opens every alarm's
sealed description, which the queue does not show; the page in exchange reads the session and
account, joins site names, lists the sites for the filter and renders ~100 KB of HTML.
Exit status 0 when page >= 0.5 x API by requests per second (i.e. within 2x), else 1.
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
ALARMS = 200
SITES = 20
API, PAGE = "GET /v1/alarms", "alarm console page"


def prepare(home: Path) -> tuple[str, str]:
    """(API key, portal session token) of one dealer with ALARMS open alarms."""
    from datetime import timedelta

    from vigil.auth.actor import Actor
    from vigil.auth.principal import ActorType, Environment
    from vigil.auth.scopes import Scope
    from vigil.config import Settings
    from vigil.monitoring.alarm_models import AlarmType, NewAlarm
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
            scopes={Scope.SITES_WRITE, Scope.ALARMS_READ, Scope.ALARMS_WRITE},
        )
        _, key = svc.keys.create(op, app.id)
        user = svc.users.create(
            op,
            dealer_id=dealer.id,
            email="bench@example.com",
            role=Role.OPERATOR,
            password="bench password 123",
        )
        svc.operators.set_role(op, user.id, PortalRole.OPERATOR)
        principal = svc.key_verifier.verify(key, "127.0.0.1")
        actor = Actor.for_principal(principal, request_id=None, source_ip="127.0.0.1")
        sites = [
            svc.sites.create(actor, {"name": f"Site {n}", "timezone": "UTC"}).id
            for n in range(SITES)
        ]
        kinds = [AlarmType.BURGLARY, AlarmType.FIRE, AlarmType.TAMPER, AlarmType.TROUBLE]
        now = svc.clock.now()
        for n in range(ALARMS):
            new = NewAlarm(
                sites[n % SITES],
                kinds[n % len(kinds)],
                now - timedelta(minutes=ALARMS - n),
                zone=f"Zone {n % 8 + 1}",
                description=f"Motion in zone {n % 8 + 1} while armed away",
            )
            alarm = svc.alarms.create(actor, new)
            if n % 3:
                svc.alarms.acknowledge(actor, alarm.id)
            if n % 3 == 2:
                svc.alarms.dispatch(actor, alarm.id, agency="Police")
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
            API: (f"{base}/v1/alarms?limit=200", f"Authorization: Bearer {key}"),
            PAGE: (f"{base}/portal/alarms", f"Cookie: __Host-vigil_session={session}"),
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
    api, page = best[API], best[PAGE]
    ratio = page.requests_per_second / api.requests_per_second if api.requests_per_second else 0
    ok = ratio >= TARGET and page.non_2xx == 0 and api.non_2xx == 0
    print()
    print(f"{PAGE} / {API} ({ALARMS} open alarms): {ratio:.2f}"
          f"  (target >= {TARGET}, i.e. within 2x)  {'met' if ok else 'NOT met'}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
