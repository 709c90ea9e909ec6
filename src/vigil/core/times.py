"""Times from callers: aware, and expressible in UTC, or refused as bad input."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AwareDatetime, BeforeValidator

from vigil.core.errors import InvalidInput

# A date and a time of day, as RFC 3339 (and ISO 8601) spell them; the zone is checked after.
_DATE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}")


def _date_time_text(value: object) -> object:
    """Pydantic reads a number, or a numeric string such as `until=0.0`, as seconds since 1970.
    The API documents times as RFC 3339 text; a number is refused rather than guessed at (is it
    seconds or milliseconds?), so that what is accepted is what the OpenAPI document says."""
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, str) and _DATE_TIME.match(value):
        return value
    raise ValueError("must be an RFC 3339 date-time with a time zone, e.g. 2026-01-01T00:00:00Z")


# For any time a caller sends (query or body): RFC 3339 text only.
DATE_TIME_TEXT = BeforeValidator(_date_time_text)
# The same, with a time zone required.
Instant = Annotated[AwareDatetime, DATE_TIME_TEXT]


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
