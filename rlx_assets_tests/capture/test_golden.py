"""Golden-sample accounting on the real captures: counts, continuity, gaps, checksums."""

from __future__ import annotations

import datetime as dt
import shutil
from collections import Counter

import pytest

from rlx_assets.capture.golden import (
    GoldenError,
    analyse_day,
    select_capture_files,
    verify_checksums,
)
from rlx_assets_tests.capture.golden_files import sample_messages, write_golden
from rlx_assets_tests.conftest import SAMPLE_CAPTURES

DAY8, DAY9 = dt.date(2024, 8, 8), dt.date(2024, 8, 9)
MIDNIGHT_NS = int(dt.datetime(2024, 8, 9, tzinfo=dt.UTC).timestamp()) * 10**9


def expected_counts(names: list[str], day: dt.date) -> Counter:
    """Messages per stream whose exchange time (E, else T, else receive time) is in `day`."""
    counts: Counter = Counter()
    lo = MIDNIGHT_NS - (86_400 * 10**9 if day == DAY8 else 0)
    for name in names:
        for ns, stream, data in sample_messages(name):
            if stream.endswith("depthSnapshot"):
                continue
            stamp = data.get("E") or data.get("T")
            event_ns = stamp * 1_000_000 if stamp else ns
            if lo <= event_ns < lo + 86_400 * 10**9:
                counts[stream] += 1
    return counts


@pytest.mark.parametrize(
    "market,day,names",
    [
        ("spot", DAY8, ["spot_btcusdt_20240808.gz", "spot_btcusdt_20240809.gz"]),
        ("spot", DAY9, ["spot_btcusdt_20240808.gz", "spot_btcusdt_20240809.gz"]),
        ("usdm", DAY8, ["usdm_btcusdt_20240808.gz"]),
    ],
)
def test_sample_days_have_no_gaps_and_every_message(market, day, names):
    files = select_capture_files(SAMPLE_CAPTURES, market, "btcusdt", day)
    assert [f.name for f in files] == names
    assert set(verify_checksums(files)) == set(names)
    golden = analyse_day(files, market, "btcusdt", day)
    assert golden.gaps == [] and golden.gap_ratio == 0.0
    assert golden.messages_by_stream == expected_counts(names, day)


def test_removed_messages_are_found_and_located(tmp_path):
    messages = sample_messages("spot_btcusdt_20240808.gz")
    removed = messages[20_000:20_400]
    kept = messages[:20_000] + messages[20_400:]
    write_golden(tmp_path / "spot_btcusdt_20240808T23.jsonl.gz", kept)
    files = select_capture_files(tmp_path, "spot", "btcusdt", DAY8)
    golden = analyse_day(files, "spot", "btcusdt", DAY8)
    sources = {g.source for g in golden.gaps}
    assert sources == {"depth_sequence", "trade_id"}
    # Each gap spans from the stream's last message before the hole to its first one after it.
    for gap in golden.gaps:
        suffix = "@trade" if gap.source == "trade_id" else "@depth@100ms"
        before = [ns for ns, s, _ in messages[:20_000] if s.endswith(suffix)][-1]
        after = next(ns for ns, s, _ in messages[20_400:] if s.endswith(suffix))
        assert (gap.start_ns, gap.end_ns) == (before, after)
        assert gap.start_ns < removed[0][0] and removed[-1][0] < gap.end_ns
    missing_trades = sum(1 for _, s, _ in removed if s.endswith("@trade"))
    trade_gap = next(g for g in golden.gaps if g.source == "trade_id")
    assert f"{missing_trades} missing" in trade_gap.detail
    assert golden.gap_ratio > 0.0001


def test_a_gap_marker_explains_the_breaks_inside_it(tmp_path):
    messages = sample_messages("spot_btcusdt_20240808.gz")
    kept = messages[:20_000] + messages[20_400:]
    start, end = messages[19_999][0], messages[20_400][0]
    gap = {"start_ns": start, "end_ns": end, "reason": "disconnect"}
    marker = {"capture_ns": end, "stream": "rlx.gap", "data": gap}
    write_golden(tmp_path / "spot_btcusdt_20240808T23.jsonl.gz", kept, lambda: [marker])
    golden = analyse_day(
        select_capture_files(tmp_path, "spot", "btcusdt", DAY8), "spot", "btcusdt", DAY8
    )
    assert [(g.source, g.detail) for g in golden.gaps] == [("marker", "disconnect")]
    assert golden.gap_ns == end - start and golden.gap_markers == 1


def test_a_file_whose_checksum_differs_is_refused(tmp_path):
    path = write_golden(
        tmp_path / "spot_btcusdt_20240808T23.jsonl.gz",
        sample_messages("spot_btcusdt_20240808.gz")[:100],
    )
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(GoldenError, match="differs from the recorded"):
        verify_checksums([path])


def test_files_without_checksum_are_refused_and_partial_files_ignored(tmp_path):
    shutil.copy(SAMPLE_CAPTURES / "spot_btcusdt_20240808.gz", tmp_path)
    (tmp_path / "spot_btcusdt_20240809T00.jsonl.gz.partial").write_bytes(b"half")
    files = select_capture_files(tmp_path, "spot", "btcusdt", DAY8)
    assert [f.name for f in files] == ["spot_btcusdt_20240808.gz"]
    with pytest.raises(GoldenError, match="no .sha256 sidecar"):
        verify_checksums(files)


def test_files_are_chosen_by_market_symbol_and_hour(tmp_path):
    for name in [
        "spot_btcusdt_20240807T21.jsonl.gz",  # too early
        "spot_btcusdt_20240807T22.jsonl.gz",  # margin before midnight
        "spot_btcusdt-ethusdt_20240808T12.jsonl.gz",
        "spot_ethusdt_20240808T12.jsonl.gz",  # other symbol
        "usdm_btcusdt_20240808T12.jsonl.gz",  # other market
        "spot_btcusdt_20240809T01.jsonl.gz",  # margin after midnight
        "spot_btcusdt_20240809T02.jsonl.gz",  # too late
    ]:
        (tmp_path / name).write_bytes(b"")
    chosen = [p.name for p in select_capture_files(tmp_path, "spot", "btcusdt", DAY8)]
    assert chosen == [
        "spot_btcusdt-ethusdt_20240808T12.jsonl.gz",
        "spot_btcusdt_20240807T22.jsonl.gz",
        "spot_btcusdt_20240809T01.jsonl.gz",
    ]
