"""Streaming segmented AEAD for large objects (snapshots, clips).

Construction: STREAM (Hoang, Reyhanitabar, Rogaway, Vizar, "Online Authenticated-Encryption and
its Nonce-Reuse Misuse-Resistance", CRYPTO 2015), instantiated like Tink's AES-GCM-HKDF streaming
AEAD: a fresh key per object derived with HKDF-SHA256 (RFC 5869) from the tenant's data key and a
random salt, then AES-256-GCM over 64 KiB segments with the nonce

    nonce prefix (7 random bytes) | segment counter (4, big-endian) | last-segment flag (1)

Why: one AES-GCM call over a whole object needs the object in memory and detects tampering only
at the very end; STREAM keeps memory flat (one segment at a time), authenticates each segment
before its plaintext is released, and because the counter and the last flag are in the nonce,
reordering, dropping, duplicating or splicing segments from another object, and truncation at a
segment boundary all fail authentication. Fixed segment sizes also make random access cheap: a
byte range maps to the segments that hold it (HTTP `Range`).

Object layout::

    header (60 bytes): format 0x11 (1) | keyset id (16) | key version (4) | salt (32) | prefix (7)
    segment i:         AES-GCM(k_obj, nonce_i, plaintext[i*64K:(i+1)*64K]) with 16-byte tag

The empty object is one empty last segment (just a tag). Binding (tenant, environment, object id,
field) goes into HKDF's `info`, so the object key itself differs per binding: a stream copied to
another object or tenant yields a different key and fails on its first segment.

The per-object key is used for at most 2^32 segments (256 TiB), and since every object has its own
key the data key's GCM message budget is not involved.
"""

from __future__ import annotations

import itertools
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from vigil.core.errors import RangeNotSatisfiable
from vigil.crypto.binding import Binding
from vigil.crypto.datakey import KEY_HEADER, DataKey
from vigil.crypto.errors import DecryptionFailed, MalformedCiphertext

SEGMENT_SIZE: Final = 64 * 1024
TAG_SIZE: Final = 16
CIPHER_SEGMENT_SIZE: Final = SEGMENT_SIZE + TAG_SIZE
STREAM_FORMAT: Final = 0x11
SALT_SIZE: Final = 32
PREFIX_SIZE: Final = 7
HEADER_SIZE: Final = KEY_HEADER.size + SALT_SIZE + PREFIX_SIZE  # 60
MAX_SEGMENTS: Final = 2**32
_NONCE = struct.Struct(">7sIB")
_HKDF_LABEL: Final = b"vigil/stream/aes256gcm-hkdf-sha256/v1\0"

KeyResolver = Callable[[bytes, int], DataKey]
"""(keyset id, key version) -> the data key: how a reader finds the key a header names."""


@dataclass(frozen=True, slots=True)
class StreamHeader:
    keyset_id: bytes
    key_version: int
    salt: bytes
    prefix: bytes


def parse_header(header: bytes | bytearray | memoryview) -> StreamHeader:
    if len(header) < HEADER_SIZE or header[0] != STREAM_FORMAT:
        raise MalformedCiphertext("Not an encrypted object of a known format.")
    _, keyset_id, version = KEY_HEADER.unpack_from(header)
    salt = bytes(header[KEY_HEADER.size : KEY_HEADER.size + SALT_SIZE])
    prefix = bytes(header[KEY_HEADER.size + SALT_SIZE : HEADER_SIZE])
    return StreamHeader(keyset_id, version, salt, prefix)


def _object_aead(key: DataKey, binding: Binding, header: bytes) -> AESGCM:
    """k_obj = HKDF-SHA256(ikm=data key, salt=salt, info=label | key header | prefix | binding)."""
    info = _HKDF_LABEL + header[: KEY_HEADER.size] + header[-PREFIX_SIZE:] + binding.aad
    salt = header[KEY_HEADER.size : KEY_HEADER.size + SALT_SIZE]
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info)
    return AESGCM(hkdf.derive(key.reveal()))


def _segments(
    chunks: Iterable[bytes | bytearray | memoryview], size: int
) -> Iterator[tuple[bytes | bytearray | memoryview, bool]]:
    """Cut a byte stream into `size`-byte segments, flagging the last one.

    A full segment is held back until more data (or the end) shows whether it is the last. Chunks
    that are `bytes` are sliced through memoryviews without copying (they are immutable, so a held
    view stays valid); mutable chunks are copied once so a producer reusing its buffer cannot change
    a segment after we took it. Always yields at least one (possibly empty) last segment.
    """
    held: bytes | bytearray | memoryview | None = None
    partial = bytearray()
    for chunk in chunks:
        if not chunk:
            continue
        view = memoryview(chunk if isinstance(chunk, bytes) else bytes(chunk))
        length, pos = len(view), 0
        if partial:
            pos = min(size - len(partial), length)
            partial += view[:pos]
            if len(partial) < size:
                continue
            if held is not None:
                yield held, False
            held, partial = partial, bytearray()
        while length - pos >= size:
            if held is not None:
                yield held, False
            held = view[pos : pos + size]
            pos += size
        if pos < length:
            if held is not None:
                yield held, False
                held = None
            partial += view[pos:]
    if partial:
        if held is not None:
            yield held, False
        yield partial, True
    elif held is not None:
        yield held, True
    else:
        yield b"", True


