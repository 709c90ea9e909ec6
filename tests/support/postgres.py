"""Throwaway PostgreSQL clusters for the test suite.

``PostgresCluster()`` runs ``initdb`` into a fresh temporary directory and starts
a private server with ``pg_ctl -w``:

* binaries: the newest ``/usr/lib/postgresql/<version>/bin`` (Debian layout);
* when the tests run as root, the cluster is created and run as the OS user
  ``postgres`` (PostgreSQL refuses to run as root);
* it listens on 127.0.0.1 only, on a free port; the unix socket lives inside
  the temporary directory; ``trust`` auth for local/loopback connections only;
* ``fsync=on`` and ``synchronous_commit=on`` (durability tests rely on them);
* the database superuser is always ``postgres``.

Usage::

    with PostgresCluster() as pg:
        url = pg.create_database("vigil_test")  # postgresql+psycopg://...
        ...

``stop()`` (also called by ``__exit__`` and, as a safety net, at interpreter
exit) stops the server with ``pg_ctl stop -m fast`` and removes the directory.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

import psycopg
from psycopg import sql

__all__ = ["PostgresCluster", "PostgresClusterError", "find_pg_bindir"]

PG_LIB_ROOT = Path("/usr/lib/postgresql")
OS_USER = "postgres"
SUPERUSER = "postgres"

_INITDB_TIMEOUT_S = 180
_START_TIMEOUT_S = 60
_START_ATTEMPTS = 3  # a "free" port can be grabbed by someone else before we bind it

# Environment for every PostgreSQL binary we run: a locale that exists on a
# bare Debian (C.UTF-8 is built into glibc) and no PG* variables from the
# caller that could point the tools at some other server.
_LOCALE = "C.UTF-8"


class PostgresClusterError(RuntimeError):
    """The throwaway cluster could not be created, started or stopped."""


def find_pg_bindir(root: Path = PG_LIB_ROOT) -> Path:
    """Return the newest ``<root>/<version>/bin`` that has ``initdb`` and ``pg_ctl``."""

    def version_key(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))

    candidates = [
        bindir
        for bindir in root.glob("*/bin")
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file()
    ]
    if not candidates:
        raise PostgresClusterError(
            f"no PostgreSQL server binaries (initdb, pg_ctl) under {root}/*/bin; "
            "run scripts/install-system-packages.sh"
        )
    return max(candidates, key=version_key)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _subprocess_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update(LC_ALL=_LOCALE, LANG=_LOCALE, LANGUAGE="")
    return env


class PostgresCluster:
    """A private PostgreSQL server in a temporary directory (started on construction)."""

    superuser: str = SUPERUSER

    def __init__(self) -> None:
        self.bindir = find_pg_bindir()
        self._run_as_postgres = os.geteuid() == 0
        self._stopped = False
        self.base_dir = Path(tempfile.mkdtemp(prefix="vigil-pg-"))
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "socket"
        self.log_file = self.base_dir / "postgres.log"
        self.port = 0
        try:
            self._prepare_dirs()
            self._initdb()
            self._start()
        except BaseException:
            self._shutdown_and_remove()
            raise
        atexit.register(self.stop)

    # ------------------------------------------------------------------ public

    def url(self, database: str, user: str = SUPERUSER) -> str:
        """SQLAlchemy URL (psycopg 3 driver) for ``database`` as ``user`` over TCP."""
        return (
            f"postgresql+psycopg://{quote(user, safe='')}@127.0.0.1:{self.port}/"
            f"{quote(database, safe='')}"
        )

    def create_database(self, name: str) -> str:
        """``CREATE DATABASE name`` (owned by the superuser); returns its :meth:`url`."""
        with psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=self.superuser,
            dbname="postgres",
            autocommit=True,
            connect_timeout=10,
        ) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m fast``) and delete its directory. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        self._shutdown_and_remove()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running"
        return f"<PostgresCluster {state} port={self.port} dir={self.base_dir}>"

    # ----------------------------------------------------------------- helpers

    def _prepare_dirs(self) -> None:
        self.socket_dir.mkdir()
        if self._run_as_postgres:
            try:
                entry = pwd.getpwnam(OS_USER)
            except KeyError:
                raise PostgresClusterError(
                    f"running as root but there is no OS user {OS_USER!r}; "
                    "install the postgresql package (scripts/install-system-packages.sh)"
                ) from None
            for path in (self.base_dir, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(
        self, argv: Sequence[str], *, timeout: float, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = list(argv)
        if self._run_as_postgres:
            command = ["runuser", "-u", OS_USER, "--", *command]
        try:
            result = subprocess.run(
                command,
                cwd=self.base_dir,  # the postgres user may not be able to enter our cwd
                env=_subprocess_env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise PostgresClusterError(f"timed out after {timeout}s: {command}") from exc
        if check and result.returncode != 0:
            raise PostgresClusterError(
                f"{command} exited with {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def _initdb(self) -> None:
        self._run(
            [
                str(self.bindir / "initdb"),
                "--pgdata",
                str(self.data_dir),
                "--username",
                self.superuser,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                _LOCALE,
                # initdb's own final fsync of the new files only matters if the
                # machine crashes mid-test; the *server* runs with fsync=on.
                "--no-sync",
                "--no-instructions",
            ],
            timeout=_INITDB_TIMEOUT_S,
        )
        # Existing files keep their owner (postgres) when rewritten/appended by root.
        (self.data_dir / "pg_hba.conf").write_text(
            "# Written by tests/support/postgres.py: trust, loopback/unix socket only.\n"
            "local all all trust\n"
            "host  all all 127.0.0.1/32 trust\n"
        )
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# --- tests/support/postgres.py ---\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "fsync = on\n"
                "synchronous_commit = on\n"
                "full_page_writes = on\n"
                "logging_collector = off\n"
            )

    def _pg_ctl(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return self._run(
            [str(self.bindir / "pg_ctl"), "--pgdata", str(self.data_dir), *args],
            timeout=_START_TIMEOUT_S + 30,
            check=check,
        )

    def _start(self) -> None:
        failures: list[str] = []
        for _ in range(_START_ATTEMPTS):
            port = _free_port()
            result = self._pg_ctl(
                "start",
                "-w",
                "-t",
                str(_START_TIMEOUT_S),
                "-l",
                str(self.log_file),
                "-o",
                f"-p {port}",
            )
            if result.returncode == 0:
                self.port = port
                return
            log = ""
            with contextlib.suppress(OSError):
                log = self.log_file.read_text(errors="replace")
            failures.append(
                f"port {port}: pg_ctl exited with {result.returncode}\n"
                f"{result.stdout}{result.stderr}\n--- server log ---\n{log}"
            )
            if "could not bind" not in log and "already in use" not in log:
                break  # not a port race: retrying will not help
        raise PostgresClusterError("PostgreSQL did not start:\n" + "\n".join(failures))

    def _shutdown_and_remove(self) -> None:
        try:
            if (self.data_dir / "postmaster.pid").exists():
                timeout = str(_START_TIMEOUT_S)
                if self._pg_ctl("stop", "-m", "fast", "-w", "-t", timeout).returncode != 0:
                    self._pg_ctl("stop", "-m", "immediate", "-w", "-t", timeout)
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)
