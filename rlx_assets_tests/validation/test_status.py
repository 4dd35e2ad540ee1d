"""`acquisition_status.json` updated partition by partition: the same as a listing of the whole
data root, no update lost to a concurrent run, and a cost that does not grow with the history."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rlx_assets.defs.validation.checks import evaluate_gates
from rlx_assets.lake.acquire import acquire_raw_file
from rlx_assets.lake.sources import LocalLakeSource
from rlx_assets.retry import RetryPolicy
from rlx_assets.staging import DataLayout, atomic_write_bytes, lake_relative_path, update_json
from rlx_assets.validation.certificate import certificate_path
from rlx_assets.validation.profiles import PROFILES
from rlx_assets.validation.status import (
    STATUS_FILE,
    TABLE_STEP_ZONES,
    compute_status,
    refresh_status,
)
from rlx_assets.validation.zones import (
    REQUIRED_TABLES,
    gate_report_path,
    quarantine_dir,
    raw_path,
    read_json,
    ready_path,
)
from rlx_assets_tests.damage import rewrite_parquet, set_value
from rlx_assets_tests.export.sample_chain import certified_sample_data, copy_of
from rlx_assets_tests.test_remote import (  # noqa: F401 - the bucket fixture
    bucket,
    listed_directories,
    listed_paths,
    worker,
)
from rlx_assets_tests.validation.test_gates import seconds_outside_long_silences

MARKET = "BINANCE.BTC-USDT"
DAY = dt.date(2024, 8, 8)


def without_time(status: dict) -> dict:
    return {k: v for k, v in status.items() if k != "updated_at"}


def status_as_written(root: Path) -> dict:
    """`acquisition_status.json` as the steps left it, checked equal to a rebuild from a
    listing of the whole data root."""
    written = json.loads((root / STATUS_FILE).read_text())
    assert without_time(written) == without_time(compute_status(DataLayout(root)))
    return written


def test_updates_per_partition_equal_a_listing_of_the_whole_root(sample_lake, tmp_path_factory):
    """The real chain on the two spot sample days updated the status step by step; a rebuild
    from every zone and certificate gives the same partitions and counts."""
    layout = DataLayout(certified_sample_data(sample_lake, tmp_path_factory))
    written = json.loads((layout.root / STATUS_FILE).read_text())
    assert written["counts"]["certified"] == 2
    assert without_time(written) == without_time(compute_status(layout))


def acquired_day(root: Path, day: dt.date) -> dt.date:
    """Raw files of one day (their bytes do not matter to the status), then its update."""
    layout = DataLayout(root)
    for table in REQUIRED_TABLES:
        atomic_write_bytes(raw_path(layout, table, MARKET, day), b"raw")
    refresh_status(layout, MARKET, day)
    return day


def test_concurrent_runs_lose_no_partition(tmp_path):
    days = [DAY + dt.timedelta(days=n) for n in range(12)]
    pool = multiprocessing.get_context("spawn").Pool(4)
    try:
        pool.starmap(acquired_day, [(tmp_path, day) for day in days])
    finally:
        # Workers leave on close() + join(): terminate() relies on SIGTERM, which a pytest
        # worker may have inherited as ignored (its pool would then wait for ever).
        pool.close()
        pool.join()
    partitions = json.loads((tmp_path / STATUS_FILE).read_text())["partitions"]
    assert sorted(partitions) == [f"{day}|{MARKET}" for day in days]
    assert {p["state"] for p in partitions.values()} == {"raw"}


def test_a_write_that_raced_another_on_s3_is_redone_from_a_fresh_read(
    tmp_path,
    bucket,  # noqa: F811 - the fixture imported above
    s3_server,
):
    a, b = (worker(tmp_path, bucket, s3_server, n) for n in ("a", "b"))
    calls = []

    def add_a(status):
        if not calls:  # worker b writes between a's read and a's conditional write
            update_json(b / "status.json", lambda s: {**(s or {}), "b": 1})
        calls.append(status)
        return {**(status or {}), "a": 1}

    assert update_json(a / "status.json", add_a) == {"a": 1, "b": 1}
    assert calls == [None, {"b": 1}]
    assert json.loads((a / "status.json").read_text()) == {"a": 1, "b": 1}


def test_an_update_lists_only_its_own_partition_on_s3(
    tmp_path,
    bucket,  # noqa: F811
    s3_server,
    monkeypatch: pytest.MonkeyPatch,
):
    """With one listing of every zone per update (about 8 per chain run), a backfill's 30th day
    listed the files of all 30; now the files of its own day."""
    root = worker(tmp_path, bucket, s3_server, "writer")
    days = [acquired_day(root, DAY + dt.timedelta(days=n)) for n in range(30)]
    listed = listed_paths(monkeypatch)
    status = refresh_status(DataLayout(root), MARKET, days[-1])
    assert len(status["partitions"]) == 30
    assert len(listed) == len(REQUIRED_TABLES)  # its three raw files


FUTURES = "BINANCE_FUTURES.BTC-USDT-PERP"


def acquired_and_gated(lake: Path, layout: DataLayout, market: str, day: dt.date) -> None:
    """The partition's three files fetched from `lake` and gated (sample profile), as the raw
    assets and their checks do."""
    exchange, symbol = market.split(".")
    for table in REQUIRED_TABLES:
        acquire_raw_file(
            LocalLakeSource(lake), layout, table, exchange, symbol, day,
            run_id="damaged", policy=RetryPolicy(attempts=1),
        )  # fmt: skip
        evaluate_gates(layout, table, market, day, "sample", PROFILES["sample"], "damaged")


def partition_of(key: str) -> tuple[str, dt.date]:
    day, market = key.split("|")
    return market, dt.date.fromisoformat(day)


def independent_completeness(layout: DataLayout, market: str, day: dt.date) -> float:
    """The least over the tables of seconds covered (pyarrow + numpy; silences longer than
    production's limit, 300 s, are not covered) over the day, times rows over min_rows (at
    most 1), from the files kept."""
    limit = 300.0
    scores = []
    for table in REQUIRED_TABLES:
        path = raw_path(layout, table, market, day)
        if not path.is_file():  # a failed file is in quarantine
            path = next(quarantine_dir(layout, table, market, day).glob("*.parquet"))
        rows = pq.read_metadata(path).num_rows
        covered = seconds_outside_long_silences(path, day, limit)
        scores.append(covered / 86_400 * min(1.0, rows / PROFILES["sample"].min_rows))
    return min(scores)


def test_status_figures_match_an_independent_count_with_a_damaged_partition(
    sample_lake, tmp_path_factory, tmp_path, monkeypatch
):
    """The two certified spot days and the futures day whose trades file has a negative price:
    progress over the configured days x markets, pass rate, completeness and the blocking issue
    naming the damaged partition, each equal to a count made without the status code."""
    certified = certified_sample_data(sample_lake, tmp_path_factory)
    layout = DataLayout(copy_of(certified, tmp_path / "data"))
    lake = Path(shutil.copytree(sample_lake, tmp_path / "lake"))
    trades = lake / lake_relative_path("trades", "BINANCE_FUTURES", "BTC-USDT-PERP", DAY)
    rewrite_parquet(trades, trades, set_value("price", 10, -1.0))
    monkeypatch.setenv("RLX_START_DATE", "2024-08-01")
    monkeypatch.setenv("RLX_MARKETS", f"{MARKET},{FUTURES}")
    acquired_and_gated(lake, layout, FUTURES, DAY)

    status = json.loads((layout.root / STATUS_FILE).read_text())
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    days = (yesterday - dt.date(2024, 8, 1)).days + 1
    assert status["progress"] == {
        "start_date": "2024-08-01", "end_date": yesterday.isoformat(),
        "markets": [MARKET, FUTURES], "partitions": 2 * days, "acquired": 3, "certified": 2,
        "fraction_certified": 2 / (2 * days),
    }  # fmt: skip
    gate_results = {
        (key, table, g["gate"]): g
        for key in status["partitions"]
        for table in REQUIRED_TABLES
        for g in read_json(gate_report_path(layout, table, *partition_of(key)))["gates"]
    }
    assert len(gate_results) == 45
    damaged = f"{DAY}|{FUTURES}"
    assert [k for k, g in gate_results.items() if not g["passed"]] == [
        (damaged, "trades", "quality")
    ]
    assert status["validation"] == {
        "partitions_gated": 3, "partitions_passed": 2, "pass_rate": 2 / 3,
        "gates_run": 45, "gates_passed": 44,
    }  # fmt: skip
    for key, record in status["partitions"].items():
        assert record["completeness"] == pytest.approx(
            independent_completeness(layout, *partition_of(key))
        )
    scores = [p["completeness"] for p in status["partitions"].values()]
    assert status["completeness"] == {
        "partitions": 3, "mean": pytest.approx(sum(scores) / 3), "min": min(scores),
    }  # fmt: skip
    assert status["blocking_issues"] == [
        {"issue": "trades: quality gate failed", "partitions": [damaged]}
    ]
    assert status["partitions"][damaged]["blocking"] == [
        {
            "table": "trades",
            "issue": "quality gate failed",
            "summary": gate_results[(damaged, "trades", "quality")]["summary"],
        }
    ]


def test_a_step_lists_again_only_the_directories_it_may_have_changed_on_s3(
    tmp_path,
    bucket,  # noqa: F811
    s3_server,
    monkeypatch: pytest.MonkeyPatch,
):
    """A partition's first update lists its 9 directories (3 zones x 3 tables); then acquiring
    or gating one table lists that table's raw and quarantine directories, promotion to ready
    the 3 ready directories, the certificate none (before: 9 LISTs per update, 8 updates per
    run). Each entry equals a rebuild from the whole root."""
    root = worker(tmp_path, bucket, s3_server, "writer")
    layout = DataLayout(root)
    acquired_day(root, DAY - dt.timedelta(days=1))  # the status file exists
    trades, book, deltas = "trades", "book", "book_delta_v2"
    listed = listed_directories(monkeypatch)
    lists = []

    def step(tables, zones, *files: Path) -> None:
        for path in files:
            atomic_write_bytes(path, b"{}" if path.suffix == ".json" else b"parquet")
        listed.clear()
        refresh_status(layout, MARKET, DAY, tables, zones)
        lists.append(list(listed))
        status_as_written(root)

    step((trades,), TABLE_STEP_ZONES, raw_path(layout, trades, MARKET, DAY))
    step((book,), TABLE_STEP_ZONES, raw_path(layout, book, MARKET, DAY))
    assert {d.relative_to(root).parts[:3] for d in lists[-1]} == {
        ("staging", "raw", book), ("staging", "quarantine", book)
    }  # fmt: skip
    step((deltas,), TABLE_STEP_ZONES, raw_path(layout, deltas, MARKET, DAY))
    step(REQUIRED_TABLES, ("ready",), *(ready_path(layout, t, MARKET, DAY) for t in (trades, book)))
    step((), TABLE_STEP_ZONES, certificate_path(layout, MARKET, DAY))
    # a republished file fails its gates: quarantined (the partition's manifest logs are listed
    # too, to tell whether the certificate still holds)
    step((deltas,), TABLE_STEP_ZONES, quarantine_dir(layout, deltas, MARKET, DAY) / "report.json")
    zones = [[d for d in found if d.relative_to(root).parts[0] == "staging"] for found in lists]
    assert [len(found) for found in zones] == [9, 2, 2, 3, 0, 2]
    entry = status_as_written(root)["partitions"][f"{DAY}|{MARKET}"]
    assert entry["state"] == "quarantined" and entry["quarantined_tables"] == [deltas]
    assert entry["raw_tables"] == sorted(REQUIRED_TABLES)
    assert entry["ready_tables"] == sorted([trades, book])
