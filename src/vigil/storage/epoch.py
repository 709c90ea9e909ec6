"""Whole Unix seconds of a stored timestamp, computed by the database on SQLite and PostgreSQL.

Telemetry buckets and the presence sweep both need arithmetic on time inside SQL (group by
bucket, compare "last seen + window" with now), and the two databases spell it differently:
SQLite keeps `UtcDateTime` as ISO text and has `strftime('%s', ...)`; PostgreSQL has
`EXTRACT(EPOCH FROM ...)`. Both are floored to whole seconds here so they agree exactly, and
integer division of the result by a bucket width then groups identically on both.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class epoch_seconds(FunctionElement[int]):
    """`epoch_seconds(column)`: floor of the column's Unix time, as an integer."""

    type = BigInteger()
    inherit_cache = True
    name = "epoch_seconds"


@compiles(epoch_seconds, "sqlite")
def _sqlite(element: epoch_seconds, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = element.clauses
    # The stored text is 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC. Only its first 19 characters go to
    # strftime: SQLite rounds a fraction to milliseconds, so 12:00:59.9999 would become 12:01.
    return f"CAST(strftime('%s', substr({compiler.process(column, **kw)}, 1, 19)) AS INTEGER)"


@compiles(epoch_seconds, "postgresql")
def _postgresql(element: epoch_seconds, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = element.clauses
    return f"CAST(FLOOR(EXTRACT(EPOCH FROM {compiler.process(column, **kw)})) AS BIGINT)"
