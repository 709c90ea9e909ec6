"""Building the services for one CLI command."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from vigil.cli.output import settings
from vigil.services import Services


@contextmanager
def open_services() -> Iterator[Services]:
    svc = Services.build(settings())
    try:
        yield svc
    finally:
        svc.close()
