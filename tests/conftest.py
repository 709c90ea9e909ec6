"""Suite-wide fixtures: the database under test (SQLite or PostgreSQL), in-process services
sharing it, and a real `vigil serve` on loopback over real TLS."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.server import VigilServer

from vigil.config import Settings
from vigil.services import Services

DATABASE = os.environ.get("VIGIL_TEST_DATABASE", "sqlite")


def pytest_report_header() -> str:
    return f"vigil database under test: {DATABASE}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[object]:
    from tests.support.postgres import PostgresCluster

    cluster = PostgresCluster()
    try:
        yield cluster
    finally:
        cluster.stop()


class DatabaseFactory:
    """Fresh, empty databases of the kind under test."""

    def __init__(self, request: pytest.FixtureRequest, tmp: pytest.TempPathFactory) -> None:
        self._request, self._tmp, self._n = request, tmp, 0

    def __call__(self, home: Path) -> str:
        self._n += 1
        if DATABASE == "postgres":
            cluster = self._request.getfixturevalue("postgres")
            return str(cluster.create_database(f"vigil_{os.getpid()}_{self._n}"))  # type: ignore[attr-defined]
        return f"sqlite:///{home / 'vigil.db'}"


@pytest.fixture(scope="session")
def new_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> DatabaseFactory:
    return DatabaseFactory(request, tmp_path_factory)


@pytest.fixture(scope="session")
def server_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vigil-home")


@pytest.fixture(scope="session")
def server(server_home: Path, new_database: DatabaseFactory) -> Iterator[VigilServer]:
    """The shared server. Trusts 127.0.0.1 as a proxy so tests can set X-Forwarded-For."""
    srv = VigilServer(
        server_home,
        new_database(server_home),
        trusted_proxies="127.0.0.1/32",
        rate_limit_per_second=10000,
        rate_limit_burst=10000,
        auth_failure_burst=10000,
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def services(server: VigilServer) -> Iterator[Services]:
    """In-process services on the server's own database: the factories' way in."""
    svc = Services.build(Settings(home=server.home, database_url=server.database_url))
    try:
        yield svc
    finally:
        svc.close()
