"""Public identifiers: a type prefix plus 128 random bits.

The prefix makes an id self-describing in logs and support tickets (`dlr_…` is a dealer), and
randomness keeps ids unguessable so enumeration reveals nothing.

Records written at a high rate (audit records, request ids) use `new_ordered_id` instead: a
millisecond timestamp followed by random bits, so that new ids land at the right-hand end of
their unique index. A purely random key puts every insert on a different index page, and with
page encryption (SQLCipher) and a full-page write-ahead log each such page is encrypted,
authenticated and written at every commit: most of the cost of a durable audit record.
"""

from __future__ import annotations

import os
import secrets
import string
import threading
import time

BASE62 = string.digits + string.ascii_letters


# Every two-digit base62 string, indexed by its value: two digits per `divmod` halves the
# big-integer divisions (an id is 22 digits; each request mints at least one).
_PAIRS = tuple(a + b for a in BASE62 for b in BASE62)


def base62(value: int, width: int) -> str:
    """Fixed-width base62, so tokens have a constant, checkable length."""
    chunks = []
    remaining = width
    while remaining >= 2:
        value, rem = divmod(value, 3844)
        chunks.append(_PAIRS[rem])
        remaining -= 2
    if remaining:
        value, rem = divmod(value, 62)
        chunks.append(BASE62[rem])
    if value:
        raise ValueError("value does not fit in the requested width")
    return "".join(reversed(chunks))


class _RandomPool:
    """Identifiers need unpredictability, not a system call each: the OS CSPRNG is read 4 KiB
    at a time and handed out in slices. (Secrets, such as key material, still come straight
    from `secrets`.)"""

    SIZE = 4096

    def __init__(self) -> None:
        self._forget()
        # Never share randomness across fork: a child starts with an empty buffer (and a fresh
        # lock, in case another thread held it at the fork). A hook rather than a `getpid()`
        # per call, which is a system call on every id.
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0

    def take(self, n: int) -> bytes:
        with self._lock:
            start = self._offset
            if start + n > len(self._buffer):
                self._buffer, start = secrets.token_bytes(self.SIZE), 0
            self._offset = start + n
            return self._buffer[start : start + n]


_POOL = _RandomPool()


def random_id_bytes(n: int) -> bytes:
    return _POOL.take(n)


def random_base62(nbytes: int) -> str:
    width = _WIDTH_16 if nbytes == 16 else _width_for(nbytes)
    return base62(int.from_bytes(_POOL.take(nbytes), "big"), width)


def _width_for(nbytes: int) -> int:
    width, capacity = 0, 1
    while capacity < 256**nbytes:
        capacity *= 62
        width += 1
    return width


def new_id(prefix: str) -> str:
    return f"{prefix}_{random_base62(16)}"


_WIDTH_16 = _width_for(16)

# Milliseconds since the Unix epoch fit 48 bits until the year 10889.
_TIME_BYTES = 6


def ordered_base62(nbytes: int, now_ms: int | None = None) -> str:
    """`nbytes` of which the first six are the time in milliseconds, big-endian, and the rest
    random; fixed-width base62, whose digits sort in ASCII order, so the text sorts by time.
    (Within one millisecond the order is random; nothing relies on more than that.)"""
    if now_ms is None:
        now_ms = time.time_ns() // 1_000_000
    value = (now_ms % 2 ** (8 * _TIME_BYTES)) << (8 * (nbytes - _TIME_BYTES))
    value |= int.from_bytes(_POOL.take(nbytes - _TIME_BYTES), "big")
    return base62(value, _WIDTH_16 if nbytes == 16 else _width_for(nbytes))


def new_ordered_id(prefix: str) -> str:
    """Like `new_id`, 128 bits, of which 80 are random: still unguessable, and time-ordered
    (the creation time it reveals is stored next to such records anyway)."""
    return f"{prefix}_{ordered_base62(16)}"
