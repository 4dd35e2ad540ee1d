"""The raw assets as a user runs them: in-process, and through `dagster asset materialize`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from rlx_assets.config import RlxSettings
from rlx_assets.defs.acquisition.assets import raw_book, raw_book_delta_v2, raw_trades
from rlx_assets.defs.partitions import build_partitions
from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets.staging import lake_relative_path, sha256_file
from rlx_assets_tests.conftest import REPO_ROOT, TEST_SECRET
from rlx_assets_tests.damage import rewrite_parquet, set_value
from rlx_assets_tests.validation.test_status import status_as_written

RAW_ASSETS = [raw_trades, raw_book, raw_book_delta_v2]
SPOT_DAY = "2024-08-08|BINANCE.BTC-USDT"


def materialize(data_dir: Path, lake_uri: str, partition: str = SPOT_DAY):
    return dg.materialize(
        RAW_ASSETS,
        partition_key=partition,
        resources={"rlx": RlxEnvironment(data_dir=str(data_dir), lake_uri=lake_uri)},
        raise_on_error=False,
    )


def test_materialises_the_three_raw_tables_with_evidence(sample_lake, tmp_path):
    result = materialize(tmp_path / "data", str(sample_lake))
    assert result.success
    for table in ("trades", "book", "book_delta_v2"):
        (event,) = result.asset_materializations_for_node(f"raw_{table}")
        meta = {k: v.value for k, v in event.metadata.items()}
        stored = tmp_path / "data" / meta["path"]
        original = sample_lake / lake_relative_path(table, "BINANCE", "BTC-USDT", _day(SPOT_DAY))
        assert stored.read_bytes() == original.read_bytes()
        assert meta["sha256"] == sha256_file(original)
        assert meta["size_bytes"] == original.stat().st_size
        assert meta["rows"] > 0 and meta["first_timestamp"] <= meta["last_timestamp"]
        assert meta["source_uri"].endswith("1.snappy.parquet")


def test_futures_partition_uses_the_futures_lake_symbol(sample_lake, tmp_path):
    result = materialize(
        tmp_path / "data", str(sample_lake), "2024-08-08|BINANCE_FUTURES.BTC-USDT-PERP"
    )
    assert result.success
    (event,) = result.asset_materializations_for_node("raw_book_delta_v2")
    assert "symbol=BTC-USDT-PERP" in event.metadata["path"].value


def test_missing_credentials_fail_the_run_with_what_to_set(s3_lake, tmp_path, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    result = materialize(tmp_path / "data", s3_lake["uri"])
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failures
    for failure in failures:
        message = failure.step_failure_data.error.message
        assert "AWS_ACCESS_KEY_ID" in message
    assert not (tmp_path / "data" / "staging").exists()


def test_a_failed_acquisition_is_one_json_event_naming_its_error(
    s3_lake, tmp_path, monkeypatch, capsys
):
    """RLX_LOG_FORMAT=json: each raw asset that fails (here: no credentials) logs one
    `raw_file.failed` line with the run id, the partition and what to set."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("RLX_LOG_FORMAT", "json")
    capsys.readouterr()
    result = materialize(tmp_path / "data", s3_lake["uri"])
    out = capsys.readouterr().out
    assert not result.success
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    failed = {x["table"]: x for x in lines if x["event"] == "raw_file.failed"}
    assert set(failed) == {"trades", "book", "book_delta_v2"}
    for line in failed.values():
        assert (line["run_id"], line["partition"]) == (result.run_id, SPOT_DAY)
        assert line["level"] == "ERROR" and line["bytes_downloaded"] == 0
        assert "AWS_ACCESS_KEY_ID" in line["error"]


def test_lake_uri_over_s3_materialises_byte_exact(s3_lake, tmp_path):
    result = materialize(tmp_path / "data", s3_lake["uri"])
    assert result.success
    (event,) = result.asset_materializations_for_node("raw_book")
    text = " ".join(str(v.value) for v in event.metadata.values())
    assert TEST_SECRET not in text


