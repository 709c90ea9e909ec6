"""The embedded database is SQLCipher, keyed from the KMS; an old plaintext one is encrypted in
place; the key file is the only way in."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from vigil.config import Settings
from vigil.crypto.errors import KmsError
from vigil.encryption import database, start_kms
from vigil.storage import sqlcipher


def _settings(home: Path) -> Settings:
    return Settings(home=home, database_url=f"sqlite:///{home / 'vigil.db'}")


def test_a_plaintext_database_is_encrypted_in_place_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "vigil.db"
    plain = sqlite3.connect(path)
    plain.execute("CREATE TABLE notes (body TEXT)")
    plain.execute("INSERT INTO notes VALUES ('PLAINMARKER-42')")
    plain.commit()
    plain.close()
    settings = _settings(tmp_path)
    db = database(settings, start_kms(settings))
    with db.read() as conn:
        rows = conn.execute(text("SELECT body FROM notes")).scalars().all()
    db.dispose()
    assert rows == ["PLAINMARKER-42"]
    assert path.read_bytes()[:16] != b"SQLite format 3\x00"
    assert b"PLAINMARKER-42" not in path.read_bytes()
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(path).execute("SELECT * FROM notes").fetchall()


def test_the_key_file_is_private_and_wrapped_and_rewraps_after_rotation(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    kms = start_kms(settings)
    first = sqlcipher.database_key(kms, settings.keys_dir)
    key_file = settings.keys_dir / sqlcipher.KEY_FILE
    before = key_file.read_text()
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert first.reveal().hex() not in before
    kms.rotate(kms.platform_key_ref)
    assert sqlcipher.rewrap_database_key(kms, settings.keys_dir)
    assert key_file.read_text() != before
    assert sqlcipher.database_key(kms, settings.keys_dir).equals(first)


def test_without_the_kms_that_wrapped_it_the_database_key_does_not_unwrap(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    sqlcipher.database_key(start_kms(settings), settings.keys_dir)
    other = _settings(tmp_path / "elsewhere")
    (tmp_path / "elsewhere" / "keys").mkdir(parents=True)
    (tmp_path / "elsewhere" / "keys" / sqlcipher.KEY_FILE).write_bytes(
        (settings.keys_dir / sqlcipher.KEY_FILE).read_bytes()
    )
    with pytest.raises(KmsError):
        sqlcipher.database_key(start_kms(other), other.keys_dir)
