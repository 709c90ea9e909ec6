"""First-run setup: TLS files, schema, and a demo sandbox dealer whose key is printed once."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select

from vigil.audit.actions import AuditAction
from vigil.auth.actor import Actor
from vigil.auth.principal import Environment
from vigil.auth.scopes import Scope
from vigil.config import Settings
from vigil.edge.certificates import ensure_local_tls
from vigil.services import Services
from vigil.storage.tables import settings_kv
from vigil.tenancy.models import Plan

DEMO_MARKER = "demo_dealer_id"


def ensure_demo(settings: Settings, actor: Actor, *, with_demo: bool = True) -> dict[str, Any]:
    settings.home.mkdir(parents=True, exist_ok=True)
    tls_created = False
    ca_pem = None
    if not (settings.tls_cert and settings.tls_key):
        files, tls_created = ensure_local_tls(settings.tls_dir)
        ca_pem = str(files.ca_pem.resolve())
    services = Services.build(settings)
    try:
        demo = _create_demo_once(services, actor) if with_demo else None
    finally:
        services.close()
    return {
        "tls_created": tls_created,
        "tls_dir": str(settings.tls_dir.resolve()),
        "ca_pem": ca_pem,
        "https_url": settings.https_origin,
        "demo": demo,
    }


def _create_demo_once(services: Services, actor: Actor) -> dict[str, Any] | None:
    with services.db.read() as conn:
        if conn.execute(
            select(settings_kv.c.value).where(settings_kv.c.name == DEMO_MARKER)
        ).first():
            return None
    dealer = services.dealers.create(actor, name="Demo Security Co.", plan=Plan.STANDARD)
    app = services.apps.create(
        actor,
        dealer_id=dealer.id,
        name="Demo integration",
        environment=Environment.SANDBOX,
        scopes=[s for s in Scope],
    )
    key, token = services.keys.create(actor, app.id)
    with services.db.transaction() as conn:
        conn.execute(insert(settings_kv).values(name=DEMO_MARKER, value=dealer.id))
        services.audit.write_in(
            conn,
            actor.record(
                services.clock.now(),
                AuditAction.PLATFORM_INITIALIZED,
                target_type="dealer",
                target_id=dealer.id,
                dealer_id=dealer.id,
            ),
        )
    return {"dealer_id": dealer.id, "app_id": app.id, "key_id": key.id, "key": token}
