"""``rlx bench day``: the synthetic day reads as one continuous recording, and the harness
measures what it says (small inputs, no timing assertions)."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rlx_assets.bench_day import DayBench, measure
from rlx_assets.capture.files import verify_sidecar
from rlx_assets.capture.golden import analyse_day, select_capture_files
from rlx_assets.capture.reader import iter_capture, stream_channel
from rlx_assets.capture.synthetic_day import (
    DEFAULT_DATE,
    SOURCE_FILES,
    generate_day,
    plan_tiles,
)
from rlx_assets.cli import main
from rlx_assets.lake.from_capture import convert_captures
from rlx_assets.staging import lake_relative_path
from rlx_assets_tests.conftest import SAMPLE_CAPTURES

DAY_START_NS = int(dt.datetime.combine(DEFAULT_DATE, dt.time(), tzinfo=dt.UTC).timestamp()) * 10**9
MINUTE_NS = 60 * 10**9


@pytest.fixture(scope="module")
def small_plan():
    """Tiles of the first 30 s of the real capture: many tile boundaries in a few minutes."""
    return plan_tiles([SAMPLE_CAPTURES / name for name in SOURCE_FILES], piece_seconds=30)


@pytest.fixture(scope="module")
def small_day(small_plan, tmp_path_factory):
    """2.5 minutes in one-minute recorder files: 3 files, 5 tiles."""
    out = tmp_path_factory.mktemp("synthetic_day")
    day = generate_day(out, plan=small_plan, duration_s=150, period_s=60)
    return out, day


def test_files_are_finished_recorder_files_in_time_order(small_day):
    out, day = small_day
    assert [f.name for f in day.files] == [
        f"spot_btcusdt_20240810T000{m}.jsonl.gz" for m in range(3)
    ]
    assert all(verify_sidecar(f) for f in day.files)
    capture = [r.capture_ns for f in day.files for r in iter_capture(f)]
    assert len(capture) == day.lines
    assert np.all(np.diff(capture) >= 0)  # across files too
    assert capture[0] >= DAY_START_NS and capture[-1] < DAY_START_NS + 150 * 10**9
    for f in day.files:  # each file holds its own minute
        minute = int(re.search(r"T\d\d(\d\d)\.jsonl", f.name).group(1))
        stamps = [r.capture_ns for r in iter_capture(f)]
        assert (min(stamps) - DAY_START_NS) // MINUTE_NS == minute
        assert (max(stamps) - DAY_START_NS) // MINUTE_NS == minute


def test_ids_run_on_across_tiles_and_the_golden_analysis_finds_no_gap(small_day):
    out, day = small_day
    assert day.tiles == 5
    files = select_capture_files(out, "spot", "btcusdt", DEFAULT_DATE)
    golden = analyse_day(files, "spot", "btcusdt", DEFAULT_DATE)
    assert golden.gaps == [] and golden.gap_ratio == 0.0
    assert golden.messages_by_stream["btcusdt@trade"] > 0
    records = [r for f in day.files for r in iter_capture(f)]
    trade_ids = [r.data["t"] for r in records if stream_channel(r.stream) == "trade"]
    assert np.all(np.diff(trade_ids) == 1)
    diffs = [r.data for r in records if stream_channel(r.stream) == "depth"]
    assert all(b["U"] == a["u"] + 1 for a, b in zip(diffs, diffs[1:], strict=False))
    snapshots = [r for r in records if stream_channel(r.stream) == "depthSnapshot"]
    assert len(snapshots) == 1 and records[0] is snapshots[0]  # later tiles resync by a diff
    exchange_ns = [r.data["E"] * 10**6 for r in records if "E" in r.data]
    assert min(exchange_ns) >= DAY_START_NS and max(exchange_ns) < DAY_START_NS + 150 * 10**9


def test_the_converter_syncs_once_and_every_tile_replays_the_same_book(
    small_day, small_plan, tmp_path
):
    out, day = small_day
    logged: list[str] = []
    convert_captures(day.files, tmp_path, log=logged.append)
    sync = next(line for line in logged if "sequence gaps" in line)
    assert re.search(r"\b0 sequence gaps", sync), sync
    book = pq.read_table(
        tmp_path / lake_relative_path("book", "BINANCE", "BTC-USDT", DEFAULT_DATE)
    ).to_pandas()
    # The book after each tile's first real diff is the first tile's: the resync diff turned
    # the previous tile's end book back into the snapshot's.
    first_u = book["sequence_number"].iloc[0]
    levels = [c for c in book.columns if c.startswith(("bid_", "ask_"))]
    rows = book.set_index("sequence_number").loc[
        [first_u + k * small_plan.depth_id_step for k in range(day.tiles)], levels
    ]
    assert rows.notna().any(axis=None)
    assert (rows.fillna(-1).to_numpy() == rows.fillna(-1).to_numpy()[0]).all()


def test_a_failing_step_is_reported_with_its_error_tail(tmp_path):
    code = "import sys; print('reading day.gz', file=sys.stderr); sys.exit('bad input: day.gz')"
    step = measure("boom", [sys.executable, "-c", code], log_path=tmp_path / "boom.log")
    assert not step.ok and step.returncode == 1
    assert "bad input: day.gz" in step.error and "reading day.gz" in step.error
    assert step.wall_s > 0 and step.cpu_s > 0


def test_a_dagster_run_without_its_success_event_failed(tmp_path):
    code = "import sys; print('RUN_FAILURE - boom', file=sys.stderr)"
    step = measure(
        "run", [sys.executable, "-c", code], log_path=tmp_path / "run.log",
        success_marker="RUN_SUCCESS",
    )  # fmt: skip
    assert not step.ok and step.returncode == 0 and "RUN_FAILURE - boom" in step.error


def test_peak_rss_is_the_childs_own(tmp_path):
    """A child holding 300 MB reports at least that, one holding nothing far less. Measured
    from a small process: a child's ru_maxrss starts at its parent's peak (pytest's here)."""
    script = textwrap.dedent(
        f"""
        import json, sys
        from pathlib import Path
        from rlx_assets.bench_day import DayBench, measure
        big = "x = b'x' * (300 << 20)"
        print(json.dumps([
            measure(n, [sys.executable, "-c", c], log_path=Path({str(tmp_path)!r}) / n).peak_rss_mb
            for n, c in (("small", "pass"), ("big", big))
        ]))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    small, big = json.loads(done.stdout)
    assert big >= 300 and small < 100


def test_a_step_above_the_memory_limit_is_killed_and_reported(tmp_path):
    code = "import time; x = b'x' * (400 << 20); time.sleep(30)"
    step = measure(
        "hog", [sys.executable, "-c", code], log_path=tmp_path / "hog.log", max_rss_mb=200
    )
    assert not step.ok and step.returncode == -9
    assert step.error.startswith("killed at") and step.wall_s < 20


def test_bench_day_prints_one_json_object(tmp_path):
    steps = "capture_read,convert,parquet_read,golden_job"
    result = CliRunner().invoke(
        main,
        ["bench", "day", "--minutes", "1", "--steps", steps, "--json", "--workdir", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["gate_profile"] == "sample" and report["hours"] == 24
    assert report["input"]["files"] == 1 and report["input"]["lines"] > 5_000
    assert [s["name"] for s in report["steps"]] == ["convert", "golden_job"]
    assert all(s["ok"] and s["cpu_s"] > 0 and s["peak_rss_mb"] > 0 for s in report["steps"])
    floors = report["floors"]
    assert floors["capture_read"]["result"]["lines"] == report["input"]["lines"]
    assert floors["capture_read"]["result"]["parser"] == "msgspec"
    assert floors["parquet_read"]["result"]["files"] == 4  # trades, book, deltas, level_1
    assert report["ratios"]["golden_cpu_over_capture_floor"] > 1
    assert report["ratios"]["fidelity_cpu_over_reconstruction"] is None  # not run
    assert list(tmp_path.iterdir()) == []  # removed without --keep


def test_the_whole_chain_the_reads_and_the_targets_are_measured(tmp_path):
    steps = (
        "convert,gates,raw_trades,raw_book,raw_book_delta_v2,validated_partition,"
        "readiness_certificate,reconstructed_stream,stream_read,book_at,export,compress,daily_chain"
    )
    result = CliRunner().invoke(
        main,
        ["bench", "day", "--minutes", "1", "--steps", steps, "--json", "--workdir", str(tmp_path),
         "--keep"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    steps_by_name = {s["name"]: s for s in report["steps"]}
    failed = [(s["name"], s["error"]) for s in report["steps"] if not s["ok"]]
    assert not failed, failed
    assert {"book_at", "export", "daily_chain"} <= set(steps_by_name)
    # The whole job ran on a data dir of its own, and certified and reconstructed the day.
    workdir = Path(report["workdir"])
    whole = workdir / "data_whole_chain"
    assert (whole / "certificates").is_dir() and (whole / "reconstruction").is_dir()
    assert list((workdir / "data" / "reconstruction").rglob("stream.parquet"))
    # The export wrote the day's events.
    events = np.load(workdir / "day.npz")["data"]
    floors = report["floors"]
    assert floors["stream_read"]["result"]["rows"] > 0 and len(events) > 0
    member = zipfile.ZipFile(workdir / "day.npz").getinfo("data.npy")
    assert floors["compress"]["result"]["bytes"] == member.file_size > events.nbytes
    assert set(floors["gates"]["result"]["cpu_s_by_table"]) == {"trades", "book", "book_delta_v2"}
    timings = steps_by_name["book_at"]["result"]
    assert timings["instants"] == 50 and timings["whole_book"]["median_ms"] > 0
    targets = {t["target"]: t for t in report["targets"]}
    assert (
        targets["daily_chain peak RSS MB"]["measured"]
        == steps_by_name["daily_chain"]["peak_rss_mb"]
    )
    ratio = report["ratios"]["daily_chain_wall_over_reconstruction"]
    assert ratio == pytest.approx(
        steps_by_name["daily_chain"]["wall_s"] / steps_by_name["reconstructed_stream"]["wall_s"],
        abs=1e-3,
    )
    assert all(isinstance(t["met"], bool) for t in report["targets"])
    assert targets["fidelity CPU / reconstruction CPU"]["measured"] is None  # not run: not met
    assert not targets["fidelity CPU / reconstruction CPU"]["met"]


def test_the_read_steps_are_skipped_without_a_reconstruction_in_the_run(tmp_path):
    result = CliRunner().invoke(
        main,
        ["bench", "day", "--minutes", "1", "--steps", "convert,book_at,export", "--json",
         "--workdir", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    steps = {s["name"]: s for s in json.loads(result.stdout)["steps"]}
    assert not steps["book_at"]["ok"] and "not reconstructed" in steps["book_at"]["error"]
    assert not steps["export"]["ok"] and "not reconstructed" in steps["export"]["error"]


def test_the_whole_chain_starts_with_the_golden_samples_recorded_so_far(tmp_path):
    """So that its fidelity report compares with them, as the step-by-step one does (on a
    minute-long day the comparison rightly fails its agreement checks: tested here alone)."""
    bench = DayBench(tmp_path, DEFAULT_DATE, "sample")
    assert bench.with_golden_samples("_whole") == "_whole"
    assert not (tmp_path / "data_whole").exists()  # no golden_job ran: nothing to copy
    recorded = bench.data / "golden" / "lake" / "trades" / "1.parquet"
    recorded.parent.mkdir(parents=True)
    recorded.write_bytes(b"golden")
    bench.with_golden_samples("_whole")
    copied = tmp_path / "data_whole" / "golden" / "lake" / "trades" / "1.parquet"
    assert copied.read_bytes() == b"golden"
