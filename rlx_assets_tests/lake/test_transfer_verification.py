"""Bytes nothing binds to the vendor's object are never stored as if they were: a multipart
object whose part size the server does not tell, checksums S3 computes with CRC32C/CRC64NVME,
and the explicit opt-in that stores unverifiable bytes marked `unverified`. Through the fault
proxy in front of the local S3 server holding the real sample lake."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets.lake.manifest import manifest_entries
from rlx_assets.lake.sources import UnverifiedTransferError
from rlx_assets.staging import DataLayout
from rlx_assets.validation.certificate import load_certificate
from rlx_assets_tests.defs.validation.test_chain import CHAIN
from rlx_assets_tests.lake.test_transfer_faults import (
    DAY,
    FAST,
    MARKET,
    OBJECT_PATH,
    acquire,
    assert_no_secret,
    audit_events,
    etag,
    object_key,
    raw_file,
    served,
)
from rlx_assets_tests.servers.fault_proxy import ProxyFault

# Parts of 100,000 bytes: no whole-MiB part size (what uploaders use, and what is tried when
# the server does not tell) reproduces the multipart ETag of the 212 kB sample file.
PART = 100_000
PART_HEAD = "partNumber=1"


@pytest.fixture
def small_parts(monkeypatch):
    """Let the local server take parts below S3's 5 MiB minimum (the sample files are small)."""
    import moto.s3.models

    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", 1)


def put_multipart(s3_lake, body: bytes, checksum: str | None = None) -> str:
    """Upload `body` as the day's object in PART-byte parts (with a full-object checksum of
    algorithm `checksum`, if given); its multipart ETag."""
    client, bucket, key = s3_lake["client"], s3_lake["bucket"], object_key()
    full_object = {"ChecksumType": "FULL_OBJECT"} if checksum else {}
    algorithm = {"ChecksumAlgorithm": checksum} if checksum else {}
    upload = client.create_multipart_upload(Bucket=bucket, Key=key, **algorithm, **full_object)
    parts = []
    for number, start in enumerate(range(0, len(body), PART), 1):
        part = client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=number,
            Body=body[start : start + PART], **algorithm,
        )  # fmt: skip
        sums = {f"Checksum{checksum}": part[f"Checksum{checksum}"]} if checksum else {}
        parts.append({"ETag": part["ETag"], "PartNumber": number, **sums})
    client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload["UploadId"],
        MultipartUpload={"Parts": parts}, **full_object,
    )  # fmt: skip
    multipart = etag(s3_lake)
    assert multipart.endswith(f"-{-(-len(body) // PART)}")
    return multipart


def without_checksum_headers(proxy) -> None:
    """A server that publishes no checksum: only the ETag can bind the bytes."""
    proxy.inject(ProxyFault("strip_checksums", "HEAD", OBJECT_PATH, times=100))
    proxy.inject(ProxyFault("strip_checksums", "GET", OBJECT_PATH, times=100))


def without_part_heads(proxy) -> ProxyFault:
    """A server that refuses `HEAD ?partNumber=1` (some S3-compatible ones do)."""
    return proxy.inject(
        ProxyFault("status", "HEAD", PART_HEAD, times=100, status=400, code="InvalidArgument")
    )


def crc64nvme(s3_lake) -> str:
    head = s3_lake["client"].head_object(
        Bucket=s3_lake["bucket"], Key=object_key(), ChecksumMode="ENABLED"
    )
    return head["ChecksumCRC64NVME"]


def object_gets(proxy) -> list:
    return [r for r in proxy.responses if r.method == "GET" and OBJECT_PATH in r.path]


@pytest.mark.parametrize(("status", "code"), [(429, "TooManyRequests"), (500, "InternalError")])
def test_a_part_size_head_failing_transiently_is_retried_and_the_etag_verified(
    s3_lake, proxy, small_parts, tmp_path, status, code
):
    body = served(s3_lake)
    put_multipart(s3_lake, body)
    without_checksum_headers(proxy)
    fault = proxy.inject(ProxyFault("status", "HEAD", PART_HEAD, status=status, code=code))
    layout = DataLayout(tmp_path / "data")
    raw = acquire(s3_lake["uri"], layout)
    assert fault.hits == 1 and fault.seen == 2  # refused once, answered on the retry
    (retry,) = [e for e in audit_events(layout) if e["event"] == "retry"]
    assert str(status) in retry["error"]
    assert raw.verified_by == "multipart-etag"  # the part size came from the retried HEAD
    assert raw_file(layout).read_bytes() == body


def test_bytes_that_cannot_be_verified_fail_naming_the_object_and_replace_nothing(
    s3_lake, proxy, small_parts, tmp_path
):
    layout = DataLayout(tmp_path / "data")
    good = acquire(s3_lake["uri"], layout)  # the single-part original: verified and stored
    assert good.verified_by == "crc32-checksum+md5-etag"
    original = raw_file(layout).read_bytes()
    manifest_before = manifest_entries(layout, "trades", MARKET, DAY)
    # The vendor republishes (another real day's file) multipart; the server gives no
    # checksum and no part size, and no whole-MiB part size reproduces the ETag.
    put_multipart(s3_lake, served(s3_lake, dt.date(2024, 8, 9)))
    without_checksum_headers(proxy)
    refused = without_part_heads(proxy)
    gets_before = len(object_gets(proxy))
    with pytest.raises(UnverifiedTransferError) as caught:
        acquire(s3_lake["uri"], layout, run_id="r2")
    message = str(caught.value)
    assert object_key() in message and "cannot be verified" in message
    assert "the part-size HEAD failed (HTTP 400)" in message and "multipart ETag" in message
    assert "RLX_ALLOW_UNVERIFIED_DOWNLOADS=true" in message
    assert refused.hits >= 1
    # Downloaded once: downloading it again could not verify it, so it is not retried.
    assert len(object_gets(proxy)) == gets_before + 1
    # Nothing stored, nothing previously good replaced, nothing left behind.
    assert raw_file(layout).read_bytes() == original
    assert manifest_entries(layout, "trades", MARKET, DAY) == manifest_before
    assert not any(layout.incoming.iterdir()) and not layout.versions.exists()
    assert audit_events(layout)[-1]["event"] == "fail"
    assert_no_secret(layout, message)


