"""Optimistic concurrency: every mutable resource carries a version, exposed as its ETag.

Two operators acting on the same alarm at once both send `If-Match` with the version they saw;
the conditional update lets exactly one win and the other gets 412 instead of silently
overwriting (RFC 9110 section 13.1.1, the "lost update" problem).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection, RowMapping, Table, update

from vigil.core.errors import InvalidInput, PreconditionFailed
from vigil.monitoring.scoping import TenantScope

_ETAG = re.compile(r'^(?:W/)?"v(\d{1,18})"$')


def etag(version: int) -> str:
    return f'"v{version}"'


def parse_if_match(value: str | None) -> int | None:
    """The version an `If-Match` header names; None when absent or `*` (any version)."""
    if value is None or value.strip() == "*":
        return None
    match = _ETAG.match(value.strip())
    if match is None:
        raise InvalidInput('If-Match must be an ETag this API returned, such as "v3".')
    return int(match.group(1))


def update_versioned(
    conn: Connection,
    scope: TenantScope,
    table: Table,
    row: RowMapping,
    expected: int | None,
    values: dict[str, Any],
) -> int:
    """Apply `values` only if `row` is still at the version read (and at `expected`, when the
    caller sent If-Match). Returns the new version."""
    current = int(row["version"])
    if expected is not None and expected != current:
        raise PreconditionFailed(
            f"The resource is at version {current}, not {expected}; read it again.",
            current_etag=etag(current),
        )
    result = conn.execute(
        update(table)
        .where(scope.where(table), table.c.id == row["id"], table.c.version == current)
        .values(**values, version=current + 1)
    )
    if result.rowcount != 1:
        raise PreconditionFailed("The resource changed while this request ran; read it again.")
    return current + 1
