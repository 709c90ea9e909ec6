"""`vigil serve` and `vigil init`."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any

import typer

from vigil.cli.output import JsonOption, console, emit, friendly_errors, operator, settings
from vigil.config import openssl_conf_in_effect


def _openssl_conf_path() -> str:
    from vigil.edge.tls import write_openssl_conf

    return str(write_openssl_conf(settings().home / "openssl.cnf").resolve())


def serve() -> None:
    """Run the HTTPS API and the plain-HTTP guard."""
    with friendly_errors():
        settings().home.mkdir(parents=True, exist_ok=True)
        wanted = _openssl_conf_path()
        if openssl_conf_in_effect() != wanted:
            # OpenSSL reads its configuration once, at start-up; restart with the one that
            # limits key-exchange groups to X25519/P-256/P-384 (S1).
            env = dict(os.environ, OPENSSL_CONF=wanted)
            os.execve(sys.executable, [sys.executable, "-m", "vigil", "serve"], env)  # noqa: S606
    from vigil.server import certificate_paths
    from vigil.server import serve as run
    from vigil.services import Services

    logging.basicConfig(
        level=settings().log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with friendly_errors():
        services = Services.build(settings())
        certificate_paths(settings())
        s = settings()
        console.print(
            f"Vigil listening on https://{s.public_host}:{s.https_port} "
            f"(plain HTTP on :{s.http_port} only redirects or refuses)"
        )
    # The event loop uvicorn itself picks by default (`loop="auto"`): uvloop when installed,
    # which it is with uvicorn[standard]. `asyncio.run` would give the pure-Python loop, whose
    # TLS and socket transports cost several times more CPU per request than uvloop's.
    from uvicorn.loops.auto import auto_loop_factory

    with asyncio.Runner(loop_factory=auto_loop_factory()) as runner:
        runner.run(run(settings(), services))


def init(
    demo: bool = typer.Option(True, "--demo/--no-demo", help="Create the demo sandbox dealer."),
    as_json: bool = JsonOption,
) -> None:
    """Prepare VIGIL_HOME: TLS certificate, database schema, and a demo sandbox dealer (once)."""
    from vigil.cli.demo import ensure_demo

    with friendly_errors():
        data: dict[str, Any] = ensure_demo(settings(), operator(), with_demo=demo)
        emit(data, as_json, _render_init)


def _render_init(data: dict[str, Any]) -> None:
    if data["tls_created"]:
        console.print(f"Created a local CA and server certificate in {data['tls_dir']}")
        console.print(
            f"  Trust it with: curl --cacert {data['ca_pem']} …  "
            "(or add it to your system/browser trust store)"
        )
    demo = data.get("demo")
    if demo:
        console.print("[bold]Demo sandbox dealer (shown once):[/bold]")
        console.print(f"  dealer  {demo['dealer_id']}")
        console.print(f"  app     {demo['app_id']}")
        console.print(f"  key     {demo['key']}", soft_wrap=True, highlight=False)
    console.print(f"API:      {data['https_url']}/v1/me")
    console.print(f"Docs:     {data['https_url']}/docs")
