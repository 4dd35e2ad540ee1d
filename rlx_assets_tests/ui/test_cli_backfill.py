"""A backfill of several dates x markets launched from the CLI and run by the daemon in parallel,
on an instance with the pool limits the README sets: one damaged day fails alone, and no pool
ever runs more steps at once than its limit."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from rlx_assets.staging import lake_relative_path, sha256_file
from rlx_assets_tests.damage import rewrite_parquet, set_value
from rlx_assets_tests.servers.dagster_ui import DagsterUI
from rlx_assets_tests.ui import REPO_ROOT

PARTITIONS = [
    "2024-08-08|BINANCE.BTC-USDT",
    "2024-08-09|BINANCE.BTC-USDT",
    "2024-08-08|BINANCE_FUTURES.BTC-USDT-PERP",
]
DAMAGED = "2024-08-09|BINANCE.BTC-USDT"
LAKE_NAMES = {"BINANCE.BTC-USDT": ("BINANCE", "BTC-USDT"),
              "BINANCE_FUTURES.BTC-USDT-PERP": ("BINANCE_FUTURES", "BTC-USDT-PERP")}  # fmt: skip
STEP_EVENTS = {
    dg.DagsterEventType.STEP_START,
    dg.DagsterEventType.STEP_SUCCESS,
    dg.DagsterEventType.STEP_FAILURE,
}


def documented_pool_limits() -> dict[str, int]:
    """The `dagster instance concurrency set POOL N` commands of the README."""
    text = (REPO_ROOT / "README.md").read_text()
    limits = re.findall(r"^dagster instance concurrency set (\S+) (\d+)$", text, re.MULTILINE)
    return {pool: int(limit) for pool, limit in limits}


def dagster_cli(ui: DagsterUI, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "dagster", *args],
        cwd=ui.home, env=ui.env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals open at one time (an end before a start at a tie)."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    open_now = peak = 0
    for _, change in edges:
        open_now += change
        peak = max(peak, open_now)
    return peak


def step_intervals_by_pool(instance: dg.DagsterInstance) -> dict[str, list[tuple[float, float]]]:
    """From every run's event log: (start, end) of each step that runs in a pool."""
    from rlx_assets.definitions import defs

    job = defs.resolve_implicit_global_asset_job_def()
    pool_of = {name: node.definition.pool for name, node in job.graph.node_dict.items()}
    intervals: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for run in instance.get_runs():
        started: dict[str, float] = {}
        for record in instance.all_logs(run.run_id, of_type=STEP_EVENTS):
            pool = pool_of.get(record.step_key)
            if pool is None:
                continue
            if record.dagster_event_type == dg.DagsterEventType.STEP_START:
                started[record.step_key] = record.timestamp
            else:
                intervals[pool].append((started.pop(record.step_key), record.timestamp))
    return intervals


