"""`VIGIL_KMS=aws`: AWS KMS through boto3.

`GenerateDataKey` (AES_256) returns the data key in the clear and wrapped under a KMS key that
never leaves AWS; `Decrypt` unwraps; `ReEncrypt` moves a wrapped key to the newest key material
without exposing it to Vigil; `RotateKeyOnDemand` rotates the key material (AWS keeps old
material, so old wraps still decrypt). The encryption context (dealer, purpose, keyset,
generation) is AWS's `EncryptionContext`: wraps do not decrypt under another context, and the
context is logged in CloudTrail, which gives per-tenant KMS audit for free.

Every dealer gets a customer managed key of its own (`CreateKey` with an alias): an enterprise
dealer `alias/vigil-dealer-<id>` when provisioned, a standard dealer `alias/vigil-standard-<id>`
on first use (each key is billed by AWS). Crypto-shredding disables the key and schedules its
deletion. An enterprise may instead bring a key of its own (BYOK, `customer_key_ref`):
any enabled symmetric customer managed key Vigil's role may describe and use; Vigil never
rotates, disables or schedules the deletion of it. The platform key is configured
(`VIGIL_KMS_AWS_KEY_ID`) and must exist.
Decrypt always names the expected `KeyId`, so a wrapped key made under another key is refused
even if the caller's IAM role could use both.

Tested with moto, a simulator: see docs/encryption.md for what that does and does not prove.
"""

from __future__ import annotations

import re
from typing import Any

from vigil.crypto.errors import KmsError
from vigil.crypto.kms.port import EncryptionContext, GeneratedDataKey, check_dealer_id
from vigil.crypto.material import SecretKey

_KEY_REF = re.compile(
    r"^(?:(?:arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:)?alias/[A-Za-z0-9/_-]{1,250}"
    r"|arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/(?:mrk-)?[0-9a-fA-F-]{32,36}"
    r"|(?:mrk-)?[0-9a-fA-F-]{32,36})$"
)
_VIGIL_ALIAS = re.compile(r"(?:^|:)alias/vigil-(?:dealer|standard)-")  # the aliases Vigil makes


