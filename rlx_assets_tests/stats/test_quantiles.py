"""Exact quantiles read piece by piece: numpy's own figures, to the last bit, on the sample's
real latencies, whether the values fit one pass or need several narrowing passes."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from rlx_assets.stats import pieces
from rlx_assets.stats.quantiles import linear_quantiles
from rlx_assets_tests.stats.sample_partitions import PARTITIONS

QS = [0.0, 0.01, 0.25, 1 / 3, 0.5, 0.99, 1.0]
LATENCY = pl.col("receipt_timestamp") - pl.col("timestamp")


@pytest.mark.parametrize("table", ["book_delta_v2", "level_1", "trades"])
def test_latency_quantiles_equal_numpys_on_the_sample(sample_lake, monkeypatch, table):
    """Read in 10 k-row pieces, with 4 buckets a pass and at most 50 values selected among,
    the quantiles take several narrowing passes; with the defaults, one. Both are numpy's."""
    monkeypatch.setattr(pieces, "PIECE_ROWS", 10_000)
    for partition in PARTITIONS:
        frame = pl.read_parquet(partition.file(sample_lake, table))
        latencies = frame.select(LATENCY).to_series().to_numpy()
        expected = np.quantile(latencies / 10**9, QS).tolist()
        assert linear_quantiles(frame, LATENCY, QS, divisor=10**9) == expected
        narrowed = linear_quantiles(frame, LATENCY, QS, divisor=10**9, buckets=4, max_held=50)
        assert narrowed == expected


def test_quantiles_of_ties_extremes_and_missing_values():
    """Narrow edge cases on hand-made values: one value, all equal, the int64 extremes, nulls
    (left out, as numpy never sees them), and no value at all."""
    extremes = [np.iinfo(np.int64).min + 1, -5, 0, 0, 0, 7, np.iinfo(np.int64).max]
    for values in ([42], [3] * 1001, extremes, [*range(-50, 50)] * 3):
        frame = pl.DataFrame({"v": [None, *values, None]}, schema={"v": pl.Int64})
        expected = np.quantile(np.array(values) / 10**9, QS).tolist()
        for buckets, max_held in ((None, None), (2, 1)):
            found = linear_quantiles(
                frame, pl.col("v"), QS, divisor=10**9, buckets=buckets, max_held=max_held
            )
            assert found == expected, (values[:5], buckets)
    assert (
        linear_quantiles(pl.DataFrame({"v": [None]}, schema={"v": pl.Int64}), pl.col("v"), QS)
        is None
    )
