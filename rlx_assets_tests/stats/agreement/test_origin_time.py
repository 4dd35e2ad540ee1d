"""Origin-time validity on the real sample: valid as recorded, and flagged rows when a time
is from another day, missing, or received long before the event."""

from __future__ import annotations

import datetime as dt

import polars as pl

from rlx_assets.stats.agreement import origin_time_validity
from rlx_assets_tests.stats.sample_partitions import FUTURES_0808, PARTITIONS, SPOT_0808, SPOT_0809

NS_PER_DAY = 86_400 * 10**9


def test_origin_times_are_valid_on_the_sample(sample_lake):
    for partition in PARTITIONS:
        for table in ("trades", "book", "book_delta_v2", "level_1"):
            frame = pl.read_parquet(partition.file(sample_lake, table))
            result = origin_time_validity(
                frame, partition.day, negative_latency_bound_s=5, max_invalid_share=0
            )
            assert result["passed"], (partition.key, table, result)
            # the recorder's clock ran ~1.27 s behind the exchange
            if table != "level_1" or partition is FUTURES_0808:
                assert -1.4 < result["latency_s"]["p50"] < -1.1


def test_a_timestamp_from_another_day_is_flagged(sample_lake):
    trades = pl.read_parquet(SPOT_0809.file(sample_lake, "trades"))
    row = 1234
    stamp = trades["timestamp"][row] - NS_PER_DAY
    moved = trades.with_columns(
        pl.when(pl.int_range(pl.len()) == row).then(stamp).otherwise("timestamp").alias("timestamp")
    )
    result = origin_time_validity(
        moved, SPOT_0809.day, negative_latency_bound_s=5, max_invalid_share=0
    )
    assert result["outside_day"] == 1 and result["invalid_rows"] == 1 and not result["passed"]
    assert result["first_outside_day"] == [
        {
            "row": row,
            "timestamp": dt.datetime.fromtimestamp(stamp / 1e9, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
        }
    ]
    # ... and the same day's file is fine for the day it belongs to
    assert origin_time_validity(
        trades, SPOT_0809.day, negative_latency_bound_s=5, max_invalid_share=0
    )["passed"]


def test_nulls_and_receipts_long_before_the_event_are_flagged(sample_lake):
    trades = pl.read_parquet(SPOT_0808.file(sample_lake, "trades"))
    index = pl.int_range(pl.len())
    damaged = trades.with_columns(
        pl.when(index == 5).then(None).otherwise("timestamp").alias("timestamp"),
        pl.when(index == 9)
        .then(pl.col("timestamp") - 6 * 10**9)
        .otherwise("receipt_timestamp")
        .alias("receipt_timestamp"),
    )
    result = origin_time_validity(
        damaged, SPOT_0808.day, negative_latency_bound_s=5, max_invalid_share=0
    )
    assert result["null_timestamp"] == 1
    assert result["negative_latency_beyond_bound"] == 1
    assert result["invalid_rows"] == 2 and not result["passed"]
    loose = origin_time_validity(
        damaged, SPOT_0808.day, negative_latency_bound_s=7, max_invalid_share=0
    )
    assert loose["negative_latency_beyond_bound"] == 0
