"""The canonical encoding a record's hash covers.

Pure and dependency-free on purpose: the offline verifier imports this module alone, so a
dealer can check an export with no database, no server and no Vigil storage code.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
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


def timestamp(value: datetime) -> str:
    """Millisecond UTC ISO 8601, the one textual form of a time in hashes and exports."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_timestamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def record_bytes(fields: dict[str, Any]) -> bytes:
    """`fields` holds FIELDS with `occurred_at` already in `timestamp` form."""
    ordered = [VERSION, *(fields[name] for name in FIELDS)]
    return json.dumps(ordered, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()


def link(prev_hash: bytes, fields: dict[str, Any]) -> bytes:
    """Each hash covers the previous one, so changing, removing or reordering breaks the chain."""
    return hashlib.sha256(prev_hash + record_bytes(fields)).digest()


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
