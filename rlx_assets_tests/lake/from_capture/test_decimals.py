"""Decimal strings -> exact integers (the converter's prices and sizes)."""

from __future__ import annotations

import pytest

from rlx_assets.lake.from_capture import ConversionError, parse_decimals


def test_parse_decimals_is_exact():
    units, scale = parse_decimals(["61837.63000000", "0.00001000", "7", "12.5"], "x")
    assert scale == 5
    assert units.tolist() == [6_183_763_000, 1, 700_000, 1_250_000]
    with pytest.raises(ConversionError, match="not a plain decimal number: '1e5'"):
        parse_decimals(["1", "1e5"], "x")
    with pytest.raises(ConversionError, match="exceeds 2\\*\\*53"):
        parse_decimals(["123456789012.123456"], "x")
