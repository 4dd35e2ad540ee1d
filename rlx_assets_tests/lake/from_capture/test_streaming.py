# ruff: noqa: E501 - the release-2 digests below are one per line
"""The converter at any length: chunked, it writes the same bytes; its memory does not grow with
the hours of capture. Real sample captures for the bytes; a tiled day (synthetic, for scale
only: ``rlx_assets.capture.synthetic_day``) for the memory."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rlx_assets.capture.golden import DayAnalysis, select_capture_files, verify_checksums
from rlx_assets.capture.synthetic_day import generate_day
from rlx_assets.lake.from_capture import TRADE_PARTS, convert_captures, writing
from rlx_assets_tests.lake.from_capture.test_writing import T0, write_golden

CAPTURES = Path(__file__).parents[3] / "data" / "sample" / "captures"

# SHA-256 of the golden tables the release-2 converter (commit bc66efe, whole files in memory)
# wrote for each sample partition: the streaming converter must not change a byte.
RELEASE_2_GOLDEN_TABLES = {
    ("spot", "2024-08-08", "book"): "ec10be01b929e913ecd70fa63d1ca1af8cbb613a9e7b08e93f192c4600e05b39",
    ("spot", "2024-08-08", "book_delta_v2"): "35eb0b9147cb7bf0581a5822a29e8b84004225498ede7cab355f5ce9d4149d06",
    ("spot", "2024-08-08", "level_1"): "6219dcc4d4ed4723f6f8d25fdb9a14492b36c65c46aa7830805d0784349f595e",
    ("spot", "2024-08-08", "trades"): "53f72fbc197fc404f8c1a808b024c2d32500f74e8a97ec569e7fb6b3206bd551",
    ("spot", "2024-08-09", "book"): "ddc8fad9ff6b54d3ac9d2ab8e7ae5d664b58836ba41966c0454e85946504be9f",
    ("spot", "2024-08-09", "book_delta_v2"): "4a8fa0fcd1c8b2dcbdd41e8ab6c07496cdf3f4ab166a6421b4ffa6b00e7f109f",
    ("spot", "2024-08-09", "level_1"): "96d36f5a76a48e77fb6d4d6e9ebbc0e4e36ad3cee07ddac43b67ba781dd6ef38",
    ("spot", "2024-08-09", "trades"): "9bcf3d7e2e665b61442a2d2b815370ea49dad921930c3aa613df9b84dc652577",
    ("usdm", "2024-08-08", "book"): "177822a3e6b273e40b2a0bfe1a7accff069628eeaba125b82d8fe2ced542517f",
    ("usdm", "2024-08-08", "book_delta_v2"): "2c82dfe11213eb5d6afd6dfc9a1af4cc1edb1c7f690653abbb5ed5611e614b8b",
    ("usdm", "2024-08-08", "level_1"): "5f5a19e2f5d4f0ca38a65fefa6d39a02bc2d4697b2fe74a5527bc6fd086ff5df",
    ("usdm", "2024-08-08", "trades"): "a241c90b71c9ce68662247d8161d499e9cdcab5eb6a26d9110ef3cc8b971b7bf",
}  # fmt: skip


def golden_tables(out: Path, market: str, day: dt.date) -> dict[tuple[str, str, str], str]:
    """Convert one partition as golden_samples does; sha256 of each vendor table written."""
    files = select_capture_files(CAPTURES, market, "btcusdt", day)
    written = convert_captures(
        files, out, market=market, symbols={"btcusdt"}, days={day},
        checksums=verify_checksums(files), observer=DayAnalysis(files, market, "btcusdt", day),
        trade_parts=True,
    )  # fmt: skip
    assert {p.parts[-2] for p in written} == {f"dt={day}"}  # only the day asked for
    return {
        (market, day.isoformat(), p.parts[-5]): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in written
        if p.parts[-5] != TRADE_PARTS
    }


@pytest.mark.parametrize("chunk", [writing.CHUNK_MESSAGES, 7])
def test_golden_tables_are_byte_identical_to_release_2_at_any_chunk_size(
    chunk, tmp_path, monkeypatch
):
    # 7 messages a chunk: the book and the sync state cross ~27,000 boundaries, and the diffs
    # received before each file's REST snapshot wait across chunk ends (carried over, rebased).
    monkeypatch.setattr(writing, "CHUNK_MESSAGES", chunk)
    found = {}
    for market, day in (("spot", "2024-08-08"), ("spot", "2024-08-09"), ("usdm", "2024-08-08")):
        date = dt.date.fromisoformat(day)
        found.update(golden_tables(tmp_path / f"{market}-{day}", market, date))
    assert found == RELEASE_2_GOLDEN_TABLES


PEAK_SCRIPT = """
import datetime as dt, sys
from pathlib import Path
from rlx_assets.capture.golden import DayAnalysis, select_capture_files
from rlx_assets.lake.from_capture import convert_captures, writing

