"""`coalesce` regroups a download's 64 KiB segments into ~1 MiB pieces: the same bytes, in
order, never more than one piece plus one chunk held."""

from __future__ import annotations

import os
from collections.abc import Iterator

from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.core.chunks import coalesce


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(min_value=0, max_value=300), max_size=40))
def test_the_same_bytes_come_out_in_pieces_of_at_least_the_size(sizes: list[int]) -> None:
    chunks = [os.urandom(n) for n in sizes]
    pieces = list(coalesce(chunks, size=256))
    assert b"".join(pieces) == b"".join(chunks)
    assert all(pieces)  # no empty piece, not even for an empty stream
    assert all(256 <= len(p) < 256 + 300 for p in pieces[:-1])


def test_pieces_are_yielded_as_they_fill_not_at_the_end() -> None:
    pulled = 0

    def source() -> Iterator[bytes]:
        nonlocal pulled
        for _ in range(10):
            pulled += 1
            yield b"x" * 100

    first = next(coalesce(source(), size=250))
    assert (len(first), pulled) == (300, 3)
