"""Portal recovery codes: each one replaces the second factor, so each carries 80 random bits."""

from __future__ import annotations

import re

from vigil.tenancy.operators import RECOVERY_CODES, new_recovery_codes

SHAPE = re.compile(r"[0-9a-f]{10}-[0-9a-f]{10}")


def test_each_code_is_twenty_hex_digits_in_two_groups() -> None:
    codes = new_recovery_codes()
    assert len(codes) == RECOVERY_CODES == 10
    assert all(SHAPE.fullmatch(code) for code in codes), codes


def test_codes_carry_eighty_bits_not_forty() -> None:
    """An earlier version sliced five digits out of two separate 40-bit tokens: 40 bits in
    all. Over many codes every one of the 20 positions must take all 16 hex values."""
    codes = [c.replace("-", "") for _ in range(200) for c in new_recovery_codes()]
    assert len(set(codes)) == len(codes)
    for position in range(20):
        assert len({code[position] for code in codes}) == 16, position
