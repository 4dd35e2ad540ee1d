"""Each gate passes on the real sample files and fails on a specific damaged copy of them."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlx_assets.staging import lake_relative_path, sha256_file
from rlx_assets.validation.gates import GATES, GateInput, run_gates
from rlx_assets.validation.profiles import PROFILES
from rlx_assets_tests.damage import rewrite_parquet, set_value

DAY = dt.date(2024, 8, 8)
SAMPLE = PROFILES["sample"]


def real_file(sample_lake: Path, table: str, market=("BINANCE", "BTC-USDT"), day=DAY) -> Path:
    return sample_lake / lake_relative_path(table, *market, day)


def gate_input(
    path: Path, table: str, thresholds=SAMPLE, trailing=(), manifest_of: Path | None = None
):
    reference = manifest_of or path
    return GateInput(
        table, path, DAY, sha256_file(reference), reference.stat().st_size, thresholds, trailing
    )


def verdicts(results) -> dict[str, bool]:
    return {r.gate: r.passed for r in results}


def damaged_copy(tmp_path: Path, source: Path, change) -> Path:
    return rewrite_parquet(source, tmp_path / "damaged.parquet", change)


@pytest.mark.parametrize("table", ["trades", "book", "book_delta_v2"])
@pytest.mark.parametrize(
    "market,day",
    [
        (("BINANCE", "BTC-USDT"), DAY),
        (("BINANCE", "BTC-USDT"), dt.date(2024, 8, 9)),
        (("BINANCE_FUTURES", "BTC-USDT-PERP"), DAY),
    ],
)
def test_every_gate_passes_on_the_real_sample_files(sample_lake, table, market, day):
    path = real_file(sample_lake, table, market, day)
    spec = GateInput(table, path, day, sha256_file(path), path.stat().st_size, SAMPLE)
    results = run_gates(spec)
    assert [r.gate for r in results] == list(GATES)
    assert all(r.passed for r in results), [r.summary for r in results if not r.passed]


def test_production_profile_fails_the_sample_on_coverage_only(sample_lake):
    """The captures cover minutes of a day: a production run must not certify them."""
    path = real_file(sample_lake, "book_delta_v2")
    results = run_gates(gate_input(path, "book_delta_v2", PROFILES["production"]))
    temporal = next(r for r in results if r.gate == "temporal")
    assert not temporal.passed and "of the day" in temporal.summary
    assert temporal.thresholds["min_coverage"] == 0.99
    assert verdicts(results) == {**dict.fromkeys(GATES, True), "temporal": False}


def test_dropped_column_fails_the_schema_gate(sample_lake, tmp_path):
    source = real_file(sample_lake, "trades")
    damaged = damaged_copy(tmp_path, source, lambda f: f.drop("side").to_arrow())
    results = run_gates(gate_input(damaged, "trades"))
    schema = next(r for r in results if r.gate == "schema")
    assert not schema.passed and "missing columns ['side']" in schema.summary


def test_wrong_dtype_fails_the_schema_gate(sample_lake, tmp_path):
    source = real_file(sample_lake, "book_delta_v2")
    damaged = damaged_copy(
        tmp_path, source, lambda f: f.with_columns(pl.col("price").cast(pl.Float32)).to_arrow()
    )
    schema = next(r for r in run_gates(gate_input(damaged, "book_delta_v2")) if r.gate == "schema")
    assert (
        not schema.passed and "book_delta_v2.price: dtype float, expected double" in schema.summary
    )


def test_nan_price_fails_the_quality_gate_and_shows_the_row(sample_lake, tmp_path):
    source = real_file(sample_lake, "trades")
    frame = pl.read_parquet(source)
    bad_row = frame.height // 2
    damaged = damaged_copy(tmp_path, source, set_value("price", bad_row, float("nan")))
    results = run_gates(gate_input(damaged, "trades"))
    quality = next(r for r in results if r.gate == "quality")
    assert not quality.passed
    assert quality.measured["bad_price"] == 1
    assert (
        quality.examples[0]["row"] == bad_row and quality.examples[0]["id"] == frame["id"][bad_row]
    )
    assert verdicts(results)["schema"] and verdicts(results)["temporal"]


def test_row_from_another_day_fails_the_temporal_gate(sample_lake, tmp_path):
    source = real_file(sample_lake, "trades")
    day_ns = 86_400 * 10**9
    damaged = damaged_copy(
        tmp_path,
        source,
        lambda f: f.with_columns(
            pl.when(pl.int_range(pl.len()) == 0)
            .then(pl.col("timestamp") - day_ns)
            .otherwise(pl.col("timestamp"))
            .alias("timestamp")
        ).to_arrow(),
    )
    temporal = next(r for r in run_gates(gate_input(damaged, "trades")) if r.gate == "temporal")
    assert not temporal.passed and temporal.measured["rows_outside_day"] == 1
    assert temporal.examples[0]["problem"] == "outside_day" and temporal.examples[0]["row"] == 0


def test_decreasing_sequence_fails_the_temporal_gate(sample_lake, tmp_path):
    source = real_file(sample_lake, "book_delta_v2")
    damaged = damaged_copy(
        tmp_path, source, lambda f: pl.concat([f.slice(100), f.slice(0, 100)]).to_arrow()
    )
    temporal = next(
        r for r in run_gates(gate_input(damaged, "book_delta_v2")) if r.gate == "temporal"
    )
    assert not temporal.passed and temporal.measured["sequence_decreases"] == 1


def test_crossed_book_row_fails_the_quality_gate(sample_lake, tmp_path):
    source = real_file(sample_lake, "book")
    damaged = damaged_copy(
        tmp_path,
        source,
        lambda f: f.with_columns(
            pl.when(pl.int_range(pl.len()) == 7)
            .then(pl.col("ask_0_price") + 1.0)
            .otherwise(pl.col("bid_0_price"))
            .alias("bid_0_price")
        ).to_arrow(),
    )
    quality = next(r for r in run_gates(gate_input(damaged, "book")) if r.gate == "quality")
    assert not quality.passed and quality.measured["crossed_book"] == 1
    assert any(e["problem"] == "crossed_book" and e["row"] == 7 for e in quality.examples)


def test_truncated_file_fails_every_gate_with_the_reason(sample_lake, tmp_path):
    source = real_file(sample_lake, "book")
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    results = run_gates(gate_input(truncated, "book", manifest_of=source))
    assert not any(r.passed for r in results)
    assert "not valid Parquet" in results[0].summary and "SHA-256 differs" in results[0].summary
    assert all("file unreadable" in r.summary for r in results[1:])


def test_checksum_mismatch_fails_file_integrity_only(sample_lake, tmp_path):
    source = real_file(sample_lake, "trades")
    # Same rows re-encoded: a valid file, but not the one the manifest recorded.
    rewritten = damaged_copy(tmp_path, source, lambda f: f.to_arrow())
    results = run_gates(gate_input(rewritten, "trades", manifest_of=source))
    assert verdicts(results) == {**dict.fromkeys(GATES, True), "file_integrity": False}
    assert results[0].measured["sha256"] != results[0].thresholds["sha256"]


def test_volume_far_below_the_trailing_median_fails(sample_lake):
    path = real_file(sample_lake, "trades")
    rows = pq.read_metadata(path).num_rows
    production = PROFILES["production"].model_copy(update={"min_rows": 1, "min_coverage": 0.0})
    trailing = (rows * 10, rows * 12, rows * 9)
    volume = next(
        r for r in run_gates(gate_input(path, "trades", production, trailing)) if r.gate == "volume"
    )
    assert not volume.passed
    assert volume.measured["trailing_median_rows"] == rows * 10
    assert math.isclose(volume.measured["fraction_of_trailing_median"], 0.1)
    ok = next(
        r
        for r in run_gates(gate_input(path, "trades", production, (rows, rows)))
        if r.gate == "volume"
    )
    assert ok.passed


def test_entirely_null_critical_column_fails_the_schema_gate(sample_lake, tmp_path):
    source = real_file(sample_lake, "trades")
    damaged = damaged_copy(
        tmp_path,
        source,
        lambda f: f.to_arrow().set_column(
            f.columns.index("id"), "id", pa.nulls(f.height, pa.int64())
        ),
    )
    schema = next(r for r in run_gates(gate_input(damaged, "trades")) if r.gate == "schema")
    assert not schema.passed and "entirely null: ['id']" in schema.summary