@pytest.mark.slow
def test_cli_backfill_isolates_a_damaged_day_and_keeps_to_the_pool_limits(
    sample_lake, tmp_path, monkeypatch
):
    lake = Path(shutil.copytree(sample_lake, tmp_path / "lake"))
    damaged_day = dt.date.fromisoformat(DAMAGED.split("|")[0])
    book = lake / lake_relative_path("book", "BINANCE", "BTC-USDT", damaged_day)
    rewrite_parquet(book, book, set_value("bid_0_price", 5, 1e9))  # one crossed book row
    limits = documented_pool_limits()
    assert limits == {
        "crypto_lake_download": 4, "validation": 4, "reconstruction": 2, "golden": 4, "fidelity": 4
    }  # fmt: skip

    with DagsterUI(tmp_path / "home", lake, webserver=False) as ui:  # the CLI and the daemon
        for pool, limit in limits.items():
            dagster_cli(ui, "instance", "concurrency", "set", pool, str(limit))
        dagster_cli(
            ui, "job", "backfill", "-m", "rlx_assets.definitions", "-j", "daily_chain",
            "--partitions", ",".join(PARTITIONS), "--noprompt",
        )  # fmt: skip
        # Bounds, not waits (a run step per process on two shared cores; quiet: about 8 min).
        runs = ui.wait_for_runs(
            lambda run: "dagster/backfill" in run["tags"], count=len(PARTITIONS), timeout=1200
        )
        # The damaged day's failed run gets its diagnosis: fidelity_diagnosis_sensor (every
        # 30 s) launches fidelity_job for it, possibly after the backfill's runs have ended.
        (diagnosis,) = ui.wait_for_runs(
            lambda run: run["tags"].get("dagster/sensor_name") == "fidelity_diagnosis_sensor",
            count=1, timeout=600,
        )  # fmt: skip
        ui.wait_for_runs(lambda run: True, count=len(PARTITIONS) + 1, timeout=600)
        reported = dagster_cli(ui, "instance", "concurrency", "get", "--all")

    status = {run["tags"]["dagster/partition"]: run["status"] for run in runs}
    assert status == {p: "FAILURE" if p == DAMAGED else "SUCCESS" for p in PARTITIONS}
    assert (diagnosis["tags"]["dagster/partition"], diagnosis["status"]) == (DAMAGED, "SUCCESS")

    # The damaged day stopped at its gate; the others are certified and reconstructed.
    data = ui.data_dir
    (report,) = data.glob(f"staging/quarantine/book/**/dt={damaged_day}/report.json")
    failed = [g["gate"] for g in json.loads(report.read_text())["gates"] if not g["passed"]]
    assert failed == ["quality"]
    assert not (data / "certificates" / "BINANCE.BTC-USDT" / f"{damaged_day}.json").exists()
    assert not (data / "reconstruction" / "BINANCE.BTC-USDT" / str(damaged_day)).exists()
    for partition in PARTITIONS:
        if partition == DAMAGED:
            continue
        day, market = partition.split("|")
        exchange, symbol = LAKE_NAMES[market]
        lake_file = {
            table: lake / lake_relative_path(table, exchange, symbol, dt.date.fromisoformat(day))
            for table in ("trades", "book", "book_delta_v2")
        }
        certificate = json.loads((data / "certificates" / market / f"{day}.json").read_text())
        assert {t: e["sha256"] for t, e in certificate["tables"].items()} == {
            t: sha256_file(path) for t, path in lake_file.items()
        }
        summary = json.loads((data / "reconstruction" / market / day / "summary.json").read_text())
        assert summary["trades"] == pl.read_parquet(lake_file["trades"]).height
        assert summary["started_cold"]  # the first day of each market in the lake
        assert summary["vendor_book_rows_compared"] > 1000

    # The instance holds the documented limits, the default for every other pool, and no slot
    # outlived its step (the failed run gave its slots back).
    monkeypatch.chdir(ui.home)  # dagster.yaml's relative storage paths
    instance = dg.DagsterInstance.from_config(str(ui.home))
    try:
        default = instance.get_concurrency_config().pool_config.default_pool_limit
        intervals = step_intervals_by_pool(instance)
        assert set(intervals) == {
            "crypto_lake_download", "validation", "reconstruction", "fidelity",
        }  # fmt: skip
        for pool, spans in intervals.items():
            limit = limits.get(pool, default)
            info = instance.event_log_storage.get_concurrency_info(pool)
            assert (info.slot_count, info.claimed_slots) == (limit, [])
            assert f'"{pool}": 0 / {limit} slots occupied' in reported
            print(f"{pool}: {len(spans)} steps, at most {most_at_once(spans)} at once (≤ {limit})")
            assert 1 <= most_at_once(spans) <= limit
        # 3 partitions x 3 tables: without the pool more downloads than 4 could overlap.
        assert len(intervals["crypto_lake_download"]) == 9
    finally:
        instance.dispose()
