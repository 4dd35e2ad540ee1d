"""The figures an acquisition reports (the raw assets' numeric metadata), against what the
fault-injecting proxy in front of the local S3 server (the real sample lake) did and what the
raw zone holds."""

from __future__ import annotations

from rlx_assets.lake.sources import RETRY_KINDS
from rlx_assets.lake.transfer_stats import TransferStats
from rlx_assets.staging import DataLayout
from rlx_assets_tests.lake.test_transfer_faults import (
    ACCESS_CHECK,
    OBJECT_PATH,
    acquire,
    raw_file,
    served,
)
from rlx_assets_tests.servers.fault_proxy import ProxyFault


def acquire_counted(uri: str, layout: DataLayout, run_id: str) -> TransferStats:
    stats = TransferStats()
    acquire(uri, layout, run_id=run_id, timeout_s=0.5, stats=stats)
    return stats


def test_retries_by_error_type_equal_the_faults_injected(s3_lake, proxy, tmp_path):
    """One fault of each kind the network and server produce, on the access check, the HEAD
    and the GET: each is retried once and counted under its type; the bytes counted are the
    file's on disk."""
    injected = {
        "timeout": proxy.inject(ProxyFault("stall", "GET", ACCESS_CHECK, delay_s=3.0)),
        "http_5xx": proxy.inject(ProxyFault("status", "HEAD", OBJECT_PATH, status=500)),
        "throttled": proxy.inject(
            # a HEAD answer has no body, so no error code: throttling shows as its status, 429
            ProxyFault("status", "HEAD", OBJECT_PATH, nth=2, status=429, code="TooManyRequests")
        ),
        "connection": proxy.inject(ProxyFault("reset", "GET", OBJECT_PATH)),
        "corrupt_transfer": proxy.inject(ProxyFault("flip_bit", "GET", OBJECT_PATH, nth=2)),
    }
    layout = DataLayout(tmp_path / "data")
    stats = acquire_counted(s3_lake["uri"], layout, "r1")

    assert {kind: fault.hits for kind, fault in injected.items()} == dict.fromkeys(injected, 1)
    expected = {f"retries_{k}": injected[k].hits if k in injected else 0 for k in RETRY_KINDS}
    figures = stats.figures()
    assert {k: v for k, v in figures.items() if k.startswith("retries_")} == expected
    # Every failed attempt was retried; access check, locate and download succeeded once each.
    assert figures["requests"] - figures["requests_ok"] == sum(f.hits for f in injected.values())
    assert figures["requests_ok"] == 3
    on_disk = raw_file(layout).stat().st_size
    assert figures["bytes_downloaded"] == on_disk == len(served(s3_lake))
    assert figures["download_mb_per_s"] > 0


def test_a_reused_file_reports_no_bytes_and_no_speed(s3_lake, proxy, tmp_path):
    layout = DataLayout(tmp_path / "data")
    acquire_counted(s3_lake["uri"], layout, "r1")
    gets_before = len(proxy.responses)
    figures = acquire_counted(s3_lake["uri"], layout, "r2").figures()
    object_gets = [
        r for r in proxy.responses[gets_before:] if r.method == "GET" and OBJECT_PATH in r.path
    ]
    assert object_gets == []  # nothing downloaded again
    assert figures["bytes_downloaded"] == 0 and "download_mb_per_s" not in figures
    assert figures["requests"] == figures["requests_ok"] == 2  # the access check and locate