def encrypt_stream(
    key: DataKey, binding: Binding, chunks: Iterable[bytes | bytearray | memoryview]
) -> Iterator[bytes]:
    """Encrypt a stream of plaintext chunks (any sizes) into ciphertext chunks: the header first,
    then one chunk per segment. Memory: one segment plus one input chunk.

    The object key is derived here, before the first chunk is asked for, so a destroyed or
    unusable data key fails at the call, not halfway through an upload.
    """
    prefix = os.urandom(PREFIX_SIZE)
    header = KEY_HEADER.pack(STREAM_FORMAT, key.keyset_id, key.version) + os.urandom(SALT_SIZE)
    header += prefix
    return _encrypt_segments(header, prefix, _object_aead(key, binding, header), chunks)


def _encrypt_segments(
    header: bytes,
    prefix: bytes,
    aead: AESGCM,
    chunks: Iterable[bytes | bytearray | memoryview],
) -> Iterator[bytes]:
    encrypt, nonce = aead.encrypt, _NONCE.pack
    yield header
    for index, (segment, last) in enumerate(_segments(chunks, SEGMENT_SIZE)):
        if index >= MAX_SEGMENTS:
            raise ValueError("object too large for one stream (2^32 segments)")
        yield encrypt(nonce(prefix, index, last), segment, None)


def _split_header(
    chunks: Iterable[bytes | bytearray | memoryview],
) -> tuple[bytes, Iterator[bytes | bytearray | memoryview]]:
    source = iter(chunks)
    head = bytearray()
    for chunk in source:
        head += chunk
        if len(head) >= HEADER_SIZE:
            break
    if len(head) < HEADER_SIZE:
        raise MalformedCiphertext("Encrypted object is shorter than its header.")
    rest = bytes(head[HEADER_SIZE:])
    return bytes(head[:HEADER_SIZE]), itertools.chain((rest,), source)


def decrypt_stream(
    key_for: KeyResolver, binding: Binding, chunks: Iterable[bytes | bytearray | memoryview]
) -> Iterator[bytes]:
    """Decrypt ciphertext chunks (any sizes) into plaintext, one verified segment at a time.

    Every yielded chunk is authenticated, but only the end of the iteration proves the stream was
    not truncated: a consumer must treat an exception at any point as "the object is bad" and
    discard (or abort sending) what it already has.
    """
    header, rest = _split_header(chunks)
    parsed = parse_header(header)
    decrypt = _object_aead(key_for(parsed.keyset_id, parsed.key_version), binding, header).decrypt
    nonce = _NONCE.pack
    prefix = parsed.prefix
    for index, (segment, last) in enumerate(_segments(rest, CIPHER_SEGMENT_SIZE)):
        if index >= MAX_SEGMENTS:
            raise MalformedCiphertext("Too many segments.")
        try:
            yield decrypt(nonce(prefix, index, last), segment, None)
        except InvalidTag:
            raise DecryptionFailed() from None


