"""The faster canonical encoding spells every record exactly as the original one did.

Hashes of existing logs depend on these bytes, so the reference below is the historic
definition, kept verbatim: `json.dumps` with the documented options, and `strftime` times.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from vigil.audit import canonical

ALPHABET = ["a", "Z", "é", "\x00", "\x1f", "\x7f", '"', "\\", "/", "\u2028", "😀", "\n", " ", ","]


def historic_record_bytes(fields: dict[str, Any]) -> bytes:
    ordered = [canonical.VERSION, *(fields[name] for name in canonical.FIELDS)]
    return json.dumps(ordered, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()


def historic_timestamp(value: datetime) -> str:
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def text(rnd: random.Random) -> str:
    return "".join(rnd.choice(ALPHABET) for _ in range(rnd.randrange(0, 8)))


def details(rnd: random.Random) -> Any:
    kind = rnd.randrange(4)
    if kind == 0:
        return {}
    if kind == 1:
        return {text(rnd): text(rnd) for _ in range(rnd.randrange(1, 5))}
    if kind == 2:
        return {"n": rnd.randrange(-(10**20), 10**20), "f": rnd.random() * 1e6, "b": True}
    return {"z": {"b": [1, 2.5, None, False, text(rnd)], "a": {"y": text(rnd), "x": 0}}}


@pytest.mark.parametrize("seed", range(5))
def test_record_bytes_match_the_historic_encoding(seed: int) -> None:
    rnd = random.Random(seed)
    for _ in range(2000):
        fields: dict[str, Any] = {
            n: text(rnd) if rnd.random() < 0.8 else None for n in canonical.FIELDS
        }
        fields["chain_seq"] = rnd.randrange(1, 10**12)
        fields["details"] = details(rnd)
        expected = historic_record_bytes(fields)
        head = [canonical.VERSION, *(fields[n] for n in canonical.FIELDS[:-1])]
        assert canonical.record_bytes(fields) == expected
        assert canonical.encoded_record(head, canonical.details_text(fields["details"])) == expected
        assert (
            f"{canonical.encode_json(tuple(head))[:-1]},".encode()
            == expected[
                : len(expected) - len(canonical.details_text(fields["details"]).encode()) - 1
            ]
        )


def test_timestamps_match_the_historic_form() -> None:
    rnd = random.Random(1)
    for _ in range(20000):
        moment = datetime(1, 1, 1, tzinfo=UTC) + timedelta(
            microseconds=rnd.randrange(0, 10**6 * 86400 * 365 * 9000)
        )
        if rnd.random() < 0.3:
            moment = moment.astimezone(timezone(timedelta(hours=rnd.randrange(-12, 13))))
        assert canonical.timestamp(moment) == historic_timestamp(moment)


def test_a_value_json_cannot_spell_still_fails() -> None:
    with pytest.raises(TypeError):
        canonical.details_text({"when": datetime.now(UTC)})
