"""A lazy frame's columns as numpy arrays, batch by batch, in order (polars' streaming engine):
how the streamed statistics read a day without holding it. Imports nothing of the project."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import polars as pl

BATCH_ROWS = 1 << 20


def column_batches(frame: pl.LazyFrame, *columns: str) -> Iterator[tuple[np.ndarray, ...]]:
    """``columns`` of ``frame`` as numpy arrays, ``BATCH_ROWS`` rows at a time, in order."""
    for batch in frame.select(columns).collect_batches(chunk_size=BATCH_ROWS):
        yield tuple(batch[c].to_numpy() for c in columns)