class AwsKms:
    """AWS KMS provider. boto3 clients are thread-safe."""

    provider = "aws"

    def __init__(
        self,
        platform_key_id: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        client: Any = None,
    ) -> None:
        if client is None:
            import boto3  # optional dependency: only deployments on AWS KMS need it

            client = boto3.client("kms", region_name=region, endpoint_url=endpoint_url)
        self._client = client
        self.platform_key_ref = platform_key_id

    def __repr__(self) -> str:
        return f"<AwsKms platform={self.platform_key_ref}>"

    # ---------------------------------------------------------------- key admin

    def ensure_platform_key(self) -> None:
        meta = self._call("DescribeKey", KeyId=self.platform_key_ref)["KeyMetadata"]
        if not meta.get("Enabled") or meta.get("KeySpec") not in (None, "SYMMETRIC_DEFAULT"):
            raise KmsError("VIGIL_KMS_AWS_KEY_ID must be an enabled symmetric KMS key.")

    def destroy_tenant_key(self, key_ref: str) -> None:
        meta = self._describe(key_ref)
        if meta is None or meta.get("KeyState") == "PendingDeletion":
            return  # never created, or already scheduled for deletion
        key_id = meta["KeyId"]
        platform = self._call("DescribeKey", KeyId=self.platform_key_ref)["KeyMetadata"]["KeyId"]
        if key_id == platform:
            raise KmsError("Only a dealer's own key can be destroyed.")
        # Disabled at once (nothing unwraps from now on), deleted after AWS's shortest window.
        self._call("DisableKey", KeyId=key_id)
        self._call("ScheduleKeyDeletion", KeyId=key_id, PendingWindowInDays=7)

    def dealer_key_ref(self, dealer_id: str) -> str:
        return f"alias/vigil-standard-{check_dealer_id(dealer_id)}"

    def create_dealer_key(self, dealer_id: str) -> str:
        return self._aliased(
            self.dealer_key_ref(dealer_id), f"Vigil standard dealer {dealer_id}", dealer_id
        )

    def create_tenant_key(self, dealer_id: str) -> str:
        alias = self.tenant_key_ref(dealer_id)
        return self._aliased(alias, f"Vigil enterprise dealer {dealer_id}", dealer_id)

    def tenant_key_ref(self, dealer_id: str) -> str:
        return f"alias/vigil-dealer-{check_dealer_id(dealer_id)}"

    def customer_key_ref(self, key_ref: str) -> str:
        """The key's ARN: wraps name the key itself, not an alias the customer may later point
        elsewhere (which would leave every existing wrap naming the wrong key)."""
        if not _KEY_REF.fullmatch(key_ref):
            raise KmsError("not an AWS KMS key id, key ARN, alias name or alias ARN")
        if _VIGIL_ALIAS.search(key_ref):
            raise KmsError("that alias belongs to one of Vigil's own keys")
        meta = self._call("DescribeKey", KeyId=key_ref)["KeyMetadata"]
        if meta.get("KeyState") != "Enabled":
            raise KmsError(f"the key is {meta.get('KeyState')!s:.30}, not Enabled")
        if (
            meta.get("KeySpec", "SYMMETRIC_DEFAULT") != "SYMMETRIC_DEFAULT"
            or meta.get("KeyUsage", "ENCRYPT_DECRYPT") != "ENCRYPT_DECRYPT"
        ):
            raise KmsError("the key must be a symmetric ENCRYPT_DECRYPT key")
        if meta.get("KeyManager") == "AWS":
            raise KmsError("an AWS managed key serves one AWS service only")
        platform = self._call("DescribeKey", KeyId=self.platform_key_ref)["KeyMetadata"]
        aliases = self._call("ListAliases", KeyId=meta["KeyId"]).get("Aliases", [])
        if meta["KeyId"] == platform["KeyId"] or any(
            _VIGIL_ALIAS.search(str(a.get("AliasName", ""))) for a in aliases
        ):
            raise KmsError("that is one of Vigil's own keys")
        return str(meta["Arn"])

    def _describe(self, key_ref: str) -> dict[str, Any] | None:
        try:
            meta: dict[str, Any] = self._client.describe_key(KeyId=key_ref)["KeyMetadata"]
        except self._client.exceptions.NotFoundException:
            return None
        except Exception as exc:  # botocore errors: keep their class name, never their payload
            raise KmsError(f"AWS KMS DescribeKey failed: {type(exc).__name__}.") from None
        return meta

    def _aliased(self, alias: str, description: str, dealer_id: str) -> str:
        """The key behind `alias`, created (with the alias) if missing."""
        existing = self._describe(alias)
        if existing is not None:
            return str(existing["Arn"])
        meta = self._call(
            "CreateKey",
            Description=description,
            KeyUsage="ENCRYPT_DECRYPT",
            KeySpec="SYMMETRIC_DEFAULT",
            Tags=[{"TagKey": "vigil:dealer", "TagValue": dealer_id}],
        )["KeyMetadata"]
        try:
            self._client.create_alias(AliasName=alias, TargetKeyId=meta["KeyId"])
        except self._client.exceptions.AlreadyExistsException:
            # Another process provisioned this dealer at the same moment: use its key, and
            # schedule ours for deletion (the shortest window AWS allows) rather than leak it.
            self._call("ScheduleKeyDeletion", KeyId=meta["KeyId"], PendingWindowInDays=7)
            return str(self._call("DescribeKey", KeyId=alias)["KeyMetadata"]["Arn"])
        except Exception as exc:
            raise KmsError(f"AWS KMS CreateAlias failed: {type(exc).__name__}.") from None
        return str(meta["Arn"])

    def rotate(self, key_ref: str) -> None:
        self._call("RotateKeyOnDemand", KeyId=key_ref)

    # ------------------------------------------------------------ data keys

    def generate_data_key(self, key_ref: str, context: EncryptionContext) -> GeneratedDataKey:
        out = self._call(
            "GenerateDataKey", KeyId=key_ref, KeySpec="AES_256", EncryptionContext=dict(context)
        )
        return GeneratedDataKey(SecretKey(out["Plaintext"]), bytes(out["CiphertextBlob"]), key_ref)

    def decrypt_data_key(
        self, key_ref: str, wrapped: bytes, context: EncryptionContext
    ) -> SecretKey:
        out = self._call(
            "Decrypt", CiphertextBlob=wrapped, KeyId=key_ref, EncryptionContext=dict(context)
        )
        return SecretKey(out["Plaintext"])

    def rewrap(self, key_ref: str, wrapped: bytes, context: EncryptionContext) -> bytes:
        return self.move(key_ref, wrapped, context, key_ref)

    def move(
        self, source_ref: str, wrapped: bytes, context: EncryptionContext, target_ref: str
    ) -> bytes:
        out = self._call(
            "ReEncrypt",
            CiphertextBlob=wrapped,
            SourceKeyId=source_ref,
            SourceEncryptionContext=dict(context),
            DestinationKeyId=target_ref,
            DestinationEncryptionContext=dict(context),
        )
        return bytes(out["CiphertextBlob"])

    def close(self) -> None:
        close = getattr(self._client, "close", None)
        if close is not None:
            close()

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        method = getattr(self._client, _snake(operation))
        try:
            result: dict[str, Any] = method(**params)
        except Exception as exc:
            # botocore's ClientError carries the error code, which is safe and useful
            # (AccessDeniedException, InvalidCiphertextException); parameters are never echoed.
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            raise KmsError(f"AWS KMS {operation} failed: {code}.") from None
        return result


def _snake(operation: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")
