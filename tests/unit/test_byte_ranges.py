"""`Range: bytes=…` (RFC 9110 section 14): one range served, the rest ignored or refused."""

from __future__ import annotations

import pytest

from vigil.core.byte_ranges import ByteRange, parse_range
from vigil.core.errors import RangeNotSatisfiable

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", (0, 99)),
        ("bytes=100-", (100, 999)),
        ("bytes=-1", (999, 999)),
        ("bytes=-5000", (0, 999)),
        ("bytes=990-5000", (990, 999)),
        ("BYTES = 5-5", (5, 5)),
    ],
)
def test_one_range_is_served(header: str, expected: tuple[int, int]) -> None:
    assert parse_range(header, SIZE) == ByteRange(*expected, SIZE)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "bytes=0-1,4-5",
        "items=0-1",
        "bytes=5-2",
        "bytes=-",
        "bytes=a-b",
        "bytes 0-1",
        "x" * 300,
    ],
)
def test_other_headers_mean_the_whole_content(header: str | None) -> None:
    assert parse_range(header, SIZE) is None


@pytest.mark.parametrize(("header", "size"), [("bytes=1000-", 1000), ("bytes=-0", 1000)])
def test_ranges_that_select_nothing_are_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as refused:
        parse_range(header, size)
    assert refused.value.size == size


def test_content_range_names_the_inclusive_bounds_and_size() -> None:
    served = parse_range("bytes=-10", SIZE)
    assert served is not None
    assert (served.content_range, served.length) == ("bytes 990-999/1000", 10)
