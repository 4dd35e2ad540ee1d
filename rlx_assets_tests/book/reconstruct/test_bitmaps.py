"""The dense book's occupancy bitmaps (``book.reconstruct.bitmaps``)."""

from __future__ import annotations

import numpy as np

from rlx_assets.book.kernel import DenseBook
from rlx_assets.book.reconstruct.bitmaps import _Book, end_book_levels


def test_end_book_from_the_occupancy_bits_equals_a_scan_of_the_sizes():
    """The end book is read from the dense book's occupancy bits: the same levels as a scan of
    the size arrays, across word boundaries and after deletes emptied whole words."""
    rng = np.random.default_rng(5)
    n = 20_000
    sides = rng.random(n) < 0.5
    ticks = np.where(sides, 5_000 - rng.integers(0, 3_000, n), 5_000 + rng.integers(0, 3_000, n))
    lots = rng.integers(0, 2, n) * rng.integers(1, 1_000, n)  # half of the rows are deletes
    lots[-2_000:] = 0  # the last rows only delete
    ends = np.arange(1, n + 1)
    flags = np.zeros(n, dtype=np.uint8)
    with_bits, plain = _Book(1_000, 8_000), DenseBook(1_000, 8_000)
    for book in (with_bits, plain):
        book.apply(sides, ticks, lots, ends, flags, depth=1)
    got, want = end_book_levels(with_bits), end_book_levels(plain)
    assert want[0].size and want[2].size
    for a, b in zip(got, want, strict=True):
        assert np.array_equal(a, b)
