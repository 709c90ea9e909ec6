"""Shared factories: build tenants, apps and keys through the real services."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from vigil.auth.actor import Actor, Tenant
from vigil.auth.principal import ActorType, Environment
from vigil.auth.scopes import Scope
from vigil.services import Services
from vigil.tenancy.models import App, Dealer, Plan

OPERATOR = Actor(type=ActorType.OPERATOR, id="cli:test", via="cli")
_counter = itertools.count(1)


@dataclass(frozen=True)
class Credential:
    dealer: Dealer
    app: App
    key_id: str
    token: str


def dealer(services: Services, plan: Plan = Plan.STANDARD, name: str | None = None) -> Dealer:
    return services.dealers.create(OPERATOR, name=name or f"Dealer {next(_counter)}", plan=plan)


def app(
    services: Services,
    owner: Dealer,
    environment: Environment = Environment.SANDBOX,
    scopes: Iterable[Scope] = tuple(Scope),
    ip_allow_list: Iterable[str] = (),
) -> App:
    return services.apps.create(
        OPERATOR,
        dealer_id=owner.id,
        name=f"App {next(_counter)}",
        environment=environment,
        scopes=scopes,
        ip_allow_list=ip_allow_list,
    )


def credential(
    services: Services,
    *,
    owner: Dealer | None = None,
    environment: Environment = Environment.SANDBOX,
    scopes: Iterable[Scope] = tuple(Scope),
    ip_allow_list: Iterable[str] = (),
) -> Credential:
    owner = owner or dealer(services)
    created = app(services, owner, environment, scopes, ip_allow_list)
    key, token = services.keys.create(OPERATOR, created.id)
    return Credential(owner, created, key.id, token)


def mistyped(token: str) -> str:
    """`token` with its last character changed, so its checksum no longer matches.

    Always a different string: replacing the last character with a fixed one would leave
    the token intact whenever it already ended in that character.
    """
    return token[:-1] + ("A" if token[-1] != "A" else "B")


def audit_log(db: object, home: object, clock: object | None = None) -> object:
    """A real AuditLog (chain, checkpoints, signer) on `db`, keys under `home`."""
    from datetime import timedelta
    from pathlib import Path

    from vigil.audit.log import AuditLog
    from vigil.audit.signing import AuditSigner
    from vigil.core.clock import SystemClock

    clk = clock or SystemClock()
    signer = AuditSigner(Path(str(home)) / "keys" / "audit", clk, timedelta(days=30))  # type: ignore[arg-type]
    return AuditLog(db, signer, clk)  # type: ignore[arg-type]


def tenant_of(cred: Credential) -> Tenant:
    return Tenant(cred.dealer.id, cred.app.environment)


def actor_of(services: Services, cred: Credential) -> Actor:
    """The actor the API would build for `cred`: for calling services directly as that app."""
    principal = services.key_verifier.verify(cred.token, "127.0.0.1")
    return Actor.for_principal(principal, request_id=None, source_ip="127.0.0.1")


# Monitoring objects, made through the real services as the given app.


def site(services: Services, actor: Actor) -> str:
    return services.sites.create(actor, {"name": f"Site {next(_counter)}"}).id


def camera(services: Services, actor: Actor, site_id: str | None = None) -> str:
    """A camera at `site_id` (a new site when None)."""
    site_id = site_id or site(services, actor)
    fields = {"site_id": site_id, "kind": "camera", "serial": f"SN-{next(_counter)}"}
    return services.devices.create(actor, fields | {"name": "test camera"}).id


def alarm(services: Services, actor: Actor, site_id: str) -> str:
    """A `new` burglary alarm at `site_id`."""
    from datetime import UTC, datetime

    from vigil.monitoring.alarm_models import AlarmType, NewAlarm

    new = NewAlarm(site_id, AlarmType.BURGLARY, datetime.now(UTC))
    return services.alarms.create(actor, new).id


def snapshot(services: Services, actor: Actor, device_id: str) -> str:
    """A tiny JPEG-typed snapshot taken by `device_id`."""
    return services.snapshots.create(
        actor, device_id, [b"\xff\xd8\xff test"], content_type="image/jpeg"
    ).id
