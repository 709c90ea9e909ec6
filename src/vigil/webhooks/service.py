"""The webhooks service as the composition root builds it: endpoints, messages, and the worker
factory, all from one `Settings`."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from vigil.audit.log import AuditLog
from vigil.config import Settings
from vigil.core.clock import Clock
from vigil.crypto.fields import FieldCipher
from vigil.storage.db import Database
from vigil.webhooks.endpoints import EndpointService
from vigil.webhooks.messages import MessageService
from vigil.webhooks.resolver import Resolver, StaticHosts
from vigil.webhooks.ssrf import AddressPolicy
from vigil.webhooks.transport import Transport
from vigil.webhooks.worker import DeliveryWorker


@dataclass
class Webhooks:
    endpoints: EndpointService
    messages: MessageService
    policy: AddressPolicy
    resolver: Resolver
    settings: Settings
    db: Database
    audit: AuditLog
    clock: Clock
    secrets: FieldCipher
    records: FieldCipher

    @classmethod
    def build(
        cls,
        settings: Settings,
        db: Database,
        audit: AuditLog,
        clock: Clock,
        secrets: FieldCipher,
        records: FieldCipher,
        resolver: Resolver | None = None,
    ) -> Webhooks:
        policy = AddressPolicy.of(settings.webhook_allowed_networks)
        resolver = resolver or StaticHosts(settings.webhook_static_hosts)
        return cls(
            endpoints=EndpointService(db, audit, clock, policy, resolver, secrets),
            messages=MessageService(db, audit, clock, records),
            policy=policy,
            resolver=resolver,
            settings=settings,
            db=db,
            audit=audit,
            clock=clock,
            secrets=secrets,
            records=records,
        )

    def worker(
        self, clock: Clock | None = None, rand: random.Random | None = None
    ) -> DeliveryWorker:
        s = self.settings
        transport = Transport(
            self.resolver,
            self.policy,
            s.webhook_trust_store,
            timeout=s.webhook_timeout_seconds,
            limit=s.webhook_concurrency,
        )
        return DeliveryWorker(
            self.db,
            self.audit,
            clock or self.clock,
            transport,
            self.secrets,
            self.records,
            concurrency=s.webhook_concurrency,
            lease=timedelta(seconds=s.webhook_lease_seconds),
            rand=rand,
        )
