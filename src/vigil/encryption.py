"""Encryption at rest, composed from settings: the KMS, the keyring and the ciphers (S6-S8).

Built once per process by `Services.build`. `database()` opens the relational store: SQLite
through SQLCipher keyed from the KMS, PostgreSQL as it is (field encryption protects its
sensitive columns; see docs/security-model.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.engine import make_url

from vigil.audit.actions import AuditAction
from vigil.audit.log import AuditLog
from vigil.audit.sealing import PLATFORM_TENANT
from vigil.auth.actor import Actor
from vigil.auth.principal import ActorType
from vigil.config import Settings
from vigil.core.clock import Clock
from vigil.crypto import envelope
from vigil.crypto.binding import BindingScope
from vigil.crypto.datakey import DataKey
from vigil.crypto.errors import DataKeyExhausted, KeyUnavailable
from vigil.crypto.fields import FieldCipher
from vigil.crypto.keyring import Keyring
from vigil.crypto.keystore import Purpose
from vigil.crypto.kms import Kms, build_kms
from vigil.crypto.objects import ObjectCipher
from vigil.storage import sqlcipher
from vigil.storage.data_keys import SqlWrappedKeyStore
from vigil.storage.db import Database
from vigil.storage.objects.encrypted import EncryptedObjectStore
from vigil.storage.objects.local import LocalObjectStore
from vigil.storage.objects.port import ObjectStore
from vigil.storage.tables import dealers


def database(settings: Settings, kms: Kms) -> Database:
    url = settings.resolved_database_url
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return Database(url)
    path = Path(str(parsed.database))
    path.parent.mkdir(parents=True, exist_ok=True)
    key = sqlcipher.database_key(kms, settings.keys_dir)
    return Database(url, creator=sqlcipher.creator(path, key), module=sqlcipher.dbapi())


class AuditDetailsSealer:
    """`vigil.audit.sealing.Sealer` over the platform's audit data keys: tenant "platform",
    purpose `audit`, each value bound to its record id, so a sealed value moved to another
    record does not open.

    Audit records are written inside other transactions (a change and its record commit
    together), where obtaining a key must not write to the key store: on SQLite that write
    would wait for the very lock the transaction holds. So the sealer keeps a leased key that
    `ready()` loads and tops up *outside* transactions (at start-up, before every group-commit
    batch and on the writer's idle tick), and seals with it; only a lease spent between two
    `ready()` calls (a million messages apart) falls back to the keyring."""

    __slots__ = ("_cipher", "_keyring", "_lease", "_opening", "_scope")

    # Top the lease up when fewer messages than this are left: far more than the records that
    # can be written between two `ready()` calls.
    MARGIN = 2**18

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring
        self._cipher = FieldCipher(keyring, Purpose.AUDIT)
        self._scope = BindingScope(PLATFORM_TENANT, "platform", "audit_event")
        self._lease: DataKey | None = None
        # Key header -> data key, for opening: `vigil audit verify` opens every record's
        # details, and the keyring's locked, LRU-ordered lookup cost as much as the AES-GCM.
        self._opening: dict[bytes, DataKey] = {}

    def ready(self) -> None:
        lease = self._lease
        if lease is None or lease.destroyed or lease.budget_end - lease.uses < self.MARGIN:
            # The keyring's current generation (re-read once its cache entry expired, so
            # `vigil kms rotate` reaches running servers), topped up to the margin.
            key = self._keyring.encryption_key(PLATFORM_TENANT, Purpose.AUDIT)
            self._lease = self._keyring.replenish(key, headroom=self.MARGIN)

    def seal_details(self, items: Sequence[tuple[str, bytes]]) -> list[bytes]:
        bind = self._scope.bind
        lease = self._lease
        if lease is not None:
            try:
                return [
                    bytes(envelope.seal(lease, bind(rid, "details"), text)) for rid, text in items
                ]
            except DataKeyExhausted:
                pass
        sealed = self._cipher.seal_many(
            PLATFORM_TENANT, [(bind(rid, "details"), text) for rid, text in items]
        )
        return [bytes(s) for s in sealed]

    def open_details(self, record_id: str, sealed: bytes) -> bytes:
        key = self._opening.get(sealed[: envelope.HEADER_SIZE])
        if key is None or key.destroyed:  # first use, or the keyring's copy expired
            keyset_id, version = envelope.key_ref(sealed)
            key = self._keyring.decryption_key(PLATFORM_TENANT, Purpose.AUDIT, keyset_id, version)
            self._opening[key.header] = key
        return envelope.open_value(key, self._scope.bind(record_id, "details"), sealed)


@dataclass(frozen=True)
class Encryption:
    """What services seal with: `records` for tenant fields, `secrets` for credentials (webhook,
    OAuth client and TOTP secrets), `objects` for snapshot and clip content."""

    kms: Kms
    store: SqlWrappedKeyStore
    keyring: Keyring
    records: FieldCipher
    secrets: FieldCipher
    objects: ObjectCipher
    audit_details: AuditDetailsSealer

    @classmethod
    def build(
        cls, settings: Settings, kms: Kms, db: Database, audit: AuditLog, clock: Clock
    ) -> Encryption:
        store = SqlWrappedKeyStore(db)

        def kek_for(dealer_id: str) -> str:
            """The dealer's own KEK: an enterprise dealer's (`vigil kms provision`), else its
            platform-managed one, created on first use (S8: destroying it on `dealers delete`
            reaches every database backup). Not a dealer (a platform keyset): the platform KEK.
            Called when a data-key generation is made, never inside a write transaction."""
            query = select(dealers.c.kms_key_ref, dealers.c.deleted_at)
            with db.read() as conn:
                row = conn.execute(query.where(dealers.c.id == dealer_id)).first()
            if row is None:
                return kms.platform_key_ref
            if row.deleted_at is not None:
                # Crypto-shredded: a new key would quietly start a second life for the tenant.
                raise KeyUnavailable("This dealer was deleted; its keys are destroyed.")
            if row.kms_key_ref is not None:
                return str(row.kms_key_ref)
            return _create_dealer_key(db, audit, clock, kms, dealer_id)

        keyring = Keyring.from_settings(settings, kms, store, kek_for=kek_for)
        return cls(
            kms=kms,
            store=store,
            keyring=keyring,
            records=FieldCipher(keyring, Purpose.RECORDS),
            secrets=FieldCipher(keyring, Purpose.SECRETS),
            objects=ObjectCipher(keyring),
            audit_details=AuditDetailsSealer(keyring),
        )


KEY_CREATOR = Actor(type=ActorType.SYSTEM, id="keyring", via="server")


def _create_dealer_key(
    db: Database, audit: AuditLog, clock: Clock, kms: Kms, dealer_id: str
) -> str:
    """A standard dealer's platform-managed KEK, made in the KMS and recorded on the dealer
    (audited `kms_key.provisioned`, `managed: platform`). Two processes racing both get the
    KMS's one key (creation is idempotent) and the first recorded ref wins."""
    ref = kms.create_dealer_key(dealer_id)
    c = dealers.c
    with db.transaction() as conn:
        done = conn.execute(
            update(dealers)
            .where(c.id == dealer_id, c.kms_key_ref.is_(None), c.deleted_at.is_(None))
            .values(kms_key_ref=ref)
        ).rowcount
        if done:
            details = {"kms_key_ref": ref, "managed": "platform", "new": True}
            audit.write_in(
                conn,
                KEY_CREATOR.record(
                    clock.now(),
                    AuditAction.KMS_KEY_PROVISIONED,
                    target_type="dealer",
                    target_id=dealer_id,
                    dealer_id=dealer_id,
                    details=details,
                ),
            )
        row = conn.execute(select(c.kms_key_ref, c.deleted_at).where(c.id == dealer_id)).one()
    if row.deleted_at is not None:
        raise KeyUnavailable("This dealer was deleted; its keys are destroyed.")
    return str(row.kms_key_ref)


def start_kms(settings: Settings) -> Kms:
    """The configured KMS with its platform key in place (created by the local provider)."""
    kms = build_kms(settings)
    kms.ensure_platform_key()
    return kms


def object_store(settings: Settings, encryption: Encryption) -> EncryptedObjectStore:
    """The configured object store, wrapped so content is encrypted before it leaves (S6)."""
    inner: ObjectStore
    if settings.object_store == "s3":
        from vigil.storage.objects.s3 import S3ObjectStore

        secret = settings.s3_secret_access_key
        inner = S3ObjectStore.connect(
            settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret is not None else None,
        )
    else:
        inner = LocalObjectStore(settings.objects_dir)
    return EncryptedObjectStore(inner, encryption.objects)
