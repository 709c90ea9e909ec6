"""The service layer, assembled from settings: what every front (API, CLI, portal) calls."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from vigil.audit.log import AuditLog
from vigil.audit.signing import AuditSigner
from vigil.auth.apikeys.service import ApiKeyService
from vigil.auth.apikeys.verifier import ApiKeyVerifier
from vigil.config import Settings
from vigil.core.clock import Clock, SystemClock
from vigil.encryption import Encryption, database, object_store, start_kms
from vigil.monitoring.alarms import AlarmService
from vigil.monitoring.devices import DeviceService
from vigil.monitoring.presence import PresenceService
from vigil.monitoring.sites import SiteService
from vigil.monitoring.snapshots import SnapshotService
from vigil.monitoring.telemetry import TelemetryService
from vigil.storage.db import Database
from vigil.storage.idempotency import IdempotencyStore
from vigil.tenancy.apps import AppService
from vigil.tenancy.dealers import DealerService
from vigil.tenancy.tenant_keys import TenantKeyService


@dataclass
class Services:
    settings: Settings
    clock: Clock
    db: Database
    audit: AuditLog
    dealers: DealerService
    apps: AppService
    keys: ApiKeyService
    key_verifier: ApiKeyVerifier
    sites: SiteService
    idempotency: IdempotencyStore
    snapshots: SnapshotService
    alarms: AlarmService
    devices: DeviceService
    telemetry: TelemetryService
    presence: PresenceService
    encryption: Encryption
    tenant_keys: TenantKeyService

    @classmethod
    def build(
        cls, settings: Settings, clock: Clock | None = None, *, migrate: bool = True
    ) -> Services:
        clock = clock or SystemClock()
        kms = start_kms(settings)
        db = database(settings, kms)
        if migrate:
            db.migrate(
                owner_url=settings.database_owner_url,
                platform_retention_days=settings.audit_retention_days,
            )
        signer = AuditSigner(
            settings.keys_dir / "audit", clock, timedelta(days=settings.audit_signing_key_days)
        )
        audit = AuditLog(
            db,
            signer,
            clock,
            checkpoint_every=settings.audit_checkpoint_every,
            checkpoint_seconds=settings.audit_checkpoint_seconds,
        )
        apps = AppService(db, audit, clock)
        encryption = Encryption.build(settings, kms, db)
        objects = object_store(settings, encryption)
        return cls(
            settings=settings,
            clock=clock,
            db=db,
            audit=audit,
            dealers=DealerService(db, audit, clock),
            apps=apps,
            keys=ApiKeyService(db, audit, clock, apps, settings.key_grace_default),
            key_verifier=ApiKeyVerifier(db, clock),
            sites=SiteService(db, audit, clock),
            idempotency=IdempotencyStore(db),
            snapshots=SnapshotService(db, audit, clock, objects, settings.snapshot_max_bytes),
            alarms=AlarmService(db, audit, clock, encryption.records),
            devices=DeviceService(db, audit, clock),
            telemetry=TelemetryService(db, audit, clock, encryption.records),
            presence=PresenceService(db, audit, clock),
            encryption=encryption,
            tenant_keys=TenantKeyService(db, audit, clock, encryption, settings.keys_dir),
        )

    def close(self) -> None:
        self.audit.close()
        self.db.dispose()
        self.encryption.keyring.clear()
        self.encryption.kms.close()
