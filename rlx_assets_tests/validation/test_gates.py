"""Each gate passes on the real sample files and fails on a specific damaged copy of them."""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlx_assets.staging import lake_relative_path, sha256_file
from rlx_assets.validation import gates
from rlx_assets.validation.gates import GATES, GateInput, run_gates
from rlx_assets.validation.profiles import PROFILES
from rlx_assets.vendor_schemas import VENDOR_SCHEMAS
from rlx_assets_tests.damage import (
    cast_column,
    drop_rows,
    in_minute,
    keep_rows,
    repeat_row_with,
    rewrite_parquet,
    set_value,
    shuffle_rows,
)

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


def gate(results, name: str):
    return next(r for r in results if r.gate == name)


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


# --- dtype drift: a schema failure, never a crash ------------------------------------------------
DRIFTS = [
    ("trades", "price", pl.String, "quality"),
    ("trades", "timestamp", pl.String, "temporal"),
    ("trades", "id", pl.Float64, "quality"),
    ("trades", "amount", pl.String, "quality"),
    ("book", "sequence_number", pl.Float64, "temporal"),
    ("book", "bid_0_price", pl.String, "quality"),
    ("book", "timestamp", pl.Datetime("ns"), "temporal"),
    ("book_delta_v2", "side_is_bid", pl.Int8, "quality"),
    ("book_delta_v2", "size", pl.String, "quality"),
    ("book_delta_v2", "sequence_number", pl.String, "temporal"),
]


@pytest.mark.parametrize("table,column,dtype,reader", DRIFTS)
def test_drifted_dtype_fails_the_schema_gate_and_the_reader_skips_it(
    sample_lake, tmp_path, table, column, dtype, reader
):
    damaged = damaged_copy(tmp_path, real_file(sample_lake, table), cast_column(column, dtype))
    results = run_gates(gate_input(damaged, table))
    assert [r.gate for r in results] == list(GATES)
    found = pq.read_schema(damaged).field(column).type
    expected = VENDOR_SCHEMAS[table].field(column).type
    schema = gate(results, "schema")
    assert not schema.passed
    assert f"{table}.{column}: dtype {found}, expected {expected}" in schema.summary
    # The gate that reads the column says it could not, and does not pass.
    skipped = gate(results, reader)
    assert not skipped.passed and f"{column} not evaluated" in skipped.summary
    assert column in skipped.measured["skipped_columns"]
    assert verdicts(results)["file_integrity"] and verdicts(results)["volume"]
    json.dumps([r.to_json() for r in results], allow_nan=False)  # a report can be written


def test_string_price_leaves_the_temporal_gate_evaluating_the_rest(sample_lake, tmp_path):
    source = real_file(sample_lake, "trades")
    damaged = damaged_copy(tmp_path, source, cast_column("price", pl.String))
    results = run_gates(gate_input(damaged, "trades"))
    assert verdicts(results) == {
        **dict.fromkeys(GATES, True), "schema": False, "quality": False
    }  # fmt: skip
    quality = gate(results, "quality")
    assert "price not evaluated (found String, expected Float64" in quality.summary
    assert quality.measured["bad_side"] == 0  # the columns it can read are still checked


