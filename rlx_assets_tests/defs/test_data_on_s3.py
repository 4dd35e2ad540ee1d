"""`RLX_DATA_DIR=s3://...` as the README's "Data on S3" section sets it up, against a real S3
server on 127.0.0.1: three workers with separate working copies run the chain on the real sample
days, and each sees only what the bucket holds."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import uuid

import boto3
import dagster as dg
import polars as pl
import pytest

from rlx_assets.definitions import defs as project_defs
from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets.staging import lake_relative_path
from rlx_assets_tests.conftest import REPO_ROOT, SAMPLE_CAPTURES, TEST_SECRET, dagster_test_instance
from rlx_assets_tests.damage import rewrite_parquet, set_value
from rlx_assets_tests.servers.s3 import Fault

SPOT = "BINANCE.BTC-USDT"
REGION = "eu-west-1"
PREFIX = "rlx"

pytestmark = pytest.mark.slow


@pytest.fixture
def deployment(s3_server, sample_lake, tmp_path, monkeypatch):
    """The README's variables: bucket, working copy, endpoint, credentials."""
    bucket = f"rlx-data-{uuid.uuid4().hex[:12]}"
    env = {
        "RLX_DATA_DIR": f"s3://{bucket}/{PREFIX}",
        "RLX_DATA_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": "AKIARLXTESTKEY000001",
        "AWS_SECRET_ACCESS_KEY": TEST_SECRET,
        "RLX_LAKE_URI": str(sample_lake),
        "RLX_GATE_PROFILE": "sample",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url, region_name=REGION)
    client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3_server.app.faults.clear()
    return {"bucket": bucket, "client": client, "env": env, "lake": sample_lake}


def keys(deployment) -> set[str]:
    pages = (
        deployment["client"]
        .get_paginator("list_objects_v2")
        .paginate(Bucket=deployment["bucket"], Prefix=f"{PREFIX}/")
    )
    return {o["Key"].removeprefix(f"{PREFIX}/") for p in pages for o in p.get("Contents", [])}


def read_json(deployment, key: str) -> dict:
    body = deployment["client"].get_object(Bucket=deployment["bucket"], Key=f"{PREFIX}/{key}")
    return json.loads(body["Body"].read())


def published(deployment, directory: str) -> str:
    """The key prefix of the version a published directory's pointer names."""
    return f"{directory}/{read_json(deployment, f'{directory}/CURRENT')['version']}"


def materialize_in_process(work_dir, monkeypatch, selection, partition: str, **resource):
    """Another worker: its own empty working copy, the same bucket."""
    monkeypatch.setenv("RLX_WORK_DIR", str(work_dir))
    with dagster_test_instance() as instance:
        return dg.materialize(
            [*project_defs.assets, *project_defs.asset_checks],
            selection=selection,
            partition_key=partition,
            instance=instance,
            resources={"rlx": RlxEnvironment(**resource)},
            raise_on_error=False,
        )


