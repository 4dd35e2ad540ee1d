"""One streaming pass over a vendor file that gathers what the gates measure.

A full day of `book_delta_v2` is ~30 M rows: read whole, with a `unique()` over every column and
a window over every level key, the gates took 10.9 GB. Here the file is read in record batches
and each scan carries its state from batch to batch (running counts, the previous row of an
ordered column, the first offending rows). Whole-row duplicates and repeated keys are found by
64-bit row hashes (8 bytes a row, sorted in place); the rows whose hash repeats are read again
and compared exactly, so a hash collision can never count as a duplicate. Row numbers in the
examples are the file's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from rlx_assets.book.reconstruct.reading import input_batches

MAX_EXAMPLES = 5
BATCH_BYTES = 64 << 20  # values per batch: ~1.5 M book_delta_v2 rows, ~100 k book rows


def batch_rows_for(schema: pa.Schema) -> int:
    """Rows per batch so that a batch holds about BATCH_BYTES of values."""
    return max(1024, BATCH_BYTES // max(1, sum(_value_bytes(f.type) for f in schema)))


def _value_bytes(dtype: pa.DataType) -> int:
    try:
        return max(1, dtype.bit_width // 8)
    except ValueError:  # variable width: strings
        return 16


def frames(path: Path, rows: int, columns: list[str] | None = None) -> Iterator[pl.DataFrame]:
    """The file's rows as polars frames of at most ``rows`` rows each."""
    for batch in input_batches(path, columns, rows):
        if batch.num_rows:
            yield pl.from_arrow(batch)


class Examples:
    """The first MAX_EXAMPLES rows (file order, with their row number) matching a predicate."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def feed(self, frame: pl.DataFrame, offset: int, mask: pl.Expr) -> None:
        wanted = MAX_EXAMPLES - len(self.rows)
        if wanted > 0:
            found = frame.with_row_index("row", offset=offset).filter(mask).head(wanted)
            self.rows += found.to_dicts()


class OrderScan:
    """Rows whose ``column`` is more than ``tolerance`` below the previous row's, across
    batches: how many, the largest step back, and examples carrying the step and the previous
    value."""

    def __init__(self, column: str, tolerance: int, problem: str) -> None:
        self.column, self.tolerance, self.problem = column, tolerance, problem
        self.count, self.largest = 0, 0
        self.examples = Examples()
        self._last: pl.Series | None = None  # the previous batch's last value (may be null)

    def feed(self, frame: pl.DataFrame, offset: int) -> None:
        values = frame[self.column]
        if self._last is None:
            previous = values.shift(1)
        else:
            previous = pl.concat([self._last, values.head(len(values) - 1)])
        step_back = -(pl.col(self.column) - pl.lit(previous)).fill_null(0)
        flagged = frame.with_columns(
            step_back.alias("step_back"), pl.lit(previous).alias(f"previous_{self.column}")
        )
        mask = pl.col("step_back") > self.tolerance
        self.count += int(flagged.select(mask.sum()).item() or 0)
        self.largest = max(self.largest, int(flagged["step_back"].max() or 0))
        self.examples.feed(flagged, offset, mask)
        self._last = values.tail(1)

    def example_rows(self) -> list[dict[str, Any]]:
        return [{"problem": self.problem, **row} for row in self.examples.rows]


class Silences:
    """First and last timestamp, the longest silence between consecutive timestamps in time
    order and the total of the silences longer than `long_ns`. Streams while the file is in
    time order; a file that is not is re-read for its timestamps alone (8 bytes a row) and
    sorted."""

    def __init__(self, long_ns: int = 0) -> None:
        self.first: int | None = None
        self.last: int | None = None
        self.longest_ns = 0
        self.longest_at: int | None = None
        self.long_ns = long_ns
        self.long_total_ns = 0
        self.in_order = True

    def feed(self, stamps: pl.Series) -> None:
        """Non-null timestamps, in file order."""
        if stamps.is_empty() or not self.in_order:
            return
        if self.last is not None:
            stamps = pl.concat([pl.Series([self.last], dtype=stamps.dtype), stamps])
        gaps = stamps.diff().drop_nulls()
        if gaps.len() and gaps.min() < 0:
            self.in_order = False
            return
        if self.first is None:
            self.first = self.longest_at = int(stamps[0])
        self.long_total_ns += int(gaps.filter(gaps > self.long_ns).sum())
        if gaps.len() and int(gaps.max()) > self.longest_ns:
            at = int(gaps.arg_max())
            self.longest_ns, self.longest_at = int(gaps[at]), int(stamps[at])
        self.last = int(stamps[-1])

    @classmethod
    def sorted_from(cls, path: Path, long_ns: int = 0) -> Silences:
        """The figures from the file's timestamps sorted (for a file not in time order)."""
        stamps = pl.from_arrow(pq.read_table(path, columns=["timestamp"]).column(0))
        silences = cls(long_ns)
        silences.feed(stamps.drop_nulls().sort())
        return silences


class RowHashes:
    """A 64-bit hash of each row's ``columns`` (None: every column), written into one array;
    the hashes that occur more than once say which rows to compare exactly."""

    def __init__(self, rows: int, columns: list[str] | None) -> None:
        self.columns = columns
        self.hashes = np.empty(rows, dtype=np.uint64)

    def of(self, frame: pl.DataFrame) -> np.ndarray:
        chosen = frame if self.columns is None else frame.select(self.columns)
        return chosen.hash_rows(seed=0).to_numpy()

    def feed(self, frame: pl.DataFrame, offset: int) -> None:
        self.hashes[offset : offset + frame.height] = self.of(frame)

    def repeated(self) -> np.ndarray:
        """The hash values held by more than one row (sorts the array in place, then frees it)."""
        hashes, self.hashes = self.hashes, np.empty(0, dtype=np.uint64)
        hashes.sort()
        return np.unique(hashes[1:][hashes[1:] == hashes[:-1]])


def rows_with_repeated_hashes(
    path: Path, batch_rows: int, hashes: RowHashes
) -> pl.DataFrame | None:
    """The rows whose hash is held by more than one row, numbered, in file order (one more pass
    over the file, only when some hash repeats); None when none does."""
    values = hashes.repeated()
    if not values.size:
        return None
    found = []
    offset = 0
    for frame in frames(path, batch_rows):
        mask = np.isin(hashes.of(frame), values)
        if mask.any():
            found.append(frame.with_row_index("row", offset=offset).filter(pl.Series(mask)))
        offset += frame.height
    return pl.concat(found)
