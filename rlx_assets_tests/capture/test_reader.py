import gzip
import json
from pathlib import Path

import pytest

from rlx_assets.capture.reader import (
    CaptureFormatError,
    CaptureStats,
    iter_capture,
    stream_channel,
    stream_symbol,
)

CAPTURES = Path(__file__).parents[2] / "data" / "sample" / "captures"
SPOT_0808 = CAPTURES / "spot_btcusdt_20240808.gz"


def test_sample_format_counts_match_provenance():
    stats = CaptureStats()
    records = list(iter_capture(SPOT_0808, stats))
    assert len(records) == stats.messages == stats.lines == 41_249
    assert dict(stats.by_channel) == {
        "depth": 3_451,
        "trade": 9_757,
        "bookTicker": 28_040,
        "depthSnapshot": 1,
    }
    # The bare REST snapshot (line 8) is named after the file's symbol.
    snapshot = next(r for r in records if r.stream == "btcusdt@depthSnapshot")
    assert snapshot.line == 8
    assert snapshot.data["lastUpdateId"] == 50_093_239_218
    assert [r.line for r in records[:10]] == list(range(1, 11))
    assert records[0].capture_ns == 1_723_161_253_937_085_768
    assert records[0].stream == "btcusdt@depth@100ms"
    assert records[0].data["u"] == 50_093_239_202


def _write(path: Path, lines: list[str], compress: bool = True) -> Path:
    text = "".join(line + "\n" for line in lines)
    if compress:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def test_golden_format_counts_and_skips_gap_and_malformed_lines(tmp_path):
    with gzip.open(SPOT_0808, "rt") as fh:
        raw = [next(fh) for _ in range(10)]
    golden = []
    for line in raw:
        ns, payload = line.rstrip("\n").split(" ", 1)
        msg = json.loads(payload)
        if "stream" in msg:
            golden.append(json.dumps({"capture_ns": int(ns), **msg}))
        else:
            golden.append(
                json.dumps({"capture_ns": int(ns), "stream": "btcusdt@depthSnapshot", "data": msg})
            )
    golden.insert(3, json.dumps({"capture_ns": 1, "stream": "rlx.gap", "data": {"reason": "x"}}))
    golden.insert(5, json.dumps({"capture_ns": 2, "malformed": True, "raw": "{oops"}))
    golden.insert(6, "")
    path = _write(tmp_path / "golden.gz", golden)
    stats = CaptureStats()
    got = list(iter_capture(path, stats))
    expected = list(iter_capture(_write(tmp_path / "sample.gz", [r.rstrip() for r in raw])))
    assert [r[:3] for r in got] == [r[:3] for r in expected]
    assert (stats.gap_markers, stats.malformed, stats.blank_lines) == (1, 1, 1)
    assert stats.messages == 10 and stats.lines == 13


def test_plain_text_and_snapshot_before_any_stream_message(tmp_path):
    # Narrow edge case: the REST snapshot is the file's first line; its symbol is only known
    # from the next message.
    lines = [
        '5 {"lastUpdateId": 10, "bids": [], "asks": []}',
        '6 {"stream": "ethusdt@trade", "data": {"t": 1}}',
    ]
    records = list(iter_capture(_write(tmp_path / "plain.txt", lines, compress=False)))
    assert [(r.capture_ns, r.stream, r.line) for r in records] == [
        (5, "ethusdt@depthSnapshot", 1),
        (6, "ethusdt@trade", 2),
    ]


def test_bare_snapshot_with_several_symbols_is_an_error(tmp_path):
    lines = [
        '1 {"stream": "ethusdt@trade", "data": {}}',
        '2 {"stream": "btcusdt@trade", "data": {}}',
        '3 {"lastUpdateId": 10, "bids": [], "asks": []}',
    ]
    with pytest.raises(CaptureFormatError, match=r"several\.gz:3: .*several symbols"):
        list(iter_capture(_write(tmp_path / "several.gz", lines)))
    with pytest.raises(CaptureFormatError, match="no stream message"):
        list(iter_capture(_write(tmp_path / "only.gz", [lines[2]])))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("12345", "invalid JSON"),
        ("abc {}", "expected '<receive ns> <JSON>'"),
        ('1 {"foo": 1}', "neither a combined-stream frame"),
        ('1 {"stream": "btcusdt@trade"}', "has no data"),
        ('{"capture_ns": 1, "stream": "btcusdt@trade", "data": 3}', "is not an object"),
        ('{"stream": "btcusdt@trade", "data": {}}', "integer 'capture_ns'"),
        ('{"capture_ns": 1, "stream": ', "invalid JSON"),
    ],
)
def test_unparseable_line_names_file_and_line(tmp_path, line, message):
    good = '1 {"stream": "btcusdt@trade", "data": {}}'
    path = _write(tmp_path / "bad.gz", [good, good, line])
    with pytest.raises(CaptureFormatError, match=rf"bad\.gz:3: .*{message}"):
        list(iter_capture(path))


def test_corrupt_gzip_is_a_clear_error(tmp_path):
    data = SPOT_0808.read_bytes()
    truncated = tmp_path / "truncated.gz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CaptureFormatError, match=r"truncated\.gz: corrupt or truncated"):
        list(iter_capture(truncated))
    garbled = tmp_path / "garbled.gz"
    garbled.write_bytes(data[:2] + b"\x08\x00" + bytes(range(256)) * 4)
    with pytest.raises(CaptureFormatError, match=r"garbled\.gz"):
        list(iter_capture(garbled))


def test_stream_name_parts():
    assert stream_symbol("btcusdt@depth@100ms") == "btcusdt"
    assert stream_channel("btcusdt@depth@100ms") == "depth"
    assert stream_channel("btcusdt@depthSnapshot") == "depthSnapshot"
    assert stream_channel("rlx.gap") == ""
