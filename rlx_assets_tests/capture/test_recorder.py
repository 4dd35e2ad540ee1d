"""The live recorder against a local replay of real Binance captures (no internet)."""

from __future__ import annotations

import asyncio
import base64
import errno
import gzip
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from rlx_assets.capture.files import PARTIAL_SUFFIX, RotatingGzipWriter, verify_sidecar
from rlx_assets.capture.line_format import MalformedFrame, split_frame
from rlx_assets.capture.line_queue import CaptureWriteError
from rlx_assets.capture.reader import CaptureStats, iter_capture
from rlx_assets.capture.recorder import Recorder
from rlx_assets.capture.recorder_config import RecorderConfig, combined_stream_url
from rlx_assets_tests.conftest import SAMPLE_CAPTURES
from rlx_assets_tests.servers.binance import (
    BinanceReplayServer,
    CaptureFrame,
    Drop,
    ReplayCapture,
    load_capture,
)

SPOT_PATH = "/stream?streams=btcusdt@trade/btcusdt@aggTrade/btcusdt@depth@100ms/btcusdt@bookTicker"
_LINE = re.compile(r'\{"capture_ns":(\d+),"stream":"([^"\\]*)","data":(.*)\}')


@pytest.fixture(scope="module")
def spot() -> ReplayCapture:
    return load_capture(SAMPLE_CAPTURES / "spot_btcusdt_20240808.gz", limit=2000)


@pytest.fixture(scope="module")
def usdm() -> ReplayCapture:
    return load_capture(SAMPLE_CAPTURES / "usdm_btcusdt_20240808.gz", limit=1000)


def data_text(frame: CaptureFrame) -> str:
    """The frame's data member, cut independently of the recorder (Binance's fixed layout)."""
    text = frame.text
    assert text.startswith('{"stream":"') and text.endswith("}")
    return text[text.index(',"data":') + len(',"data":') : -1]


def stream_of(frame: CaptureFrame) -> str:
    return json.loads(frame.text)["stream"]


@dataclass
class Line:
    text: str
    capture_ns: int
    stream: str
    data: str | None  # raw data text (message, snapshot and gap lines)
    obj: dict


def parse_line(raw: str) -> Line:
    obj = json.loads(raw)
    assert list(obj)[:2] == ["capture_ns", "stream"]
    match = _LINE.fullmatch(raw)
    return Line(raw, obj["capture_ns"], obj["stream"], match.group(3) if match else None, obj)


def file_lines(path: Path) -> list[Line]:
    """The lines of one finished file, after checking its sidecar."""
    assert verify_sidecar(path), path
    return [parse_line(raw) for raw in gzip.decompress(path.read_bytes()).decode().splitlines()]


def read_lines(out_dir: Path) -> list[Line]:
    """All lines of the finished files, in file order; fails on any partial file."""
    assert not list(out_dir.glob(f"*{PARTIAL_SUFFIX}"))
    return [line for path in sorted(out_dir.glob("*.jsonl.gz")) for line in file_lines(path)]


def record(
    config: RecorderConfig,
    until: Callable[[Recorder], bool],
    *,
    sink=None,
    timeout: float = 20.0,
) -> Recorder:
    """Run a recorder in this thread's loop until ``until(recorder)``, then stop it cleanly."""

    async def main() -> Recorder:
        recorder = Recorder(config, sink=sink)
        task = asyncio.create_task(recorder.run())
        deadline = time.monotonic() + timeout
        while not until(recorder):
            if task.done():
                await task
                raise AssertionError("recorder stopped by itself")
            assert time.monotonic() < deadline, f"timed out: {recorder.status_line()}"
            await asyncio.sleep(0.01)
        recorder.request_stop("test done")
        await asyncio.wait_for(task, 15)
        return recorder

    return asyncio.run(main())


def make_config(server: BinanceReplayServer, out_dir: Path, **overrides) -> RecorderConfig:
    settings = dict(
        symbols=("btcusdt",),
        out_dir=out_dir,
        ws_url=server.ws_url,
        rest_url=server.rest_url,
        backoff_base_s=0.02,
        backoff_cap_s=0.2,
        status_interval_s=0.5,
        flush_interval_s=0.1,
    )
    settings.update(overrides)
    return RecorderConfig(**settings)


