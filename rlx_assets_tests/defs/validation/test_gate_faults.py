"""Faults a hostile vendor file can carry, run through the Dagster gate checks on the real sample:
every one ends in a report, a quarantined file and a refreshed status, never in a crash."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from rlx_assets.defs.acquisition.assets import raw_book, raw_book_delta_v2, raw_trades
from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets.defs.validation import checks
from rlx_assets.defs.validation.checks import (
    raw_book_delta_v2_gates,
    raw_book_gates,
    raw_trades_gates,
)
from rlx_assets.staging import DataLayout, lake_relative_path
from rlx_assets.validation import gates
from rlx_assets.validation.gates import GATES
from rlx_assets.validation.zones import gate_report_path, quarantine_dir
from rlx_assets_tests.damage import cast_column, rewrite_parquet
from rlx_assets_tests.validation.test_status import status_as_written

SPOT = "BINANCE.BTC-USDT"
DAY = dt.date(2024, 8, 8)
PARTITION = f"{DAY.isoformat()}|{SPOT}"
RAW_AND_GATES = {
    "trades": [raw_trades, raw_trades_gates],
    "book": [raw_book, raw_book_gates],
    "book_delta_v2": [raw_book_delta_v2, raw_book_delta_v2_gates],
}


@pytest.fixture
def lake(sample_lake, tmp_path) -> Path:
    """A private copy of the real sample lake that a test may damage."""
    return Path(shutil.copytree(sample_lake, tmp_path / "lake"))


def damage(lake: Path, table: str, change) -> None:
    path = lake / lake_relative_path(table, "BINANCE", "BTC-USDT", DAY)
    rewrite_parquet(path, path, change)


def gate_table(data_dir: Path, lake: Path, table: str):
    """Acquire one table of the partition and run its gate checks through Dagster."""
    return dg.materialize(
        RAW_AND_GATES[table],
        partition_key=PARTITION,
        resources={
            "rlx": RlxEnvironment(data_dir=str(data_dir), lake_uri=str(lake), gate_profile="sample")
        },
        raise_on_error=False,
    )


def check_outcomes(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def check_summary(result, name: str) -> str:
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.check_name == name)
    return evaluation.metadata["summary"].value


def assert_reported_and_quarantined(layout: DataLayout, table: str) -> dict:
    """The file has its report, sits in quarantine with it, and the status file says so."""
    report = json.loads(gate_report_path(layout, table, SPOT, DAY).read_text())
    held = quarantine_dir(layout, table, SPOT, DAY)
    assert (held / "1.snappy.parquet").is_file()
    assert json.loads((held / "report.json").read_text()) == report
    status = status_as_written(layout.root)
    assert status["partitions"][PARTITION]["state"] == "quarantined"
    assert table in status["partitions"][PARTITION]["quarantined_tables"]
    return report


DRIFTS = [
    ("trades", "price", pl.String, "double", "string"),
    ("trades", "timestamp", pl.String, "int64", "string"),
    ("trades", "id", pl.Float64, "int64", "double"),
    ("book", "timestamp", pl.String, "int64", "string"),
    ("book", "ask_0_price", pl.String, "double", "string"),
    ("book_delta_v2", "side_is_bid", pl.Int64, "bool", "int64"),
    ("book_delta_v2", "price", pl.String, "double", "string"),
]


@pytest.mark.parametrize("table,column,dtype,expected,found", DRIFTS)
def test_drifted_dtype_is_a_schema_failure_with_report_and_quarantine(
    lake, tmp_path, table, column, dtype, expected, found
):
    damage(lake, table, cast_column(column, dtype))
    layout = DataLayout(tmp_path / "data")
    result = gate_table(layout.root, lake, table)
    outcomes = check_outcomes(result)
    assert set(outcomes) == set(GATES)  # every gate reported, none crashed
    assert outcomes["schema"] is False
    assert f"{table}.{column}: dtype {found}, expected {expected}" in check_summary(
        result, "schema"
    )
    report = assert_reported_and_quarantined(layout, table)
    skipped = [g for g in report["gates"] if f"{column} not evaluated" in g["summary"]]
    assert skipped and not any(g["passed"] for g in skipped)


def test_the_real_file_passes_every_gate_check(lake, tmp_path):
    layout = DataLayout(tmp_path / "data")
    result = gate_table(layout.root, lake, "trades")
    assert check_outcomes(result) == dict.fromkeys(GATES, True)
    assert not quarantine_dir(layout, "trades", SPOT, DAY).exists()


def test_a_gate_that_raises_still_leaves_a_report_and_quarantine(lake, tmp_path, monkeypatch):
    def broken(*_args, **_kwargs):
        raise ValueError("is_nan not supported for dtype str")

    monkeypatch.setattr(gates, "quality_gate", broken)
    layout = DataLayout(tmp_path / "data")
    result = gate_table(layout.root, lake, "trades")
    assert check_outcomes(result) == {**dict.fromkeys(GATES, True), "quality": False}
    assert "ValueError: is_nan not supported" in check_summary(result, "quality")
    report = assert_reported_and_quarantined(layout, "trades")
    quality = next(g for g in report["gates"] if g["gate"] == "quality")
    assert quality["summary"] == "gate raised ValueError: is_nan not supported for dtype str"


def test_gates_that_cannot_start_still_leave_a_report_and_quarantine(lake, tmp_path, monkeypatch):
    def unreadable_history(*_args, **_kwargs):
        raise OSError("certificate store unreachable")

    monkeypatch.setattr(checks, "trailing_row_counts", unreadable_history)
    layout = DataLayout(tmp_path / "data")
    result = gate_table(layout.root, lake, "book")
    assert check_outcomes(result) == dict.fromkeys(GATES, False)
    assert "OSError: certificate store unreachable" in check_summary(result, "volume")
    report = assert_reported_and_quarantined(layout, "book")
    assert {g["gate"] for g in report["gates"]} == set(GATES)
