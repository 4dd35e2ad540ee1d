"""The coverage calendar read from a data root the real chain wrote, before and after damage."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from rlx_assets.book.store import reconstruction_dir
from rlx_assets.defs.acquisition.assets import raw_trades
from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets.defs.validation.checks import raw_trades_gates
from rlx_assets.staging import DataLayout, lake_relative_path
from rlx_assets.validation.certificate import certificate_path
from rlx_assets.validation.coverage import calendar_text, coverage_table
from rlx_assets.validation.zones import gate_report_path, quarantine_dir
from rlx_assets_tests.damage import rewrite_parquet, set_value
from rlx_assets_tests.export.sample_chain import SPOT, certified_sample_data, copy_of

FUTURES = "BINANCE_FUTURES.BTC-USDT-PERP"
MARKETS = [SPOT, FUTURES]
DAY7, DAY8, DAY9, DAY10 = (dt.date(2024, 8, d) for d in (7, 8, 9, 10))
DAYS = [DAY7, DAY8, DAY9, DAY10]


@pytest.fixture(scope="module")
def certified(sample_lake, tmp_path_factory) -> Path:
    return certified_sample_data(sample_lake, tmp_path_factory)


def states(table: pl.DataFrame) -> dict[tuple[str, dt.date], str]:
    return {(market, day): state for day, market, state in table.iter_rows()}


def put_nan_trade_price(lake: Path, exchange: str, symbol: str, day: dt.date) -> None:
    path = lake / lake_relative_path("trades", exchange, symbol, day)
    rewrite_parquet(path, path, set_value("price", 3, float("nan")))


def gate_trades(data: Path, lake: Path, partition: str) -> None:
    """Acquire the partition's trades file and run its gates, as the chain does."""
    dg.materialize(
        [raw_trades, raw_trades_gates],
        partition_key=partition,
        resources={
            "rlx": RlxEnvironment(data_dir=str(data), lake_uri=str(lake), gate_profile="sample")
        },
        raise_on_error=False,
    )


def failed_gates(layout: DataLayout, market: str, day: dt.date) -> list[str]:
    report = json.loads(gate_report_path(layout, "trades", market, day).read_text())
    return [g["gate"] for g in report["gates"] if not g["passed"]]


def test_undamaged_days_are_certified_and_reconstructed_the_rest_missing(certified):
    table = coverage_table(DataLayout(certified), DAYS, MARKETS)
    assert table.columns == ["day", "market", "state"] and table.height == 8
    for day in (DAY8, DAY9):
        assert certificate_path(DataLayout(certified), SPOT, day).is_file()
        assert (reconstruction_dir(DataLayout(certified), SPOT, day) / "summary.json").is_file()
    assert states(table) == {
        (SPOT, DAY7): "missing", (SPOT, DAY8): "certified_reconstructed",
        (SPOT, DAY9): "certified_reconstructed", (SPOT, DAY10): "missing",
        **{(FUTURES, day): "missing" for day in DAYS},
    }  # fmt: skip


def test_a_day_not_reconstructed_is_only_certified(certified, tmp_path):
    layout = DataLayout(copy_of(certified, tmp_path / "data"))
    shutil.rmtree(reconstruction_dir(layout, SPOT, DAY8))
    got = states(coverage_table(layout, [DAY8, DAY9], [SPOT]))
    assert got == {(SPOT, DAY8): "certified", (SPOT, DAY9): "certified_reconstructed"}


def test_damaged_days_show_quarantined_and_failed_gate(certified, sample_lake, tmp_path):
    layout = DataLayout(copy_of(certified, tmp_path / "data"))
    lake = Path(shutil.copytree(sample_lake, tmp_path / "lake"))
    # the vendor republishes a certified day with a bad price: it is quarantined, the last good
    # file is restored and the certificate stands
    put_nan_trade_price(lake, "BINANCE", "BTC-USDT", DAY9)
    gate_trades(layout.root, lake, f"{DAY9}|{SPOT}")
    assert (quarantine_dir(layout, "trades", SPOT, DAY9) / "report.json").is_file()
    assert failed_gates(layout, SPOT, DAY9) == []  # the report of the restored file
    assert certificate_path(layout, SPOT, DAY9).is_file()
    # a futures day first acquired cleanly, then with a bad price: its gate report fails
    futures = f"{DAY8}|{FUTURES}"
    gate_trades(layout.root, lake, futures)
    assert states(coverage_table(layout, [DAY8], [FUTURES])) == {(FUTURES, DAY8): "acquired"}
    put_nan_trade_price(lake, "BINANCE_FUTURES", "BTC-USDT-PERP", DAY8)
    gate_trades(layout.root, lake, futures)
    assert failed_gates(layout, FUTURES, DAY8) == ["quality"]
    assert not certificate_path(layout, FUTURES, DAY8).exists()

    got = states(coverage_table(layout, DAYS, MARKETS))
    assert got[(SPOT, DAY8)] == "certified_reconstructed"  # the undamaged day is unchanged
    assert got[(SPOT, DAY9)] == "quarantined"
    assert got[(FUTURES, DAY8)] == "failed_gate"
    assert got[(SPOT, DAY10)] == got[(FUTURES, DAY9)] == "missing"


def test_the_terminal_calendar_has_a_row_per_market_and_a_character_per_day(certified):
    text = calendar_text(coverage_table(DataLayout(certified), DAYS, MARKETS))
    lines = text.splitlines()
    # the day of month: its last digit, its tens digit on the 10th, 20th and 30th
    assert lines[0].split() == ["2024-08", "7891"]
    assert lines[1].split() == [SPOT, ".RR."]
    assert lines[2].split() == [FUTURES, "...."]
    assert "R certified and reconstructed (2)" in lines[-1] and ". missing (6)" in lines[-1]