def is_message(line: Line) -> bool:
    return not line.stream.startswith("rlx.") and not line.stream.endswith("@depthSnapshot")


def messages(lines: list[Line]) -> list[Line]:
    return [line for line in lines if is_message(line)]


def assert_missing_runs_are_marked(lines: list[Line], capture: ReplayCapture, reasons: set[str]):
    """Output messages are the frames in order, and each run of missing frames sits exactly
    inside a gap marker written right after the message before the run."""
    texts = [data_text(f) for f in capture.frames]
    index = {t: i for i, t in enumerate(texts)}
    assert len(index) == len(texts), "the test needs distinct frames"
    expected_next = 0
    previous: Line | None = None
    pending_gaps: list[Line] = []
    for line in lines:
        if line.stream == "rlx.gap":
            pending_gaps.append(line)
            continue
        if not is_message(line):
            continue
        i = index[line.data]
        assert i >= expected_next, "a frame is out of order or duplicated"
        if i > expected_next:
            assert previous is not None and pending_gaps, (
                f"frames {expected_next}..{i - 1} lost silently"
            )
            gap = pending_gaps[-1].obj["data"]
            assert gap["reason"] in reasons
            assert gap["start_ns"] == previous.capture_ns and gap["end_ns"] == line.capture_ns
        pending_gaps = []
        expected_next, previous = i + 1, line
    if expected_next < len(texts):  # trailing frames missing: closed by the stop
        assert pending_gaps and pending_gaps[-1].obj["data"]["start_ns"] == previous.capture_ns


# -- unit tests ---------------------------------------------------------------------------------


def test_split_frame_returns_the_exact_data_text(spot):
    for frame in spot.frames[:300]:
        assert split_frame(frame.text) == (stream_of(frame), data_text(frame))
    # other layouts are located with the json decoder, not rebuilt
    assert split_frame(' { "data" : {"p": "1.10", "q":1e3} ,\n"stream":"s@t" } ') == (
        "s@t",
        '{"p": "1.10", "q":1e3}',
    )
    assert split_frame('{"stream":"a","data":{},"extra":[1]}') == ("a", "{}")
    for text, reason in [
        ("not json", "not_json"),
        ('{"stream":"a"}', "no_stream_or_data"),
        ('{"stream":"a","data":[1]}', "no_stream_or_data"),
        ('{"result":null,"id":1}', "no_stream_or_data"),
        ('{"stream":"a","data":{},"data":{}}', "duplicate_key"),
        ('{"stream":"a","data":{"x":\n1}}', "multiline"),
    ]:
        with pytest.raises(MalformedFrame) as caught:
            split_frame(text)
        assert caught.value.reason == reason


def test_combined_stream_url_and_config_defaults(tmp_path):
    config = RecorderConfig(symbols=("BTCUSDT", "ethusdt"), out_dir=tmp_path)
    assert config.stream_url == (
        "wss://stream.binance.com:9443/stream?streams=btcusdt@trade/btcusdt@aggTrade/"
        "btcusdt@depth@100ms/btcusdt@bookTicker/ethusdt@trade/ethusdt@aggTrade/"
        "ethusdt@depth@100ms/ethusdt@bookTicker"
    )
    assert config.endpoints.rest_url == "https://api.binance.com/api/v3/depth"
    assert config.endpoints.snapshot_limit == 5000
    usdm_config = RecorderConfig(symbols=("btcusdt",), out_dir=tmp_path, market="usdm")
    assert usdm_config.stream_url.startswith("wss://fstream.binance.com/stream?streams=")
    assert usdm_config.endpoints.rest_url == "https://fapi.binance.com/fapi/v1/depth"
    assert usdm_config.endpoints.snapshot_limit == 1000
    assert combined_stream_url("ws://h/stream?x=1", ["a"], ["trade"]) == (
        "ws://h/stream?x=1&streams=a@trade"
    )
    with pytest.raises(ValueError):
        RecorderConfig(symbols=("btc/usdt",), out_dir=tmp_path)
    with pytest.raises(ValueError):
        RecorderConfig(symbols=("btcusdt",), out_dir=tmp_path, market="coinm")


# -- against the replay server ------------------------------------------------------------------


