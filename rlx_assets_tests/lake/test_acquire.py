"""Acquisition through lakeapi against a real S3-compatible server holding the real sample lake."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import pytest

from rlx_assets.config import RlxSettings
from rlx_assets.lake.acquire import RetryPolicy, acquire_raw_file
from rlx_assets.lake.configured_source import source_from_settings
from rlx_assets.lake.manifest import manifest_entries, manifest_log
from rlx_assets.lake.quarantine import quarantine_dir
from rlx_assets.lake.sources import (
    CorruptObjectError,
    LakeAccessError,
    NoDataError,
    QuarantinedObjectError,
    TransientLakeError,
)
from rlx_assets.staging import DataLayout, lake_relative_path, read_json_lines
from rlx_assets_tests.conftest import LAKE_PREFIX, TEST_SECRET
from rlx_assets_tests.servers.s3 import Fault

DAY = dt.date(2024, 8, 8)
MARKET = "BINANCE.BTC-USDT"
FAST = RetryPolicy(attempts=4, initial_s=0.01, max_s=0.05)


def acquire(uri: str, layout: DataLayout, table: str = "trades", day: dt.date = DAY, run_id="r1"):
    source = source_from_settings(RlxSettings(lake_uri=uri, data_dir=layout.root))
    return acquire_raw_file(
        source, layout, table, "BINANCE", "BTC-USDT", day, run_id=run_id, policy=FAST
    )


def served_bytes(s3_lake, table: str, day: dt.date = DAY) -> bytes:
    key = f"{LAKE_PREFIX}/{lake_relative_path(table, 'BINANCE', 'BTC-USDT', day).as_posix()}"
    return s3_lake["client"].get_object(Bucket=s3_lake["bucket"], Key=key)["Body"].read()


def audit_events(layout: DataLayout) -> list[dict]:
    return [e for f in sorted(layout.download_log_dir.glob("*.jsonl")) for e in read_json_lines(f)]


@pytest.mark.parametrize("table", ["trades", "book", "book_delta_v2"])
def test_raw_file_equals_served_object_byte_for_byte(s3_lake, tmp_path, table):
    layout = DataLayout(tmp_path / "data")
    raw = acquire(s3_lake["uri"], layout, table)
    stored = (layout.root / raw.path).read_bytes()
    assert stored == served_bytes(s3_lake, table)
    assert raw.action == "downloaded"
    assert raw.source_uri.startswith(f"s3://{s3_lake['bucket']}/{LAKE_PREFIX}/{table}/")
    assert raw.rows > 0 and raw.first_timestamp <= raw.last_timestamp
    # The partition's rows lie in its UTC day, as the vendor splits them.
    midnight = int(dt.datetime(2024, 8, 8, tzinfo=dt.UTC).timestamp() * 1e9)
    assert midnight <= raw.first_timestamp < midnight + 86_400 * 10**9
    manifest = manifest_entries(layout, table, MARKET, DAY)
    assert manifest[-1]["sha256"] == raw.sha256 and manifest[-1]["run_id"] == "r1"
    events = [e["event"] for e in audit_events(layout)]
    assert events == ["start", "finish"]
    for zone in ("raw", "validating", "ready", "quarantine"):
        assert layout.zone(zone).is_dir()


def test_unchanged_partition_is_not_downloaded_again(s3_lake, tmp_path, s3_server):
    layout = DataLayout(tmp_path / "data")
    first = acquire(s3_lake["uri"], layout, run_id="r1")
    gets_before = sum(1 for m, p in s3_server.app.requests if m == "GET" and "/trades/" in p)
    second = acquire(s3_lake["uri"], layout, run_id="r2")
    gets_after = sum(1 for m, p in s3_server.app.requests if m == "GET" and "/trades/" in p)
    assert second.action == "reused" and second.sha256 == first.sha256
    assert gets_after == gets_before  # no GET of the object itself
    assert [e["event"] for e in audit_events(layout)] == ["start", "finish", "reuse"]
    assert [e["action"] for e in manifest_entries(layout, "trades", MARKET, DAY)] == [
        "downloaded",
        "reused",
    ]


def test_a_changed_vendor_file_is_downloaded_again(s3_lake, tmp_path):
    layout = DataLayout(tmp_path / "data")
    first = acquire(s3_lake["uri"], layout)
    # The vendor republishes the day (here: with the next day's real file's bytes).
    replacement = served_bytes(s3_lake, "trades", dt.date(2024, 8, 9))
    key = f"{LAKE_PREFIX}/{lake_relative_path('trades', 'BINANCE', 'BTC-USDT', DAY).as_posix()}"
    s3_lake["client"].put_object(Bucket=s3_lake["bucket"], Key=key, Body=replacement)
    second = acquire(s3_lake["uri"], layout, run_id="r2")
    assert second.action == "downloaded" and second.sha256 != first.sha256
    assert (layout.root / second.path).read_bytes() == replacement


def test_day_without_data_fails_fast_with_a_clear_message(s3_lake, tmp_path):
    layout = DataLayout(tmp_path / "data")
    with pytest.raises(NoDataError) as caught:
        acquire(s3_lake["uri"], layout, "book_delta_v2", dt.date(2024, 8, 10))
    assert str(caught.value).startswith(
        "no book_delta_v2 for BINANCE.BTC-USDT on 2024-08-10 in the lake"
    )
    assert not list(layout.zone("raw").rglob("*.parquet"))


def test_listing_is_not_stale_and_lakeapi_cache_stays_out_of_the_working_dir(s3_lake, tmp_path):
    layout = DataLayout(tmp_path / "data")
    later_day = dt.date(2024, 8, 10)
    with pytest.raises(NoDataError):
        acquire(s3_lake["uri"], layout, "trades", later_day)
    # The vendor publishes the day afterwards: the next run must see it at once.
    key = (
        f"{LAKE_PREFIX}/{lake_relative_path('trades', 'BINANCE', 'BTC-USDT', later_day).as_posix()}"
    )
    s3_lake["client"].put_object(
        Bucket=s3_lake["bucket"], Key=key, Body=served_bytes(s3_lake, "trades")
    )
    assert acquire(s3_lake["uri"], layout, "trades", later_day).action == "downloaded"
    assert not (Path.cwd() / ".lake_cache").exists()


def test_missing_credentials_name_what_to_set_and_touch_nothing(s3_lake, tmp_path, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    layout = DataLayout(tmp_path / "data")
    with pytest.raises(LakeAccessError) as caught:
        acquire(s3_lake["uri"], layout)
    assert "AWS_ACCESS_KEY_ID" in str(caught.value) and "AWS_SECRET_ACCESS_KEY" in str(caught.value)
    assert not layout.staging.exists()


def test_rejected_credentials_fail_without_echoing_the_secret(s3_lake, s3_server, tmp_path):
    s3_server.inject(Fault("GET", s3_lake["bucket"], 403, times=1, code="InvalidAccessKeyId"))
    layout = DataLayout(tmp_path / "data")
    with pytest.raises(LakeAccessError) as caught:
        acquire(s3_lake["uri"], layout)
    message = str(caught.value)
    assert "refused access" in message and "AWS_SECRET_ACCESS_KEY" in message
    assert TEST_SECRET not in message and os.environ["AWS_ACCESS_KEY_ID"] not in message
    assert not layout.staging.exists()


def test_server_errors_are_retried_with_backoff_then_succeed(s3_lake, s3_server, tmp_path):
    fault = s3_server.inject(Fault("GET", "/trades/exchange=BINANCE/", 500, times=3))
    layout = DataLayout(tmp_path / "data")
    raw = acquire(s3_lake["uri"], layout)
    assert fault.hits == 3
    assert (layout.root / raw.path).read_bytes() == served_bytes(s3_lake, "trades")
    events = audit_events(layout)
    assert [e["event"] for e in events] == ["start", "retry", "retry", "retry", "finish"]
    assert [e["attempt"] for e in events if e["event"] == "retry"] == [1, 2, 3]


def test_persistent_server_errors_fail_bounded_and_keep_the_good_file(s3_lake, s3_server, tmp_path):
    layout = DataLayout(tmp_path / "data")
    good = acquire(s3_lake["uri"], layout)
    # Force a re-download (as if the vendor republished), then let every GET fail.
    manifest_log(layout, "trades", MARKET, DAY).unlink()
    fault = s3_server.inject(Fault("GET", "/trades/exchange=BINANCE/", 503, times=100))
    with pytest.raises(TransientLakeError):
        acquire(s3_lake["uri"], layout, run_id="r2")
    assert fault.hits == FAST.attempts
    s3_server.app.faults.clear()
    assert (layout.root / good.path).read_bytes() == served_bytes(s3_lake, "trades")
    assert not any(layout.incoming.iterdir())
    assert audit_events(layout)[-1]["event"] == "fail"


def test_corrupt_object_is_refused_and_the_good_file_stays(s3_lake, tmp_path):
    layout = DataLayout(tmp_path / "data")
    good = acquire(s3_lake["uri"], layout)
    good_bytes = (layout.root / good.path).read_bytes()
    key = f"{LAKE_PREFIX}/{lake_relative_path('trades', 'BINANCE', 'BTC-USDT', DAY).as_posix()}"
    s3_lake["client"].put_object(
        Bucket=s3_lake["bucket"], Key=key, Body=good_bytes[: len(good_bytes) // 2]
    )
    with pytest.raises(CorruptObjectError) as caught:
        acquire(s3_lake["uri"], layout, run_id="r2")
    assert "not a readable Parquet file" in str(caught.value) and key in str(caught.value)
    assert (layout.root / good.path).read_bytes() == good_bytes
    assert not any(layout.incoming.iterdir())


def object_gets(s3_server, key: str) -> int:
    """GETs of the object itself (not listings) the server has answered so far."""
    return sum(1 for m, p in s3_server.app.requests if m == "GET" and p.split("?")[0].endswith(key))


def test_a_quarantined_version_is_not_downloaded_again_until_the_vendor_replaces_it(
    s3_lake, s3_server, tmp_path
):
    layout = DataLayout(tmp_path / "data")
    key = f"{LAKE_PREFIX}/{lake_relative_path('trades', 'BINANCE', 'BTC-USDT', DAY).as_posix()}"
    good = served_bytes(s3_lake, "trades")
    s3_lake["client"].put_object(Bucket=s3_lake["bucket"], Key=key, Body=good[: len(good) // 2])
    gets = object_gets(s3_server, key)
    with pytest.raises(QuarantinedObjectError):
        acquire(s3_lake["uri"], layout, run_id="r1")
    assert object_gets(s3_server, key) == gets + 1

    held = quarantine_dir(layout, "trades", "BINANCE.BTC-USDT", DAY)
    for run_id in ("r2", "r3"):  # every later run: refused at once, nothing fetched
        with pytest.raises(QuarantinedObjectError, match="already quarantined") as again:
            acquire(s3_lake["uri"], layout, run_id=run_id)
        assert key in str(again.value) and again.value.quarantine_path == held
    assert object_gets(s3_server, key) == gets + 1  # the known-bad bytes were not fetched again
    events = [e["event"] for e in audit_events(layout)]
    assert events == ["start", "fail", "skip_quarantined", "skip_quarantined"]

    shutil.rmtree(held)  # the user's way to have the same version fetched and judged again
    with pytest.raises(QuarantinedObjectError, match="not a readable Parquet file"):
        acquire(s3_lake["uri"], layout, run_id="r4")
    assert object_gets(s3_server, key) == gets + 2

    s3_lake["client"].put_object(Bucket=s3_lake["bucket"], Key=key, Body=good)  # fixed
    raw = acquire(s3_lake["uri"], layout, run_id="r5")
    assert raw.action == "downloaded" and (layout.root / raw.path).read_bytes() == good
    assert object_gets(s3_server, key) == gets + 3


def test_no_secret_in_any_log_or_manifest(s3_lake, s3_server, tmp_path):
    s3_server.inject(Fault("GET", "/book/exchange=BINANCE/", 500, times=1))
    layout = DataLayout(tmp_path / "data")
    acquire(s3_lake["uri"], layout, "book")
    for path in layout.root.rglob("*.jsonl"):
        text = path.read_text()
        assert TEST_SECRET not in text and os.environ["AWS_ACCESS_KEY_ID"] not in text


def test_local_directory_lake(sample_lake, tmp_path):
    layout = DataLayout(tmp_path / "data")
    raw = acquire(str(sample_lake), layout, "book")
    expected = sample_lake / lake_relative_path("book", "BINANCE", "BTC-USDT", DAY)
    assert (layout.root / raw.path).read_bytes() == expected.read_bytes()


def test_unknown_lake_uri_scheme_is_refused():
    with pytest.raises(LakeAccessError, match="only local paths and s3://"):
        source_from_settings(RlxSettings(lake_uri="gs://bucket/prefix"))