def ciphertext_size(plaintext_size: int) -> int:
    """Size of the encrypted object for `plaintext_size` bytes of plaintext."""
    if plaintext_size < 0:
        raise ValueError("negative size")
    segments = max(1, -(-plaintext_size // SEGMENT_SIZE))
    return HEADER_SIZE + plaintext_size + segments * TAG_SIZE


def plaintext_size(ciphertext_size: int) -> int:
    """Size of the plaintext inside an encrypted object of `ciphertext_size` bytes; raises
    `MalformedCiphertext` for sizes this format cannot produce (a truncation hint that needs no
    key)."""
    body = ciphertext_size - HEADER_SIZE
    if body < TAG_SIZE:
        raise MalformedCiphertext("Encrypted object is too short.")
    full, rest = divmod(body, CIPHER_SEGMENT_SIZE)
    if rest == 0:
        return full * SEGMENT_SIZE
    if rest < TAG_SIZE or (rest == TAG_SIZE and full > 0):
        raise MalformedCiphertext("Encrypted object has an impossible size.")
    return full * SEGMENT_SIZE + rest - TAG_SIZE


@dataclass(frozen=True, slots=True)
class RangePlan:
    """Which ciphertext bytes to fetch for plaintext bytes [start, stop), and how to trim.

    Fetch `header` (bytes [0, HEADER_SIZE)) and ciphertext bytes [`ciphertext_start`,
    `ciphertext_stop`), e.g. with two `Range` requests to S3, and pass both to `decrypt_range`.
    """

    start: int
    stop: int
    first_segment: int
    last_segment: int
    total_segments: int
    ciphertext_start: int
    ciphertext_stop: int

    @property
    def length(self) -> int:
        return self.stop - self.start


def plan_range(start: int, stop: int | None, ciphertext_size: int) -> RangePlan:
    """Map plaintext range [start, stop) (stop None = to the end, clipped to the object) onto
    segments. Raises `RangeNotSatisfiable` when `start` is at or past the end (RFC 9110 15.5.17)."""
    size = plaintext_size(ciphertext_size)
    stop = size if stop is None else min(stop, size)
    if start < 0 or start >= size or stop <= start:
        raise RangeNotSatisfiable("Requested range is outside the object.", size=size)
    total = max(1, -(-size // SEGMENT_SIZE))
    first, last = start // SEGMENT_SIZE, (stop - 1) // SEGMENT_SIZE
    ct_start = HEADER_SIZE + first * CIPHER_SEGMENT_SIZE
    ct_stop = min(HEADER_SIZE + (last + 1) * CIPHER_SEGMENT_SIZE, ciphertext_size)
    return RangePlan(start, stop, first, last, total, ct_start, ct_stop)


def decrypt_range(
    key_for: KeyResolver,
    binding: Binding,
    header: bytes,
    plan: RangePlan,
    chunks: Iterable[bytes | bytearray | memoryview],
) -> Iterator[bytes]:
    """Decrypt only the segments `plan` names (their ciphertext given as `chunks`) and yield
    exactly plaintext bytes [plan.start, plan.stop). Each segment is authenticated with its real
    index and last flag, so bytes from elsewhere in the object, or from another object, fail."""
    parsed = parse_header(header)
    decrypt = _object_aead(key_for(parsed.keyset_id, parsed.key_version), binding, header).decrypt
    nonce = _NONCE.pack
    index = plan.first_segment
    buffer = bytearray()
    expected = plan.ciphertext_stop - plan.ciphertext_start
    received = 0
    skip = plan.start - plan.first_segment * SEGMENT_SIZE
    remaining = plan.length

    def segment_length(i: int) -> int:
        if i < plan.total_segments - 1:
            return CIPHER_SEGMENT_SIZE
        return plan.ciphertext_stop - (
            plan.ciphertext_start + (i - plan.first_segment) * CIPHER_SEGMENT_SIZE
        )

    for chunk in chunks:
        received += len(chunk)
        if received > expected:
            raise MalformedCiphertext("More ciphertext than the range needs.")
        buffer += chunk
        while index <= plan.last_segment and len(buffer) >= segment_length(index):
            need = segment_length(index)
            last = index == plan.total_segments - 1
            try:
                plain = decrypt(nonce(parsed.prefix, index, last), memoryview(buffer)[:need], None)
            except InvalidTag:
                raise DecryptionFailed() from None
            del buffer[:need]
            piece = plain[skip : skip + remaining]
            skip = 0
            remaining -= len(piece)
            index += 1
            yield piece
    if index <= plan.last_segment or remaining:
        raise DecryptionFailed("Encrypted object range was truncated.")


class StreamSealer:
    """Push-mode `encrypt_stream`, for writers fed one chunk at a time (an HTTP upload): the
    same bytes `encrypt_stream` produces. A full segment is held until more data (or `finish`)
    shows whether it is the last, so memory is one segment plus one input chunk."""

    __slots__ = ("_aead", "_index", "_pending", "_prefix", "header")

    def __init__(self, key: DataKey, binding: Binding) -> None:
        self._prefix = os.urandom(PREFIX_SIZE)
        header = KEY_HEADER.pack(STREAM_FORMAT, key.keyset_id, key.version)
        self.header = header + os.urandom(SALT_SIZE) + self._prefix
        self._aead = _object_aead(key, binding, self.header)
        self._index = 0
        self._pending = bytearray()

    def update(self, chunk: bytes | bytearray | memoryview) -> list[bytes]:
        """Sealed segments that `chunk` completes (often none).

        Full segments inside `chunk` are sealed straight from it (a view, no copy: an upload
        hands over 1 MiB at a time); only the unfinished tail, at most one segment, is copied
        and held, since the caller may reuse its buffer."""
        out: list[bytes] = []
        pending = self._pending
        with memoryview(chunk) as whole, whole.cast("B") as view:
            length, pos = len(view), 0
            if pending:
                pos = min(SEGMENT_SIZE - len(pending), length)
                pending += view[:pos]
                if pos == length:
                    return out  # a full segment stays held until more data shows it is not last
                out.append(self._seal(pending, last=False))
                pending.clear()
            while length - pos > SEGMENT_SIZE:
                out.append(self._seal(view[pos : pos + SEGMENT_SIZE], last=False))
                pos += SEGMENT_SIZE
            pending += view[pos:]
        return out

    def finish(self) -> bytes:
        """The final segment (sealed with the last flag; possibly empty)."""
        return self._seal(bytes(self._pending), last=True)

    def _seal(self, segment: bytes | bytearray | memoryview, *, last: bool) -> bytes:
        if self._index >= MAX_SEGMENTS:
            raise ValueError("object too large for one stream (2^32 segments)")
        sealed = self._aead.encrypt(_NONCE.pack(self._prefix, self._index, last), segment, None)
        self._index += 1
        return sealed