def test_every_message_is_kept_byte_exact_and_in_order(spot, tmp_path):
    with BinanceReplayServer(spot) as server:
        recorder = record(
            make_config(server, tmp_path),
            lambda r: r.stats.messages == len(spot.frames) and r.stats.snapshots == 1,
        )
    assert server.ws_paths == [SPOT_PATH]
    assert server.rest_queries == [{"symbol": "BTCUSDT", "limit": "5000"}]
    lines = read_lines(tmp_path)
    got = messages(lines)
    assert len(got) == len(spot.frames)
    for line, frame in zip(got, spot.frames, strict=True):
        assert line.stream == stream_of(frame)
        assert line.data == data_text(frame)
        assert (
            line.text
            == f'{{"capture_ns":{line.capture_ns},"stream":"{line.stream}","data":{line.data}}}'
        )
    assert all(a.capture_ns <= b.capture_ns for a, b in zip(got, got[1:], strict=False))
    snapshots = [line for line in lines if line.stream == "btcusdt@depthSnapshot"]
    assert [s.data for s in snapshots] == [spot.snapshot]
    first_depth = next(i for i, line in enumerate(lines) if "@depth@" in line.stream)
    assert lines.index(snapshots[0]) > first_depth  # fetched after the first diff arrived
    assert recorder.stats.gaps == recorder.stats.malformed == recorder.stats.dropped == 0
    # the project's capture reader takes the files as they are
    stats = CaptureStats()
    records = [r for path in sorted(tmp_path.glob("*.jsonl.gz")) for r in iter_capture(path, stats)]
    assert len(records) == len(spot.frames) + 1 and stats.gap_markers == stats.malformed == 0


def test_a_dropped_connection_is_marked_resnapshotted_and_nothing_else_is_lost(spot, tmp_path):
    drops = [Drop(after=600, skip=150, mode="abort"), Drop(after=1300, skip=100, mode="close")]
    with BinanceReplayServer(spot, drops=drops) as server:
        sent = len(spot.frames) - 250
        recorder = record(
            make_config(server, tmp_path),
            lambda r: r.stats.messages == sent and r.stats.snapshots == 3,
        )
    expected = [*range(0, 600), *range(750, 1300), *range(1400, 2000)]
    assert server.sent == expected
    assert server.rest_calls == 3 and len(server.ws_paths) == 3
    assert recorder.stats.reconnects == 2 and recorder.stats.gaps == 2

    lines = read_lines(tmp_path)
    got = messages(lines)
    assert [line.data for line in got] == [data_text(spot.frames[i]) for i in expected]
    gaps = [line for line in lines if line.stream == "rlx.gap"]
    assert [g.obj["data"]["reason"] for g in gaps] == ["disconnect", "server_close"]
    for gap, (before, after) in zip(gaps, [(599, 750), (1299, 1400)], strict=True):
        data = gap.obj["data"]
        last = got[expected.index(before)]
        first = got[expected.index(after)]
        assert (data["start_ns"], data["end_ns"]) == (last.capture_ns, first.capture_ns)
        assert gap.capture_ns == data["end_ns"]
        position = lines.index(gap)
        assert lines[position + 1] is first  # the marker sits right before the first message after
        # no message recorded inside the interval: it covers exactly the frames never received
        assert not [m for m in got if data["start_ns"] < m.capture_ns < data["end_ns"]]
        assert list(data) == ["start_ns", "end_ns", "reason", "detail"]
    assert "1001" in gaps[1].obj["data"]["detail"]
    snapshot_positions = [
        i for i, line in enumerate(lines) if line.stream == "btcusdt@depthSnapshot"
    ]
    assert len(snapshot_positions) == 3
    assert snapshot_positions[1] > lines.index(gaps[0]) and snapshot_positions[2] > lines.index(
        gaps[1]
    )
    assert_missing_runs_are_marked(lines, spot, {"disconnect", "server_close"})


