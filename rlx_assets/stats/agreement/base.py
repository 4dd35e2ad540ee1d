"""What every agreement metric shares: ``NotComputable``, exact integer units of prices and
sizes, nanosecond times, shares and verdicts. Imports nothing of the project.

Prices and sizes are compared exactly, as integers at the reconstruction's decimal scale (a
float from the vendor file is the nearest double of its decimal, so rounding ``x * 10**scale``
recovers the decimal's units).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

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
