"""The dense book's occupancy bitmaps (``book.reconstruct.bitmaps``)."""

from __future__ import annotations

import numpy as np

from rlx_assets.book.kernel import ASK_HI, BEST_ASK, BEST_BID, BID_LO, DenseBook
from rlx_assets.book.reconstruct.bitmaps import _append_book, _Book, end_book_levels


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


def append_book(book: _Book, capacity: int, n: int = 0):
    s = book.state
    arrays = (np.full(capacity, 9, np.int8), np.full(capacity, 9), np.full(capacity, 9))
    return _append_book(
        book.bid_sizes, book.ask_sizes, book.bid_bits, book.ask_bits, book.base_tick,
        s[BEST_BID], s[BID_LO], s[BEST_ASK], s[ASK_HI], *arrays, n,
    )  # fmt: skip


def test_a_checkpoint_appends_the_whole_book_growing_its_arrays_and_marks_an_empty_book():
    """A checkpoint's rows (``_append_book``) are the end book's levels, bids then asks, best
    first, after the rows already there; arrays too small are grown with those rows kept; an
    empty book is one row of side -1."""
    rng = np.random.default_rng(6)
    n = 5_000
    sides = rng.random(n) < 0.5
    ticks = np.where(sides, 5_000 - rng.integers(0, 900, n), 5_000 + rng.integers(1, 900, n))
    lots = rng.integers(0, 3, n) * rng.integers(1, 1_000, n)
    book = _Book(1_000, 8_000)
    book.apply(sides, ticks, lots, np.arange(1, n + 1), np.zeros(n, np.uint8), depth=1)
    bid_ticks, bid_lots, ask_ticks, ask_lots = end_book_levels(book)
    assert bid_ticks.size > 100 and ask_ticks.size > 100
    got_sides, got_ticks, got_lots, end = append_book(book, capacity=50, n=3)  # 3 rows before
    assert end == 3 + bid_ticks.size + ask_ticks.size and got_ticks.size >= end
    assert got_sides[:3].tolist() == [9, 9, 9] and got_ticks[:3].tolist() == [9, 9, 9]
    expected_sides = [0] * bid_ticks.size + [1] * ask_ticks.size
    assert got_sides[3:end].tolist() == expected_sides
    assert np.array_equal(got_ticks[3:end], np.concatenate([bid_ticks, ask_ticks]))
    assert np.array_equal(got_lots[3:end], np.concatenate([bid_lots, ask_lots]))

    empty_sides, _, _, end = append_book(_Book(1_000, 8_000), capacity=4, n=4)  # full: grown
    assert end == 5 and empty_sides[4] == -1