def test_malformed_frames_are_kept_raw_and_flagged(spot, tmp_path):
    frames = ReplayCapture(spot.frames[:200], spot.snapshot)
    inject = {
        10: "this is not json",
        20: '{"stream":"btcusdt@trade"}',
        30: '{"result":null,"id":1}',
        40: b"\xff\xfe\x00binary",
        50: '{ "stream" : "btcusdt@trade" ,\n "data" : {"e":"trade","t":1} }',
    }
    with BinanceReplayServer(frames, inject=inject) as server:
        recorder = record(
            make_config(server, tmp_path),
            lambda r: r.stats.messages == 205 and r.stats.snapshots == 1,
        )
    assert recorder.stats.malformed == 4
    lines = [line for line in read_lines(tmp_path) if "Snapshot" not in line.stream]
    assert len(lines) == 205
    flagged = [(i, line.obj) for i, line in enumerate(lines) if line.stream == "rlx.malformed"]
    assert [i for i, _ in flagged] == [10, 21, 32, 43]  # each just before the frame it preceded
    assert [obj["raw"] for _, obj in flagged[:3]] == [inject[10], inject[20], inject[30]]
    assert base64.b64decode(flagged[3][1]["raw"]) == inject[40]
    assert flagged[3][1]["raw_encoding"] == "base64"
    assert [obj["reason"] for _, obj in flagged] == [
        "not_json",
        "no_stream_or_data",
        "no_stream_or_data",
        "binary_not_utf8",
    ]
    for _, obj in flagged:
        assert (
            list(obj)[:4] == ["capture_ns", "stream", "malformed", "raw"]
            and obj["malformed"] is True
        )
    odd = lines[54]  # valid frame in an unusual layout: data kept as sent
    assert (odd.stream, odd.data) == ("btcusdt@trade", '{"e":"trade","t":1}')
    assert [line.data for line in lines if line.stream != "rlx.malformed"][:10] == [
        data_text(f) for f in frames.frames[:10]
    ]


def test_rotation_puts_every_message_in_exactly_one_file(spot, tmp_path):
    with BinanceReplayServer(spot, speed=6.0) as server:
        record(
            make_config(server, tmp_path, rotate_seconds=1),
            lambda r: r.stats.messages == len(spot.frames) and r.stats.snapshots == 1,
        )
    files = sorted(tmp_path.glob("*.jsonl.gz"))
    assert len(files) >= 3  # the replay lasts ~3.1 s
    seen = []
    for path in files:
        lines = file_lines(path)
        periods = {line.capture_ns // 10**9 for line in lines}
        assert len(periods) == 1  # one period per file...
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(periods.pop()))
        assert path.name == f"spot_btcusdt_{stamp}.jsonl.gz"  # ...named after it
        seen += messages(lines)
    assert [line.data for line in seen] == [data_text(f) for f in spot.frames]


class SlowWriter(RotatingGzipWriter):
    def write(self, capture_ns: int, line: bytes) -> None:
        time.sleep(0.002)
        super().write(capture_ns, line)


def test_queue_overflow_under_a_slow_disk_is_marked_never_silent(spot, tmp_path):
    # ~860 messages/s for ~2.3 s against a disk taking at most 500 lines/s and a ~40 kB queue
    config_kwargs = dict(
        streams=("trade", "bookTicker"), queue_max_bytes=40_000, backpressure_s=0.05
    )
    with BinanceReplayServer(spot, speed=8.0) as server:
        config = make_config(server, tmp_path, **config_kwargs)
        sink = SlowWriter(tmp_path, "spot", ["btcusdt"], 3600)
        recorder = record(config, lambda r: r.stats.messages == len(spot.frames), sink=sink)
    lines = read_lines(tmp_path)
    got = messages(lines)
    overflow = [line.obj["data"] for line in lines if line.stream == "rlx.gap"]
    assert {g["reason"] for g in overflow} == {"queue_overflow"}
    assert len(overflow) >= 2  # it dropped, recovered once the queue drained to half, dropped again
    dropped = len(spot.frames) - len(got)
    assert dropped > 0 and sum(g["dropped"] for g in overflow) == dropped == recorder.stats.dropped
    assert_missing_runs_are_marked(lines, spot, {"queue_overflow"})


