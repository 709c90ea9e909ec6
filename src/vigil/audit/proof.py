"""Verifying hash chains and signed checkpoints, from any source of records.

Pure: it sees dictionaries, bytes and public keys, never a database. The database verifier
(`vigil audit verify`) and the offline verifier (`vigil audit verify-export`) both feed it, so
the two can never disagree about what "intact" means.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from vigil.audit import canonical


@dataclass(frozen=True)
class Checkpoint:
    chain_id: str
    seq: int
    head_hash: bytes
    signed_at: str
    kid: str
    signature: bytes


@dataclass(frozen=True)
class Problem:
    chain_id: str
    seq: int | None
    record_id: str | None
    reason: str

    def __str__(self) -> str:
        where = f"chain {self.chain_id}"
        if self.seq is not None:
            where += f", record #{self.seq}"
        if self.record_id:
            where += f" ({self.record_id})"
        return f"{where}: {self.reason}"


@dataclass
class ChainReport:
    chain_id: str
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    checkpoints: int = 0
    last_signed_seq: int = 0
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def unsigned_tail(self) -> int:
        """Records after the newest checkpoint: chained, but not yet signed."""
        return max(0, (self.last_seq or 0) - self.last_signed_seq)


@dataclass
class ChainVerifier:
    """Feed one chain's records in `chain_seq` order, then call `finish`."""

    chain_id: str
    keys: Mapping[str, Ed25519PublicKey]
    checkpoints: Iterable[Checkpoint]
    report: ChainReport = field(init=False)
    _signed: dict[int, bytes] = field(init=False, default_factory=dict)
    _prev_hash: bytes | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.report = ChainReport(self.chain_id)
        for cp in sorted(self.checkpoints, key=lambda c: c.seq):
            if self.report.problem is None:
                self._check_signature(cp)
            self._signed[cp.seq] = cp.head_hash
        self.report.checkpoints = len(self._signed)

    def fail(self, seq: int | None, record_id: str | None, reason: str) -> None:
        """Report a problem found outside `feed` (a record that could not even be read)."""
        self._fail(seq, record_id, reason)

    def _fail(self, seq: int | None, record_id: str | None, reason: str) -> None:
        if self.report.problem is None:
            self.report.problem = Problem(self.chain_id, seq, record_id, reason)

    def _check_signature(self, cp: Checkpoint) -> None:
        key = self.keys.get(cp.kid)
        if key is None:
            self._fail(cp.seq, None, f"checkpoint signed by unknown key '{cp.kid}'")
            return
        payload = canonical.checkpoint_bytes(
            cp.chain_id, cp.seq, cp.head_hash, cp.signed_at, cp.kid
        )
        try:
            key.verify(cp.signature, payload)
        except InvalidSignature:
            self._fail(cp.seq, None, "checkpoint signature is not valid (forged or altered)")

    def feed(self, fields: dict[str, Any], prev_hash: bytes, stored_hash: bytes) -> bool:
        """`fields` in canonical form (see `canonical.FIELDS`). Returns False once broken."""
        if self.report.problem is not None:
            return False
        seq = int(fields["chain_seq"])
        rid = fields.get("id")
        r = self.report
        if fields["chain_id"] != self.chain_id:
            self._fail(seq, rid, "record belongs to another chain")
            return False
        if r.last_seq is None:
            r.first_seq = seq
            expected = canonical.GENESIS if seq == 1 else self._signed.get(seq - 1)
            if expected is None:
                self._fail(
                    seq, rid, "first record has no signed anchor before it (records removed)"
                )
                return False
        else:
            if seq <= r.last_seq:
                self._fail(seq, rid, f"out of order after #{r.last_seq} (reordered or duplicated)")
                return False
            if seq != r.last_seq + 1:
                missing = f"#{r.last_seq + 1}" + (
                    f"-#{seq - 1}" if seq - 1 > r.last_seq + 1 else ""
                )
                self._fail(seq, rid, f"record(s) {missing} missing (deleted)")
                return False
            expected = self._prev_hash
        if prev_hash != expected:
            self._fail(seq, rid, "does not link to the record before it (reordered or inserted)")
            return False
        computed = canonical.link(prev_hash, fields)
        if computed != stored_hash:
            self._fail(seq, rid, "contents changed since it was written (hash mismatch)")
            return False
        signed = self._signed.get(seq)
        if signed is not None:
            if signed != computed:
                self._fail(seq, rid, "chain diverges from its signed checkpoint")
                return False
            r.last_signed_seq = seq
        r.records += 1
        r.last_seq = seq
        self._prev_hash = computed
        return True

    def feed_encoded(
        self, seq: object, chain_id: object, encoded: bytes, prev_hash: bytes, stored_hash: bytes
    ) -> bool:
        """`feed`'s common case at a fraction of its cost, for a record already in canonical
        bytes: it follows the last record verified, links to it and hashes to its stored hash.

        True means the record is verified and counted. False means only "not confirmed here":
        the caller must then hand the record to `feed`, which accepts it or finds and words the
        problem, so both paths agree on every verdict."""
        r = self.report
        if r.problem is not None or type(seq) is not int or chain_id != self.chain_id:
            return False
        if r.last_seq is None:
            expected = canonical.GENESIS if seq == 1 else self._signed.get(seq - 1)
        elif seq == r.last_seq + 1:
            expected = self._prev_hash
        else:
            return False
        if expected is None or prev_hash != expected:
            return False
        computed = canonical.link_encoded(prev_hash, encoded)
        if computed != stored_hash:
            return False
        signed = self._signed.get(seq)
        if signed is not None:
            if signed != computed:
                return False
            r.last_signed_seq = seq
        if r.last_seq is None:
            r.first_seq = seq
        r.records += 1
        r.last_seq = seq
        self._prev_hash = computed
        return True

    def finish(self, head_seq: int | None = None) -> ChainReport:
        r = self.report
        if r.problem is None:
            last = r.last_seq or 0
            beyond = [s for s in self._signed if s > last]
            if beyond:
                self._fail(
                    last + 1 if r.last_seq else None,
                    None,
                    f"a signed checkpoint covers record #{min(beyond)}, which is missing "
                    "(the log was cut)",
                )
            elif head_seq is not None and head_seq != last:
                self._fail(None, None, f"chain head says {head_seq} records, found up to #{last}")
        return r
