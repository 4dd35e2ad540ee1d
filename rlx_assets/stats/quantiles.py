"""Exact quantiles of an integer column too long to hold: ``numpy.quantile``'s default
``linear`` method (Hyndman & Fan 7), equal to it to the last bit, from a few streamed passes.

The quantiles need a few order statistics (the values at known ranks of the sorted column).
Each is found by narrowing: a pass counts the rows per bucket over the value interval known to
hold it, and the bucket holding its rank becomes the next interval, until an interval holds at
most ``max_held`` rows, which one last pass collects to select within. Memory: a histogram, those
rows and one piece of the frame (``stats.pieces``), whatever the length of the column. Integers
only: bucket arithmetic is exact (the report's latencies are int64 nanoseconds).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from rlx_assets.stats.pieces import read_pieces

BUCKETS = 1 << 12  # per interval and pass: a pass narrows an interval 4096-fold
MAX_HELD = 1 << 20  # rows of one interval collected to select within (8 MB)


@dataclass
class _Interval:
    """Values ``lo..hi`` (inclusive) holding the order statistics ``ranks`` (0-based ranks of
    the sorted column); ``below``: rows under ``lo``; ``rows``: rows inside."""

    lo: int
    hi: int
    below: int
    rows: int
    ranks: list[int]


def linear_quantiles(
    frame: pl.LazyFrame | pl.DataFrame,
    values: pl.Expr,
    qs: Sequence[float],
    *,
    divisor: float = 1.0,
    buckets: int | None = None,
    max_held: int | None = None,
) -> list[float] | None:
    """``numpy.quantile(v / divisor, qs)`` of the non-null integers ``v`` that ``values``
    gives on ``frame`` (a scan or frame, read piece by piece), exactly, in bounded memory
    (``buckets`` per pass, up to ``max_held`` values selected among: by default ``BUCKETS``,
    ``MAX_HELD``); None when there is no value."""
    value = values.cast(pl.Int64).alias("_v")
    n, lo, hi = 0, None, None
    for piece in read_pieces(frame, lambda p: p.select(value).drop_nulls()):
        if piece.height:
            column = piece["_v"]
            n += piece.height
            lo = column.min() if lo is None else min(lo, column.min())
            hi = column.max() if hi is None else max(hi, column.max())
    if n == 0:
        return None
    # numpy's linear method: the virtual index (n - 1) * q lies between two ranks
    virtual = (n - 1) * np.asarray(qs, dtype=np.float64)
    previous = np.floor(virtual)
    above = virtual >= n - 1
    previous[above] = n - 1
    upper = np.where(above, n - 1, previous + 1).astype(np.int64)
    previous = previous.astype(np.int64)
    gamma = virtual - np.where(above, -1, previous)  # numpy's: -1 indexes the last value

    def arrays() -> Iterator[np.ndarray]:
        for piece in read_pieces(frame, lambda p: p.select(value).drop_nulls()):
            yield piece["_v"].to_numpy()

    wanted = sorted({*previous.tolist(), *upper.tolist()})
    ranked = _order_statistics(
        arrays, wanted, n, int(lo), int(hi), buckets or BUCKETS, max_held or MAX_HELD
    )
    a = np.array([ranked[r] for r in previous], dtype=np.float64) / divisor
    b = np.array([ranked[r] for r in upper], dtype=np.float64) / divisor
    return [float(x) for x in _lerp(a, b, gamma)]


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """numpy's own interpolation (``numpy.lib._function_base_impl._lerp``), operation for
    operation: the same floats."""
    diff = b - a
    return np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)


def _order_statistics(
    arrays: Callable[[], Iterator[np.ndarray]], ranks: list[int], n: int, lo: int, hi: int,
    buckets: int, max_held: int,
) -> dict[int, int]:  # fmt: skip
    """The value at each rank (0-based) of the sorted values; ``arrays()`` reads them once."""
    found: dict[int, int] = {0: lo, n - 1: hi}
    wanted = [r for r in ranks if r not in found]
    pending = [_Interval(lo, hi, 0, n, wanted)] if wanted else []
    while pending:
        small = [i for i in pending if i.rows <= max_held or i.lo == i.hi]
        found.update(_select(arrays, small))
        pending = _narrow(arrays, [i for i in pending if i not in small], buckets)
    return found


def _select(
    arrays: Callable[[], Iterator[np.ndarray]], intervals: list[_Interval]
) -> dict[int, int]:
    """One pass: the rows of each interval collected, its ranks selected among them."""
    held: list[list[np.ndarray]] = [[] for _ in intervals]
    if any(i.lo != i.hi for i in intervals):
        for v in arrays():
            for kept, i in zip(held, intervals, strict=True):
                if i.lo != i.hi:
                    kept.append(v[(v >= i.lo) & (v <= i.hi)])
    found = {}
    for kept, i in zip(held, intervals, strict=True):
        if i.lo == i.hi:  # one value: no need to look
            found.update(dict.fromkeys(i.ranks, i.lo))
            continue
        inside = np.concatenate(kept)
        local = [r - i.below for r in i.ranks]
        inside.partition(local)
        found.update({r: int(inside[k]) for r, k in zip(i.ranks, local, strict=True)})
    return found


def _narrow(
    arrays: Callable[[], Iterator[np.ndarray]], intervals: list[_Interval], buckets: int
) -> list[_Interval]:
    """One pass: each interval's rows counted in ``buckets`` equal buckets; each rank moves to
    its bucket (intervals sharing a bucket merge)."""
    if not intervals:
        return []
    widths = [-(-(i.hi - i.lo + 1) // buckets) for i in intervals]
    counts = [np.zeros(buckets, dtype=np.int64) for _ in intervals]
    for v in arrays():
        for count, i, width in zip(counts, intervals, widths, strict=True):
            inside = v[(v >= i.lo) & (v <= i.hi)]
            # offsets from lo as unsigned: the span of an int64 range can exceed int64
            offset = inside.view(np.uint64) - np.uint64(i.lo % (1 << 64))
            bucket = (offset // np.uint64(width)).astype(np.int64)
            count += np.bincount(bucket, minlength=buckets)
    narrowed: dict[tuple[int, int], _Interval] = {}
    for count, i, width in zip(counts, intervals, widths, strict=True):
        below = i.below + np.concatenate([[0], np.cumsum(count)])
        for rank in i.ranks:
            k = int(np.searchsorted(below, rank, side="right")) - 1
            lo = i.lo + k * width
            hi = min(lo + width - 1, i.hi)
            key = (lo, hi)
            if key not in narrowed:
                narrowed[key] = _Interval(lo, hi, int(below[k]), int(count[k]), [])
            narrowed[key].ranks.append(rank)
    return list(narrowed.values())
