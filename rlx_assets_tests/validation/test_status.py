"""`acquisition_status.json` updated partition by partition: the same as a listing of the whole
data root, no update lost to a concurrent run, and a cost that does not grow with the history."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
from pathlib import Path

import pytest

from rlx_assets.lake.quarantine import quarantine_dir
from rlx_assets.staging import DataLayout, atomic_write_bytes, update_json
from rlx_assets.validation.certificate import certificate_path
from rlx_assets.validation.status import (
    STATUS_FILE,
    TABLE_STEP_ZONES,
    compute_status,
    refresh_status,
)
from rlx_assets.validation.zones import REQUIRED_TABLES, raw_path, ready_path
from rlx_assets_tests.export.sample_chain import certified_sample_data
from rlx_assets_tests.test_remote import (  # noqa: F401 - the bucket fixture
    bucket,
    listed_directories,
    listed_paths,
    worker,
)

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
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.starmap(acquired_day, [(tmp_path, day) for day in days])
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
