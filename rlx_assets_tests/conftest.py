"""Shared fixtures: the real sample lake, an isolated environment, a local S3 server."""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
import pytest

from rlx_assets.lake.sources import ensure_sample_lake
from rlx_assets_tests.servers.s3 import LocalS3Server

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CAPTURES = REPO_ROOT / "data" / "sample" / "captures"
LAKE_PREFIX = "market-data/cryptofeed"
TEST_SECRET = "rlxTestSecretKey0123456789abcdefSECRET"


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch, tmp_path):
    """No test sees the developer's RLX_*/AWS_* settings or writes into the working directory."""
    import os

    for name in list(os.environ):
        if name.startswith(("RLX_", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def sample_lake(tmp_path_factory) -> Path:
    """The sample lake built from the real captures by the project's own converter."""
    return ensure_sample_lake(tmp_path_factory.mktemp("sample") / "lake", SAMPLE_CAPTURES)


@pytest.fixture(scope="session")
def s3_server():
    server = LocalS3Server().start()
    yield server
    server.stop()


@pytest.fixture
def aws_credentials(monkeypatch, s3_server):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIARLXTESTKEY000001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")


@pytest.fixture
def s3_lake(s3_server, sample_lake, aws_credentials):
    """A fresh bucket on the local server holding the sample lake under the vendor's prefix."""
    bucket = f"rlx-lake-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url, region_name="eu-west-1")
    client.create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    for path in sorted(sample_lake.rglob("*.parquet")):
        key = f"{LAKE_PREFIX}/{path.relative_to(sample_lake).as_posix()}"
        client.upload_file(str(path), bucket, key)
    s3_server.app.faults.clear()
    return {"uri": f"s3://{bucket}/{LAKE_PREFIX}", "bucket": bucket, "client": client}
