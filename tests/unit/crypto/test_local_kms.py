"""The local KMS's master key file: permissions, passphrase sealing, versions across processes."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from vigil.config import Settings
from vigil.crypto.errors import KmsError
from vigil.crypto.kms import build_kms
from vigil.crypto.kms.keyfile import FILE_NAME
from vigil.crypto.kms.local import LocalKms

CONTEXT = {"vigil:dealer": "dlr_a"}
FAST_SCRYPT = 2**12  # tests only: production uses 2^17 (128 MiB), see keyfile.py


def test_master_key_file_is_private(tmp_path: Path) -> None:
    kms = LocalKms(tmp_path / "keys")
    kms.ensure_platform_key()
    path = tmp_path / "keys" / FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700


def test_readable_master_key_file_is_refused(tmp_path: Path) -> None:
    LocalKms(tmp_path / "keys").ensure_platform_key()
    (tmp_path / "keys" / FILE_NAME).chmod(0o644)
    with pytest.raises(KmsError, match="chmod 600"):
        LocalKms(tmp_path / "keys").ensure_platform_key()


def test_passphrase_seals_the_key_file(tmp_path: Path) -> None:
    sealed = LocalKms(tmp_path / "keys", "correct horse", scrypt_n=FAST_SCRYPT)
    sealed.ensure_platform_key()
    generated = sealed.generate_data_key("platform", CONTEXT)
    document = json.loads((tmp_path / "keys" / FILE_NAME).read_text())
    assert document["kdf"]["name"] == "scrypt"
    assert document["kdf"]["n"] == FAST_SCRYPT

    reopened = LocalKms(tmp_path / "keys", "correct horse")
    assert reopened.decrypt_data_key("platform", generated.wrapped, CONTEXT).equals(
        generated.plaintext
    )
    with pytest.raises(KmsError, match="Wrong VIGIL_KMS_PASSPHRASE"):
        LocalKms(tmp_path / "keys", "wrong").decrypt_data_key(
            "platform", generated.wrapped, CONTEXT
        )
    with pytest.raises(KmsError, match="not set"):
        LocalKms(tmp_path / "keys").decrypt_data_key("platform", generated.wrapped, CONTEXT)


def test_unsealed_file_refuses_a_passphrase(tmp_path: Path) -> None:
    LocalKms(tmp_path / "keys").ensure_platform_key()
    with pytest.raises(KmsError, match="not sealed"):
        LocalKms(tmp_path / "keys", "pass", scrypt_n=FAST_SCRYPT).ensure_platform_key()


def test_rotation_by_another_process_is_picked_up(tmp_path: Path) -> None:
    server = LocalKms(tmp_path / "keys")
    server.ensure_platform_key()
    cli = LocalKms(tmp_path / "keys")  # e.g. `vigil kms rotate` in another process
    cli.rotate("platform")
    rotated = cli.generate_data_key("platform", CONTEXT)
    # The server never loaded version 2; it re-reads the file when a wrap names it.
    assert server.decrypt_data_key("platform", rotated.wrapped, CONTEXT).equals(rotated.plaintext)
    document = json.loads((tmp_path / "keys" / FILE_NAME).read_text())
    assert sorted(document["keys"]["platform"]) == ["1", "2"]


def test_build_kms_picks_the_configured_provider(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kms="local")
    kms = build_kms(settings)
    assert kms.provider == "local"
    kms.ensure_platform_key()
    assert (tmp_path / "keys" / FILE_NAME).exists()
    assert not any(p.suffix == ".db" for p in (tmp_path / "keys").iterdir())


def test_transit_settings_refuse_plain_http_off_loopback(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        kms="transit",
        kms_transit_url="http://bao.example:8200",
        kms_transit_token="t",  # type: ignore[arg-type]
    )
    with pytest.raises(KmsError, match="loopback"):
        build_kms(settings)
    secret = Settings(home=tmp_path, kms_passphrase="hunter2")  # type: ignore[arg-type]
    assert "hunter2" not in repr(secret)


def test_settings_read_kms_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_KMS", "AWS")
    monkeypatch.setenv("VIGIL_KMS_AWS_KEY_ID", "alias/vigil-platform")
    settings = Settings()
    assert (settings.kms, settings.kms_aws_key_id) == ("aws", "alias/vigil-platform")