def test_snapshot_retries_non_200_and_uses_the_usdm_depth_limit(usdm, tmp_path):
    with BinanceReplayServer(usdm, rest_failures=[503, 429]) as server:
        recorder = record(
            make_config(server, tmp_path, market="usdm"),
            lambda r: r.stats.messages == len(usdm.frames) and r.stats.snapshots == 1,
        )
    assert server.rest_queries == [{"symbol": "BTCUSDT", "limit": "1000"}] * 3
    assert recorder.stats.snapshot_failures == 2
    lines = read_lines(tmp_path)
    assert [line.data for line in lines if line.stream == "btcusdt@depthSnapshot"] == [
        usdm.snapshot
    ]
    assert [line.data for line in messages(lines)] == [data_text(f) for f in usdm.frames]
    assert all(line.stream != "rlx.gap" for line in lines)


def test_connections_are_renewed_before_their_maximum_age(spot, tmp_path):
    frames = ReplayCapture(spot.frames[:1000], spot.snapshot)
    with BinanceReplayServer(frames, speed=8.0) as server:
        recorder = record(
            make_config(server, tmp_path, max_connection_age_s=0.5),
            lambda r: server.all_sent.is_set() and r.stats.reconnects >= 2,
        )
    lines = read_lines(tmp_path)
    gaps = [line.obj["data"] for line in lines if line.stream == "rlx.gap"]
    assert recorder.stats.gaps == len(gaps) >= 2
    assert {g["reason"] for g in gaps} == {"max_connection_age"}
    assert 2 <= server.rest_calls <= recorder.stats.connections  # one per connection, at most
    assert_missing_runs_are_marked(lines, frames, {"max_connection_age"})


def test_stopping_while_disconnected_closes_the_gap_at_the_stop(spot, tmp_path):
    frames = ReplayCapture(spot.frames[:400], spot.snapshot)
    with BinanceReplayServer(frames, drops=[Drop(after=300, skip=0)]) as server:
        recorder = record(
            make_config(server, tmp_path, backoff_base_s=30.0, backoff_cap_s=60.0),
            lambda r: r.stats.messages == 300 and r.status_line().endswith("| disconnected"),
        )
    lines = read_lines(tmp_path)
    assert len(messages(lines)) == 300 and recorder.stats.connections == 1
    gap = lines[-1].obj["data"]
    assert lines[-1].stream == "rlx.gap" and gap["reason"] == "disconnect"
    assert gap["start_ns"] == messages(lines)[-1].capture_ns < gap["end_ns"]
    assert gap["detail"].endswith("recorder stopped before the stream resumed")


@pytest.mark.parametrize("reset_s", [0.0, 1e9])
def test_the_backoff_starts_over_after_a_connection_lived_backoff_reset_s(
    spot, tmp_path, caplog, reset_s
):
    frames = ReplayCapture(spot.frames[:900], spot.snapshot)
    drops = [Drop(after=300), Drop(after=600)]
    caplog.set_level(logging.INFO, logger="rlx_assets.capture")
    with BinanceReplayServer(frames, drops=drops) as server:
        record(
            make_config(server, tmp_path, backoff_base_s=0.02, backoff_cap_s=10.0,
                        backoff_reset_s=reset_s),
            lambda r: r.stats.messages == len(frames.frames) and r.stats.reconnects == 2,
        )  # fmt: skip
    delays = [r.fields["retry_in_s"] for r in caplog.records if r.event == "disconnected"]
    assert len(delays) == 2 and 0.01 <= delays[0] <= 0.02
    if reset_s == 0.0:  # every connection lived long enough: each drop waits as the first
        assert 0.01 <= delays[1] <= 0.02
    else:  # the count went on across the connection: the second drop waits twice as long
        assert 0.02 <= delays[1] <= 0.04


def test_refused_connections_are_retried_without_inventing_gaps(tmp_path):
    with socket.socket() as probe:  # a loopback port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = RecorderConfig(
        symbols=("btcusdt",),
        out_dir=tmp_path,
        ws_url=f"ws://127.0.0.1:{port}/stream",
        rest_url=f"http://127.0.0.1:{port}/api/v3/depth",
        backoff_base_s=0.01,
        backoff_cap_s=0.05,
    )
    recorder = record(config, lambda r: r.stats.connect_failures >= 4)
    assert recorder.stats.connections == 0 and recorder.stats.gaps == 0
    assert list(tmp_path.iterdir()) == []  # nothing received, no file


class FailingDisk(RotatingGzipWriter):
    def write(self, capture_ns: int, line: bytes) -> None:
        if len(self.files_written) == 0 and self._lines >= 100:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().write(capture_ns, line)


