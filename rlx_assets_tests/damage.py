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