def test_a_gate_that_raises_fails_alone_with_the_error(sample_lake, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("polars said no")

    monkeypatch.setattr(gates, "temporal_gate", broken)
    results = run_gates(gate_input(real_file(sample_lake, "trades"), "trades"))
    assert verdicts(results) == {**dict.fromkeys(GATES, True), "temporal": False}
    assert gate(results, "temporal").summary == "gate raised RuntimeError: polars said no"


# --- quality: one trade id, two different trades ------------------------------------------------
def test_conflicting_trade_id_fails_the_quality_gate_with_both_rows(sample_lake, tmp_path):
    source = real_file(sample_lake, "trades")
    frame = pl.read_parquet(source)
    row = frame.height // 3
    assert (
        gate(run_gates(gate_input(source, "trades")), "quality").measured["conflicting_trade_ids"]
        == 0
    )
    twin_price = frame["price"][row] + 5.0
    damaged = damaged_copy(tmp_path, source, repeat_row_with(row, "price", twin_price))
    quality = gate(run_gates(gate_input(damaged, "trades")), "quality")
    assert not quality.passed and quality.measured["conflicting_trade_ids"] == 1
    assert quality.measured["duplicate_rows"] == 0  # not a whole-row duplicate
    example = next(e for e in quality.examples if e["problem"] == "conflicting_trade_id")
    assert [r["row"] for r in example["rows"]] == [row, row + 1]
    assert {r["id"] for r in example["rows"]} == {frame["id"][row]}
    assert [r["price"] for r in example["rows"]] == [frame["price"][row], twin_price]
    assert quality.thresholds["max_conflicting_trade_ids"] == 0


def test_whole_row_duplicate_is_still_counted_and_is_no_conflict(sample_lake, tmp_path):
    source = real_file(sample_lake, "trades")
    frame = pl.read_parquet(source)
    row = 10
    damaged = damaged_copy(tmp_path, source, repeat_row_with(row, "price", frame["price"][row]))
    quality = gate(run_gates(gate_input(damaged, "trades")), "quality")
    assert not quality.passed
    assert quality.measured["duplicate_rows"] == 1
    assert quality.measured["conflicting_trade_ids"] == 0
    assert quality.measured["repeated_trade_ids"] == 1


def test_conflicting_level_update_fails_the_quality_gate(sample_lake, tmp_path):
    source = real_file(sample_lake, "book_delta_v2")
    frame = pl.read_parquet(source)
    row = 500
    damaged = damaged_copy(tmp_path, source, repeat_row_with(row, "size", frame["size"][row] + 1))
    quality = gate(run_gates(gate_input(damaged, "book_delta_v2")), "quality")
    assert not quality.passed and quality.measured["conflicting_level_updates"] == 1
    example = next(e for e in quality.examples if e["problem"] == "conflicting_level_update")
    assert [r["row"] for r in example["rows"]] == [row, row + 1]
    real = gate(run_gates(gate_input(source, "book_delta_v2")), "quality")
    assert real.passed and real.measured["conflicting_level_updates"] == 0


# --- temporal: the vendor's order, in every table -----------------------------------------------
def steps_back(values: list[int]) -> int:
    return sum(later < earlier for earlier, later in zip(values, values[1:], strict=False))


def test_shuffled_trades_fail_the_temporal_gate_naming_rows(sample_lake, tmp_path):
    source = real_file(sample_lake, "trades")
    real = gate(run_gates(gate_input(source, "trades")), "temporal")
    assert real.passed and real.measured["time_regressions"] == 0
    damaged = damaged_copy(tmp_path, source, shuffle_rows())
    results = run_gates(gate_input(damaged, "trades"))
    temporal = gate(results, "temporal")
    stamps = pl.read_parquet(damaged)["timestamp"].to_list()
    assert not temporal.passed and "vendor order broken" in temporal.summary
    assert temporal.measured["time_regressions"] == steps_back(stamps) > 0
    example = temporal.examples[0]
    assert example["problem"] == "time_regression"
    assert stamps[example["row"]] < stamps[example["row"] - 1] == example["previous_timestamp"]
    assert verdicts(results)["quality"]  # every row is fine on its own


@pytest.mark.parametrize("table", ["book", "book_delta_v2"])
def test_shuffled_book_rows_fail_the_temporal_gate(sample_lake, tmp_path, table):
    damaged = damaged_copy(tmp_path, real_file(sample_lake, table), shuffle_rows())
    temporal = gate(run_gates(gate_input(damaged, table)), "temporal")
    shuffled = pl.read_parquet(damaged)
    assert not temporal.passed
    assert temporal.measured["sequence_decreases"] == steps_back(
        shuffled["sequence_number"].to_list()
    )
    assert temporal.measured["time_regressions"] == steps_back(shuffled["timestamp"].to_list())
    assert temporal.measured["sequence_decreases"] > 0 and temporal.measured["time_regressions"] > 0
    assert {e["problem"] for e in temporal.examples} >= {"sequence_decrease", "time_regression"}


def test_trade_time_regression_within_tolerance_passes(sample_lake, tmp_path):
    source = real_file(sample_lake, "trades")
    stamps = pl.read_parquet(source)["timestamp"]
    row = int((stamps.diff() > 0).arg_true()[5])  # a trade later than the one before it
    step_s = (stamps[row] - stamps[row - 1]) / 1e9

    def swap(frame: pl.DataFrame):
        order = list(range(frame.height))
        order[row - 1], order[row] = order[row], order[row - 1]
        return frame[order].to_arrow()

    damaged = damaged_copy(tmp_path, source, swap)
    strict = gate(run_gates(gate_input(damaged, "trades")), "temporal")
    assert not strict.passed and strict.measured["time_regressions"] == 1
    assert (
        strict.examples[0]["row"] == row
        and strict.examples[0]["step_back"] == stamps[row] - stamps[row - 1]
    )
    tolerant = SAMPLE.model_copy(update={"max_trades_time_regression_s": step_s})
    loose = gate(run_gates(gate_input(damaged, "trades", tolerant)), "temporal")
    assert loose.passed and loose.measured["largest_time_regression_s"] == step_s


# --- volume and file integrity on damaged copies ------------------------------------------------
def test_file_cut_short_fails_the_volume_gate(sample_lake, tmp_path):
    source = real_file(sample_lake, "trades")
    rows = pq.read_metadata(source).num_rows
    history = (rows, rows, rows)
    production = PROFILES["production"].model_copy(update={"min_rows": 1, "min_coverage": 0.0})
    real = gate(run_gates(gate_input(source, "trades", production, history)), "volume")
    assert real.passed
    damaged = damaged_copy(tmp_path, source, keep_rows(rows // 10))
    volume = gate(run_gates(gate_input(damaged, "trades", production, history)), "volume")
    assert not volume.passed and volume.measured["rows"] == rows // 10
    assert "of the trailing median" in volume.summary


def test_one_flipped_byte_fails_file_integrity(sample_lake, tmp_path):
    source = real_file(sample_lake, "trades")
    assert gate(run_gates(gate_input(source, "trades")), "file_integrity").passed
    data = bytearray(source.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged = tmp_path / "flipped.parquet"
    damaged.write_bytes(bytes(data))
    results = run_gates(gate_input(damaged, "trades", manifest_of=source))
    assert [r.gate for r in results] == list(GATES)
    integrity = gate(results, "file_integrity")
    assert not integrity.passed and integrity.summary.startswith("SHA-256 differs")
    assert integrity.measured["size_bytes"] == integrity.thresholds["size_bytes"]


# --- streaming: a file read in batches gets the report of the file read whole ---------------------
def add_duplicates_and_conflicts(frame: pl.DataFrame):
    """Rows 10..49 again (whole-row duplicates) and rows 100..129 again with another value in
    their last column (same key, other content), each right after the originals."""
    last = frame.columns[-1]
    twins = frame.slice(100, 30).with_columns(pl.col(last) + 1)
    return pl.concat([frame.slice(0, 50), frame.slice(10, 40), frame.slice(50, 80), twins,
                      frame.slice(130)]).to_arrow()  # fmt: skip


def null_every_97th(column: str):
    return lambda f: f.with_columns(
        pl.when(pl.int_range(pl.len()) % 97 == 3).then(None).otherwise(pl.col(column)).alias(column)
    ).to_arrow()


BATCH_DAMAGES = {
    "real": None,
    "shuffled": shuffle_rows(),
    "duplicates_and_conflicts": add_duplicates_and_conflicts,
    "null_timestamps": null_every_97th("timestamp"),
    "drifted_sequence": cast_column("sequence_number", pl.Float64),
}


@pytest.mark.parametrize("table", ["trades", "book", "book_delta_v2"])
@pytest.mark.parametrize("damage", BATCH_DAMAGES)
def test_a_file_read_in_small_batches_gets_the_same_report(sample_lake, tmp_path, table, damage):
    """Every measurement, verdict and example (with its file row number) is the same whether the
    file is read in batches of 97 rows (state carried across ~400 batch ends) or in one."""
    change = BATCH_DAMAGES[damage]
    if damage == "drifted_sequence" and table == "trades":
        change = cast_column("id", pl.Float64)
    source = real_file(sample_lake, table)
    path = source if change is None else damaged_copy(tmp_path, source, change)
    spec = gate_input(path, table, PROFILES["production"])
    whole = [r.to_json() for r in run_gates(spec, batch_rows=10**9)]
    assert [r.to_json() for r in run_gates(spec, batch_rows=97)] == whole
    if damage != "real":
        assert not all(r["passed"] for r in whole[1:4])  # the damage is seen


def test_rows_that_share_a_hash_are_compared_exactly(sample_lake, tmp_path, monkeypatch):
    """Every row hashed alike (a collision on every pair): still no duplicate and no conflict in
    the real file, and exactly the planted ones in the damaged copy."""
    source = real_file(sample_lake, "book_delta_v2")
    damaged = damaged_copy(tmp_path, source, add_duplicates_and_conflicts)
    monkeypatch.setattr(
        gates.RowHashes, "of", lambda _self, frame: np.zeros(frame.height, dtype=np.uint64)
    )
    real = gate(run_gates(gate_input(source, "book_delta_v2")), "quality")
    assert real.passed
    assert real.measured["duplicate_rows"] == real.measured["conflicting_level_updates"] == 0
    quality = gate(run_gates(gate_input(damaged, "book_delta_v2")), "quality")
    assert quality.measured["duplicate_rows"] == 40
    assert quality.measured["conflicting_level_updates"] == 30


PEAK_GATES_SCRIPT = """
import datetime as dt, sys
from pathlib import Path
from rlx_assets.validation.gates import GateInput, run_gates
from rlx_assets.validation.profiles import PROFILES
path = Path(sys.argv[1])
spec = GateInput("book_delta_v2", path, dt.date(2024, 8, 10), None, None, PROFILES["sample"])
results = run_gates(spec, batch_rows=200_000)
assert [r.gate for r in results if not r.passed] == ["file_integrity"], results  # no manifest
status = Path("/proc/self/status").read_text()
print(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1])
"""


def synthetic_deltas(path: Path, rows: int) -> Path:
    """Scaling input only: ``rows`` level updates of one day, 4 per sequence number."""
    index = np.arange(rows, dtype=np.int64)
    start = int(dt.datetime(2024, 8, 10, tzinfo=dt.UTC).timestamp()) * 10**9
    stamps = start + index * (86_400 * 10**9 // rows)
    table = pa.table(
        {
            "timestamp": stamps,
            "receipt_timestamp": stamps + 1_000_000,
            "sequence_number": index // 4,
            "side_is_bid": index % 2 == 0,
            "price": 60_000.0 + (index % 4) * 0.01 + (index % 977),
            "size": (index % 13) * 0.001,
        },
        schema=VENDOR_SCHEMAS["book_delta_v2"],
    )
    pq.write_table(table, path, row_group_size=250_000)
    return path


def gates_peak_rss_kib(path: Path) -> int:
    done = subprocess.run([sys.executable, "-c", PEAK_GATES_SCRIPT, str(path)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.split()[-1])


@pytest.mark.slow
def test_gate_memory_grows_by_the_row_hashes_only(tmp_path):
    """0.5 M vs 2 M rows of book_delta_v2 (3 vs 10 batches). Read whole, with a unique() over
    every column, each extra row cost ~300 bytes of peak memory (353 -> 803 MB); streamed, only
    the 8-byte key hash of each row is kept (measured ~17 bytes a row with the allocator's
    slack: ~0.5 GB at a full day's 30 M rows)."""
    small = gates_peak_rss_kib(synthetic_deltas(tmp_path / "small.parquet", 500_000))
    large = gates_peak_rss_kib(synthetic_deltas(tmp_path / "large.parquet", 2_000_000))
    bytes_per_extra_row = (large - small) * 1024 / 1_500_000
    assert bytes_per_extra_row <= 32, (small, large)


def seconds_outside_long_silences(path: Path, day: dt.date, limit_s: float) -> float:
    """An independent count: pyarrow's timestamps sorted with numpy, the day's two midnights
    added as bounds, and every gap longer than `limit_s` taken off the day."""
    stamps = np.sort(pq.read_table(path, columns=["timestamp"]).column(0).to_numpy())
    midnight = int(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp()) * 10**9
    gaps = np.diff(np.concatenate([[midnight], stamps, [midnight + 86_400 * 10**9]]))
    return (86_400 * 10**9 - int(gaps[gaps > limit_s * 1e9].sum())) / 1e9


@pytest.mark.parametrize("table", ["trades", "book", "book_delta_v2"])
def test_seconds_covered_equals_an_independent_count_of_the_real_files(
    sample_lake, tmp_path, table
):
    """The day's seconds outside silences longer than max_silence_s, on the real file and on a
    copy missing the rows of one minute (a hole the gate must take off the day)."""
    thresholds = PROFILES["production"].model_copy(update={"max_silence_s": 20.0})
    path = real_file(sample_lake, table)
    minute_ns = int(dt.datetime(2024, 8, 8, 23, 55, tzinfo=dt.UTC).timestamp()) * 10**9
    holed = damaged_copy(tmp_path, path, drop_rows(in_minute(minute_ns)))
    covered = {}
    for name, file in (("real", path), ("holed", holed)):
        measured = gate(run_gates(gate_input(file, table, thresholds)), "temporal").measured
        covered[name] = measured["seconds_covered"]
        assert covered[name] == pytest.approx(
            seconds_outside_long_silences(file, DAY, 20.0), abs=1e-6
        )
    assert 60 <= covered["real"] - covered["holed"] <= 60 + 2 * 20  # the minute and its edges
