"""golden_samples through Dagster: the sample days, and a recording with a hole in it."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq

from rlx_assets.defs.golden.assets import golden_gap_ratio, golden_samples
from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets.staging import lake_relative_path
from rlx_assets_tests.capture.golden_files import sample_messages, write_golden


def materialize(data_dir: Path, partition: str, capture_dir: Path | None = None):
    resources = {
        "rlx": RlxEnvironment(data_dir=str(data_dir), capture_dir=capture_dir and str(capture_dir))
    }
    return dg.materialize(
        [golden_samples, golden_gap_ratio],
        partition_key=partition,
        resources=resources,
        raise_on_error=False,
    )


def test_sample_day_becomes_a_golden_lake_day_without_gaps(tmp_path):
    result = materialize(tmp_path / "data", "2024-08-08|BINANCE_FUTURES.BTC-USDT-PERP")
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["gap_ratio"].value == 0.0
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    trades_in_capture = sum(
        1 for _, s, _ in sample_messages("usdm_btcusdt_20240808.gz") if s.endswith("@trade")
    )
    assert metadata["messages_by_stream"].value["btcusdt@trade"] == trades_in_capture
    trades = (
        tmp_path
        / "data"
        / "golden"
        / "lake"
        / lake_relative_path("trades", "BINANCE_FUTURES", "BTC-USDT-PERP", dt.date(2024, 8, 8))
    )
    assert pq.read_metadata(trades).num_rows == trades_in_capture


def test_a_recording_with_a_hole_fails_the_gap_check(tmp_path):
    captures = tmp_path / "captures"
    captures.mkdir()
    messages = sample_messages("spot_btcusdt_20240808.gz")
    write_golden(
        captures / "spot_btcusdt_20240808T23.jsonl.gz", messages[:20_000] + messages[20_400:]
    )
    result = materialize(tmp_path / "data", "2024-08-08|BINANCE.BTC-USDT", captures)
    assert not result.success
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed
    gaps = check.metadata["gaps"].value
    assert {g["source"] for g in gaps} == {"depth_sequence", "trade_id"}
    assert all(g["start"].startswith("2024-08-08T23:5") for g in gaps)


def golden_day_files(data_dir: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in (data_dir / "golden").rglob("*") if p.is_file()}


def test_a_truncated_hour_or_a_file_without_sidecar_fails_and_keeps_the_last_good_day(tmp_path):
    """Two hourly files of the real spot capture: a good run, then the second hour cut in the
    middle of its gzip stream (its sidecar rewritten to match, so only reading finds it), then
    the sidecar removed. Each bad run fails naming the file; the golden day stays as it was."""
    captures, data = tmp_path / "captures", tmp_path / "data"
    captures.mkdir()
    messages = sample_messages("spot_btcusdt_20240808.gz")
    write_golden(captures / "spot_btcusdt_20240808T22.jsonl.gz", messages[:20_000])
    second = write_golden(captures / "spot_btcusdt_20240808T23.jsonl.gz", messages[20_000:])
    partition = "2024-08-08|BINANCE.BTC-USDT"
    assert materialize(data, partition, captures).success
    good = golden_day_files(data)
    assert any(p.suffix == ".parquet" for p in good)

    second.write_bytes(second.read_bytes()[: second.stat().st_size // 2])
    digest = hashlib.sha256(second.read_bytes()).hexdigest()
    sidecar = second.with_name(second.name + ".sha256")
    sidecar.write_text(f"{digest}  {second.name}\n")
    result = materialize(data, partition, captures)
    assert not result.success
    assert f"{second}: corrupt or truncated file" in failure_text(result)
    assert golden_day_files(data) == good
    assert not list((data / "golden").glob(".building-*"))

    sidecar.unlink()
    result = materialize(data, partition, captures)
    assert not result.success
    assert f"{second}: no .sha256 sidecar" in failure_text(result)
    assert golden_day_files(data) == good


def failure_text(result) -> str:
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    return failure.step_failure_data.error.message
