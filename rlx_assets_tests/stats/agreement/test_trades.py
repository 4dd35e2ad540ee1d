"""Trade agreement by id and aggTrade consistency on the real sample: each passes on the sample
and lists the trades a damaged side lacks or changes."""

from __future__ import annotations

import polars as pl
import pytest

from rlx_assets.stats.agreement import NotComputable, aggtrade_consistency, trade_agreement
from rlx_assets_tests.stats.sample_partitions import SPOT_0808, SPOT_0809


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
