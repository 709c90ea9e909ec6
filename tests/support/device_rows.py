"""Devices and alarms written straight into their tables, for tests of what hangs off them.

Snapshot tests need a device (and sometimes an alarm) of a given tenant; inserting the rows
directly keeps those tests independent of the devices and alarms services, which own the rules
for creating them.
"""

from __future__ import annotations

from sqlalchemy import insert

from vigil.auth.actor import Actor
from vigil.core.ids import new_id
from vigil.services import Services
from vigil.storage.tables import alarms, devices


def site(services: Services, actor: Actor) -> str:
    return services.sites.create(actor, {"name": "test site"}).id


def device(services: Services, actor: Actor, site_id: str | None = None) -> str:
    """A camera at `site_id` (a new site if None), in `actor`'s tenant."""
    tenant = actor.tenant
    assert tenant is not None
    site_id = site_id or site(services, actor)
    device_id, now = new_id("dev"), services.clock.now()
    with services.db.transaction() as conn:
        conn.execute(
            insert(devices).values(
                id=device_id,
                dealer_id=tenant.dealer_id,
                environment=tenant.environment.value,
                site_id=site_id,
                kind="camera",
                serial=f"SN-{device_id}",
                name="test camera",
                status="online",
                heartbeat_seconds=300,
                version=1,
                created_at=now,
                updated_at=now,
            )
        )
    return device_id


def alarm(services: Services, actor: Actor, site_id: str) -> str:
    """A new burglary alarm at `site_id`, in `actor`'s tenant."""
    tenant = actor.tenant
    assert tenant is not None
    alarm_id, now = new_id("alm"), services.clock.now()
    with services.db.transaction() as conn:
        conn.execute(
            insert(alarms).values(
                id=alarm_id,
                dealer_id=tenant.dealer_id,
                environment=tenant.environment.value,
                site_id=site_id,
                type="burglary",
                priority=1,
                status="new",
                snapshot_ids=[],
                verification_requested=0,
                occurred_at=now,
                version=1,
                created_at=now,
                updated_at=now,
            )
        )
    return alarm_id
