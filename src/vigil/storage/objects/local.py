"""The local-directory object store: the embedded default, under `$VIGIL_HOME/objects/`.

Each object is one file named by its key. A writer fills a temporary file in the object's own
directory, fsyncs it, links it into place under its key (atomic, and refusing to overwrite) and
fsyncs the directory, so after a crash an object is either wholly there or absent; a leftover
temporary (`.partial-*`) is never mistaken for an object and `sweep_partials` clears them.
Files are 0600 and directories 0700: the objects are tenant data.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from vigil.storage.objects.port import (
    CHUNK_SIZE,
    InvalidKey,
    ObjectExists,
    ObjectMissing,
    check_key,
)

PARTIAL_PREFIX = ".partial-"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalWriter:
    def __init__(self, final: Path) -> None:
        self._final = final
        fd, name = tempfile.mkstemp(dir=final.parent, prefix=PARTIAL_PREFIX)  # mode 0600
        self._temp = Path(name)
        self._file: BinaryIO | None = os.fdopen(fd, "wb", buffering=0)
        self._size = 0

    def write(self, chunk: bytes) -> None:
        if self._file is None:
            raise ValueError("this object is already committed or aborted")
        view = memoryview(chunk)
        while view:  # an unbuffered write may be partial
            view = view[self._file.write(view) or 0 :]
        self._size += len(chunk)

    def commit(self) -> int:
        if self._file is None:
            raise ValueError("this object is already committed or aborted")
        try:
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            self._publish()
        finally:
            self.abort()  # the temporary name goes; the object stays under its key
        return self._size

    def _publish(self) -> None:
        # link() refuses an existing name, so an object is never overwritten, and the object
        # appears complete under its key in one step (as a rename would).
        try:
            os.link(self._temp, self._final)
        except FileExistsError:
            raise ObjectExists(self._final.name) from None
        _fsync_dir(self._final.parent)

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        with contextlib.suppress(FileNotFoundError):
            self._temp.unlink()


class LocalObjectStore:
    def __init__(self, root: Path, chunk_size: int = CHUNK_SIZE) -> None:
        self.root = root.resolve()
        self.chunk_size = chunk_size
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        # check_key already forbids traversal; this is the second lock on the same door.
        if not path.is_relative_to(self.root) or path == self.root:
            raise InvalidKey("object key escapes the store")
        return path

    def writer(self, key: str) -> LocalWriter:
        final = self._path(key)
        final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return LocalWriter(final)

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        try:
            file = self._path(key).open("rb", buffering=0)
        except FileNotFoundError:
            raise ObjectMissing(key) from None
        return self._chunks(file, start, end)

    def _chunks(self, file: BinaryIO, start: int, end: int | None) -> Iterator[bytes]:
        with file:
            file.seek(start)
            remaining = None if end is None else max(0, end - start)
            while remaining is None or remaining > 0:
                want = self.chunk_size if remaining is None else min(self.chunk_size, remaining)
                chunk = file.read(want)
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise ObjectMissing(key) from None

    def delete(self, key: str) -> None:
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            _fsync_dir(path.parent)

    def sweep_partials(self, older_than_seconds: float = 24 * 3600) -> int:
        """Remove temporaries a crash left behind (a live upload keeps touching its own)."""
        cutoff = time.time() - older_than_seconds
        removed = 0
        for path in self.root.rglob(PARTIAL_PREFIX + "*"):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed
