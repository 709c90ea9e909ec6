"""One contract, three providers: local file KMS, a real OpenBao dev server, AWS KMS via moto.

moto is a simulator of AWS's API: passing here shows that our calls, parameters and error handling
match what AWS documents (and what moto implements), not that a real AWS account, its IAM policies
or key policies behave the same (docs/encryption.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.openbao import OpenBaoServer

from vigil.crypto.errors import KmsError
from vigil.crypto.kms.aws import AwsKms
from vigil.crypto.kms.local import LocalKms
from vigil.crypto.kms.port import Kms
from vigil.crypto.kms.transit import TransitKms

CONTEXT = {"vigil:dealer": "dlr_a", "vigil:purpose": "records", "vigil:version": "1"}


@pytest.fixture(scope="module")
def openbao() -> Iterator[OpenBaoServer]:
    with OpenBaoServer() as server:
        yield server


@pytest.fixture(scope="module")
def moto_kms() -> Iterator[object]:
    import boto3
    from moto import mock_aws

    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        with mock_aws():
            yield boto3.client("kms", region_name="us-east-1")


@pytest.fixture(params=["local", "transit", "aws"])
def kms(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kms]:
    provider: Kms
    if request.param == "local":
        provider = LocalKms(tmp_path / "keys")
    elif request.param == "transit":
        bao: OpenBaoServer = request.getfixturevalue("openbao")
        # A fresh platform key per test, so rotations in one test do not leak into another.
        provider = TransitKms(
            bao.url, bao.token, platform_key=f"vigil-platform-{os.urandom(4).hex()}"
        )
    else:
        client = request.getfixturevalue("moto_kms")
        key_id = client.create_key()["KeyMetadata"]["Arn"]  # type: ignore[attr-defined]
        provider = AwsKms(key_id, client=client)
    provider.ensure_platform_key()
    try:
        yield provider
    finally:
        provider.close()


def test_generated_key_unwraps_to_the_same_key(kms: Kms) -> None:
    generated = kms.generate_data_key(kms.platform_key_ref, CONTEXT)
    raw = generated.plaintext.reveal()
    assert len(raw) == 32
    assert raw not in generated.wrapped
    assert generated.kms_key_ref == kms.platform_key_ref
    assert kms.decrypt_data_key(kms.platform_key_ref, generated.wrapped, CONTEXT).equals(
        generated.plaintext
    )


def test_every_data_key_is_fresh(kms: Kms) -> None:
    one = kms.generate_data_key(kms.platform_key_ref, CONTEXT)
    two = kms.generate_data_key(kms.platform_key_ref, CONTEXT)
    assert not one.plaintext.equals(two.plaintext)
    assert one.wrapped != two.wrapped


@pytest.mark.parametrize(
    "other",
    [
        {**CONTEXT, "vigil:dealer": "dlr_b"},
        {**CONTEXT, "vigil:purpose": "objects"},
        {k: v for k, v in CONTEXT.items() if k != "vigil:version"},
    ],
    ids=["dealer", "purpose", "missing"],
)
def test_wrapped_key_does_not_unwrap_in_another_context(kms: Kms, other: dict[str, str]) -> None:
    generated = kms.generate_data_key(kms.platform_key_ref, CONTEXT)
    with pytest.raises(KmsError):
        kms.decrypt_data_key(kms.platform_key_ref, generated.wrapped, other)


def test_tampered_wrapped_key_fails(kms: Kms) -> None:
    wrapped = bytearray(kms.generate_data_key(kms.platform_key_ref, CONTEXT).wrapped)
    wrapped[-3] = (wrapped[-3] + 1) % 128 or 65  # stays ASCII for Transit's text form
    with pytest.raises(KmsError):
        kms.decrypt_data_key(kms.platform_key_ref, bytes(wrapped), CONTEXT)


def test_rotation_keeps_old_wraps_readable_and_rewrap_moves_them(kms: Kms) -> None:
    ref = kms.platform_key_ref
    old = kms.generate_data_key(ref, CONTEXT)
    kms.rotate(ref)
    assert kms.decrypt_data_key(ref, old.wrapped, CONTEXT).equals(old.plaintext)
    new = kms.generate_data_key(ref, CONTEXT)
    assert kms.decrypt_data_key(ref, new.wrapped, CONTEXT).equals(new.plaintext)
    rewrapped = kms.rewrap(ref, old.wrapped, CONTEXT)
    assert rewrapped != old.wrapped
    assert kms.decrypt_data_key(ref, rewrapped, CONTEXT).equals(old.plaintext)
    with pytest.raises(KmsError):
        kms.rewrap(ref, old.wrapped, {**CONTEXT, "vigil:dealer": "dlr_b"})


def test_enterprise_dealer_gets_its_own_key(kms: Kms) -> None:
    dealer = f"ent{os.urandom(3).hex()}"
    ref = kms.create_tenant_key(dealer)
    assert ref != kms.platform_key_ref
    assert kms.create_tenant_key(dealer) == ref  # idempotent
    other = kms.create_tenant_key(dealer + "x")
    assert other != ref

    generated = kms.generate_data_key(ref, CONTEXT)
    assert generated.kms_key_ref == ref
    assert kms.decrypt_data_key(ref, generated.wrapped, CONTEXT).equals(generated.plaintext)
    # Neither the platform key nor another enterprise dealer's key unwraps it.
    for wrong in (kms.platform_key_ref, other):
        with pytest.raises(KmsError):
            kms.decrypt_data_key(wrong, generated.wrapped, CONTEXT)
    platform_wrap = kms.generate_data_key(kms.platform_key_ref, CONTEXT).wrapped
    with pytest.raises(KmsError):
        kms.decrypt_data_key(ref, platform_wrap, CONTEXT)


def test_a_destroyed_dealer_key_unwraps_nothing_and_the_platform_key_cannot_be_destroyed(
    kms: Kms,
) -> None:
    ref = kms.create_tenant_key(f"gone{os.urandom(3).hex()}")
    generated = kms.generate_data_key(ref, CONTEXT)
    kms.destroy_tenant_key(ref)
    if kms.provider == "aws":
        # moto's Decrypt ignores a disabled key (real AWS answers DisabledException): check
        # what we asked AWS for instead.
        state = kms._client.describe_key(KeyId=ref)["KeyMetadata"]["KeyState"]  # type: ignore[attr-defined]
        assert state == "PendingDeletion"
    else:
        with pytest.raises(KmsError):
            kms.decrypt_data_key(ref, generated.wrapped, CONTEXT)
    with pytest.raises(KmsError):
        kms.destroy_tenant_key(kms.platform_key_ref)
    platform = kms.generate_data_key(kms.platform_key_ref, CONTEXT)
    assert kms.decrypt_data_key(kms.platform_key_ref, platform.wrapped, CONTEXT).equals(
        platform.plaintext
    )


def test_unknown_key_is_an_error(kms: Kms) -> None:
    with pytest.raises(KmsError):
        kms.generate_data_key("no-such-key-" + os.urandom(4).hex(), CONTEXT)


def test_key_material_stays_out_of_reprs(kms: Kms) -> None:
    generated = kms.generate_data_key(kms.platform_key_ref, CONTEXT)
    raw = generated.plaintext.reveal()
    for text in (repr(generated), repr(kms), str(generated.plaintext)):
        assert raw.hex() not in text
        assert repr(raw)[2:-1] not in text
    assert repr(generated.wrapped) not in repr(generated)


def test_a_standard_dealer_gets_a_platform_managed_key_of_its_own(kms: Kms) -> None:
    dealer = f"std{os.urandom(3).hex()}"
    ref = kms.create_dealer_key(dealer)
    assert kms.create_dealer_key(dealer) == ref  # idempotent
    assert ref not in (kms.platform_key_ref, kms.create_tenant_key(dealer))
    assert ref == kms.dealer_key_ref(dealer) or ref.endswith(_aws_key_id(kms, dealer))
    other = kms.create_dealer_key(dealer + "x")
    generated = kms.generate_data_key(ref, CONTEXT)
    assert kms.decrypt_data_key(ref, generated.wrapped, CONTEXT).equals(generated.plaintext)
    for wrong in (kms.platform_key_ref, other):
        with pytest.raises(KmsError):
            kms.decrypt_data_key(wrong, generated.wrapped, CONTEXT)

    kms.destroy_tenant_key(kms.dealer_key_ref(dealer))  # crypto-shredding
    kms.destroy_tenant_key(kms.dealer_key_ref(dealer))  # again: nothing left, not an error
    kms.destroy_tenant_key(kms.dealer_key_ref(f"never{os.urandom(3).hex()}"))
    if kms.provider == "aws":  # moto's Decrypt ignores a disabled key (see above)
        state = kms._client.describe_key(KeyId=ref)["KeyMetadata"]["KeyState"]  # type: ignore[attr-defined]
        assert state == "PendingDeletion"
    else:
        with pytest.raises(KmsError):
            kms.decrypt_data_key(ref, generated.wrapped, CONTEXT)
    survivor = kms.generate_data_key(other, CONTEXT)
    assert kms.decrypt_data_key(other, survivor.wrapped, CONTEXT).equals(survivor.plaintext)


def test_a_wrapped_key_moves_from_the_platform_key_to_a_dealer_key(kms: Kms) -> None:
    """How existing dealers' data keys reach their own KEK (`vigil kms rewrap`)."""
    ref = kms.create_dealer_key(f"mov{os.urandom(3).hex()}")
    old = kms.generate_data_key(kms.platform_key_ref, CONTEXT)
    moved = kms.move(kms.platform_key_ref, old.wrapped, CONTEXT, ref)
    assert kms.decrypt_data_key(ref, moved, CONTEXT).equals(old.plaintext)
    with pytest.raises(KmsError):
        kms.decrypt_data_key(kms.platform_key_ref, moved, CONTEXT)
    with pytest.raises(KmsError):  # still bound to its context
        kms.move(kms.platform_key_ref, old.wrapped, {**CONTEXT, "vigil:dealer": "dlr_b"}, ref)


