"""Agreement and integrity metrics on the real sample partitions: each passes on the sample
and detects a real difference made by damaging one side."""

from __future__ import annotations

import datetime as dt
import gzip
import json

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from rlx_assets.capture.golden import analyse_day
from rlx_assets.stats.agreement import (
    NotComputable,
    aggtrade_consistency,
    book_agreement,
    book_updates,
    golden_sequence_gaps,
    lake_sequence_gaps,
    origin_time_validity,
    top_of_book_agreement,
    trade_agreement,
)
from rlx_assets_tests.stats.sample_partitions import (
    FUTURES_0808,
    PARTITIONS,
    SPOT_0808,
    SPOT_0809,
    reconstruct,
    reconstructions,
    shift_best_bid_removal,
)

NS_PER_DAY = 86_400 * 10**9


@pytest.fixture(scope="module")
def recon(sample_lake, tmp_path_factory):
    return reconstructions(sample_lake, tmp_path_factory)


def _seed_info(recon_dir) -> dict:
    meta = pq.read_schema(recon_dir / "end_book.parquet").metadata
    meta = {k.decode(): v.decode() for k, v in meta.items() if k.startswith(b"rlx.")}
    return {
        "seed_sequence": int(meta["rlx.seed_sequence"]),
        "started_cold": meta["rlx.seeded_from"] != "previous_day",
        "known_bid_floor": float(meta["rlx.known_bid_floor"]),  # cold start on 2024-08-08
        "known_ask_ceiling": float(meta["rlx.known_ask_ceiling"]),
    }


def _book(recon_dir, lake, partition) -> dict:
    return book_agreement(
        pl.scan_parquet(recon_dir / "snapshots_vendor.parquet"),
        pl.scan_parquet(partition.file(lake, "book")),
        min_share=0.999,
        **_seed_info(recon_dir),
    )


def _top(recon_dir, lake, partition) -> dict:
    figures, per_minute = top_of_book_agreement(
        book_updates(pl.scan_parquet(recon_dir / "stream.parquet")),
        pl.read_parquet(partition.file(lake, "level_1")),
        min_share=0.999,
    )
    assert int(per_minute["compared"].sum()) == figures["compared"]
    assert int(per_minute["equal"].sum()) == figures["equal"]
    return figures


# --- book and top of book ---------------------------------------------------------------------
@pytest.mark.parametrize("partition", PARTITIONS, ids=lambda p: p.key)
def test_book_and_top_of_book_agree_on_the_sample(partition, recon, sample_lake):
    directory = recon[partition.key]
    book = _book(directory, sample_lake, partition)
    summary = json.loads((directory / "summary.json").read_text())
    assert book["passed"] and book["agreement"] == 1.0
    assert book["first_mismatches"] == []
    # recomputed from the files, the exact figure is the reconstruction's own
    assert book["rows_compared"] == summary["vendor_book_rows_compared"]
    assert book["rows_equal"] == summary["vendor_book_rows_equal"]
    assert book["exact_rows_match_reconstruction"] is True
    assert len(book["level_agreement"]) == 20
    top = _top(directory, sample_lake, partition)
    assert top["passed"] and top["agreement"] >= 0.999
    assert top["compared"] > 3000


def test_cold_start_differences_lie_outside_the_known_depth(recon, sample_lake):
    """Spot 2024-08-08 starts from the vendor's first top-20 row: deeper levels are unknown,
    so many rows differ from the vendor's full-depth book, but only there."""
    book = _book(recon[SPOT_0808.key], sample_lake, SPOT_0808)
    assert book["exact_share"] < 0.9
    assert book["rows_differing_only_outside_known_depth"] == (
        book["rows_compared"] - book["rows_equal"]
    )
    first = book["first_differences_outside_known_depth"][0]
    assert first["vendor"]["price"] != first["ours"]["price"]