def test_markets_come_from_rlx_markets():
    partitions = build_partitions(RlxSettings(markets="BINANCE.ETH-USDT,BINANCE.BTC-USDT"))
    markets = partitions.get_partitions_def_for_dimension("market").get_partition_keys()
    assert markets == ["BINANCE.ETH-USDT", "BINANCE.BTC-USDT"]
    default = build_partitions(RlxSettings())
    assert default.get_partitions_def_for_dimension("market").get_partition_keys() == [
        "BINANCE.BTC-USDT",
        "BINANCE_FUTURES.BTC-USDT-PERP",
    ]
    date_dim = default.get_partitions_def_for_dimension("date")
    assert date_dim.get_first_partition_key() == "2024-01-01"


def test_a_malformed_market_is_refused_at_load_time():
    with pytest.raises(ValueError, match="BTCUSDT"):
        build_partitions(RlxSettings(markets="BTCUSDT"))


def test_definitions_load_with_the_main_job():
    from rlx_assets.definitions import defs

    job = defs.resolve_job_def("daily_chain")
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} >= {
        "raw_trades",
        "raw_book",
        "raw_book_delta_v2",
    }


def run_cli_chain(tmp_path: Path, lake: Path, partition: str) -> subprocess.CompletedProcess:
    """What a CI user runs, with the project's dagster.yaml as the instance config."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "RLX_DATA_DIR": str(tmp_path / "data"),
        "RLX_LAKE_URI": str(lake),
        "RLX_GATE_PROFILE": "sample",
    }
    command = [
        sys.executable, "-m", "dagster", "asset", "materialize",
        "-m", "rlx_assets.definitions",
        "--select", "*readiness_certificate",
        "--partition", partition,
    ]  # fmt: skip
    return subprocess.run(command, cwd=home, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_dagster_asset_materialize_cli_runs_the_chain_on_a_sample_partition(sample_lake, tmp_path):
    done = run_cli_chain(tmp_path, sample_lake, SPOT_DAY)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RUN_SUCCESS" in done.stderr
    for table in ("trades", "book", "book_delta_v2"):
        relative = lake_relative_path(table, "BINANCE", "BTC-USDT", _day(SPOT_DAY))
        for zone in ("raw", "ready"):
            stored = tmp_path / "data" / "staging" / zone / relative
            assert stored.read_bytes() == (sample_lake / relative).read_bytes()
    assert (tmp_path / "data" / "certificates" / "BINANCE.BTC-USDT" / "2024-08-08.json").is_file()
    # The instance kept its records under data/ beside dagster.yaml, as documented.
    assert (tmp_path / "home" / "data" / "dagster" / "storage").is_dir()


@pytest.mark.slow
def test_dagster_asset_materialize_cli_fails_readably_on_a_damaged_partition(sample_lake, tmp_path):
    lake = Path(shutil.copytree(sample_lake, tmp_path / "lake"))
    trades = lake / lake_relative_path("book", "BINANCE", "BTC-USDT", _day(SPOT_DAY))
    rewrite_parquet(trades, trades, set_value("bid_0_price", 5, 1e9))  # a crossed book row
    done = run_cli_chain(tmp_path, lake, SPOT_DAY)
    assert done.returncode != 0
    assert "blocking asset check failed" in done.stderr and "raw_book: quality" in done.stderr
    assert "1 rows with crossed book" in done.stderr
    assert not (
        tmp_path / "data" / "certificates" / "BINANCE.BTC-USDT" / "2024-08-08.json"
    ).exists()


def _day(partition: str):
    import datetime as dt

    return dt.date.fromisoformat(partition.split("|")[0])


def test_downloads_share_one_bounded_pool_in_the_instance(tmp_path):
    """A year's backfill queues on the pool instead of opening hundreds of downloads."""
    shutil.copy(REPO_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 4
    finally:
        instance.dispose()
    for asset in RAW_ASSETS:
        assert asset.op.pool == "crypto_lake_download"


def test_an_unreadable_vendor_file_fails_the_step_into_quarantine_until_a_good_one_comes(
    sample_lake, tmp_path
):
    from rlx_assets.defs.validation.checks import raw_trades_gates
    from rlx_assets.validation.zones import quarantine_dir

    lake = Path(shutil.copytree(sample_lake, tmp_path / "lake"))
    relative = lake_relative_path("trades", "BINANCE", "BTC-USDT", _day(SPOT_DAY))
    good = (lake / relative).read_bytes()
    (lake / relative).write_bytes(os.urandom(len(good)))  # the vendor's object itself is bad
    resources = {
        "rlx": RlxEnvironment(
            data_dir=str(tmp_path / "data"), lake_uri=str(lake), gate_profile="sample"
        )
    }
    run = dict(partition_key=SPOT_DAY, resources=resources, raise_on_error=False)
    result = dg.materialize([raw_trades, raw_trades_gates], **run)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.error.message
    held = quarantine_dir(RlxEnvironment(data_dir=str(tmp_path / "data")).layout(), "trades",
                          "BINANCE.BTC-USDT", _day(SPOT_DAY))  # fmt: skip
    assert (lake / relative).as_uri() in message and str(held) in message
    assert "not a readable Parquet file" in message
    assert (held / "report.json").is_file()
    status = status_as_written(tmp_path / "data")
    assert status["partitions"][SPOT_DAY]["state"] == "quarantined"
    assert not (tmp_path / "data" / "staging" / "raw" / relative).exists()

    (lake / relative).write_bytes(good)  # the vendor fixes the file
    result = dg.materialize([raw_trades, raw_trades_gates], **run)
    assert result.success
    assert not held.exists()  # the gates passed on the good file: released
    status = status_as_written(tmp_path / "data")
    assert status["partitions"][SPOT_DAY]["state"] != "quarantined"
    log = (tmp_path / "data" / "logs" / "quarantine.jsonl").read_text().splitlines()
    events = [json.loads(line)["event"] for line in log]
    assert events == ["quarantined", "released"]


def test_raw_metadata_says_how_the_bytes_were_verified(sample_lake, s3_lake, tmp_path):
    local = materialize(tmp_path / "local", str(sample_lake))
    (event,) = local.asset_materializations_for_node("raw_trades")
    assert event.metadata["verified_by"].value == "size-only (local directory: no vendor checksum)"
    remote = materialize(tmp_path / "remote", s3_lake["uri"])
    (event,) = remote.asset_materializations_for_node("raw_trades")
    assert event.metadata["verified_by"].value == "crc32-checksum+md5-etag"


def test_raw_metadata_has_the_transfer_figures_as_numbers_dagster_plots(sample_lake, tmp_path):
    """Downloaded: the bytes on disk, a speed and three successful requests; materialised
    again, the re-verified file is reused: no bytes, no speed, two requests."""
    first, again = (materialize(tmp_path / "data", str(sample_lake)) for _ in range(2))
    assert first.success and again.success
    for table in ("trades", "book", "book_delta_v2"):
        (downloaded,) = first.asset_materializations_for_node(f"raw_{table}")
        (reused,) = again.asset_materializations_for_node(f"raw_{table}")
        figures = downloaded.metadata
        on_disk = (tmp_path / "data" / figures["path"].value).stat().st_size
        assert figures["bytes_downloaded"] == dg.MetadataValue.int(on_disk)
        assert isinstance(figures["download_mb_per_s"], dg.FloatMetadataValue)
        assert figures["download_mb_per_s"].value > 0
        assert figures["requests"] == figures["requests_ok"] == dg.MetadataValue.int(3)
        assert figures["retries_connection"] == dg.MetadataValue.int(0)
        assert reused.metadata["action"].value == "reused"
        assert reused.metadata["bytes_downloaded"] == dg.MetadataValue.int(0)
        assert "download_mb_per_s" not in reused.metadata
        assert reused.metadata["requests"] == dg.MetadataValue.int(2)
