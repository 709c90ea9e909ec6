"""`vigil serve`: the HTTPS listener, the plain-HTTP guard listener, one process, one event loop.

Both listeners share the services (and so the audit writer). SIGHUP reloads the certificate
into the live TLS context: new handshakes get the new certificate, open connections carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from vigil.app import create_api, create_http_guard
from vigil.audit.actions import AuditAction
from vigil.auth.actor import Actor
from vigil.auth.principal import ActorType
from vigil.config import Settings, current_os_user
from vigil.edge.certificates import ensure_local_tls
from vigil.edge.request_head import bounded_head_protocol
from vigil.edge.tls import ReloadableCertificate
from vigil.services import Services

log = logging.getLogger("vigil.server")


@dataclass(frozen=True)
class CertificatePaths:
    cert: Path
    key: Path


def certificate_paths(settings: Settings) -> CertificatePaths:
    """The configured certificate, or the local one `vigil init` creates."""
    if settings.tls_cert and settings.tls_key:
        return CertificatePaths(settings.tls_cert, settings.tls_key)
    files, _ = ensure_local_tls(settings.tls_dir)
    return CertificatePaths(files.cert_pem, files.key_pem)


class _QuietSignals(uvicorn.Server):
    """A uvicorn server whose shutdown `serve` drives (see `on_stop`), not its own handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve(settings: Settings, services: Services) -> None:
    paths = certificate_paths(settings)
    reloader = ReloadableCertificate(paths.cert, paths.key)
    context = reloader.context

    def tls_factory(_config: uvicorn.Config, _default: object) -> ssl.SSLContext:
        return context

    level = settings.log_level
    protocol = bounded_head_protocol(settings.request_head_timeout_seconds)
    https = _QuietSignals(
        uvicorn.Config(
            create_api(services),
            host=settings.bind,
            port=settings.https_port,
            ssl_context_factory=tls_factory,
            http=protocol,
            log_level=level,
            server_header=False,
            proxy_headers=False,
            access_log=False,
            lifespan="off",
        )
    )
    http = _QuietSignals(
        uvicorn.Config(
            create_http_guard(services),
            host=settings.bind,
            port=settings.http_port,
            http=protocol,
            log_level=level,
            server_header=False,
            proxy_headers=False,
            access_log=False,
            lifespan="off",
        )
    )
    loop = asyncio.get_running_loop()

    def on_sighup() -> None:
        try:
            fingerprint = reloader.reload()
            result, details = "success", {"fingerprint": fingerprint}
            log.warning("TLS certificate reloaded from %s", paths.cert)
        except Exception as exc:  # keep serving the old certificate
            result, details = "failure", {"error": type(exc).__name__}
            log.exception("TLS certificate reload failed, still serving the old one")
        actor = Actor(type=ActorType.OPERATOR, id=f"signal:{current_os_user()}", via="signal")
        record = actor.record(
            services.clock.now(),
            AuditAction.TLS_RELOADED,
            target_type="certificate",
            target_id=str(paths.cert),
            result=result,
            details=details,
        )
        services.audit.write_now(record)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)

    def on_stop() -> None:
        # Handled here rather than by uvicorn, which re-raises SIGTERM after serving and so
        # would kill the process before the audit log drains and signs its final checkpoint.
        https.should_exit = True
        http.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_stop)
    http_task = asyncio.create_task(http.serve())
    purge_task = asyncio.create_task(purge_daily(services))
    stop_sweeping = asyncio.Event()
    sweep_task = asyncio.create_task(
        sweep_presence(services, settings.presence_sweep_seconds, stop_sweeping)
    )
    oauth_purge_task = asyncio.create_task(
        purge_oauth(services, settings.oauth_purge_seconds, stop_sweeping)
    )
    stop_worker = asyncio.Event()
    worker_task = (
        asyncio.create_task(services.webhooks.worker().run(stop_worker))
        if settings.webhook_worker
        else None
    )
    try:
        await https.serve()
    finally:
        purge_task.cancel()
        stop_sweeping.set()
        await sweep_task  # lets a sweep in flight finish before the database is closed
        await oauth_purge_task
        http.should_exit = True
        await http_task
        stop_worker.set()
        if worker_task is not None:
            await (
                worker_task
            )  # in-flight deliveries finish and are recorded before the audit closes
        services.close()


PURGE_EVERY = 24 * 3600.0


async def purge_daily(services: Services) -> None:
    """Retention (S17) runs inside the server: once shortly after start, then daily."""
    from vigil.audit.retention import purge

    await asyncio.sleep(60)
    while True:
        try:
            await asyncio.to_thread(
                purge, services.db, services.audit, services.clock, "retention-job", "server"
            )
        except Exception:  # retried tomorrow; a failed purge never loses a record
            log.exception("audit retention purge failed")
        await asyncio.sleep(PURGE_EVERY)


async def purge_oauth(services: Services, every: float, stop: asyncio.Event) -> None:
    """Delete expired OAuth tokens, spent codes and expired `jti` entries every `every`
    seconds until `stop` (vigil.auth.oauth.purge says what is kept and why)."""
    actor = Actor(type=ActorType.SYSTEM, id="oauth-purge", via="server")
    # One transaction per round: a failed one changed nothing, and the next retries.
    await repeat(lambda: services.oauth.purge(actor), every, stop, "oauth purge")


async def sweep_presence(services: Services, every: float, stop: asyncio.Event) -> None:
    """Take devices past their heartbeat window offline, every `every` seconds until `stop`.

    Safe with several server processes on one database: each transition is a conditional
    update, so only one sweeper announces a given device going offline. A failed sweep
    half-announced nothing; the next one retries.
    """
    await repeat(services.presence.mark_overdue, every, stop, "presence sweep")


async def repeat(job: Callable[[], object], every: float, stop: asyncio.Event, what: str) -> None:
    """Run `job` in a worker thread every `every` seconds until `stop` is set; a failure is
    logged and the next round runs as usual."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        if stop.is_set():
            return
        try:
            await asyncio.to_thread(job)
        except Exception:
            log.exception("%s failed", what)
