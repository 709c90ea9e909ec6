"""Opaque keyset cursors: a page resumes after the last row seen, by its insertion order.

Keyset pagination keeps every page as cheap as the first, however deep the listing goes (an
OFFSET scan grows with the offset). The cursor only names a position; the tenant filter is
always applied on top, so a forged cursor reveals nothing.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from vigil.core.errors import InvalidInput

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"s:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        text = ""
    kind, _, value = text.partition(":")
    if kind != "s" or not value.isdigit() or len(value) > 19:
        raise InvalidInput("The cursor is not one this API returned.")
    return int(value)


def page_of(rows: Sequence[tuple[int, T]], limit: int) -> Page[T]:
    """`rows` holds up to `limit + 1` (seq, item) pairs; the extra one says a next page exists."""
    items = [item for _, item in rows[:limit]]
    more = len(rows) > limit
    return Page(items, encode_cursor(rows[limit - 1][0]) if more else None)
