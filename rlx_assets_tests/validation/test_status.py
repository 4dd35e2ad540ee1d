"""`acquisition_status.json` updated partition by partition: the same as a listing of the whole
data root, no update lost to a concurrent run, and a cost that does not grow with the history."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
from pathlib import Path

import pytest

from rlx_assets.staging import DataLayout, atomic_write_bytes, update_json
from rlx_assets.validation.status import STATUS_FILE, compute_status, refresh_status
from rlx_assets.validation.zones import REQUIRED_TABLES, raw_path
from rlx_assets_tests.export.sample_chain import certified_sample_data
from rlx_assets_tests.test_remote import bucket, listed_paths, worker  # noqa: F401 - the bucket fixture

MARKET = "BINANCE.BTC-USDT"
DAY = dt.date(2024, 8, 8)


def without_time(status: dict) -> dict:
    return {k: v for k, v in status.items() if k != "updated_at"}


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