def _aws_key_id(kms: Kms, dealer: str) -> str:
    """AWS answers with the key's ARN, which ends in its id; the alias names the same key."""
    if kms.provider != "aws":
        return "\0"
    meta = kms._client.describe_key(KeyId=kms.dealer_key_ref(dealer))["KeyMetadata"]  # type: ignore[attr-defined]
    return str(meta["KeyId"])


def _customer_key(kms: Kms, *, derived: bool = True) -> str:
    """A key the customer made in its own KMS, outside Vigil (BYOK); local has none."""
    if kms.provider == "transit":
        name = f"acme-{os.urandom(4).hex()}"
        kms._post(f"keys/{name}", {"type": "aes256-gcm96", "derived": derived})  # type: ignore[attr-defined]
        return name
    if kms.provider == "aws":
        meta = kms._client.create_key(Description="acme")["KeyMetadata"]  # type: ignore[attr-defined]
        return str(meta["Arn"])
    return "platform"


def test_a_customer_key_is_accepted_only_when_it_is_usable_and_not_vigils(kms: Kms) -> None:
    """BYOK (`vigil kms provision --key`): the provider names the key as wraps will, and refuses
    what is malformed, missing or one of Vigil's own keys, before any data key is made."""
    theirs = _customer_key(kms)
    vigils = [kms.platform_key_ref, kms.create_tenant_key(f"own{os.urandom(3).hex()}")]
    vigils.append(kms.create_dealer_key(f"std{os.urandom(3).hex()}"))
    if kms.provider == "local":  # every key in the master key file is Vigil's: refused
        for ref in [theirs, "dealer-x", "anything"]:
            with pytest.raises(KmsError, match="transit or VIGIL_KMS=aws"):
                kms.customer_key_ref(ref)
        return
    ref = kms.customer_key_ref(theirs)
    assert ref == theirs  # Transit: the name; AWS: the key's ARN (never an alias)
    generated = kms.generate_data_key(ref, CONTEXT)
    assert kms.decrypt_data_key(ref, generated.wrapped, CONTEXT).equals(generated.plaintext)
    for bad in ["", "no/such key", "x" * 300, "no-such-key-" + os.urandom(4).hex(), *vigils]:
        with pytest.raises(KmsError):
            kms.customer_key_ref(bad)
    if kms.provider == "aws":  # an alias names the key it points to: wraps name the ARN
        alias = f"alias/acme-{os.urandom(3).hex()}"
        kms._client.create_alias(AliasName=alias, TargetKeyId=ref)  # type: ignore[attr-defined]
        assert kms.customer_key_ref(alias) == ref
        kms._client.disable_key(KeyId=ref.rsplit("/", 1)[1])  # type: ignore[attr-defined]
        with pytest.raises(KmsError, match="Disabled"):
            kms.customer_key_ref(alias)
    else:  # without derived=true, Transit ignores the context: no per-dealer binding
        with pytest.raises(KmsError, match="derived=true"):
            kms.customer_key_ref(_customer_key(kms, derived=False))
