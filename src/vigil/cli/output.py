"""How the CLI speaks: JSON for scripts, tables for people, one line for errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from vigil.audit.actions import AuditAction
from vigil.auth.actor import Actor
from vigil.auth.principal import ActorType
from vigil.config import Settings, current_os_user, load_settings
from vigil.core.errors import VigilError
from vigil.services import Services

console = Console()
errors = Console(stderr=True)

JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON.")


@cache
def settings() -> Settings:
    return load_settings()


def operator() -> Actor:
    return Actor(type=ActorType.OPERATOR, id=f"cli:{current_os_user()}", via="cli")


def record_read(
    svc: Services, action: AuditAction, target_type: str, count: int, **filters: str | None
) -> None:
    """Reading the platform's tenants, apps or keys is an operator action too (S14): who looked
    at what is part of the trail, not only who changed it."""
    details: dict[str, object] = {"count": count}
    details |= {k: v for k, v in filters.items() if v is not None}
    svc.audit.write_now(
        operator().record(svc.clock.now(), action, target_type=target_type, details=details)
    )


def fail(message: str, code: int = 1) -> NoReturn:
    errors.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn every expected failure into one clear line and a non-zero exit, never a traceback."""
    try:
        yield
    except typer.Exit:
        raise
    except VigilError as exc:
        fail(exc.detail, 2 if exc.status in (400, 409, 422) else 1)
    except ValueError as exc:
        fail(str(exc), 2)
    except Exception as exc:  # last resort: say what failed, not where
        fail(f"{type(exc).__name__}: {exc}")


def emit(data: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        render(data)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str) -> None:
    t = Table(title=title)
    for col in columns:
        t.add_column(col)
    for row in rows:
        t.add_row(*[_cell(row.get(col)) for col in columns])
    console.print(t)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def split_csv(value: str | None) -> list[str]:
    if not value:
        return []
    return [v.strip() for v in value.split(",") if v.strip()]