def test_a_delta_shifted_by_one_tick_fails_book_and_top_of_book(recon, sample_lake, tmp_path):
    shifted = shift_best_bid_removal(
        SPOT_0808, sample_lake, recon[SPOT_0808.key], tmp_path / "book_delta_v2.parquet"
    )
    damaged = reconstruct(
        SPOT_0808, sample_lake, tmp_path / "recon", book_delta_v2=tmp_path / "book_delta_v2.parquet"
    )
    book = _book(damaged, sample_lake, SPOT_0808)
    assert not book["passed"] and book["agreement"] < 0.99
    first = book["first_mismatches"][0]
    # the best bid that should have been removed is still in our book, not in the vendor's
    assert first["sequence_number"] == shifted["sequence_number"]
    assert (first["side"], first["price"], first["vendor_size"]) == ("bid", shifted["price"], None)
    top = _top(damaged, sample_lake, SPOT_0808)
    assert not top["passed"] and top["agreement"] < 0.99
    stale = [m for m in top["first_mismatches"] if m["ours"]["bid_price"] == shifted["price"]]
    assert stale and stale[0]["sequence_number"] == shifted["sequence_number"]


def test_top_of_book_needs_tickers(recon, sample_lake):
    updates = book_updates(pl.scan_parquet(recon[SPOT_0809.key] / "stream.parquet"))
    empty = pl.read_parquet(SPOT_0809.file(sample_lake, "level_1")).clear()
    with pytest.raises(NotComputable, match="no rows"):
        top_of_book_agreement(updates, empty, min_share=0.999)


# --- trades ------------------------------------------------------------------------------------
def test_trades_agree_on_the_sample_and_removed_trades_are_listed_as_missing(sample_lake):
    golden = pl.read_parquet(SPOT_0809.file(sample_lake, "trades"))
    lake = golden.clone()
    same = trade_agreement(
        lake, golden, min_share=0.9999, lake_source="trade", golden_source="trade"
    )
    assert same["passed"] and same["agreement"] == 1.0
    assert same["missing"] == same["extra"] == same["mismatched"] == 0

    ids = golden["id"].to_numpy()
    removed = sorted(int(i) for i in ids[[10, 500, 501, 7000]])
    damaged = lake.filter(~pl.col("id").is_in(removed))
    missing = trade_agreement(damaged, golden, min_share=0.9999)
    assert missing["missing"] == 4 and missing["missing_ids"] == removed
    assert not missing["passed"]
    # the other way round the same trades are extra in the lake
    extra = trade_agreement(golden, damaged, min_share=0.9999)
    assert extra["extra_ids"] == [
        i for i in removed if damaged["id"].min() < i < damaged["id"].max()
    ]


def test_trade_price_size_and_side_differences_are_listed(sample_lake):
    golden = pl.read_parquet(SPOT_0808.file(sample_lake, "trades"))
    ids = golden["id"].to_list()
    lake = golden.with_columns(
        pl.when(pl.col("id") == ids[100])
        .then(pl.col("price") + 0.01)
        .otherwise("price")
        .alias("price"),
        pl.when(pl.col("id") == ids[200])
        .then(pl.col("amount") * 2)
        .otherwise("amount")
        .alias("amount"),
        pl.when(pl.col("id") == ids[300])
        .then(pl.when(pl.col("side") == "buy").then(pl.lit("sell")).otherwise(pl.lit("buy")))
        .otherwise("side")
        .alias("side"),
    )
    result = trade_agreement(lake, golden, min_share=0.9999, max_listed=2)
    assert result["mismatched"] == 3
    assert result["mismatched_by_field"] == {"price": 1, "size": 1, "side": 1}
    assert [t["id"] for t in result["mismatched_trades"]] == [ids[100], ids[200]]
    assert not result["passed"]


def test_lake_trades_outside_the_golden_range_are_not_judged(sample_lake):
    golden = pl.read_parquet(SPOT_0808.file(sample_lake, "trades"))
    later = pl.read_parquet(SPOT_0809.file(sample_lake, "trades"))
    result = trade_agreement(pl.concat([golden, later]), golden, min_share=0.9999)
    assert result["passed"] and result["lake_trades_outside_golden_range"] == later.height


def test_different_trade_kinds_are_not_compared(sample_lake):
    golden = pl.read_parquet(SPOT_0808.file(sample_lake, "trades"))
    with pytest.raises(NotComputable, match="aggTrade"):
        trade_agreement(golden, golden, min_share=1, lake_source="aggTrade", golden_source="trade")


