"""The throwaway PostgreSQL cluster used by the postgres test run really works."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa
from tests.support.postgres import PostgresCluster, PostgresClusterError, find_pg_bindir


def _require_postgres_binaries() -> None:
    try:
        find_pg_bindir()
    except PostgresClusterError as exc:
        if os.environ.get("CI"):
            raise  # CI installs them via scripts/install-system-packages.sh
        pytest.skip(str(exc))


def test_cluster_lifecycle() -> None:
    _require_postgres_binaries()

    with PostgresCluster() as pg:
        assert pg.superuser == "postgres"
        assert 0 < pg.port < 65536
        base_dir = pg.base_dir
        assert (pg.data_dir / "PG_VERSION").is_file()

        url = pg.create_database("vigil_cluster_check")
        assert url == f"postgresql+psycopg://postgres@127.0.0.1:{pg.port}/vigil_cluster_check"
        assert pg.url("x", user="app") == f"postgresql+psycopg://app@127.0.0.1:{pg.port}/x"

        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                assert conn.execute(sa.text("SHOW fsync")).scalar_one() == "on"
                assert conn.execute(sa.text("SHOW synchronous_commit")).scalar_one() == "on"
                assert conn.execute(sa.text("SHOW listen_addresses")).scalar_one() == "127.0.0.1"
                assert conn.execute(sa.text("SHOW server_encoding")).scalar_one() == "UTF8"
                assert conn.execute(sa.text("SELECT current_user")).scalar_one() == "postgres"
                conn.execute(sa.text("CREATE TABLE probe (id integer PRIMARY KEY, note text)"))
                conn.execute(
                    sa.text("INSERT INTO probe (id, note) VALUES (:id, :note)"),
                    {"id": 1, "note": "héllo"},
                )
            with engine.connect() as conn:
                row = conn.execute(sa.text("SELECT id, note FROM probe")).one()
                assert tuple(row) == (1, "héllo")
                version = conn.execute(sa.text("SHOW server_version_num")).scalar_one()
                assert int(version) >= 150000
        finally:
            engine.dispose()

    assert not base_dir.exists()
    pg.stop()  # idempotent


def test_stop_without_context_manager() -> None:
    _require_postgres_binaries()

    pg = PostgresCluster()
    base_dir = pg.base_dir
    assert base_dir.is_dir()
    pg.stop()
    assert not base_dir.exists()