def test_the_chain_runs_on_s3_across_workers_that_share_nothing_else(
    deployment, tmp_path, monkeypatch
):
    # Worker 1: the README's command, in a subprocess.
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RLX_", "AWS_", "DAGSTER_"))},
        **deployment["env"],
        "RLX_WORK_DIR": str(tmp_path / "worker1"),
        "DAGSTER_HOME": str(home),
    }
    command = [
        sys.executable, "-m", "dagster", "asset", "materialize",
        "-m", "rlx_assets.definitions",
        "--select", "*reconstructed_stream",
        "--partition", f"2024-08-08|{SPOT}",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=home, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert TEST_SECRET not in done.stdout + done.stderr

    stored = keys(deployment)
    day8 = {
        f"staging/{zone}/{table}/exchange=BINANCE/symbol=BTC-USDT/dt=2024-08-08/1.snappy.parquet"
        for zone in ("raw", "ready")
        for table in ("trades", "book", "book_delta_v2")
    }
    assert day8 <= stored
    for table in ("trades", "book", "book_delta_v2"):
        vendor_key = f"{table}/exchange=BINANCE/symbol=BTC-USDT/dt=2024-08-08/1.snappy.parquet"
        key = f"staging/ready/{vendor_key}"
        body = deployment["client"].get_object(Bucket=deployment["bucket"], Key=f"{PREFIX}/{key}")
        vendor = deployment["lake"] / vendor_key
        assert body["Body"].read() == vendor.read_bytes()  # byte for byte, through the bucket
    assert f"certificates/{SPOT}/2024-08-08.json" in stored
    day8_version = published(deployment, f"reconstruction/{SPOT}/2024-08-08")
    assert {f"{day8_version}/{name}" for name in ("stream.parquet",
            "end_book.parquet", "summary.json")} <= stored  # fmt: skip
    assert sum(k.startswith("logs/manifest/raw/") for k in stored) == 3

    # Worker 2, empty working copy: day 2 is certified and seeded from day 1's end book, which
    # it can only have found in the bucket.
    second = materialize_in_process(
        tmp_path / "worker2",
        monkeypatch,
        dg.AssetSelection.groups("acquisition", "validation", "reconstruction"),
        f"2024-08-09|{SPOT}",
    )
    assert second.success
    day9_version = published(deployment, f"reconstruction/{SPOT}/2024-08-09")
    summary9 = read_json(deployment, f"{day9_version}/summary.json")
    assert summary9["seeded_from"] == "previous_day" and not summary9["started_cold"]
    assert summary9["vendor_book_rows_equal"] == summary9["vendor_book_rows_compared"]
    status = read_json(deployment, "acquisition_status.json")
    assert status["counts"]["certified"] == 2

    # Worker 3: golden samples and the fidelity report from what the bucket holds.
    third = materialize_in_process(
        tmp_path / "worker3",
        monkeypatch,
        dg.AssetSelection.assets("golden_samples", "fidelity_report"),
        f"2024-08-09|{SPOT}",
        capture_dir=str(SAMPLE_CAPTURES),
    )
    assert third.success
    outcomes = {e.check_name: e.passed for e in third.get_asset_check_evaluations()}
    assert outcomes["book_agreement"] and outcomes["top_of_book_agreement"]
    report = read_json(deployment, f"reports/{SPOT}/2024-08-09/fidelity.json")
    assert report["book_agreement"] == 1.0
    assert any(k.startswith(f"reports/{SPOT}/2024-08-09/") and k.endswith(".png")
               for k in keys(deployment))  # fmt: skip

    # The stream a reader downloads from the bucket is worker 2's, whole.
    stream = tmp_path / "stream.parquet"
    deployment["client"].download_file(
        deployment["bucket"], f"{PREFIX}/{day9_version}/stream.parquet",
        str(stream),
    )  # fmt: skip
    assert pl.read_parquet(stream).height == summary9["events"]


def test_a_failed_upload_fails_the_step_and_keeps_the_bucket_as_it_was(
    deployment, s3_server, tmp_path, monkeypatch
):
    # The throttled upload is retried under the one policy (RLX_DOWNLOAD_ATTEMPTS, 5), without
    # its randomised exponential sleeps (about 20 s of this test): they are not what it asserts.
    monkeypatch.setenv("RLX_DOWNLOAD_BACKOFF_INITIAL_S", "0.01")
    monkeypatch.setenv("RLX_DOWNLOAD_BACKOFF_MAX_S", "0.05")
    partition = f"2024-08-08|{SPOT}"
    chain = dg.AssetSelection.groups("acquisition", "validation")
    assert materialize_in_process(tmp_path / "w1", monkeypatch, chain, partition).success
    certificate = f"certificates/{SPOT}/2024-08-08.json"
    before = read_json(deployment, certificate)

    fault = s3_server.inject(Fault("PUT", certificate, 503, times=100, code="SlowDown"))
    again = materialize_in_process(tmp_path / "w2", monkeypatch, chain, partition)
    assert not again.success
    failure = next(e for e in again.all_events if e.event_type_value == "STEP_FAILURE")
    assert certificate in str(failure.event_specific_data.error)
    assert TEST_SECRET not in str(failure.event_specific_data.error)
    assert fault.hits == 5  # RLX_DOWNLOAD_ATTEMPTS' default: tried 5 times, then failed
    assert read_json(deployment, certificate) == before
    s3_server.app.faults.clear()


def test_a_damaged_day_is_quarantined_in_the_bucket_and_released_once_fixed(
    deployment, tmp_path, monkeypatch
):
    lake = shutil.copytree(deployment["lake"], tmp_path / "lake")
    monkeypatch.setenv("RLX_LAKE_URI", str(lake))
    book = lake / lake_relative_path("book", "BINANCE", "BTC-USDT", dt.date(2024, 8, 8))
    original = book.read_bytes()
    rewrite_parquet(book, book, set_value("bid_0_price", 5, 1e9))  # one crossed book row
    chain = dg.AssetSelection.groups("acquisition", "validation")
    partition = f"2024-08-08|{SPOT}"
    quarantined = "staging/quarantine/book/exchange=BINANCE/symbol=BTC-USDT/dt=2024-08-08/"

    damaged = materialize_in_process(tmp_path / "w1", monkeypatch, chain, partition)
    assert not damaged.success
    stored = keys(deployment)
    assert {quarantined + "report.json", quarantined + "1.snappy.parquet"} <= stored
    report = read_json(deployment, quarantined + "report.json")
    assert [g["gate"] for g in report["gates"] if not g["passed"]] == ["quality"]
    assert not any(k.startswith(("staging/ready/book/", "certificates/")) for k in stored)

    book.write_bytes(original)  # the vendor fixed the file
    fixed = materialize_in_process(tmp_path / "w2", monkeypatch, chain, partition)
    assert fixed.success
    stored = keys(deployment)
    assert not any(k.startswith(quarantined) for k in stored)
    assert f"certificates/{SPOT}/2024-08-08.json" in stored
    events = [
        json.loads(body)
        for body in (
            deployment["client"]
            .get_object(Bucket=deployment["bucket"], Key=f"{PREFIX}/{key}")["Body"]
            .read()
            for key in sorted(k for k in stored if k.startswith("logs/quarantine.jsonl.d/"))
        )
    ]
    assert [e["event"] for e in events] == ["quarantined", "released"]
