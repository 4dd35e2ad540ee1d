"""What every agreement metric shares: ``NotComputable``, exact integer units of prices and
sizes, nanosecond times, shares and verdicts, windows of sequence numbers. Imports only
``stats.pieces``.

Prices and sizes are compared exactly, as integers at the reconstruction's decimal scale (a
float from the vendor file is the nearest double of its decimal, so rounding ``x * 10**scale``
recovers the decimal's units).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence

import polars as pl

from rlx_assets.stats.pieces import read_pieces, span

NS_PER_S = 1_000_000_000
NS_PER_MINUTE = 60 * NS_PER_S
NS_PER_DAY = 86_400 * NS_PER_S
ABSENT = -1  # units of a missing level (prices and book sizes are positive)


class NotComputable(Exception):
    """The inputs cannot support this metric; the message says why."""


def decimal_scale(dtype: pl.DataType) -> int | None:
    return dtype.scale if isinstance(dtype, pl.Decimal) else None


def units_expr(column: str, scale: int | None) -> pl.Expr:
    """Decimal or float column -> int64 units at ``scale`` (null/NaN -> ``ABSENT``); with no
    scale the float itself (null -> NaN), compared exactly."""
    value = pl.col(column).cast(pl.Float64).fill_nan(None)
    if scale is None:
        return value.fill_null(float("nan")).alias(column)
    return (value * 10.0**scale).round().cast(pl.Int64).fill_null(ABSENT).alias(column)


def to_ns(column: str, dtype: pl.DataType) -> pl.Expr:
    """int64 ns or a timestamp column -> int64 ns since the epoch."""
    if isinstance(dtype, pl.Datetime):
        return pl.col(column).dt.cast_time_unit("ns").dt.epoch("ns").alias(column)
    return pl.col(column).cast(pl.Int64).alias(column)


def iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return dt.datetime.fromtimestamp(ns / NS_PER_S, dt.UTC).isoformat(timespec="milliseconds")


def day_bounds(day: dt.date) -> tuple[int, int]:
    start = int(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp()) * NS_PER_S
    return start, start + NS_PER_DAY


def share_of(num: int, den: int) -> float | None:
    """``num / den``, or None when nothing was counted."""
    return num / den if den else None


def at_least(value: float | None, threshold: float) -> bool | None:
    """The verdict of a share against its minimum (None: nothing to judge)."""
    return None if value is None else bool(value >= threshold)


# Rows of one side held at a time: a day's files are compared window by window of sequence
# numbers (every row of a sequence number in one window), so memory does not grow with the day.
WINDOW_ROWS = 500_000


def sequence_windows(updates: pl.DataFrame, columns: int = 5) -> list[tuple[int, int]]:
    """(first, last) sequence numbers of consecutive windows of about ``WINDOW_ROWS`` rows of
    5 columns (fewer rows of wider tables); ``updates``: ``sequence_number`` (sorted) and its
    ``rows``."""
    if updates.height == 0:
        return []
    window_rows = max(WINDOW_ROWS * 5 // columns, 1)
    windows = (
        updates.with_columns(((pl.col("rows").cum_sum() - 1) // window_rows).alias("_w"))
        .group_by("_w", maintain_order=True)
        .agg(pl.col("sequence_number").first().alias("lo"), pl.col("sequence_number").last())
    )
    return list(zip(windows["lo"].to_list(), windows["sequence_number"].to_list(), strict=True))


def in_window(frame: pl.LazyFrame, lo: int, hi: int) -> pl.DataFrame:
    return frame.filter(pl.col("sequence_number").is_between(lo, hi)).collect()


# Buckets of a key counted to cut a day into windows of about WINDOW_ROWS rows.
HISTOGRAM_BUCKETS = 4096
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


def key_windows(
    frames: Sequence[pl.LazyFrame | pl.DataFrame], column: str, columns: int = 5
) -> list[tuple[int, int]]:
    """Consecutive ranges ``[lo, hi]`` of an integer key (a sequence number, a trade id) that
    together cover every value, each holding about ``WINDOW_ROWS`` rows (of ``columns``
    columns, as ``sequence_windows``) of the frames together: cut from a histogram of the key,
    two passes over that one column, piece by piece (``stats.pieces``). Empty when no frame
    has a row."""
    key = pl.col(column).cast(pl.Int64)

    def keys(query: Callable[[pl.LazyFrame], pl.LazyFrame]) -> Iterator[pl.DataFrame]:
        for frame in frames:
            yield from read_pieces(frame, lambda piece: query(piece.select(key).drop_nulls()))

    lo, hi = span(keys(lambda p: p), column)
    if lo is None:
        return []
    width = -(-(hi - lo + 1) // HISTOGRAM_BUCKETS)
    bucket = ((key - lo) // width).alias("sequence_number")
    counts = (
        pl.concat(keys(lambda p: p.group_by(bucket).agg(pl.len().alias("rows"))))
        .group_by("sequence_number")
        .agg(pl.col("rows").sum())
        .sort("sequence_number")
    )
    cuts = [lo + first * width for first, _ in sequence_windows(counts, columns)[1:]]
    return list(zip([_I64_MIN, *cuts], [c - 1 for c in cuts] + [_I64_MAX], strict=True))
