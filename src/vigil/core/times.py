"""Times from callers: aware, and expressible in UTC, or refused as bad input."""

from __future__ import annotations

from datetime import UTC, datetime

from vigil.core.errors import InvalidInput


def to_utc(value: datetime, name: str) -> datetime:
    """`value` in UTC. A naive time is refused rather than guessed (read as local time it would
    shift expiries and ranges silently); so is one with no UTC equivalent
    (0001-01-01T00:00+01:00 is before year 1 in UTC), which would otherwise fail deep in the
    storage as a 500."""
    if value.utcoffset() is None:
        raise InvalidInput(f"'{name}' needs a time zone, e.g. 2026-01-01T00:00:00Z.")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(f"'{name}' is out of range.") from None


def optional_utc(value: datetime | None, name: str) -> datetime | None:
    return None if value is None else to_utc(value, name)
