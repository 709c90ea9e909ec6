"""Suite-wide fixtures: the database under test (SQLite or PostgreSQL), in-process services
sharing it, and a real `vigil serve` on loopback over real TLS."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.server import VigilServer

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


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[object]:
    """A real SeaweedFS S3 server on loopback, for the S3 object store tests."""
    from tests.support.seaweedfs import SeaweedFS

    weed = SeaweedFS()
    try:
        yield weed
    finally:
        weed.stop()


APP_ROLE = "vigil_app"


class DatabaseFactory:
    """Fresh, empty databases of the kind under test.

    On PostgreSQL the application connects as `vigil_app`, a role without UPDATE, DELETE or
    TRUNCATE on audit tables; `owner_url` is the superuser that runs migrations.
    """

    def __init__(self, request: pytest.FixtureRequest, tmp: pytest.TempPathFactory) -> None:
        self._request, self._tmp, self._n = request, tmp, 0
        self.owner_urls: dict[str, str] = {}

    def __call__(self, home: Path) -> str:
        self._n += 1
        if DATABASE == "postgres":
            cluster = self._request.getfixturevalue("postgres")
            owner = str(cluster.create_database(f"vigil_{os.getpid()}_{self._n}"))  # type: ignore[attr-defined]
            app = owner.replace("://postgres@", f"://{APP_ROLE}@", 1)
            self.owner_urls[app] = owner
            return app
        return f"sqlite:///{home / 'vigil.db'}"

    def owner_url(self, app_url: str) -> str | None:
        return self.owner_urls.get(app_url)

    def server(self, home: Path, **settings: object) -> VigilServer:
        """A (not yet started) server on a fresh database of the kind under test."""
        url = self(home)
        return VigilServer(home, url, database_owner_url=self.owner_url(url), **settings)


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
    url = new_database(server_home)
    srv = VigilServer(
        server_home,
        url,
        database_owner_url=new_database.owner_url(url) or "",
        trusted_proxies="127.0.0.1/32",
        rate_limit_per_second=10000,
        rate_limit_burst=10000,
        auth_failure_burst=10000,
        # Deliveries are driven by the webhook tests' own workers; one here would change rows
        # under the matrix tests' before/after snapshots.
        webhook_worker="false",
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def services(server: VigilServer) -> Iterator[Services]:
    """In-process services on the server's own database: the factories' way in."""
    svc = server.services()
    try:
        yield svc
    finally:
        svc.close()
