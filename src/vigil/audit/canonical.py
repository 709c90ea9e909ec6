"""The canonical encoding a record's hash covers.

Pure and dependency-free on purpose: the offline verifier imports this module alone, so a
dealer can check an export with no database, no server and no Vigil storage code.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

GENESIS = bytes(32)

# The fields a record's hash covers, in order. Adding a field is a format change: bump VERSION.
VERSION = 1
FIELDS = (
    "id",
    "chain_id",
    "chain_seq",
    "occurred_at",
    "actor_type",
    "actor_id",
    "dealer_id",
    "environment",
    "app_id",
    "credential_id",
    "scope",
    "request_id",
    "source_ip",
    "user_agent",
    "method",
    "route",
    "action",
    "target_type",
    "target_id",
    "result",
    "details",
)


# The encoder `json.dumps(v, separators=(",", ":"), ensure_ascii=False, sort_keys=True)` uses,
# built once: `dumps` with these options builds a JSONEncoder, and `encode` a C encoder, per
# call, which cost as much as the encoding itself. Same options, same C code, same bytes.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def _make_encode() -> Callable[[Any], str]:
    if c_make_encoder is None:  # not CPython: the plain encoder
        return _ENCODER.encode
    # No circular-reference markers: a marker table shared across calls could keep stale
    # entries after a failed call; a circular value still fails (RecursionError).
    c_encode = c_make_encoder(
        None, _ENCODER.default, encode_basestring, None, ":", ",", True, False, True
    )

    def encode(value: Any) -> str:
        return "".join(c_encode(value, 0))

    return encode


_ENCODE = _make_encode()


def timestamp(value: datetime) -> str:
    """Millisecond UTC ISO 8601, the one textual form of a time in hashes and exports."""
    value = value.astimezone(UTC)
    if value.year < 1000:  # strftime does not pad such years; keep its exact historic output
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    # isoformat truncates to milliseconds exactly as the strftime form did, at a third the cost.
    return value.isoformat(timespec="milliseconds")[:-6] + "Z"  # '+00:00' becomes 'Z'


def parse_timestamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def record_bytes(fields: dict[str, Any]) -> bytes:
    """`fields` holds FIELDS with `occurred_at` already in `timestamp` form."""
    return _ENCODE([VERSION, *(fields[name] for name in FIELDS)]).encode()


def details_text(details: Any) -> str:
    """The canonical JSON text of a `details` value; also what the store keeps, so a verifier
    can splice the stored text into the record's bytes instead of decoding and re-encoding."""
    return _ENCODE(details)


def encode_json(value: Any) -> str:
    """Any value in the canonical JSON spelling (a tuple is spelled as an array)."""
    return _ENCODE(value)


def encoded_record(head: Sequence[Any], details: str) -> bytes:
    """`record_bytes`, from VERSION and every field but the last (`head`) plus `details` already
    in `details_text` form. The array's items are encoded one by one and joined with commas, so
    splicing the last one in yields exactly the bytes `record_bytes` gives."""
    return f"{_ENCODE(head)[:-1]},{details}]".encode()


def link_encoded(prev_hash: bytes, encoded: bytes) -> bytes:
    return hashlib.sha256(prev_hash + encoded).digest()


def link(prev_hash: bytes, fields: dict[str, Any]) -> bytes:
    """Each hash covers the previous one, so changing, removing or reordering breaks the chain."""
    return link_encoded(prev_hash, record_bytes(fields))


def checkpoint_bytes(chain_id: str, seq: int, head_hash: bytes, signed_at: str, kid: str) -> bytes:
    """What a checkpoint signature covers: chain, sequence, head hash, time and signing key."""
    doc = {
        "v": VERSION,
        "chain": chain_id,
        "seq": seq,
        "head": head_hash.hex(),
        "time": signed_at,
        "kid": kid,
    }
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
