"""Reading the vendor files: the columns reconstruction reads, batches, statistics.
May import ``decimals`` only (within ``book.reconstruct``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rlx_assets.book.reconstruct.decimals import ReconstructionError
from rlx_assets.vendor_schemas import BOOK_DEPTH

DEFAULT_CHUNK_ROWS = 2_000_000

_LEVEL_COLUMNS = {
    (side, what): [f"{side}_{i}_{what}" for i in range(BOOK_DEPTH)]
    for side in ("bid", "ask")
    for what in ("price", "size")
}
_LEVEL_ORDER = (("bid", "price"), ("bid", "size"), ("ask", "price"), ("ask", "size"))
_ALL_LEVEL_COLUMNS = [c for key in _LEVEL_ORDER for c in _LEVEL_COLUMNS[key]]
TRADE_COLUMNS = ["side", "amount", "price", "id", "timestamp", "receipt_timestamp"]
DELTA_COLUMNS = [
    "timestamp",
    "receipt_timestamp",
    "sequence_number",
    "side_is_bid",
    "price",
    "size",
]
BOOK_COLUMNS = ["timestamp", "sequence_number", *_ALL_LEVEL_COLUMNS]


def _open(path: Path) -> pq.ParquetFile:
    # buffered page reads: a file written as one huge row group is still read in small pieces
    return pq.ParquetFile(path, buffer_size=1 << 22, pre_buffer=False)


def input_batch_rows(chunk_rows: int = DEFAULT_CHUNK_ROWS) -> int:
    """Rows per input batch: a window of both inputs, their buffers and outputs fit in
    ``chunk_rows``."""
    return max(1, chunk_rows // 4)


def input_batches(path: Path | None, columns: list[str], rows: int, use_threads: bool = True):
    """``columns`` of an input file (none for ``path`` None) in batches of ``rows``."""
    if path is None:
        return
    with _open(path) as handle:
        yield from handle.iter_batches(batch_size=rows, columns=columns, use_threads=use_threads)


def _first_batch(path: Path | None, columns: list[str], rows: int) -> pa.RecordBatch | None:
    for batch in input_batches(path, columns, rows):
        return batch
    return None


def _statistics_range(path: Path | None, columns: list[str]) -> tuple[float, float] | None:
    """(min, max) over ``columns`` from the row-group statistics; None when any is missing."""
    if path is None:
        return (np.inf, -np.inf)
    meta = pq.read_metadata(path)
    index = {meta.schema.column(i).name: i for i in range(meta.num_columns)}
    lo, hi = np.inf, -np.inf
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for name in columns:
            chunk = group.column(index[name])
            stats = chunk.statistics
            if chunk.num_values and (stats is None or not stats.has_min_max):
                return None
            if chunk.num_values:
                lo, hi = min(lo, float(stats.min)), max(hi, float(stats.max))
    return lo, hi


def _numpy(batch: pa.RecordBatch, name: str) -> np.ndarray:
    column = batch.column(name)
    if column.null_count:
        raise ReconstructionError(f"{name}: {column.null_count} null values")
    return column.to_numpy(zero_copy_only=False)