def test_the_opt_in_stores_unverifiable_bytes_marked_unverified(
    s3_lake, proxy, small_parts, tmp_path
):
    body = served(s3_lake)
    put_multipart(s3_lake, body)
    without_checksum_headers(proxy)
    without_part_heads(proxy)
    layout = DataLayout(tmp_path / "data")
    raw = acquire(s3_lake["uri"], layout, allow_unverified=True)
    assert raw_file(layout).read_bytes() == body
    assert raw.verified_by.startswith("unverified (") and "part-size HEAD failed" in raw.verified_by
    entry = manifest_entries(layout, "trades", MARKET, DAY)[-1]
    assert entry["verified_by"] == raw.verified_by
    # Reused as unverified while the opt-in holds; refused (and kept) once it is withdrawn.
    again = acquire(s3_lake["uri"], layout, run_id="r2", allow_unverified=True)
    assert again.action == "reused" and again.verified_by == raw.verified_by
    with pytest.raises(UnverifiedTransferError):
        acquire(s3_lake["uri"], layout, run_id="r3")
    assert raw_file(layout).read_bytes() == body


@pytest.mark.parametrize("get_checksums", ["sent", "stripped"])
def test_corrupted_bytes_are_refused_by_the_servers_crc64nvme(
    s3_lake, proxy, small_parts, tmp_path, get_checksums
):
    """Only the full-object CRC64NVME binds this multipart object (no part size): a flipped
    bit is caught by botocore's check of the GET (`sent`) or by the transfer's own digest
    against the HEAD's checksum (`stripped`), retried, and the intact bytes verified by it."""
    body = served(s3_lake)
    put_multipart(s3_lake, body, checksum="CRC64NVME")
    without_part_heads(proxy)
    if get_checksums == "stripped":
        proxy.inject(ProxyFault("strip_checksums", "GET", OBJECT_PATH, times=100))
    flip = proxy.inject(ProxyFault("flip_bit", "GET", OBJECT_PATH))
    layout = DataLayout(tmp_path / "data")
    raw = acquire(s3_lake["uri"], layout)
    assert flip.hits == 1
    (retry,) = [e for e in audit_events(layout) if e["event"] == "retry"]
    assert "corrupt transfer" in retry["error"] and object_key() in retry["error"]
    assert crc64nvme(s3_lake) in retry["error"]  # the server's checksum, not matched
    assert raw_file(layout).read_bytes() == body
    assert raw.verified_by == "crc64nvme-checksum"
    assert len(object_gets(proxy)) == 2 <= FAST.attempts


def test_an_unverified_day_is_certified_as_unverified_and_says_so_in_the_ui(
    s3_lake, proxy, small_parts, tmp_path, monkeypatch
):
    """Through Dagster: refused without the opt-in (the run fails naming the object); with
    RLX_ALLOW_UNVERIFIED_DOWNLOADS=true the day is gated and certified, and the certificate
    and the assets' metadata say `unverified`."""
    put_multipart(s3_lake, served(s3_lake))
    without_checksum_headers(proxy)
    without_part_heads(proxy)
    rlx = RlxEnvironment(
        data_dir=str(tmp_path / "data"), lake_uri=s3_lake["uri"], gate_profile="sample"
    )
    run = dict(partition_key=f"{DAY.isoformat()}|{MARKET}", resources={"rlx": rlx})
    refused = dg.materialize(CHAIN, raise_on_error=False, **run)
    assert not refused.success
    (failure,) = [
        e for e in refused.all_events
        if e.event_type_value == "STEP_FAILURE" and e.step_key == "raw_trades"
    ]  # fmt: skip
    assert object_key() in failure.step_failure_data.error.message
    assert "cannot be verified" in failure.step_failure_data.error.message

    monkeypatch.setenv("RLX_ALLOW_UNVERIFIED_DOWNLOADS", "true")
    result = dg.materialize(CHAIN, **run)
    certificate = load_certificate(DataLayout(tmp_path / "data"), MARKET, DAY)
    assert certificate["transfer"] == "unverified"
    tables = certificate["tables"]
    assert tables["trades"]["manifest_entry"]["verified_by"].startswith("unverified (")
    assert tables["book"]["manifest_entry"]["verified_by"] == "crc32-checksum+md5-etag"
    (issued,) = result.asset_materializations_for_node("readiness_certificate")
    assert issued.metadata["transfer"].value == "unverified"
    assert issued.metadata["trades_verified_by"].value.startswith("unverified (")
    (raw,) = result.asset_materializations_for_node("raw_trades")
    assert raw.metadata["verified_by"].value.startswith("unverified (")
