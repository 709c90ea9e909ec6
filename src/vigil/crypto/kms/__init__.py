"""KMS providers behind one port (`port.Kms`), chosen by `VIGIL_KMS` (S7)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vigil.crypto.errors import KmsError
from vigil.crypto.kms.port import EncryptionContext, GeneratedDataKey, Kms

if TYPE_CHECKING:
    from vigil.config import Settings

__all__ = ["EncryptionContext", "GeneratedDataKey", "Kms", "build_kms"]


def build_kms(settings: Settings) -> Kms:
    """The provider the settings name. Imports lazily: `aws` needs boto3, which only AWS
    deployments install."""
    passphrase = settings.kms_passphrase
    if settings.kms == "local":
        from vigil.crypto.kms.local import LocalKms

        return LocalKms(
            settings.keys_dir, passphrase.get_secret_value() if passphrase is not None else None
        )
    if settings.kms == "transit":
        from vigil.crypto.kms.transit import TransitKms

        token = settings.kms_transit_token
        if token is None:
            raise KmsError("VIGIL_KMS=transit needs VIGIL_KMS_TRANSIT_TOKEN.")
        return TransitKms(
            settings.kms_transit_url,
            token.get_secret_value(),
            mount=settings.kms_transit_mount,
            platform_key=settings.kms_transit_key,
            ca_bundle=settings.kms_transit_ca,
            namespace=settings.kms_transit_namespace,
        )
    from vigil.crypto.kms.aws import AwsKms

    if not settings.kms_aws_key_id:
        raise KmsError("VIGIL_KMS=aws needs VIGIL_KMS_AWS_KEY_ID.")
    return AwsKms(
        settings.kms_aws_key_id,
        region=settings.kms_aws_region,
        endpoint_url=settings.kms_aws_endpoint_url,
    )
