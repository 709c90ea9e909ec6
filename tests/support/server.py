"""Run the real `vigil serve` in a subprocess, on loopback, with real TLS."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from vigil.config import Settings
from vigil.services import Services

if TYPE_CHECKING:
    from sqlalchemy import Engine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class VigilServer:
    """A `vigil serve` process with its own VIGIL_HOME; its output goes to `log_path`."""

    def __init__(self, home: Path, database_url: str, **settings: Any) -> None:
        self.home = home
        self.database_url = database_url
        self.https_port = free_port()
        self.http_port = free_port()
        self.log_path = home / "server.log"
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("VIGIL_") and k != "OPENSSL_CONF"
        }
        self.env.update(
            VIGIL_HOME=str(home),
            VIGIL_DATABASE_URL=database_url,
            VIGIL_HTTPS_PORT=str(self.https_port),
            VIGIL_HTTP_PORT=str(self.http_port),
            VIGIL_LOG_LEVEL="info",
        )
        for name, value in settings.items():
            if value not in (None, ""):
                self.env[f"VIGIL_{name.upper()}"] = str(value)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def ca_pem(self) -> Path:
        return self.home / "tls" / "ca.pem"

    @property
    def base_url(self) -> str:
        return f"https://localhost:{self.https_port}"

    @property
    def http_url(self) -> str:
        return f"http://localhost:{self.http_port}"

    def run_cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vigil", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def start(self, timeout: float = 30.0) -> VigilServer:
        self.home.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vigil", "serve"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vigil serve exited early:\n{self.log()}")
            if self.ca_pem.exists() and self._accepts_tls():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"vigil serve did not come up:\n{self.log()}")

    def _accepts_tls(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.https_port), timeout=1) as sock:
                ctx = ssl.create_default_context(cafile=str(self.ca_pem))
                with ctx.wrap_socket(sock, server_hostname="localhost"):
                    return True
        except (OSError, ssl.SSLError):
            return False

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_pem))

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(
            base_url=self.base_url, verify=self.ssl_context(), headers=headers, timeout=30, **kwargs
        )

    def services(self) -> Services:
        """In-process services on this server's own database and KMS (close them when done)."""
        return Services.build(
            Settings(
                home=self.home,
                database_url=self.database_url,
                database_owner_url=self.env.get("VIGIL_DATABASE_OWNER_URL") or None,
                **self.kms_settings(),
            )
        )

    def kms_settings(self) -> dict[str, Any]:
        """The server's `VIGIL_KMS*` settings (a Transit server, say), as Settings fields."""
        return {k[6:].lower(): v for k, v in self.env.items() if k.startswith("VIGIL_KMS")}

    def owner_engine(self) -> Engine:
        """A raw engine on this server's database, as its owner: PostgreSQL's owner role, or
        the SQLite file opened through SQLCipher with the key from this home's KMS."""
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        from vigil.encryption import database, start_kms

        owner = self.env.get("VIGIL_DATABASE_OWNER_URL")
        if owner:
            return create_engine(owner, poolclass=NullPool)
        settings = Settings(home=self.home, database_url=self.database_url)
        return database(settings, start_kms(settings)).engine

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
