"""The data root on object storage, against a real S3 server on 127.0.0.1 (moto)."""

from __future__ import annotations

import hashlib
import json
import uuid

import boto3
import pytest

from rlx_assets import staging
from rlx_assets.remote import RemoteDataError, RemoteRoot, bind
from rlx_assets.retry import RetryPolicy
from rlx_assets.staging import (
    DataLayout,
    append_json_line,
    atomic_write_bytes,
    fetch,
    fetch_tree,
    keep_version,
    list_files,
    publish_tree,
    read_json_lines,
    remove_tree,
    sha256_of,
)
from rlx_assets_tests.conftest import TEST_SECRET
from rlx_assets_tests.servers.fault_proxy import FaultProxy, ProxyFault
from rlx_assets_tests.servers.s3 import Fault

REGION = "eu-west-1"
FAST = RetryPolicy(attempts=3, initial_s=0.01, max_s=0.05)
TIMEOUTS_S = (0.5, 0.5)  # to connect, to read


@pytest.fixture
def bucket(s3_server, monkeypatch):
    """An empty bucket; credentials in the environment, the endpoint given only to `bind`."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIARLXTESTKEY000001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    name = f"rlx-data-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url, region_name=REGION)
    client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3_server.app.faults.clear()
    yield {"name": name, "client": client, "uri": f"s3://{name}/data"}
    s3_server.app.faults.clear()


def worker(tmp_path, bucket, s3_server, name: str):
    """A working copy of the bucket, as one machine of a deployment has it."""
    return bind(tmp_path / name, bucket["uri"], s3_server.endpoint_url, None, FAST).root


def _on_each_list(monkeypatch, record) -> None:
    original = RemoteRoot.list

    def counting(self, directory):
        found = original(self, directory)
        record(directory, found)
        return found

    monkeypatch.setattr(RemoteRoot, "list", counting)


def listed_paths(monkeypatch) -> list:
    """Every path the data root's LISTs return from now on (the control plane's cost)."""
    listed = []
    _on_each_list(monkeypatch, lambda _directory, found: listed.extend(found))
    return listed


def listed_directories(monkeypatch) -> list:
    """Every directory the data root LISTs from now on: one request each."""
    directories = []
    _on_each_list(monkeypatch, lambda directory, _found: directories.append(directory))
    return directories


def stored(bucket, key: str) -> bytes | None:
    try:
        return bucket["client"].get_object(Bucket=bucket["name"], Key=key)["Body"].read()
    except bucket["client"].exceptions.NoSuchKey:
        return None


def test_a_committed_file_is_in_the_bucket_and_another_worker_reads_the_latest(
    tmp_path, bucket, s3_server
):
    a, b = (worker(tmp_path, bucket, s3_server, n) for n in ("a", "b"))
    atomic_write_bytes(a / "certificates" / "M" / "d.json", b"first")
    assert stored(bucket, "data/certificates/M/d.json") == b"first"
    assert fetch(b / "certificates" / "M" / "d.json")
    assert (b / "certificates" / "M" / "d.json").read_bytes() == b"first"

    atomic_write_bytes(a / "certificates" / "M" / "d.json", b"second")
    assert fetch(b / "certificates" / "M" / "d.json")
    assert (b / "certificates" / "M" / "d.json").read_bytes() == b"second"
    assert not fetch(b / "certificates" / "M" / "other.json")
    assert list_files(b / "certificates", ".json") == [b / "certificates" / "M" / "d.json"]


def test_a_failed_upload_changes_neither_the_bucket_nor_the_working_copy(
    tmp_path, bucket, s3_server
):
    a = worker(tmp_path, bucket, s3_server, "a")
    path = a / "staging" / "ready" / "t.parquet"
    atomic_write_bytes(path, b"good")
    s3_server.inject(Fault("PUT", "ready/t.parquet", 500, times=20))
    with pytest.raises(RemoteDataError, match="staging/ready/t.parquet") as raised:
        atomic_write_bytes(path, b"new but never stored")
    assert TEST_SECRET not in str(raised.value)
    assert path.read_bytes() == b"good"
    assert stored(bucket, "data/staging/ready/t.parquet") == b"good"
    assert [p.name for p in path.parent.iterdir()] == ["t.parquet"]  # no temp file left


def test_a_directory_is_replaced_whole_and_deleted_objects_leave_every_worker(
    tmp_path, bucket, s3_server
):
    a, b = (worker(tmp_path, bucket, s3_server, n) for n in ("a", "b"))
    final_a = a / "reconstruction" / "M" / "2024-08-08"
    for version, files in (
        ("v1", {"stream.parquet": b"s1", "old.png": b"p1", "summary.json": b"{1}"}),
        ("v2", {"stream.parquet": b"s2", "summary.json": b"{2}"}),
    ):
        building = a / "reconstruction" / "M" / f".2024-08-08.building-{version}"
        building.mkdir(parents=True)
        for name, data in files.items():
            (building / name).write_bytes(data)
        publish_tree(building, final_a)
    final_b = b / "reconstruction" / "M" / "2024-08-08"
    assert fetch_tree(final_b)
    assert {p.name: p.read_bytes() for p in final_b.iterdir()} == {
        "stream.parquet": b"s2",
        "summary.json": b"{2}",
    }
    assert stored(bucket, "data/reconstruction/M/2024-08-08/old.png") is None

    assert remove_tree(final_a)
    assert not fetch_tree(final_b)
    assert not any(final_b.glob("*"))  # the stale local copy went with the objects


def test_logs_keep_every_record_of_every_worker_in_time_order(tmp_path, bucket, s3_server):
    a, b = (worker(tmp_path, bucket, s3_server, n) for n in ("a", "b"))
    log = "logs/manifest/raw.jsonl"
    append_json_line(a / log, {"n": 1})
    append_json_line(b / log, {"n": 2})
    append_json_line(a / log, {"n": 3})
    assert read_json_lines(a / log) == read_json_lines(b / log) == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_no_credentials_or_a_denied_bucket_fail_clearly_without_the_secret(
    tmp_path, bucket, s3_server, monkeypatch
):
    s3_server.inject(Fault("HEAD", bucket["name"], 403, times=20, code="AccessDenied"))
    with pytest.raises(RemoteDataError, match=f"s3://{bucket['name']}/data.*403") as denied:
        bind(tmp_path / "denied", bucket["uri"], s3_server.endpoint_url, None)
    assert TEST_SECRET not in str(denied.value)
    s3_server.app.faults.clear()
    with pytest.raises(RemoteDataError, match="RLX_DATA_DIR=s3://rlx-no-such-bucket/data: no such"):
        bind(tmp_path / "nowhere", "s3://rlx-no-such-bucket/data", s3_server.endpoint_url, None)

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(RemoteDataError, match="no credentials.*AWS_ACCESS_KEY_ID"):
        bind(tmp_path / "anonymous", bucket["uri"], s3_server.endpoint_url, None)
    with pytest.raises(RemoteDataError, match="not of the form"):
        bind(tmp_path / "bad", "s3://", s3_server.endpoint_url, None)


def build(root, name: str, files: dict[str, bytes]):
    building = root / "reconstruction" / "M" / f".2024-08-08.building-{name}"
    building.mkdir(parents=True)
    for file, data in files.items():
        (building / file).write_bytes(data)
    return building


def local_files(directory) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


def test_a_reader_sees_the_whole_old_version_until_the_pointer_moves_then_the_whole_new(
    tmp_path, bucket, s3_server
):
    a, b = (worker(tmp_path, bucket, s3_server, n) for n in ("a", "b"))
    final_a = a / "reconstruction" / "M" / "2024-08-08"
    final_b = b / "reconstruction" / "M" / "2024-08-08"
    old = {"stream.parquet": b"s1", "old.png": b"p1", "summary.json": b"{1}"}
    new = {"stream.parquet": b"s2", "end_book.parquet": b"e2", "summary.json": b"{2}"}
    publish_tree(build(a, "run1", old), final_a)
    assert fetch_tree(final_b) and local_files(final_b) == old

    seen_between = {}

    def reader_between_upload_and_pointer():
        stored_keys = {
            o["Key"] for o in bucket["client"].list_objects_v2(
                Bucket=bucket["name"], Prefix="data/reconstruction/M/2024-08-08/v-run2/"
            ).get("Contents", [])
        }  # fmt: skip
        assert len(stored_keys) == len(new)  # every new file is in the bucket already
        assert fetch_tree(final_b)
        seen_between.update(local_files(final_b))
        assert fetch(final_b / "summary.json")  # a single file follows the pointer too
        seen_between["summary read alone"] = (final_b / "summary.json").read_bytes()

    publish_tree(build(a, "run2", new), final_a, before_commit=reader_between_upload_and_pointer)
    assert seen_between == {**old, "summary read alone": b"{1}"}  # the whole old version
    assert fetch_tree(final_b) and local_files(final_b) == new  # the whole new one
    assert local_files(final_a) == new
    pointer = json.loads(stored(bucket, "data/reconstruction/M/2024-08-08/CURRENT"))
    assert (pointer["version"], pointer["previous"]) == ("v-run2", "v-run1")
    # the previous version stays for readers still on it; the one before goes
    assert stored(bucket, "data/reconstruction/M/2024-08-08/v-run1/old.png") == b"p1"
    publish_tree(build(a, "run3", {"summary.json": b"{3}"}), final_a)
    assert stored(bucket, "data/reconstruction/M/2024-08-08/v-run1/old.png") is None
    assert stored(bucket, "data/reconstruction/M/2024-08-08/v-run2/summary.json") == b"{2}"
    assert fetch_tree(final_b) and local_files(final_b) == {"summary.json": b"{3}"}


def test_a_directory_published_flat_before_versions_is_read_then_replaced(
    tmp_path, bucket, s3_server
):
    a, b = (worker(tmp_path, bucket, s3_server, n) for n in ("a", "b"))
    prefix = "data/reconstruction/M/2024-08-08"
    for name, data in (("stream.parquet", b"flat"), ("summary.json", b"{0}")):
        bucket["client"].put_object(Bucket=bucket["name"], Key=f"{prefix}/{name}", Body=data)
    final_b = b / "reconstruction" / "M" / "2024-08-08"
    assert fetch_tree(final_b)
    assert local_files(final_b) == {"stream.parquet": b"flat", "summary.json": b"{0}"}
    publish_tree(build(a, "run1", {"summary.json": b"{1}"}), a / "reconstruction/M/2024-08-08")
    assert stored(bucket, f"{prefix}/stream.parquet") is None  # gone once the pointer moved
    assert fetch_tree(final_b) and local_files(final_b) == {"summary.json": b"{1}"}


# --- faults between a worker and the bucket: only "404" means missing ------------------------
@pytest.fixture
def proxy(s3_server):
    """A fault-injecting proxy in front of the S3 server; the reader `b` goes through it."""
    fault_proxy = FaultProxy(s3_server.endpoint_url).start()
    yield fault_proxy
    fault_proxy.stop()


def reader_behind(proxy, tmp_path, bucket, name: str = "b", **retries):
    return bind(tmp_path / name, bucket["uri"], proxy.endpoint_url, None, **retries).root


FILE = "certificates/M/d.json"
TREE = "reconstruction/M/2024-08-08"
# Each place where the reader asks the bucket "is it there?": the HEAD of a file, the GET that
# fetches it, the pointer of a published directory, a file of the version it points to.
PLACES = {
    "head of a file": ("HEAD", f"/data/{FILE}"),
    "get of a file": ("GET", f"/data/{FILE}"),
    "pointer of a directory": ("GET", f"/data/{TREE}/CURRENT"),
    "file of a version": ("GET", f"/data/{TREE}/v-run2/"),
}
FAULTS = {
    "500": dict(kind="status", status=500, code="InternalError"),
    "403": dict(kind="status", status=403, code="AccessDenied"),
    "timeout": dict(kind="stall", delay_s=1.0),
}


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("place", PLACES)
def test_an_error_is_never_taken_for_missing_it_is_retried_then_raised_naming_the_object(
    tmp_path, bucket, s3_server, proxy, place, fault
):
    a = worker(tmp_path, bucket, s3_server, "a")
    b = reader_behind(proxy, tmp_path, bucket, policy=FAST, timeouts_s=TIMEOUTS_S)
    atomic_write_bytes(a / FILE, b"first")
    publish_tree(build(a, "run1", {"summary.json": b"{1}"}), a / TREE)
    assert fetch(b / FILE) and fetch_tree(b / TREE)
    atomic_write_bytes(a / FILE, b"second")  # the reader has something to fetch
    publish_tree(build(a, "run2", {"summary.json": b"{2}"}), a / TREE)

    method, path = PLACES[place]
    injected = proxy.inject(
        ProxyFault(method=method, path_contains=path, times=100, **FAULTS[fault])
    )
    with pytest.raises(RemoteDataError) as raised:
        fetch(b / FILE) if "file" in place and "version" not in place else fetch_tree(b / TREE)
    message = str(raised.value)
    assert f"s3://{bucket['name']}{path.rstrip('/')}" in message  # names the object
    assert {"500": "500", "403": "403", "timeout": "ReadTimeout"}[fault] in message
    assert TEST_SECRET not in message
    # A transient fault is tried the policy's number of times; a refusal is not tried again.
    assert injected.hits == (1 if fault == "403" else FAST.attempts)
    # Not taken for "missing": the working copy still holds what it had.
    assert (b / FILE).read_bytes() == b"first"
    assert local_files(b / TREE) == {"summary.json": b"{1}"}

    proxy.faults.clear()  # the bucket answers again: the reader catches up
    assert fetch(b / FILE) and (b / FILE).read_bytes() == b"second"
    assert fetch_tree(b / TREE) and local_files(b / TREE) == {"summary.json": b"{2}"}


def test_a_missing_object_is_missing_and_its_stale_copy_goes(tmp_path, bucket, s3_server, proxy):
    a = worker(tmp_path, bucket, s3_server, "a")
    b = reader_behind(proxy, tmp_path, bucket, policy=FAST, timeouts_s=TIMEOUTS_S)
    atomic_write_bytes(a / FILE, b"first")
    assert fetch(b / FILE)
    bucket["client"].delete_object(Bucket=bucket["name"], Key=f"data/{FILE}")
    assert not fetch(b / FILE)
    assert not (b / FILE).exists()
    assert not fetch_tree(b / TREE)  # nothing published: no pointer, no flat files


BODY_FAULTS = {  # the response starts, then its body goes wrong
    "a bit flipped": dict(kind="flip_bit"),  # caught by the server's checksum (CRC32)
    "a stall mid-body": dict(kind="slow_body", delay_s=1.0),  # 16 KiB, then the read timeout
}


@pytest.mark.parametrize("fault", BODY_FAULTS)
def test_a_response_body_that_goes_wrong_is_fetched_again(
    tmp_path, bucket, s3_server, proxy, fault
):
    a = worker(tmp_path, bucket, s3_server, "a")
    b = reader_behind(proxy, tmp_path, bucket, policy=FAST, timeouts_s=TIMEOUTS_S)
    data = bytes(range(256)) * 512  # 128 KiB
    atomic_write_bytes(a / FILE, data)
    publish_tree(build(a, "run1", {"stream.parquet": data}), a / TREE)
    faults = [
        proxy.inject(ProxyFault(method="GET", path_contains=f"/data/{where}", **BODY_FAULTS[fault]))
        for where in (FILE, f"{TREE}/CURRENT", f"{TREE}/v-run1/")
    ]
    assert fetch(b / FILE) and (b / FILE).read_bytes() == data
    assert fetch_tree(b / TREE) and local_files(b / TREE) == {"stream.parquet": data}
    assert [f.hits for f in faults] == [1, 1, 1]  # each went wrong once, then was read again

    for f in faults:  # it keeps going wrong: raised, naming the object; nothing replaced
        f.hits, f.seen, f.times = 0, 0, 100
    atomic_write_bytes(a / FILE, data[::-1])
    with pytest.raises(RemoteDataError, match=f"s3://{bucket['name']}/data/{FILE}"):
        fetch(b / FILE)
    assert faults[0].hits == FAST.attempts and (b / FILE).read_bytes() == data


def test_an_object_replaced_between_head_and_get_is_read_again(tmp_path, bucket, s3_server, proxy):
    a = worker(tmp_path, bucket, s3_server, "a")
    b = reader_behind(proxy, tmp_path, bucket)
    atomic_write_bytes(a / FILE, b"first")

    def replace_it() -> None:  # another worker commits in between the reader's HEAD and GET
        bucket["client"].put_object(Bucket=bucket["name"], Key=f"data/{FILE}", Body=b"third")

    proxy.inject(ProxyFault("hook", "GET", f"/data/{FILE}", hook=replace_it))
    assert fetch(b / FILE)
    assert (b / FILE).read_bytes() == b"third"  # the GET pinned to "first" was refused (412)
    gets = [p for m, p in proxy.requests if m == "GET" and p.startswith(f"/{bucket['name']}/")]
    assert len(gets) == 2  # refused, then the new version read


def test_a_kept_version_is_copied_inside_the_bucket_not_through_the_worker(
    tmp_path, bucket, s3_server
):
    """Issue 25: keeping a version (and promoting to ready) is a server-side copy: the body is
    neither downloaded nor uploaded again."""
    a, b = (worker(tmp_path, bucket, s3_server, n) for n in ("a", "b"))
    raw = a / "staging" / "raw" / "trades" / "1.snappy.parquet"
    body = uuid.uuid4().bytes * 65536  # 1 MiB
    atomic_write_bytes(raw, body)
    s3_server.app.requests.clear()
    s3_server.app.copies.clear()
    kept = keep_version(DataLayout(a), raw)
    kept_key = f"data/{kept.relative_to(a).as_posix()}"
    raw_path = f"/{bucket['name']}/data/staging/raw/trades/1.snappy.parquet"
    assert s3_server.app.copies == [(f"/{bucket['name']}/{kept_key}", raw_path.lstrip("/"))]
    assert ("GET", raw_path) not in s3_server.app.requests
    assert stored(bucket, kept_key) == body
    assert fetch(b / kept.relative_to(a)) and (b / kept.relative_to(a)).read_bytes() == body


def test_a_fetched_file_is_hashed_as_it_arrives_not_read_again_for_it(
    tmp_path, bucket, s3_server, monkeypatch
):
    a, b = (worker(tmp_path, bucket, s3_server, n) for n in ("a", "b"))
    body = uuid.uuid4().bytes * 65536
    atomic_write_bytes(a / "staging" / "ready" / "t.parquet", body)
    copy = b / "staging" / "ready" / "t.parquet"
    assert fetch(copy)

    def no_reading(path):
        raise AssertionError(f"{path} read again only to hash it")

    monkeypatch.setattr(staging, "sha256_file", no_reading)
    assert sha256_of(DataLayout(b), copy) == hashlib.sha256(body).hexdigest()
