"""`vigil webhooks …` (platform administrator) and `vigil worker`."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import typer

from vigil.cli.context import open_services
from vigil.cli.output import JsonOption, emit, friendly_errors, operator, settings, table

app = typer.Typer(help="Webhook administration: internal-CA requests.", no_args_is_help=True)


@app.command("ca-requests")
def ca_requests(
    status: str | None = typer.Option(None, "--status", help="pending or approved."),
    as_json: bool = JsonOption,
) -> None:
    """List internal-CA requests from every dealer."""
    with friendly_errors(), open_services() as svc:
        rows = [r.as_json() for r in svc.webhooks.endpoints.ca_requests(status)]
        emit(
            rows,
            as_json,
            lambda r: table(r, ["id", "endpoint_id", "status", "fingerprints", "reason"], "CAs"),
        )


@app.command("request-ca")
def request_ca(
    endpoint: str = typer.Option(..., "--endpoint", help="Endpoint id."),
    ca_file: Path = typer.Option(..., "--ca-file", help="PEM file of the CA certificate(s)."),
    reason: str | None = typer.Option(None, "--reason", help="Why this CA is needed."),
    as_json: bool = JsonOption,
) -> None:
    """File an internal-CA request for one endpoint, on its dealer's behalf."""
    with friendly_errors(), open_services() as svc:
        bundle = ca_file.read_text()
        request = svc.webhooks.endpoints.request_ca(operator(), endpoint, bundle, reason)
        emit(request.as_json(), as_json, lambda r: typer.echo(f"Filed CA request {r['id']}"))


@app.command("approve-ca")
def approve_ca(
    request_id: str = typer.Argument(..., help="The CA request id (whca_…)."),
    as_json: bool = JsonOption,
) -> None:
    """Trust a requested CA for its one endpoint (audited)."""
    with friendly_errors(), open_services() as svc:
        request = svc.webhooks.endpoints.approve_ca(operator(), request_id)
        emit(
            request.as_json(),
            as_json,
            lambda r: typer.echo(f"Approved {r['id']}: trusted for endpoint {r['endpoint_id']}"),
        )


def worker() -> None:
    """Run the webhook delivery worker on its own (several may run against PostgreSQL)."""
    logging.basicConfig(
        level=settings().log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with friendly_errors(), open_services() as svc:
        asyncio.run(_run(svc.webhooks.worker()))


async def _run(delivery: object) -> None:
    from vigil.webhooks.worker import DeliveryWorker

    assert isinstance(delivery, DeliveryWorker)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await delivery.run(stop)
