"""The service layer, assembled from settings: what every front (API, CLI, portal) calls."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from vigil.audit.log import AuditLog
from vigil.audit.sealing import Details
from vigil.audit.signing import AuditSigner
from vigil.auth.apikeys.service import ApiKeyService
from vigil.auth.apikeys.verifier import ApiKeyVerifier
from vigil.auth.assertions import AssertionVerifier
from vigil.auth.credentials import CredentialVerifier
from vigil.auth.oauth.clients import ClientService
from vigil.auth.oauth.context import OAuthContext
from vigil.auth.oauth.csrf import CsrfTokens
from vigil.auth.oauth.server import OAuthServer
from vigil.auth.oauth.verifier import AccessTokenVerifier
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
from vigil.tenancy.operators import OperatorAccounts
from vigil.tenancy.partners import PartnerService
from vigil.tenancy.tenant_keys import TenantKeyService
from vigil.tenancy.users import UserService
from vigil.webhooks.service import Webhooks


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
    users: UserService
    partners: PartnerService
    oauth_clients: ClientService
    oauth: OAuthServer
    credentials: CredentialVerifier
    webhooks: Webhooks
    encryption: Encryption
    tenant_keys: TenantKeyService
    operators: OperatorAccounts

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
        encryption = Encryption.build(settings, kms, db, audit, clock)
        # Encryption records the keys it makes in this log, and the log seals details with
        # encryption's platform audit key: wired in this order, outside any transaction.
        audit.seal_details(Details(encryption.audit_details))
        objects = object_store(settings, encryption)
        key_verifier = ApiKeyVerifier(db, clock)
        users = UserService(db, audit, clock)
        oauth = _oauth(settings, db, audit, clock, apps, users)
        return cls(
            settings=settings,
            clock=clock,
            db=db,
            audit=audit,
            dealers=DealerService(db, audit, clock),
            apps=apps,
            keys=ApiKeyService(db, audit, clock, apps, settings.key_grace_default),
            key_verifier=key_verifier,
            sites=SiteService(db, audit, clock, encryption.records),
            idempotency=IdempotencyStore(db, encryption.records),
            snapshots=SnapshotService(
                db, audit, clock, objects, settings.snapshot_max_bytes, encryption.records
            ),
            alarms=AlarmService(db, audit, clock, encryption.records),
            devices=DeviceService(db, audit, clock, encryption.records),
            telemetry=TelemetryService(db, audit, clock, encryption.records),
            presence=PresenceService(db, audit, clock, encryption.records),
            users=users,
            partners=oauth.ctx.partners,
            oauth_clients=oauth.ctx.clients,
            oauth=oauth,
            credentials=CredentialVerifier(
                key_verifier.verify, AccessTokenVerifier(db, clock).verify
            ),
            webhooks=Webhooks.build(
                settings, db, audit, clock, encryption.secrets, encryption.records
            ),
            encryption=encryption,
            tenant_keys=TenantKeyService(db, audit, clock, encryption, settings.keys_dir),
            operators=OperatorAccounts(db, audit, clock, users, encryption.secrets),
        )

    def close(self) -> None:
        self.oauth.close()
        self.audit.close()
        self.db.dispose()
        self.encryption.keyring.clear()
        self.encryption.kms.close()


def _oauth(
    settings: Settings,
    db: Database,
    audit: AuditLog,
    clock: Clock,
    apps: AppService,
    users: UserService,
) -> OAuthServer:
    assertions = AssertionVerifier(db)
    ctx = OAuthContext(
        db=db,
        audit=audit,
        clock=clock,
        clients=ClientService(db, audit, clock, apps, assertions, settings.issuer),
        users=users,
        partners=PartnerService(db, audit, clock),
        assertions=assertions,
        issuer=settings.issuer,
        access_ttl=timedelta(seconds=settings.oauth_access_token_seconds),
        assertion_ttl=timedelta(seconds=settings.oauth_assertion_token_seconds),
        refresh_ttl=timedelta(days=settings.oauth_refresh_token_days),
    )
    return OAuthServer(ctx, CsrfTokens(db))