def test_a_failing_disk_stops_the_recorder_and_leaves_the_partial(spot, tmp_path):
    with BinanceReplayServer(spot) as server:
        config = make_config(server, tmp_path)

        async def main() -> Recorder:
            recorder = Recorder(config, sink=FailingDisk(tmp_path, "spot", ["btcusdt"], 3600))
            with pytest.raises(CaptureWriteError, match="No space left"):
                await asyncio.wait_for(recorder.run(), 15)
            return recorder

        asyncio.run(main())
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].endswith(".jsonl.gz.partial")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "log_format"),
    [(signal.SIGTERM, "text"), (signal.SIGINT, "json")],
    ids=["SIGTERM-text", "SIGINT-json"],
)
def test_a_signal_finishes_the_file_and_exits_0(spot, tmp_path, sig, log_format):
    out, log = tmp_path / "out", tmp_path / "events.jsonl"
    with BinanceReplayServer(spot, speed=1.0) as server:  # ~18 s of data: stopped mid-stream
        command = [
            sys.executable, "-m", "rlx_assets.capture.commands",
            "--symbols", "btcusdt", "--out", str(out),
            "--ws-url", server.ws_url, "--rest-url", server.rest_url,
            "--status-interval", "0.2", "--log-json", str(log), "--log-format", log_format,
        ]  # fmt: skip
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ)
        )
        try:
            deadline = time.monotonic() + 20
            while not (
                list(out.glob("*.partial")) and log.exists() and '"snapshot"' in log.read_text()
            ):
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the recorder never started writing"
                time.sleep(0.05)
            time.sleep(0.5)
            process.send_signal(sig)
            _, stderr = process.communicate(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, stderr.decode()
    files = sorted(out.glob("*.jsonl.gz"))
    assert files and not list(out.glob("*.partial"))  # one file, two if an hour boundary passed
    for path in files:
        assert verify_sidecar(path)
        if shutil.which("sha256sum"):
            subprocess.run(
                ["sha256sum", "-c", f"{path.name}.sha256"], cwd=out, check=True, capture_output=True
            )
    got = messages(read_lines(out))
    assert 0 < len(got) <= len(server.sent) < len(spot.frames)
    assert [line.data for line in got] == [data_text(f) for f in spot.frames[: len(got)]]
    text = stderr.decode()
    assert "msg/s [btcusdt@" in text and f"received {sig.name}" in text
    if log_format == "json":  # stderr carries the same JSON events as the log file
        assert [json.loads(line)["event"] for line in text.splitlines()][-1] == "stopped"
    events = [json.loads(line) for line in log.read_text().splitlines()]
    names = {e["event"] for e in events}
    assert {
        "started",
        "connected",
        "snapshot",
        "status",
        "stopping",
        "file_finalized",
        "stopped",
    } <= names
    status = next(e for e in events if e["event"] == "status")
    assert {"rates", "files_written", "gaps", "reconnects", "messages"} <= set(status)


@pytest.mark.slow
def test_a_killed_recorder_leaves_finished_files_intact_and_one_partial(spot, tmp_path):
    out = tmp_path / "out"
    with BinanceReplayServer(spot, speed=1.0) as server:
        command = [
            sys.executable, "-m", "rlx_assets.capture.commands",
            "--symbols", "btcusdt", "--out", str(out), "--rotate-seconds", "1",
            "--ws-url", server.ws_url, "--rest-url", server.rest_url,
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while len(list(out.glob("*.jsonl.gz"))) < 2:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
            process.kill()
            process.wait(10)
        finally:
            if process.poll() is None:
                process.kill()
    partials = list(out.glob("*.jsonl.gz.partial"))
    assert len(partials) <= 1
    finished = sorted(out.glob("*.jsonl.gz"))
    assert all(verify_sidecar(path) for path in finished)
    texts = [line.data for path in finished for line in file_lines(path)]
    if partials:  # readable up to the last flush; a torn last line at most
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        tail = inflate.decompress(partials[0].read_bytes()).decode().split("\n")[:-1]
        texts += [parse_line(raw).data for raw in tail]
    texts = [t for t in texts if not t.startswith('{"lastUpdateId"')]
    assert texts == [data_text(f) for f in spot.frames[: len(texts)]]