writing.CHUNK_MESSAGES = 5_000  # so that a few minutes hold many chunks
root, day = Path(sys.argv[1]), dt.date.fromisoformat(sys.argv[2])
files = select_capture_files(root / "captures", "spot", "btcusdt", day)
analysis = DayAnalysis(files, "spot", "btcusdt", day)
written = convert_captures(files, root / "lake", market="spot", symbols={"btcusdt"},
                           days={day}, observer=analysis)
assert not analysis.result.gaps and len(written) == 4, (analysis.result.gaps, written)
status = Path("/proc/self/status").read_text()
print(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1])
"""


def peak_rss_kib(tmp_path: Path, minutes: float) -> int:
    """Peak RSS of a process converting ``minutes`` of a tiled day, as golden_samples does."""
    root, day = tmp_path / f"{minutes}min", dt.date(2024, 8, 10)
    generate_day(root / "captures", day, duration_s=minutes * 60, period_s=600)
    done = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(root), day.isoformat()],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.split()[-1])


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_hours_of_capture(tmp_path):
    """Three times the capture (20 vs 60 minutes, ~180 k vs ~540 k lines, 36 vs 108 chunks, over
    one row group of book_delta_v2 in both): holding the whole capture, as release 2 did, the
    longer one peaks hundreds of MB higher."""
    short, long = peak_rss_kib(tmp_path, 20), peak_rss_kib(tmp_path, 60)
    assert long / short <= 1.10, (short, long)


def test_a_later_chunk_with_more_decimals_moves_the_book_to_finer_units(tmp_path, monkeypatch):
    """Synthetic edge case: the second diff has one more decimal than everything before it. One
    message a chunk (the book already built at the coarser scale, then rescaled) writes the same
    files as one chunk for all."""
    capture = write_golden(
        tmp_path / "ethbtc.gz",
        [
            (1, "ethbtc@depthSnapshot", {"lastUpdateId": 10, "bids": [["0.05", "1.5"]],
                                         "asks": [["0.0501", "3"]]}),
            (2, "ethbtc@depth@100ms", {"e": "depthUpdate", "E": T0, "s": "ETHBTC", "U": 11,
                                       "u": 12, "b": [["0.0499", "0.25"]], "a": []}),
            (3, "ethbtc@depth@100ms", {"e": "depthUpdate", "E": T0 + 100, "s": "ETHBTC",
                                       "U": 13, "u": 13, "b": [["0.04995", "0.125"]], "a": []}),
        ],
    )  # fmt: skip
    whole = convert_captures([capture], tmp_path / "whole")
    monkeypatch.setattr(writing, "CHUNK_MESSAGES", 1)
    chunked = convert_captures([capture], tmp_path / "chunked")
    assert [p.relative_to(tmp_path / "chunked") for p in chunked] == [
        p.relative_to(tmp_path / "whole") for p in whole
    ]
    for a, b in zip(whole, chunked, strict=True):
        assert a.read_bytes() == b.read_bytes(), a
    book = pq.read_table(next(p for p in chunked if p.parts[-5] == "book")).to_pylist()
    assert [row["bid_1_price"] for row in book] == [0.0499, 0.04995]
    assert (
        pq.read_schema(next(p for p in chunked if p.parts[-5] == "book")).metadata[
            b"rlx.price_scale"
        ]
        == b"5"
    )
