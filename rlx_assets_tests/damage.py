"""Precise damage to real vendor files, for showing that a gate fails on bad input."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq


def rewrite_parquet(source: Path, target: Path, change: Callable[[pl.DataFrame], pa.Table]) -> Path:
    """Write `change(rows of source)` to `target`, keeping every untouched dtype as it was."""
    table = change(pl.read_parquet(source))
    # polars hands strings back as large_string; the vendor writes string.
    plain = pa.schema(
        [f.with_type(pa.string()) if pa.types.is_large_string(f.type) else f for f in table.schema]
    )
    pq.write_table(table.cast(plain), target, compression="snappy")
    return target


def set_value(column: str, row: int, value: object) -> Callable[[pl.DataFrame], pa.Table]:
    """A change that puts `value` into one cell."""

    def change(frame: pl.DataFrame) -> pa.Table:
        return frame.with_columns(
            pl.when(pl.int_range(pl.len()) == row)
            .then(pl.lit(value, dtype=frame.schema[column]))
            .otherwise(pl.col(column))
            .alias(column)
        ).to_arrow()

    return change


def cast_column(column: str, dtype: pl.DataType) -> Callable[[pl.DataFrame], pa.Table]:
    """A change that stores `column` with another dtype, as a drifting vendor writer might."""

    def change(frame: pl.DataFrame) -> pa.Table:
        return frame.with_columns(pl.col(column).cast(dtype)).to_arrow()

    return change


def shuffle_rows(seed: int = 8) -> Callable[[pl.DataFrame], pa.Table]:
    """A change that keeps every row but loses the vendor's order."""

    def change(frame: pl.DataFrame) -> pa.Table:
        return frame.sample(fraction=1.0, shuffle=True, seed=seed).to_arrow()

    return change


def repeat_row_with(row: int, column: str, value: object) -> Callable[[pl.DataFrame], pa.Table]:
    """A change that inserts a copy of `row` right after it, differing only in `column`: the
    same event told twice, two ways."""

    def change(frame: pl.DataFrame) -> pa.Table:
        twin = frame.slice(row, 1).with_columns(
            pl.lit(value, dtype=frame.schema[column]).alias(column)
        )
        return pl.concat([frame.head(row + 1), twin, frame.slice(row + 1)]).to_arrow()

    return change


def keep_rows(count: int) -> Callable[[pl.DataFrame], pa.Table]:
    """A change that keeps only the first `count` rows (a file cut short upstream)."""

    def change(frame: pl.DataFrame) -> pa.Table:
        return frame.head(count).to_arrow()

    return change


# --- fidelity damage: whole rows of real files ---------------------------------------------
NS_PER_MINUTE = 60_000_000_000


def in_minute(minute_ns: int, column: str = "timestamp") -> pl.Expr:
    """Rows whose `column` (int64 ns) lies in the minute starting at `minute_ns`."""
    return pl.col(column).is_between(minute_ns, minute_ns + NS_PER_MINUTE, closed="left")


def drop_rows(where: pl.Expr) -> Callable[[pl.DataFrame], pa.Table]:
    """A change that removes the rows matching `where`."""
    return lambda frame: frame.filter(~where).to_arrow()


def shift_times(where: pl.Expr, seconds: float, column: str = "timestamp"):
    """A change that moves `column` (int64 ns) of the rows matching `where` by `seconds`."""
    delta = round(seconds * 1e9)

    def change(frame: pl.DataFrame) -> pa.Table:
        moved = pl.when(where).then(pl.col(column) + delta).otherwise(pl.col(column))
        return frame.with_columns(moved.alias(column)).to_arrow()

    return change


def keep_metadata(source: Path, target: Path) -> Path:
    """Give `target` the key-value metadata of `source` (a damaged copy still says where its
    rows came from, as the real file did)."""
    table = pq.read_table(target)
    pq.write_table(table.replace_schema_metadata(pq.read_schema(source).metadata), target)
    return target
