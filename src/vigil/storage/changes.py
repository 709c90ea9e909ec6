"""Per-table change counters, shared by every process that opens the same SQLite file.

The hot credential lookups (API keys, access tokens, partner keys) read a handful of rows that
almost never change, on every request. On SQLite that read is not cheap: every commit of any
other writer (the audit log commits all the time) makes the reading connection drop its page
cache, so each lookup re-reads and, under SQLCipher, re-decrypts and re-authenticates the same
pages. A lookup can keep what it read instead, as long as it can tell, cheaply and in every
process, that none of the tables its query reads has been written since.

That is what this module counts. Each table name maps to a counter slot (CRC-32 of the name,
modulo the slot count: two tables that share a slot only invalidate each other's readers more
often than needed, never less). Writers bump the slots of the tables they wrote *after* their
transaction commits (`vigil.storage.db.Database` does it for every statement that goes through
SQLAlchemy); a reader takes the sum of its tables' counters *before* it queries, and trusts a
kept row only while that sum is unchanged. So a change is seen by the first request that starts
after the change's commit, in every process on this machine, which is what "revocation takes
effect on the next request" means (S9, S10).

The counters live in a small file next to the database (`<database>-changes`, like SQLite's own
`-wal` and `-shm` files), memory-mapped: a reader's check is two memory reads, no system call.
PostgreSQL has no such file every server host could share, so there the counters are absent and
lookups read the database every time.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

SLOTS = 1024
SIZE = SLOTS * 8  # unsigned 64-bit counters in the machine's byte order (one machine shares them)


def slot_of(table: str) -> int:
    return zlib.crc32(table.lower().encode()) % SLOTS


class TableChanges:
    """Change counters in `path` (created 0600 if missing), or in this process's memory when
    `path` is None (an in-memory database: no other process can open it)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file: BinaryIO | None = None
        if path is None:
            self._map = mmap.mmap(-1, SIZE)
            self._counters = memoryview(self._map).cast("Q")
            return
        # A file object rather than a bare descriptor: it is closed with this object.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "r+b", buffering=0)
        if os.fstat(fd).st_size < SIZE:
            with self._locked():
                if os.fstat(fd).st_size < SIZE:
                    os.ftruncate(fd, SIZE)  # zero-filled: every counter starts at 0
        self._map = mmap.mmap(fd, SIZE)
        self._counters = memoryview(self._map).cast("Q")

    def generation(self, slots: Sequence[int]) -> int:
        """The sum of `slots`' counters: it only grows, and grows with every committed write to
        a table whose slot is among them."""
        return sum(map(self._counters.__getitem__, slots))

    def bump(self, tables: Iterable[str]) -> None:
        slots = sorted({slot_of(t) for t in tables})
        if not slots:
            return
        with self._locked():
            counters = self._counters
            for s in slots:
                counters[s] += 1

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Increments from several processes must not lose one another: an exclusive lock on
        the file around each read-modify-write (readers take no lock)."""
        if self._file is None:
            yield
            return
        fcntl.flock(self._file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._file, fcntl.LOCK_UN)
