"""Regroup a stream of byte chunks into fewer, larger ones, without ever holding it whole."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

COALESCED_SIZE = 1024 * 1024


def coalesce(chunks: Iterable[bytes], size: int = COALESCED_SIZE) -> Iterator[bytes]:
    """The same bytes, in order, in pieces of at least `size` bytes (the last may be shorter).

    A download is decrypted in 64 KiB segments; handing each to the server separately costs a
    thread hop and a trip through every ASGI layer per segment, so one piece of ~1 MiB is sent
    instead. Memory: one piece plus one chunk."""
    held: list[bytes] = []
    length = 0
    for chunk in chunks:
        if not chunk:
            continue
        held.append(chunk)
        length += len(chunk)
        if length >= size:
            yield held[0] if len(held) == 1 else b"".join(held)
            held, length = [], 0
    if held:
        yield held[0] if len(held) == 1 else b"".join(held)
