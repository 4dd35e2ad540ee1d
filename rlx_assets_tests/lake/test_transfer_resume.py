"""A transfer cut short resumes where it stopped (HTTP Range, pinned to the object's ETag), and
the whole file's digest still decides: through the fault proxy, counting the bytes it served."""

from __future__ import annotations

import datetime as dt

from rlx_assets.staging import DataLayout
from rlx_assets_tests.lake.test_transfer_faults import (
    OBJECT_PATH,
    acquire,
    audit_events,
    etag,
    object_key,
    raw_file,
    served,
)
from rlx_assets_tests.servers.fault_proxy import ProxyFault


def object_gets(proxy) -> list:
    return [r for r in proxy.responses if r.method == "GET" and OBJECT_PATH in r.path]


def resumed_from(layout: DataLayout) -> int:
    (resume,) = [e for e in audit_events(layout) if e["event"] == "resume"]
    return resume["from_byte"]


def test_a_download_cut_at_90_percent_fetches_only_the_rest(s3_lake, proxy, tmp_path):
    body = served(s3_lake)
    cut = proxy.inject(ProxyFault("cut", "GET", OBJECT_PATH, fraction=0.9))
    layout = DataLayout(tmp_path / "data")
    raw = acquire(s3_lake["uri"], layout)
    assert cut.hits == 1
    first, rest = object_gets(proxy)
    assert first.range is None and first.body_bytes == int(len(body) * 0.9)
    # Only the rest was fetched again: the two responses carried the file's bytes once.
    assert first.body_bytes + rest.body_bytes == len(body) and rest.status == 206
    assert rest.range == f"bytes={first.body_bytes}-"
    assert resumed_from(layout) == first.body_bytes
    assert raw_file(layout).read_bytes() == body
    # The whole file's checksum and ETag decided (a range carries no checksum of its own).
    assert raw.verified_by == "crc32-checksum+md5-etag" and raw.source_version == etag(s3_lake)


def test_a_resumed_download_that_fails_its_digest_is_fetched_again_from_byte_0(
    s3_lake, proxy, tmp_path
):
    body = served(s3_lake)
    proxy.inject(ProxyFault("cut", "GET", OBJECT_PATH, fraction=0.9))
    flip = proxy.inject(ProxyFault("flip_bit", "GET", OBJECT_PATH, nth=2))  # the resumed part
    layout = DataLayout(tmp_path / "data")
    raw = acquire(s3_lake["uri"], layout)
    assert flip.hits == 1
    ranges = [r.range for r in object_gets(proxy)]
    assert ranges == [None, f"bytes={resumed_from(layout)}-", None]  # resumed once, then whole
    retries = [e["error"] for e in audit_events(layout) if e["event"] == "retry"]
    assert "corrupt transfer" in retries[-1] and object_key() in retries[-1]
    assert raw_file(layout).read_bytes() == body
    assert raw.verified_by == "crc32-checksum+md5-etag"


def test_a_server_that_ignores_the_range_is_not_appended_to_the_partial(s3_lake, proxy, tmp_path):
    body = served(s3_lake)
    proxy.inject(ProxyFault("cut", "GET", OBJECT_PATH, fraction=0.9))
    proxy.inject(ProxyFault("ignore_range", "GET", OBJECT_PATH, nth=2))
    layout = DataLayout(tmp_path / "data")
    raw = acquire(s3_lake["uri"], layout)
    first, whole_instead, again = object_gets(proxy)
    assert whole_instead.range == f"bytes={first.body_bytes}-" and whole_instead.status == 200
    retries = [e["error"] for e in audit_events(layout) if e["event"] == "retry"]
    assert "the server sent the whole object" in retries[-1]  # refused, not appended
    assert again.range is None and again.body_bytes == len(body)
    assert raw_file(layout).read_bytes() == body
    assert raw.verified_by == "crc32-checksum+md5-etag"


def test_an_object_replaced_before_the_resume_is_not_stitched(s3_lake, proxy, tmp_path):
    replacement = served(s3_lake, dt.date(2024, 8, 9))

    def republish() -> None:
        s3_lake["client"].put_object(Bucket=s3_lake["bucket"], Key=object_key(), Body=replacement)

    proxy.inject(ProxyFault("cut", "GET", OBJECT_PATH, fraction=0.9))
    proxy.inject(ProxyFault("hook", "GET", OBJECT_PATH, nth=2, hook=republish))
    layout = DataLayout(tmp_path / "data")
    raw = acquire(s3_lake["uri"], layout)
    first, refused, whole = object_gets(proxy)
    # The resume asked for the rest of the version it started (If-Match): refused with 412,
    # the object was located again and the new version fetched whole.
    assert refused.range == f"bytes={resumed_from(layout)}-" and refused.status == 412
    assert whole.range is None and whole.body_bytes == len(replacement)
    assert raw_file(layout).read_bytes() == replacement
    assert raw.source_version == etag(s3_lake)
