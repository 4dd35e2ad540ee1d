"""The manifest: one log per partition file, so a backfill's later days cost what its first did."""

from __future__ import annotations

import datetime as dt

import pytest

from rlx_assets.lake.manifest import (
    LEGACY_MANIFEST_NAME,
    append_manifest_entry,
    manifest_entries,
    manifest_entry,
    manifest_path_of,
)
from rlx_assets.staging import DataLayout, append_json_line
from rlx_assets_tests.test_remote import bucket, listed_paths, worker  # noqa: F401 - the bucket fixture

MARKET = "BINANCE.BTC-USDT"
DAY = dt.date(2024, 8, 8)


def entry(table: str, day: dt.date, sha256: str) -> dict:
    return {"path": manifest_path_of(table, MARKET, day), "sha256": sha256, "action": "downloaded"}


def test_entries_written_before_release_3_are_still_read_oldest_first(tmp_path):
    layout = DataLayout(tmp_path)
    append_json_line(layout.manifest_dir / LEGACY_MANIFEST_NAME, entry("trades", DAY, "old"))
    append_json_line(layout.manifest_dir / LEGACY_MANIFEST_NAME, entry("book", DAY, "other"))
    assert manifest_entry(layout, "trades", MARKET, DAY)["sha256"] == "old"
    append_manifest_entry(layout, "trades", MARKET, DAY, entry("trades", DAY, "new"))
    assert [e["sha256"] for e in manifest_entries(layout, "trades", MARKET, DAY)] == ["old", "new"]
    assert [e["sha256"] for e in manifest_entries(layout, "book", MARKET, DAY)] == ["other"]


def test_an_entry_filed_under_another_partition_is_refused(tmp_path):
    with pytest.raises(ValueError, match="filed under trades"):
        append_manifest_entry(DataLayout(tmp_path), "trades", MARKET, DAY, entry("book", DAY, "x"))


def test_reading_one_partition_lists_only_its_own_records(
    tmp_path,
    bucket,  # noqa: F811 - the fixture imported above
    s3_server,
    monkeypatch,
):
    """On S3 every record is an object: with one log for all files, reading a day's entry
    listed the records of every day before it (30 here, a year's backfill ~3,300)."""
    writer = DataLayout(worker(tmp_path, bucket, s3_server, "writer"))
    days = [DAY + dt.timedelta(days=n) for n in range(30)]
    for day in days:
        for table in ("trades", "book"):
            append_manifest_entry(writer, table, MARKET, day, entry(table, day, f"{table}{day}"))
    listed = listed_paths(monkeypatch)
    reader = DataLayout(worker(tmp_path, bucket, s3_server, "reader"))  # a fresh working copy
    assert manifest_entry(reader, "trades", MARKET, days[-1])["sha256"] == f"trades{days[-1]}"
    assert len(listed) == 1
