"""Verify an exported audit log offline: no database, no server, no Vigil storage code.

Imports only the canonical encoding and the proof checker (and `cryptography`), which a test
enforces, so the dealer can run it anywhere, or reimplement it from docs/audit.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from vigil.audit import canonical
from vigil.audit.jwks import keys_by_kid
from vigil.audit.proof import ChainReport, ChainVerifier, Checkpoint, Problem


@dataclass
class ExportReport:
    header: dict[str, Any] = field(default_factory=dict)
    chains: list[ChainReport] = field(default_factory=list)
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.first_problem() is None

    @property
    def records(self) -> int:
        return sum(c.records for c in self.chains)

    def first_problem(self) -> Problem | None:
        return self.problem or next((c.problem for c in self.chains if c.problem), None)


def verify_export(lines: Iterable[str], jwks: dict[str, Any]) -> ExportReport:
    keys = keys_by_kid(jwks)
    report = ExportReport()
    checkpoints: dict[str, list[Checkpoint]] = {}
    records: dict[str, list[dict[str, Any]]] = {}
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
            kind = item["type"]
        except (ValueError, KeyError, TypeError):
            report.problem = Problem("-", None, None, f"line {number} is not a valid export line")
            return report
        if kind == "header":
            if (
                item.get("format") != "vigil-audit-export"
                or item.get("version") != canonical.VERSION
            ):
                report.problem = Problem(
                    "-", None, None, "not a Vigil audit export of a known version"
                )
                return report
            report.header = item
        elif kind == "checkpoint":
            checkpoints.setdefault(item["chain_id"], []).append(
                Checkpoint(
                    item["chain_id"],
                    int(item["seq"]),
                    bytes.fromhex(item["head_hash"]),
                    item["signed_at"],
                    item["kid"],
                    bytes.fromhex(item["signature"]),
                )
            )
        elif kind == "record":
            records.setdefault(item["chain_id"], []).append(item)
    if not report.header:
        report.problem = Problem("-", None, None, "the export has no header line")
        return report
    for chain_id in sorted(set(records) | set(checkpoints)):
        verifier = ChainVerifier(chain_id, keys, checkpoints.get(chain_id, []))
        # Order by sequence number, as the store does: the lines' order is presentation, the
        # numbers and hashes are what is signed.
        for item in sorted(records.get(chain_id, []), key=lambda x: int(x.get("chain_seq") or 0)):
            fields = {name: item.get(name) for name in canonical.FIELDS}
            try:
                prev_hash = bytes.fromhex(item["prev_hash"])
                stored = bytes.fromhex(item["hash"])
            except (KeyError, ValueError, TypeError):
                prev_hash, stored = b"", b""
            if not verifier.feed(fields, prev_hash, stored):
                break
        chain = verifier.finish()
        if chain.problem is None and chain.unsigned_tail:
            # An export carries its signatures: a record no checkpoint covers proves nothing
            # (anyone can recompute hashes after editing, then drop the checkpoints).
            chain.problem = Problem(
                chain_id,
                chain.last_signed_seq + 1,
                None,
                f"{chain.unsigned_tail} record(s) not covered by any signed checkpoint",
            )
        report.chains.append(chain)
    return report
