from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import DatabaseFactory
from tests.support.hooks_world import HooksWorld


@pytest.fixture(scope="module")
def hooks(
    tmp_path_factory: pytest.TempPathFactory, new_database: DatabaseFactory
) -> Iterator[HooksWorld]:
    home: Path = tmp_path_factory.mktemp("hooks")
    url = new_database(home)
    world = HooksWorld(home, url, new_database.owner_url(url))
    yield world
    world.close()
