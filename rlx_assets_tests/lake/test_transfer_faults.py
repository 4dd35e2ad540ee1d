"""Transfer faults between Crypto Lake (a local S3 server with the real sample lake) and the raw
zone, injected by a proxy in front of the server: every byte stored is bound to the vendor's
object, every transient fault is retried, an unreadable vendor object is quarantined."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time

import pytest

from rlx_assets.config import RlxSettings
from rlx_assets.lake.acquire import RetryPolicy, acquire_raw_file
from rlx_assets.lake.configured_source import source_from_settings
from rlx_assets.lake.digest import MIB, TransferDigest, verify_digest
from rlx_assets.lake.manifest import manifest_entry, manifest_log
from rlx_assets.lake.sources import (
    CorruptTransferError,
    LakeObject,
    QuarantinedObjectError,
    TransientLakeError,
    UnverifiedTransferError,
)
from rlx_assets.lake.transfer_stats import TransferStats
from rlx_assets.staging import DataLayout, lake_relative_path, read_json_lines, sha256_file
from rlx_assets.validation.status import refresh_status
from rlx_assets.validation.zones import quarantine_dir
from rlx_assets_tests.conftest import LAKE_PREFIX, TEST_SECRET
from rlx_assets_tests.servers import free_port
from rlx_assets_tests.servers.fault_proxy import ProxyFault

DAY = dt.date(2024, 8, 8)
MARKET = "BINANCE.BTC-USDT"
FAST = RetryPolicy(attempts=3, initial_s=0.01, max_s=0.05)
OBJECT_PATH = "/trades/exchange=BINANCE/symbol=BTC-USDT/dt=2024-08-08/"
ACCESS_CHECK = "max-keys=1&"  # the access check lists one key; nothing else does


def acquire(
    uri: str,
    layout: DataLayout,
    run_id: str = "r1",
    timeout_s: float = 2.0,
    allow_unverified: bool = False,
    stats: TransferStats | None = None,
):
    settings = RlxSettings(
        lake_uri=uri,
        data_dir=str(layout.root),
        download_timeout_s=timeout_s,
        download_connect_timeout_s=timeout_s,
    )
    return acquire_raw_file(
        source_from_settings(settings), layout, "trades", "BINANCE", "BTC-USDT", DAY,
        run_id=run_id, policy=FAST, allow_unverified=allow_unverified, stats=stats,
    )  # fmt: skip


def object_key(day: dt.date = DAY) -> str:
    return f"{LAKE_PREFIX}/{lake_relative_path('trades', 'BINANCE', 'BTC-USDT', day).as_posix()}"


def served(s3_lake, day: dt.date = DAY) -> bytes:
    return (
        s3_lake["client"].get_object(Bucket=s3_lake["bucket"], Key=object_key(day))["Body"].read()
    )


def etag(s3_lake) -> str:
    return s3_lake["client"].head_object(Bucket=s3_lake["bucket"], Key=object_key())["ETag"][1:-1]


def raw_file(layout: DataLayout):
    return layout.zone("raw") / lake_relative_path("trades", "BINANCE", "BTC-USDT", DAY)


def audit_events(layout: DataLayout) -> list[dict]:
    return [e for f in sorted(layout.download_log_dir.glob("*.jsonl")) for e in read_json_lines(f)]


def assert_no_secret(layout: DataLayout, *texts: str) -> None:
    for text in texts:
        assert TEST_SECRET not in text
    if layout.root.exists():
        for path in layout.root.rglob("*"):
            if path.is_file() and path.suffix in (".jsonl", ".json"):
                assert TEST_SECRET not in path.read_text(), path


def test_bit_flip_without_checksum_headers_is_caught_by_the_etag(s3_lake, proxy, tmp_path):
    proxy.inject(ProxyFault("strip_checksums", "HEAD", OBJECT_PATH, times=100))
    proxy.inject(ProxyFault("strip_checksums", "GET", OBJECT_PATH, times=100))
    flips = proxy.inject(ProxyFault("flip_bit", "GET", OBJECT_PATH, times=100))
    layout = DataLayout(tmp_path / "data")
    with pytest.raises(CorruptTransferError) as caught:
        acquire(s3_lake["uri"], layout)
    message = str(caught.value)
    assert object_key() in message and "ETag" in message
    assert flips.hits == FAST.attempts  # every attempt retried, none stored
    assert [e["event"] for e in audit_events(layout)] == ["start", "retry", "retry", "fail"]
    assert not raw_file(layout).exists() and not any(layout.incoming.iterdir())
    assert not manifest_log(layout, "trades", MARKET, DAY).exists()
    assert_no_secret(layout, message)

    flips.times = 0  # the network heals; checksum headers still stripped
    raw = acquire(s3_lake["uri"], layout, run_id="r2")
    assert raw_file(layout).read_bytes() == served(s3_lake)
    assert raw.verified_by == "md5-etag" and raw.source_version == etag(s3_lake)


def test_bit_flip_with_checksum_headers_raises_a_mapped_checksum_error_and_is_retried(
    s3_lake, proxy, tmp_path
):
    flip = proxy.inject(ProxyFault("flip_bit", "GET", OBJECT_PATH))
    layout = DataLayout(tmp_path / "data")
    raw = acquire(s3_lake["uri"], layout)
    assert flip.hits == 1
    (retry,) = [e for e in audit_events(layout) if e["event"] == "retry"]
    # botocore's FlexibleChecksumError, mapped: it names the object and is retried.
    assert "corrupt transfer" in retry["error"] and object_key() in retry["error"]
    assert "did not match calculated checksum" in retry["error"]  # botocore's own check
    assert raw_file(layout).read_bytes() == served(s3_lake)
    assert raw.verified_by == "crc32-checksum+md5-etag"
    assert_no_secret(layout)


@pytest.mark.parametrize("kind", ["status", "reset", "stall"])
def test_a_fault_on_the_access_check_is_retried(s3_lake, proxy, tmp_path, kind):
    fault = proxy.inject(ProxyFault(kind, "GET", ACCESS_CHECK, delay_s=3.0))
    layout = DataLayout(tmp_path / "data")
    raw = acquire(s3_lake["uri"], layout, timeout_s=0.5)
    assert fault.hits == 1 and fault.seen == 2  # failed once, then passed
    events = audit_events(layout)
    assert [e["event"] for e in events] == ["retry", "start", "finish"]
    assert events[0]["attempt"] == 1
    assert raw_file(layout).read_bytes() == served(s3_lake) and raw.action == "downloaded"
    assert_no_secret(layout)


@pytest.mark.parametrize(
    ("method", "where", "kind"),
    [("GET", "max-keys=1000", "status"), ("GET", "max-keys=1000", "reset"),
     ("HEAD", OBJECT_PATH, "status"), ("HEAD", OBJECT_PATH, "stall")],
)  # fmt: skip
def test_a_fault_on_the_listing_or_head_is_retried(s3_lake, proxy, tmp_path, method, where, kind):
    fault = proxy.inject(ProxyFault(kind, method, where, delay_s=3.0))
    layout = DataLayout(tmp_path / "data")
    acquire(s3_lake["uri"], layout, timeout_s=0.5)
    assert fault.hits == 1 and fault.seen == 2
    events = [e["event"] for e in audit_events(layout)]
    if method == "HEAD":
        assert events == ["retry", "start", "finish"]
    else:  # lakeapi's listing cache retries once by itself; never a false "no data"
        assert events in (["retry", "start", "finish"], ["start", "finish"])
    assert raw_file(layout).read_bytes() == served(s3_lake)


def test_an_unreachable_endpoint_fails_fast_naming_aws_endpoint_url(s3_lake, tmp_path, monkeypatch):
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", nowhere)
    layout = DataLayout(tmp_path / "data")
    started = time.monotonic()
    with pytest.raises(TransientLakeError) as caught:
        acquire(s3_lake["uri"], layout, timeout_s=0.5)
    assert time.monotonic() - started < 10
    assert f"AWS_ENDPOINT_URL={nowhere}" in str(caught.value)
    assert len([e for e in audit_events(layout) if e["event"] == "retry"]) == FAST.attempts - 1
    assert not layout.staging.exists()  # the access check failed: staging untouched
    assert_no_secret(layout, str(caught.value))


def test_a_hung_endpoint_fails_within_the_read_timeout_naming_it(s3_lake, proxy, tmp_path):
    hang = proxy.inject(ProxyFault("stall", "GET", "", times=100))
    layout = DataLayout(tmp_path / "data")
    started = time.monotonic()
    with pytest.raises(TransientLakeError) as caught:
        acquire(s3_lake["uri"], layout, timeout_s=0.5)
    elapsed = time.monotonic() - started
    assert hang.hits == FAST.attempts
    assert elapsed < FAST.attempts * 0.5 + 5  # bounded by the read timeout, not minutes
    message = str(caught.value)
    assert "ReadTimeout" in message and f"AWS_ENDPOINT_URL={proxy.endpoint_url}" in message
    assert_no_secret(layout, message)


def test_a_slow_body_within_the_read_timeout_completes(s3_lake, proxy, tmp_path):
    size = len(served(s3_lake))
    slow = proxy.inject(ProxyFault("slow_body", "GET", OBJECT_PATH, delay_s=0.1, chunk=size // 8))
    layout = DataLayout(tmp_path / "data")
    started = time.monotonic()
    acquire(s3_lake["uri"], layout, timeout_s=0.5)
    assert slow.hits == 1 and time.monotonic() - started > 0.5  # longer than one timeout
    assert raw_file(layout).read_bytes() == served(s3_lake)
    assert "retry" not in [e["event"] for e in audit_events(layout)]


def test_a_wrong_stored_copy_is_not_trusted_and_is_downloaded_again(s3_lake, tmp_path):
    """The issue's case: a copy corrupted in transit was recorded with the object's ETag."""
    layout = DataLayout(tmp_path / "data")
    first = acquire(s3_lake["uri"], layout)
    dest = raw_file(layout)
    damaged = bytearray(dest.read_bytes())
    damaged[len(damaged) // 2] ^= 0x10
    dest.write_bytes(bytes(damaged))
    # ... and recorded as if it were the object (as a release without ETag checks did).
    manifest = manifest_log(layout, "trades", MARKET, DAY)
    entry = {**read_json_lines(manifest)[-1], "sha256": sha256_file(dest)}
    with open(manifest, "a") as handle:
        handle.write(json.dumps(entry) + "\n")
    again = acquire(s3_lake["uri"], layout, run_id="r2")
    assert again.action == "downloaded" and again.sha256 == first.sha256
    assert dest.read_bytes() == served(s3_lake)
    (damage,) = [e for e in audit_events(layout) if e["event"] == "stored_copy_damaged"]
    assert "the server's" in damage["problem"]  # the bytes disagree with the object
    # A copy damaged on disk after a correct download is refetched too.
    dest.write_bytes(bytes(damaged))
    assert acquire(s3_lake["uri"], layout, run_id="r3").action == "downloaded"
    assert dest.read_bytes() == served(s3_lake)
    # An intact copy is re-verified and reused.
    reused = acquire(s3_lake["uri"], layout, run_id="r4")
    assert reused.action == "reused" and reused.verified_by == "crc32-checksum+md5-etag"


@pytest.mark.parametrize("damage", ["truncated", "random"])
def test_an_unreadable_vendor_object_is_quarantined_with_a_report(s3_lake, tmp_path, damage):
    good = served(s3_lake)
    bad = good[: len(good) // 2] if damage == "truncated" else os.urandom(len(good))
    s3_lake["client"].put_object(Bucket=s3_lake["bucket"], Key=object_key(), Body=bad)
    layout = DataLayout(tmp_path / "data")
    with pytest.raises(QuarantinedObjectError) as caught:
        acquire(s3_lake["uri"], layout)
    held = quarantine_dir(layout, "trades", MARKET, DAY)
    message = str(caught.value)
    assert object_key() in message and str(held) in message
    assert (held / "1.snappy.parquet").read_bytes() == bad
    report = json.loads((held / "report.json").read_text())
    assert report["source_uri"].endswith(object_key())
    assert report["source_version"] == etag(s3_lake) and report["size"] == len(bad)
    assert "Parquet" in report["error"] and report["verified_by"] == "crc32-checksum+md5-etag"
    assert not raw_file(layout).exists() and not any(layout.incoming.iterdir())
    (event,) = read_json_lines(layout.root / "logs" / "quarantine.jsonl")
    assert event["event"] == "quarantined" and event["uri"] == report["source_uri"]
    status = refresh_status(layout, MARKET, DAY)
    assert status["partitions"][f"2024-08-08|{MARKET}"]["state"] == "quarantined"
    assert_no_secret(layout, message)


def test_a_republished_object_keeps_the_previous_version(s3_lake, tmp_path):
    layout = DataLayout(tmp_path / "data")
    first = acquire(s3_lake["uri"], layout)
    old_bytes, old_etag = raw_file(layout).read_bytes(), etag(s3_lake)
    replacement = served(s3_lake, dt.date(2024, 8, 9))  # a real file, republished in its place
    s3_lake["client"].put_object(Bucket=s3_lake["bucket"], Key=object_key(), Body=replacement)
    second = acquire(s3_lake["uri"], layout, run_id="r2")
    assert raw_file(layout).read_bytes() == replacement
    (replace,) = [e for e in audit_events(layout) if e["event"] == "replace"]
    assert replace["old_sha256"] == first.sha256 and replace["new_sha256"] == second.sha256
    assert replace["old_etag"] == old_etag and replace["new_etag"] == etag(s3_lake)
    assert (layout.root / replace["kept"]).read_bytes() == old_bytes
    assert second.previous_sha256 == first.sha256
    assert second.previous_source_version == old_etag
    entry = manifest_entry(layout, "trades", MARKET, DAY)
    assert entry["previous_sha256"] == first.sha256


def test_an_object_replaced_between_head_and_get_is_located_again(s3_lake, proxy, tmp_path):
    replacement = served(s3_lake, dt.date(2024, 8, 9))

    def republish() -> None:
        s3_lake["client"].put_object(Bucket=s3_lake["bucket"], Key=object_key(), Body=replacement)

    proxy.inject(ProxyFault("hook", "GET", OBJECT_PATH, hook=republish))
    layout = DataLayout(tmp_path / "data")
    raw = acquire(s3_lake["uri"], layout)
    # IfMatch refused the GET of the listed version (412); the new version was pinned instead.
    (retry,) = [e for e in audit_events(layout) if e["event"] == "retry"]
    assert "changed since it was listed" in retry["error"]
    assert raw_file(layout).read_bytes() == replacement
    assert raw.source_version == etag(s3_lake)


def test_a_dead_process_partial_download_is_removed(s3_lake, tmp_path):
    layout = DataLayout(tmp_path / "data")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    layout.incoming.mkdir(parents=True)
    orphan = layout.incoming / f".trades.{MARKET}.2024-08-08.pid{dead.stdout.strip()}.x1.part"
    orphan.write_bytes(b"half a file")
    other = layout.incoming / f".book.{MARKET}.2024-08-08.pid{dead.stdout.strip()}.x2.part"
    other.write_bytes(b"another partition's partial")
    messages: list[str] = []
    source = source_from_settings(RlxSettings(lake_uri=s3_lake["uri"], data_dir=str(layout.root)))
    acquire_raw_file(
        source, layout, "trades", "BINANCE", "BTC-USDT", DAY,
        run_id="r1", policy=FAST, log=messages.append,
    )  # fmt: skip
    assert not orphan.exists() and other.exists()  # only this partition's label
    (removed,) = [e for e in audit_events(layout) if e["event"] == "orphan_removed"]
    assert removed["path"].endswith(orphan.name)
    assert any(orphan.name in m for m in messages)


def test_a_multipart_object_is_verified_by_its_multipart_etag(s3_lake, proxy, tmp_path):
    body = served(s3_lake)
    client, bucket = s3_lake["client"], s3_lake["bucket"]
    upload = client.create_multipart_upload(Bucket=bucket, Key=object_key())
    part = client.upload_part(
        Bucket=bucket, Key=object_key(), UploadId=upload["UploadId"], PartNumber=1, Body=body
    )
    client.complete_multipart_upload(
        Bucket=bucket, Key=object_key(), UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )  # fmt: skip
    assert etag(s3_lake).endswith("-1")
    proxy.inject(ProxyFault("strip_checksums", "HEAD", OBJECT_PATH, times=100))
    proxy.inject(ProxyFault("strip_checksums", "GET", OBJECT_PATH, times=100))
    flip = proxy.inject(ProxyFault("flip_bit", "GET", OBJECT_PATH))
    layout = DataLayout(tmp_path / "data")
    raw = acquire(s3_lake["uri"], layout)
    assert flip.hits == 1 and raw.verified_by == "multipart-etag"
    (retry,) = [e for e in audit_events(layout) if e["event"] == "retry"]
    assert "multipart ETag" in retry["error"]
    assert raw_file(layout).read_bytes() == body


def multipart_etag(data: bytes, part_size: int) -> str:
    import hashlib

    parts = [data[i : i + part_size] for i in range(0, len(data), part_size)]
    digests = b"".join(hashlib.md5(p).digest() for p in parts)
    return f"{hashlib.md5(digests).hexdigest()}-{len(parts)}"


@pytest.mark.parametrize("server_part_size", [8 * MIB, None])
def test_multipart_etag_check_with_known_or_inferred_part_size(server_part_size):
    """Synthetic bytes: three 8 MiB parts (aws cli's default), with and without the server
    telling the part size; one flipped bit fails the check, the intact bytes pass."""
    data = os.urandom(20 * MIB + 123)
    obj = LakeObject(
        "trades", "BINANCE", "BTC-USDT", DAY, "s3://b/k", size=len(data),
        version=multipart_etag(data, 8 * MIB), etag=multipart_etag(data, 8 * MIB),
        part_size=server_part_size,
    )  # fmt: skip
    digest = TransferDigest(obj)
    for start in range(0, len(data), 3 * MIB + 7):  # blocks that straddle part boundaries
        digest.write(data[start : start + 3 * MIB + 7])
    assert verify_digest(obj, digest) == "multipart-etag"
    damaged = bytearray(data)
    damaged[9 * MIB] ^= 1
    digest = TransferDigest(obj)
    digest.write(bytes(damaged))
    if server_part_size:
        with pytest.raises(CorruptTransferError, match="multipart ETag"):
            verify_digest(obj, digest)
    else:  # no part size fits: bytes that cannot be verified are refused, or marked so
        with pytest.raises(UnverifiedTransferError, match="multipart ETag .* unknown part size"):
            verify_digest(obj, digest)
        assert verify_digest(obj, digest, allow_unverified=True).startswith("unverified (")
