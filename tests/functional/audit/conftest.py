from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import DatabaseFactory
from tests.support.audit_world import AuditWorld


@pytest.fixture
def world(tmp_path: Path, new_database: DatabaseFactory) -> Iterator[AuditWorld]:
    url = new_database(tmp_path)
    w = AuditWorld(tmp_path, url, new_database.owner_url(url))
    yield w
    w.close()
