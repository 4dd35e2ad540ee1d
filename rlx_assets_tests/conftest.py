"""Shared fixtures: the real sample lake, an isolated environment, a local S3 server."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import dagster as dg
import pytest

from rlx_assets.lake.sources import ensure_sample_lake
from rlx_assets_tests.servers.s3 import LocalS3Server

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CAPTURES = REPO_ROOT / "data" / "sample" / "captures"
LAKE_PREFIX = "market-data/cryptofeed"
TEST_SECRET = "rlxTestSecretKey0123456789abcdefSECRET"


MEMORY_DIR = Path("/dev/shm")
# A whole run keeps up to a few GB there (two runs' temporary files: pytest keeps the last one);
# a small tmpfs (e.g. Docker's default 64 MB) is left alone.
MEMORY_DIR_MIN_FREE = 8 << 30


def pytest_configure(config):
    """Temporary files (tmp_path, Dagster's test instances, servers' directories) go to memory
    when the machine has a tmpfs and TMPDIR is not set: every SQLite commit of a Dagster event
    log and every atomic write fsyncs, which on a busy shared disk took half of an in-process
    chain's time (a two-day chain: 23.6 s on disk, 12.0 s in /dev/shm). The same code runs, only
    the medium differs. Set before pytest-xdist starts its workers, so they inherit it."""
    if os.environ.get("TMPDIR") or config.option.basetemp or not os.access(MEMORY_DIR, os.W_OK):
        return
    if shutil.disk_usage(MEMORY_DIR).free < MEMORY_DIR_MIN_FREE:
        return

    memory_tmp = MEMORY_DIR / f"rlx-assets-tests-{os.getuid()}"
    memory_tmp.mkdir(exist_ok=True)
    # Others may pass through but not list it: the PostgreSQL test server runs as `postgres`
    # in a directory of its own inside (as under /tmp).
    memory_tmp.chmod(0o711)
    os.environ["TMPDIR"] = str(memory_tmp)
    tempfile.tempdir = str(memory_tmp)


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


def run_wide_dir(tmp_path_factory) -> Path:
    """A directory of this test run shared by all its pytest-xdist workers (each worker's own
    base directory sits in it); the session's base directory when the run is not distributed."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextlib.contextmanager
def run_wide_lock(tmp_path_factory, name: str) -> Iterator[None]:
    """Held by one worker at a time: the first builds a shared output, the others then reuse it."""
    with open(run_wide_dir(tmp_path_factory) / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def built_once_per_run(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """The directory `name` of this test run, filled by `build(directory)` once: by the first
    pytest-xdist worker to ask, the others wait for it and reuse what it wrote (read-only). A
    build that died half way is thrown away and started again."""
    root = run_wide_dir(tmp_path_factory) / name
    with run_wide_lock(tmp_path_factory, name):
        if not (root / "BUILT").is_file():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            build(root)
            (root / "BUILT").write_text("")
    return root


@functools.cache
def _empty_instance_storage() -> Path:
    """An empty test instance's SQLite storage, made once per process."""
    template = Path(tempfile.mkdtemp(prefix="rlx-empty-instance-"))
    atexit.register(shutil.rmtree, template, True)
    with dg.instance_for_test(temp_dir=str(template)) as instance:
        instance.get_runs(limit=1)  # creates every storage's tables
    return template


@contextlib.contextmanager
def dagster_test_instance() -> Iterator[dg.DagsterInstance]:
    """`dg.instance_for_test()` started from a copy of an empty instance's SQLite storage made
    once per process: creating the schemas costs 0.3-0.4 s of CPU per instance, copying them
    0.01 s. The instance is the same as `instance_for_test()`'s, in a directory of its own."""
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as directory:
        shutil.copytree(_empty_instance_storage(), directory, dirs_exist_ok=True)
        with dg.instance_for_test(temp_dir=directory) as instance:
            yield instance


@pytest.fixture(scope="session")
def sample_lake(tmp_path_factory) -> Path:
    """The sample lake built from the real captures by the project's own converter, once per
    run (all workers read it; tests that damage it work on a copy)."""
    with run_wide_lock(tmp_path_factory, "sample_lake"):
        lake = run_wide_dir(tmp_path_factory) / "sample" / "lake"
        return ensure_sample_lake(lake, SAMPLE_CAPTURES)


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


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (scripts/test.sh: `-n 3 --dist worksteal`), start every worker on its
    share of the longest tests. worksteal hands worker i the i-th of N consecutive slices of the
    collection and lets an idle worker take the tail of another's queue: so the `slow` tests
    (those under ui/, with a daemon and a webserver, first) are dealt round-robin to the heads
    of the slices, and short tests fill the tails, where they balance the finish."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2:
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    slow.sort(key=lambda item: "/ui/" not in item.nodeid)  # stable: otherwise collection order
    fast = [item for item in items if not item.get_closest_marker("slow")]
    ordered, remaining = [], len(items)
    for worker in range(workers):
        size = remaining // (workers - worker)  # as worksteal's first split
        head = slow[worker::workers]
        take = max(size - len(head), 0)
        ordered += head + fast[:take]
        del fast[:take]
        remaining -= size
    items[:] = ordered + fast
