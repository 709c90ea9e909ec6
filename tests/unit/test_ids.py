"""Identifiers: fixed-width base62 that round-trips, whatever the digit-grouping inside."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vigil.core.ids import BASE62, base62, new_id


def decode(text: str) -> int:
    value = 0
    for char in text:
        value = value * 62 + BASE62.index(char)
    return value


@given(
    st.integers(min_value=1, max_value=44).flatmap(
        lambda w: st.tuples(st.just(w), st.integers(min_value=0, max_value=62**w - 1))
    )
)
def test_base62_is_fixed_width_and_round_trips(case: tuple[int, int]) -> None:
    width, value = case
    text = base62(value, width)
    assert len(text) == width
    assert decode(text) == value


@pytest.mark.parametrize("width", [1, 2, 6, 17, 22, 43])
def test_a_value_too_large_for_the_width_is_refused(width: int) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        base62(62**width, width)


def test_new_ids_are_prefixed_128_bit_base62() -> None:
    ident = new_id("aud")
    prefix, _, body = ident.partition("_")
    assert prefix == "aud"
    assert len(body) == 22
    assert decode(body) < 2**128


def test_a_forked_child_never_reuses_the_parents_randomness() -> None:
    import os

    from vigil.core.ids import random_id_bytes

    random_id_bytes(1)  # the parent's buffer is filled
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_end)
        os.write(write_end, random_id_bytes(16))
        os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 16)
    os.close(read_end)
    os.waitpid(pid, 0)
    assert child != random_id_bytes(16)


def test_ordered_ids_are_prefixed_128_bit_base62_and_sort_by_time() -> None:
    from vigil.core.ids import ordered_base62

    earlier = ordered_base62(16, now_ms=1_790_000_000_000)
    later = ordered_base62(16, now_ms=1_790_000_000_001)
    assert len(earlier) == len(later) == 22
    assert decode(earlier) < 2**128
    assert decode(earlier) >> 80 == 1_790_000_000_000  # the time, in the top 48 bits
    assert earlier < later  # as text: base62 digits are in ASCII order


def test_ordered_ids_keep_80_random_bits() -> None:
    from vigil.core.ids import new_ordered_id, ordered_base62

    same_ms = {ordered_base62(16, now_ms=1_790_000_000_000) for _ in range(1000)}
    assert len(same_ms) == 1000
    assert len({decode(i) & (2**80 - 1) for i in same_ms}) == 1000
    assert new_ordered_id("aud").startswith("aud_")


def test_request_ids_are_time_first_and_random_after() -> None:
    import time

    from vigil.edge.request_id import new_request_id

    first = new_request_id()
    time.sleep(0.002)
    second = new_request_id()
    assert first.startswith("req_")
    assert len(first) == 28
    assert first[4:16] < second[4:16]  # the hex millisecond prefix grows
    assert len({new_request_id()[16:] for _ in range(1000)}) == 1000
