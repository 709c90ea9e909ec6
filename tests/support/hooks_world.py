"""A webhook test world: its own database, in-process services that trust the test "public" CA,
allow loopback explicitly (as an operator would allow-list a network), and resolve the
receivers' name to 127.0.0.1; real HTTPS receivers of every certificate kind."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from tests.support import factories
from tests.support.audit_trail import opened_rows
from tests.support.receivers import HOST, ReceiverSet

from vigil.auth.actor import Actor
from vigil.auth.scopes import Scope
from vigil.config import Settings
from vigil.core.clock import Clock, FrozenClock
from vigil.events.outbox import emit
from vigil.events.types import EventType
from vigil.services import Services
from vigil.storage.tables import audit_events, webhook_attempts, webhook_messages

ALLOWED = "127.0.0.0/8"


def hook_settings(
    home: Path, url: str, owner: str | None, receivers: ReceiverSet, **extra: Any
) -> dict[str, str]:
    """The VIGIL_* settings every webhook test uses (also handed to `vigil worker`)."""
    values = {
        "home": str(home),
        "database_url": url,
        "database_owner_url": owner or "",
        "webhook_allowed_networks": ALLOWED,
        "webhook_static_hosts": f"{HOST}=127.0.0.1",
        "webhook_trust_store": str(receivers.trust_store),
        "webhook_timeout_seconds": "5",
        "webhook_lease_seconds": "20",
    }
    values.update({k: str(v) for k, v in extra.items()})
    return {k: v for k, v in values.items() if v != ""}


class HooksWorld:
    def __init__(self, home: Path, url: str, owner: str | None) -> None:
        self.home = home
        self.receivers = ReceiverSet(home / "receivers")
        self.settings_env = hook_settings(home, url, owner, self.receivers)
        self.services = Services.build(Settings(**self.settings_env))  # type: ignore[arg-type]
        self.cred = factories.credential(self.services)
        self.actor = factories.actor_of(self.services, self.cred)

    def credential(self, scopes: set[Scope] | None = None) -> tuple[factories.Credential, Actor]:
        cred = factories.credential(
            self.services, owner=self.cred.dealer, scopes=scopes or set(Scope)
        )
        return cred, factories.actor_of(self.services, cred)

    def tenant(self) -> Actor:
        """A fresh dealer's app with every scope: its endpoints see only its own events."""
        return factories.actor_of(self.services, factories.credential(self.services))

    def endpoint(self, url: str, actor: Actor | None = None, types: list[str] | None = None) -> Any:
        hooks = self.services.webhooks.endpoints
        return hooks.create(actor or self.actor, url=url, event_types=types or [])

    def emit(
        self, type: EventType = EventType.SITE_ARMED, n: int = 1, actor: Actor | None = None
    ) -> list[str]:
        tenant = (actor or self.actor).tenant
        assert tenant is not None
        now = datetime.now(UTC)
        sealer = self.services.encryption.records.sealer(tenant.dealer_id)
        with self.services.db.transaction() as conn:
            return [
                emit(
                    conn,
                    tenant,
                    type,
                    subject_type="site",
                    subject_id=f"site_{i}",
                    data={"n": i},
                    when=now,
                    sealer=sealer,
                )
                for i in range(n)
            ]

    def deliver(self, clock: Clock | None = None, seed: int = 0) -> int:
        worker = self.services.webhooks.worker(clock=clock, rand=random.Random(seed))

        async def once() -> int:
            try:
                return await worker.run_once()
            finally:
                await worker._transport.close()

        return asyncio.run(once())

    def messages(self, endpoint_id: str) -> list[Any]:
        with self.services.db.read() as conn:
            q = select(webhook_messages).where(webhook_messages.c.endpoint_id == endpoint_id)
            return list(conn.execute(q.order_by(webhook_messages.c.seq)).mappings())

    def attempts(self, endpoint_id: str) -> list[Any]:
        with self.services.db.read() as conn:
            q = select(webhook_attempts).where(webhook_attempts.c.endpoint_id == endpoint_id)
            return list(conn.execute(q.order_by(webhook_attempts.c.seq)).mappings())

    def audit_for(self, target_id: str) -> list[Any]:
        q = select(audit_events).where(audit_events.c.target_id == target_id)
        return opened_rows(self.services, q.order_by(audit_events.c.seq))

    def frozen(self) -> FrozenClock:
        return FrozenClock(datetime.now(UTC))

    def close(self) -> None:
        self.services.close()
        self.receivers.close()


def worker_process(home: Path, env: dict[str, str], log_name: str) -> Any:
    """`vigil worker` as its own process, configured like the world's in-process services."""
    import os
    import subprocess
    import sys

    clean = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    clean.update({f"VIGIL_{k.upper()}": v for k, v in env.items()})
    log = (home / log_name).open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "vigil", "worker"],
        env=clean,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_process(proc: Any) -> None:
    import signal
    import subprocess

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
