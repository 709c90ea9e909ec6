"""S14, S15 under load and across a crash: one durable record per response, no more, no less."""

from __future__ import annotations

import random
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from tests.conftest import DatabaseFactory
from tests.support import factories
from tests.support.server import VigilServer

from vigil.auth.scopes import Scope
from vigil.services import Services
from vigil.storage.tables import audit_events


@pytest.fixture
def loaded_server(
    tmp_path: Path, new_database: DatabaseFactory
) -> Iterator[tuple[VigilServer, Services]]:
    srv = new_database.server(
        tmp_path, rate_limit_per_second=20, rate_limit_burst=20, auth_failure_burst=100000
    )
    srv.start()
    svc = srv.services()
    yield srv, svc
    svc.close()
    srv.stop()


def mixed_load(
    srv: VigilServer,
    svc: Services,
    threads: int,
    per_thread: int,
    stop: threading.Event | None = None,
) -> list[tuple[int, str]]:
    """Concurrent clients mixing 200/401/403/404/429; returns (status, request id) per response."""
    reader = factories.credential(svc, scopes=[Scope.SITES_READ])
    hammered = factories.credential(svc, scopes=[Scope.APPS_READ])
    calls = [
        (reader.token, "/v1/me"),  # 200
        (None, "/v1/me"),  # 401
        (factories.mistyped(reader.token), "/v1/me"),  # 401 (bad checksum)
        (reader.token, "/v1/apps"),  # 403 (no apps:read)
        (hammered.token, "/v1/apps/app_nope"),  # 404 until the bucket empties, then 429
    ]
    results: list[tuple[int, str]] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=srv.base_url, verify=srv.ssl_context(), timeout=30) as client:
            for _ in range(per_thread):
                if stop is not None and stop.is_set():
                    return
                token, path = rng.choice(calls)
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                try:
                    response = client.get(path, headers=headers)
                except httpx.HTTPError:
                    return  # the server died mid-request: no response, so no promise
                with lock:
                    results.append((response.status_code, response.headers["x-request-id"]))

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return results


def recorded(svc: Services) -> Counter[str]:
    with svc.db.read() as conn:
        rows = conn.execute(
            select(audit_events.c.request_id).where(audit_events.c.request_id.is_not(None))
        ).all()
    return Counter(r[0] for r in rows)


def test_every_response_has_exactly_one_record_under_load(
    loaded_server: tuple[VigilServer, Services],
) -> None:
    srv, svc = loaded_server
    results = mixed_load(srv, svc, threads=12, per_thread=40)
    statuses = Counter(s for s, _ in results)
    assert {200, 401, 403, 404, 429} <= set(statuses), statuses
    records = recorded(svc)
    assert len(results) == 480
    assert sum(records.values()) == len(results)
    assert all(records[rid] == 1 for _, rid in results)


def test_kill_9_loses_no_record_of_an_answered_request(
    loaded_server: tuple[VigilServer, Services],
) -> None:
    srv, svc = loaded_server
    stop = threading.Event()
    killer = threading.Timer(1.5, lambda: (srv.signal(signal.SIGKILL), stop.set()))
    killer.start()
    results = mixed_load(srv, svc, threads=8, per_thread=10_000, stop=stop)
    killer.join()
    assert srv.proc is not None
    srv.proc.wait(timeout=10)
    assert len(results) > 50  # the load really ran before the crash
    srv.proc = None
    srv.start()  # same home, same database
    records = recorded(svc)
    missing = [rid for _, rid in results if records[rid] != 1]
    assert missing == []
    verify = srv.run_cli("audit", "verify", check=False)
    assert verify.returncode == 0, verify.stderr + verify.stdout


def test_sigterm_drains_and_signs_every_chain_head(
    loaded_server: tuple[VigilServer, Services],
) -> None:
    """A clean stop leaves no unsigned tail: the final checkpoint runs before exit."""
    srv, svc = loaded_server
    cred = factories.credential(svc, scopes=[Scope.SITES_READ])
    with srv.client(cred.token) as client:
        for _ in range(5):
            client.get("/v1/me")
    srv.stop()  # SIGTERM
    from vigil.audit.verify import verify_store

    reports = verify_store(svc.db, svc.audit.signer, details=svc.audit.details)
    assert reports
    assert all(r.ok for r in reports)
    assert [r.chain_id for r in reports if r.unsigned_tail] == []
