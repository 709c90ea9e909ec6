"""Request parameters and response shapes every monitoring route shares (issue 4 conventions)."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from fastapi import Header, Query, Response
from pydantic import BaseModel, Field

from vigil.core.pagination import DEFAULT_LIMIT, MAX_LIMIT
from vigil.monitoring.versioning import etag, parse_if_match

T = TypeVar("T")

Limit = Annotated[
    int, Query(ge=1, le=MAX_LIMIT, description="Page size, at most 200.", examples=[50])
]
Cursor = Annotated[
    str | None,
    Query(max_length=100, description="`next_cursor` from the previous page; omit for the first."),
]
IfMatchHeader = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=40,
        pattern=r'^(\*|(W/)?"v[0-9]{1,18}")$',
        description='The ETag last read (e.g. `"v3"`); a stale one gets 412.',
    ),
]
DEFAULT = DEFAULT_LIMIT


class ListPage(BaseModel, Generic[T]):
    """One page of a listing; pass `next_cursor` back as `cursor` for the next (null: the end)."""

    data: list[T]
    next_cursor: str | None = Field(description="Opaque; null on the last page.")


def if_match(value: str | None) -> int | None:
    return parse_if_match(value)


def with_etag(response: Response, version: int) -> None:
    response.headers["ETag"] = etag(version)
