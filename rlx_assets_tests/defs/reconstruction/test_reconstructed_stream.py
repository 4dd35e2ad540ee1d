"""reconstructed_stream through Dagster on the real sample days: certified in, exact out."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from rlx_assets.book.store import read_summary, reconstruction_dir
from rlx_assets.definitions import defs as project_defs
from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets.staging import DataLayout, lake_relative_path
from rlx_assets.validation.zones import ready_path
from rlx_assets_tests.conftest import dagster_test_instance
from rlx_assets_tests.damage import rewrite_parquet

SPOT = "BINANCE.BTC-USDT"
DAY8, DAY9 = dt.date(2024, 8, 8), dt.date(2024, 8, 9)
CHAIN = dg.AssetSelection.groups("acquisition", "validation", "reconstruction")


@pytest.fixture
def env(sample_lake, tmp_path):
    lake = Path(shutil.copytree(sample_lake, tmp_path / "lake"))
    resource = RlxEnvironment(
        data_dir=str(tmp_path / "data"), lake_uri=str(lake), gate_profile="sample"
    )
    with dagster_test_instance() as instance:
        yield {
            "lake": lake,
            "layout": DataLayout(tmp_path / "data"),
            "resources": {"rlx": resource},
            "instance": instance,
        }


def run(env, day: dt.date, market: str = SPOT, selection=CHAIN):
    return dg.materialize(
        [*project_defs.assets, *project_defs.asset_checks],
        selection=selection,
        partition_key=f"{day.isoformat()}|{market}",
        instance=env["instance"],
        resources=env["resources"],
        raise_on_error=False,
    )


def check(result, name: str):
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == name)


def test_two_days_reconstruct_in_order_with_the_book_carried_over(env):
    first, second = run(env, DAY8), run(env, DAY9)
    assert first.success and second.success
    summary8 = read_summary(env["layout"], SPOT, DAY8)
    summary9 = read_summary(env["layout"], SPOT, DAY9)
    assert summary8["started_cold"] and summary8["seeded_from"] == "vendor_book_first_row"
    assert not summary9["started_cold"] and summary9["seeded_from"] == "previous_day"
    assert summary9["seed_book"].endswith("2024-08-08/end_book.parquet")
    for result in (first, second):
        assert check(result, "vendor_book_agreement").passed
    # 08-09 agrees with the vendor from its very first book row.
    assert summary9["vendor_book_rows_equal"] == summary9["vendor_book_rows_compared"]
    stream = pl.read_parquet(reconstruction_dir(env["layout"], SPOT, DAY9) / "stream.parquet")
    assert stream["event_time"].is_sorted()
    trades = stream.filter(pl.col("event_type") == "trade")
    vendor_trades = pl.read_parquet(
        env["lake"] / lake_relative_path("trades", "BINANCE", "BTC-USDT", DAY9)
    )
    assert trades.height == vendor_trades.height
    assert isinstance(stream.schema["price"], pl.Decimal)


def test_reconstruction_refuses_a_ready_file_changed_after_certification(env):
    assert run(env, DAY8, selection=dg.AssetSelection.groups("acquisition", "validation")).success
    ready = ready_path(env["layout"], "trades", SPOT, DAY8)
    ready.write_bytes(ready.read_bytes() + b"x")
    result = run(env, DAY8, selection=dg.AssetSelection.assets("reconstructed_stream"))
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "changed after certification" in failure.step_failure_data.error.message
    assert not reconstruction_dir(env["layout"], SPOT, DAY8).exists()


def test_the_fidelity_gate_fails_on_a_corrupted_delta(env):
    deltas = env["lake"] / lake_relative_path("book_delta_v2", "BINANCE", "BTC-USDT", DAY8)
    frame = pl.read_parquet(deltas)
    # Shift three bid deltas at the best bid of a vendor book row by one tick ($0.01), each onto
    # a price its own diff does not touch: the raw file's gates (one level told twice in a diff
    # is a quality failure) let them through, and only the book comparison can see them (three
    # phantom levels are more rows than the 0.1 % the gate tolerates).
    book = pl.read_parquet(env["lake"] / lake_relative_path("book", "BINANCE", "BTC-USDT", DAY8))
    top = book.row(100, named=True)
    taken = frame.select("sequence_number", "side_is_bid", "price")
    rows = (
        frame.with_row_index("i")
        .filter(
            (pl.col("sequence_number") > top["sequence_number"])
            & pl.col("side_is_bid")
            & (pl.col("price") == top["bid_0_price"])
            & (pl.col("size") > 0)
        )
        .with_columns((pl.col("price") + 0.01).alias("shifted"))
        .join(
            taken.rename({"price": "shifted"}),
            on=["sequence_number", "side_is_bid", "shifted"],
            how="anti",
        )["i"]
        .head(3)
    )
    corrupted_sequence = frame["sequence_number"][rows[0]]

    def shift(f: pl.DataFrame):
        return f.with_columns(
            pl.when(pl.int_range(pl.len()).is_in(rows.implode()))
            .then(pl.col("price") + 0.01)
            .otherwise(pl.col("price"))
            .alias("price")
        ).to_arrow()

    rewrite_parquet(deltas, deltas, shift)
    result = run(env, DAY8)
    assert not result.success
    gate = check(result, "vendor_book_agreement")
    assert not gate.passed
    mismatches = gate.metadata["first_mismatches"].value
    assert mismatches and mismatches[0]["sequence_number"] == corrupted_sequence