def test_aggtrade_quantity_is_the_sum_of_its_raw_trades(sample_lake):
    """aggTrades assembled from real raw trades the way Binance aggregates them (consecutive
    fills of one taker at one price and time), then one quantity damaged."""
    trades = pl.read_parquet(SPOT_0808.file(sample_lake, "trades")).sort("id")
    units = (trades["amount"] * 10**8).round().cast(pl.Int64)
    raw = pl.DataFrame({"t": trades["id"], "quantity": units})
    key = trades.select("timestamp", "price", "side")
    new = ~pl.all_horizontal(pl.col(c) == pl.col(c).shift(1) for c in key.columns).fill_null(False)
    groups = key.select(new.cum_sum().alias("g"))["g"]
    agg = (
        raw.with_columns(groups)
        .group_by("g", maintain_order=True)
        .agg(pl.col("t").min().alias("f"), pl.col("t").max().alias("l"), pl.col("quantity").sum())
        .with_row_index("a")
        .with_columns(pl.col("a").cast(pl.Int64))
    )
    assert agg.height < raw.height  # real fills do aggregate
    good = aggtrade_consistency(agg, raw, min_share=1.0)
    assert good["passed"] and good["checked"] == agg.height and good["mismatched"] == 0
    multi = agg.filter(pl.col("l") > pl.col("f"))["a"][0]
    bad = agg.with_columns(
        pl.when(pl.col("a") == multi).then(pl.col("quantity") - 1).otherwise("quantity")
    )
    result = aggtrade_consistency(bad, raw.filter(pl.col("t") != agg["f"][-1]), min_share=1.0)
    assert result["mismatched_ids"] == [multi] and not result["passed"]
    assert result["incomplete"] == 1  # the last aggTrade lost a raw trade: not judged


# --- sequence gaps -----------------------------------------------------------------------------
def test_lake_sequence_gaps_on_the_sample_and_when_damaged(sample_lake):
    deltas = pl.read_parquet(FUTURES_0808.file(sample_lake, "book_delta_v2"))
    clean = lake_sequence_gaps(deltas, max_ratio=1e-4, time_gap_bound_s=5, max_time_gap_ratio=1e-3)
    assert clean["passed"] and clean["sequence_decreases"] == 0 and clean["time_gaps"] == 0
    assert clean["continuity_checkable"] is False

    seq = deltas["sequence_number"].to_numpy().copy()
    updates = np.unique(seq)
    middle = updates[updates.size // 2]
    seq[seq == middle] = updates[updates.size // 2 - 5]  # one update carries an old id
    decreased = lake_sequence_gaps(
        deltas.with_columns(pl.Series("sequence_number", seq)),
        max_ratio=1e-4, time_gap_bound_s=5, max_time_gap_ratio=1e-3,
    )  # fmt: skip
    assert decreased["sequence_decreases"] == 1 and not decreased["passed"]
    assert decreased["first_decreases"][0]["came"] == int(updates[updates.size // 2 - 5])

    t = deltas["timestamp"]
    cut = int(t.min()) + 60 * 10**9
    silent = deltas.filter((t < cut) | (t > cut + 20 * 10**9))  # 20 s of deltas lost
    gaps = lake_sequence_gaps(silent, max_ratio=1e-4, time_gap_bound_s=5, max_time_gap_ratio=1e-3)
    assert gaps["time_gaps"] == 1 and 20 <= gaps["time_gap_seconds"] < 21
    assert not gaps["passed"]


def test_golden_sequence_gaps_detect_a_lost_futures_diff(tmp_path):
    """The futures captures' diffs chain by ``pu`` = previous ``u``: losing one breaks it.
    (Only the depth lines are kept, to keep the test fast; the full captures are checked
    by the report tests.)"""
    with gzip.open(FUTURES_0808.capture_paths()[0], "rt") as handle:
        depth = [line for line in handle if "@depth" in line or "lastUpdateId" in line]
    clean_file, damaged_file = tmp_path / "clean.txt", tmp_path / "damaged.txt"  # plain text
    clean_file.write_text("".join(depth))
    lost = len(depth) // 2
    damaged_file.write_text("".join(line for i, line in enumerate(depth) if i != lost))

    def gaps(path):
        day = analyse_day([path], "usdm", "btcusdt", FUTURES_0808.day)
        return golden_sequence_gaps(day, max_ratio=1e-4)

    clean = gaps(clean_file)
    assert clean["passed"] and clean["sequence_gap_ratio"] == 0 and clean["depth_diffs"] > 6000
    result = gaps(damaged_file)
    assert result["gaps_by_source"] == {"depth_sequence": 1}
    assert result["sequence_gap_ratio"] == pytest.approx(1 / (clean["depth_diffs"] - 1))
    assert "pu=" in result["gaps"][0]["detail"] and not result["passed"]


# --- origin times ------------------------------------------------------------------------------
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
