"""The one place that reads the environment.

Every setting is a `VIGIL_*` variable (or a `.env`-free default); other modules receive a
`Settings` object so tests can build one explicitly and nothing hides a second source of truth.
"""

from __future__ import annotations

import ipaddress
import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Deployment settings. Defaults are the embedded, one-machine setup `make run` uses."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_", extra="ignore", frozen=True)

    home: Path = Path("./var")
    database_url: str | None = None
    # PostgreSQL: migrations run as this owner role; the app connects with `database_url`
    # as a lesser role that cannot update or delete audit records (S16).
    database_owner_url: str | None = None

    bind: str = "127.0.0.1"
    https_port: int = Field(default=8443, ge=0, le=65535)
    http_port: int = Field(default=8080, ge=0, le=65535)
    public_host: str = "localhost"
    # The portal on a host name of its own (`portal.example.com`): its pages then answer only
    # requests for that host (any other host gets 404 for /portal/…); unset, every host.
    portal_host: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]{1,253}$")
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # A request's line and headers must arrive within this many seconds of the connection (or
    # of the previous response): a client trickling a head keeps no connection open for long
    # (slowloris). nginx allows 60 s, Apache's mod_reqtimeout 20 s.
    request_head_timeout_seconds: float = Field(default=20.0, gt=0, le=300)

    trusted_proxies: Annotated[list[IpNetwork], NoDecode] = Field(default_factory=list)

    rate_limit_per_second: float = Field(default=50.0, gt=0)
    rate_limit_burst: int = Field(default=100, ge=1)
    # Failed authentications per client address: a burst, then this many per second.
    auth_failure_burst: int = Field(default=20, ge=1)
    auth_failure_per_second: float = Field(default=0.5, gt=0)

    key_grace_default_hours: float = Field(default=24.0, ge=0, le=168)

    # OAuth (S10, S11). Access tokens are capped at 24 h whatever is configured; assertion-derived
    # tokens at 1 h; a refresh family ends at its absolute lifetime however often it rotates.
    # The issuer identifier defaults to the HTTPS origin (RFC 8414 section 2).
    oauth_issuer: str | None = None
    oauth_access_token_seconds: int = Field(default=3600, ge=60, le=86400)
    oauth_assertion_token_seconds: int = Field(default=3600, ge=60, le=3600)
    oauth_refresh_token_days: int = Field(default=30, ge=1, le=90)
    # How often `vigil serve` deletes expired tokens, spent codes and expired jti entries.
    oauth_purge_seconds: float = Field(default=3600.0, gt=0, le=86400)

    # Platform-level audit records (no dealer); dealers' own retention is set per dealer (S17).
    audit_retention_days: int = Field(default=365, ge=365, le=2557)
    audit_checkpoint_every: int = Field(default=1000, ge=1, le=1000)
    audit_checkpoint_seconds: float = Field(default=60.0, gt=0, le=60)
    audit_signing_key_days: int = Field(default=30, ge=1, le=365)

    # Largest snapshot or clip accepted in one upload (413 beyond it); clips run long.
    snapshot_max_bytes: int = Field(default=2 * 1024**3, ge=1, le=64 * 1024**3)
    # How often the server looks for devices past their heartbeat window (monitoring/presence.py):
    # the worst-case delay of a `device.offline` event beyond the window itself.
    presence_sweep_seconds: float = Field(default=15.0, gt=0, le=3600)
    # Webhooks (issue 7). Private, loopback and metadata networks are refused unless listed here.
    webhook_allowed_networks: Annotated[list[IpNetwork], NoDecode] = Field(default_factory=list)
    # `name=address` pairs answered before DNS, like curl's --resolve (the answer is still vetted).
    webhook_static_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # The trust store receivers are verified against; None = certifi's Mozilla bundle.
    webhook_trust_store: Path | None = None
    webhook_timeout_seconds: float = Field(default=15.0, gt=0, le=60)
    # How long a claimed message stays with its worker; must outlast the request timeout. A
    # worker that dies leaves its messages to be claimed again once the lease ends.
    webhook_lease_seconds: float = Field(default=60.0, ge=1, le=3600)
    webhook_concurrency: int = Field(default=64, ge=1, le=1024)
    # `vigil serve` runs the delivery worker in-process unless this is off (`vigil worker` then).
    webhook_worker: bool = True

    security_contact: str = "mailto:security@vigil.example"
    security_policy_url: str = "https://vigil.example/security-policy"
    security_languages: str = "en"

    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # Key management (S7): which KMS wraps the data keys. docs/encryption.md has the details.
    kms: Literal["local", "transit", "aws"] = "local"
    # local: seals the master key file in $VIGIL_HOME/keys/ (scrypt); unset = file mode 0600 only.
    kms_passphrase: SecretStr | None = None
    # transit: OpenBao/Vault. Plain http:// is accepted for loopback addresses only.
    kms_transit_url: str = "http://127.0.0.1:8200"
    kms_transit_token: SecretStr | None = None
    kms_transit_mount: str = "transit"
    kms_transit_key: str = "vigil-platform"
    kms_transit_ca: Path | None = None
    kms_transit_namespace: str | None = None
    # aws: the platform key (id, ARN or alias/...); region and endpoint default to boto3's.
    kms_aws_key_id: str | None = None
    kms_aws_region: str | None = None
    kms_aws_endpoint_url: str | None = None
    # Unwrapped data keys kept in memory: how long, and for how many (tenant, purpose) keys.
    key_cache_ttl_seconds: float = Field(default=300.0, gt=0, le=86400)
    key_cache_size: int = Field(default=1024, ge=1)

    # Where snapshot and clip bytes go (always STREAM-encrypted first): `local` is
    # $VIGIL_HOME/objects, `s3` a bucket on any S3 API (AWS, SeaweedFS, MinIO...).
    object_store: Literal["local", "s3"] = "local"
    s3_bucket: str = "vigil"
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    # Unset: boto3's usual chain (environment, profile, instance role).
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None

    @field_validator("kms", mode="before")
    @classmethod
    def _lower_kms(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator(
        "trusted_proxies", "webhook_allowed_networks", "webhook_static_hosts", mode="before"
    )
    @classmethod
    def _parse_proxies(cls, value: object) -> object:
        return _split_csv(value)

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("VIGIL_TLS_CERT and VIGIL_TLS_KEY must be set together")
        return self

    @model_validator(mode="after")
    def _lease_outlasts_timeout(self) -> Settings:
        if self.webhook_lease_seconds <= self.webhook_timeout_seconds:
            raise ValueError(
                "VIGIL_WEBHOOK_LEASE_SECONDS must exceed VIGIL_WEBHOOK_TIMEOUT_SECONDS"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'vigil.db').resolve()}"

    @property
    def tls_dir(self) -> Path:
        return self.home / "tls"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def objects_dir(self) -> Path:
        return self.home / "objects"

    @property
    def key_grace_default(self) -> timedelta:
        return timedelta(hours=self.key_grace_default_hours)

    @property
    def issuer(self) -> str:
        return (self.oauth_issuer or self.https_origin).rstrip("/")

    @property
    def https_origin(self) -> str:
        port = "" if self.https_port == 443 else f":{self.https_port}"
        return f"https://{self.public_host}{port}"


def load_settings() -> Settings:
    """Settings from the process environment (the only reader of `VIGIL_*`)."""
    return Settings()


def openssl_conf_in_effect() -> str | None:
    """Which OpenSSL configuration this process was started with.

    The server needs OpenSSL itself to restrict key-exchange groups (Python 3.11's `ssl` has no
    `set_groups`), and OpenSSL reads `OPENSSL_CONF` only at start-up, so `vigil serve` re-executes
    itself with it set. This is the one other environment read, kept here on purpose.
    """
    return os.environ.get("OPENSSL_CONF")


def current_os_user() -> str:
    """The local account running an operator command; the CLI's audit actor."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"
