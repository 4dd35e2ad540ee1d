"""Rotating gzip capture files: naming, rotation, sha256 sidecars, crash leftovers."""

from __future__ import annotations

import datetime as dt
import gzip
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from rlx_assets.capture.files import (
    RotatingGzipWriter,
    capture_file_stem,
    partial_path,
    sidecar_path,
    symbols_label,
    verify_sidecar,
)

HOUR_NS = 3600 * 10**9
# 2024-08-08 23:00:00 UTC, the hour of the sample captures
T23 = int(dt.datetime(2024, 8, 8, 23, tzinfo=dt.UTC).timestamp()) * 10**9


def _line(ns: int, n: int) -> bytes:
    return f'{{"capture_ns":{ns},"stream":"btcusdt@trade","data":{{"t":{n}}}}}\n'.encode()


def test_names_say_market_symbols_and_period():
    assert capture_file_stem("spot", ["ethusdt", "BTCUSDT"], T23, 3600) == (
        "spot_btcusdt-ethusdt_20240808T23"
    )
    assert capture_file_stem("usdm", ["btcusdt"], T23 + 5 * 60 * 10**9, 300) == (
        "usdm_btcusdt_20240808T2305"
    )
    assert capture_file_stem("spot", ["btcusdt"], T23 + 7 * 10**9, 2) == (
        "spot_btcusdt_20240808T230007"
    )
    many = [f"coin{i}usdt" for i in range(20)]
    label = symbols_label(many)
    assert label.startswith("20symbols-") and len(label) == len("20symbols-") + 8
    assert symbols_label(reversed(many)) == label
    with pytest.raises(ValueError):
        symbols_label([" "])


def test_rotation_finishes_each_period_with_a_verified_sidecar(tmp_path):
    finished: list[tuple[Path, str, int]] = []
    writer = RotatingGzipWriter(
        tmp_path, "spot", ["btcusdt"], 3600, on_finalized=lambda *a: finished.append(a)
    )
    stamps = [T23 + 1, T23 + HOUR_NS - 1, T23 + HOUR_NS, T23 + 2 * HOUR_NS + 5]
    for n, ns in enumerate(stamps):
        writer.write(ns, _line(ns, n))
    assert [p.name for p in writer.files_written] == [
        "spot_btcusdt_20240808T23.jsonl.gz",
        "spot_btcusdt_20240809T00.jsonl.gz",
    ]
    assert writer.current_partial == tmp_path / "spot_btcusdt_20240809T01.jsonl.gz.partial"
    writer.close()

    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "spot_btcusdt_20240808T23.jsonl.gz",
        "spot_btcusdt_20240808T23.jsonl.gz.sha256",
        "spot_btcusdt_20240809T00.jsonl.gz",
        "spot_btcusdt_20240809T00.jsonl.gz.sha256",
        "spot_btcusdt_20240809T01.jsonl.gz",
        "spot_btcusdt_20240809T01.jsonl.gz.sha256",
    ]
    contents = [gzip.decompress(p.read_bytes()) for p in writer.files_written]
    assert contents == [
        _line(stamps[0], 0) + _line(stamps[1], 1),
        _line(stamps[2], 2),
        _line(stamps[3], 3),
    ]
    for path, digest, _ in finished:
        assert verify_sidecar(path)
        assert sidecar_path(path).read_text() == f"{digest}  {path.name}\n"
    assert [f[2] for f in finished] == [2, 1, 1]
    if shutil.which("sha256sum"):
        for path in writer.files_written:
            subprocess.run(
                ["sha256sum", "-c", sidecar_path(path).name],
                cwd=tmp_path,
                check=True,
                capture_output=True,
            )


def test_idle_rotation_and_a_clock_stepping_back(tmp_path):
    writer = RotatingGzipWriter(tmp_path, "spot", ["btcusdt"], 3600)
    writer.write(T23 + 10, _line(T23 + 10, 0))
    writer.rotate_if_due(T23 + HOUR_NS - 1)
    assert writer.files_written == []
    writer.write(T23 + 5, _line(T23 + 5, 1))  # earlier stamp: stays in the open file
    writer.rotate_if_due(T23 + HOUR_NS + 10**9)  # within the 2 s grace: lines may still come
    writer.write(T23 + HOUR_NS - 1, _line(T23 + HOUR_NS - 1, 2))
    assert writer.files_written == []
    writer.rotate_if_due(T23 + HOUR_NS + 2 * 10**9)  # the hour is over though no line arrived
    assert [p.name for p in writer.files_written] == ["spot_btcusdt_20240808T23.jsonl.gz"]
    assert writer.current_partial is None
    assert gzip.decompress(writer.files_written[0].read_bytes()) == (
        _line(T23 + 10, 0) + _line(T23 + 5, 1) + _line(T23 + HOUR_NS - 1, 2)
    )
    # a line even later than the grace does not reopen the finished hour: it goes to the next
    writer.write(T23 + HOUR_NS - 2, _line(T23 + HOUR_NS - 2, 3))
    writer.close()
    assert [p.name for p in writer.files_written] == [
        "spot_btcusdt_20240808T23.jsonl.gz",
        "spot_btcusdt_20240809T00.jsonl.gz",
    ]
    assert gzip.decompress(writer.files_written[1].read_bytes()) == _line(T23 + HOUR_NS - 2, 3)


def test_a_crash_leaves_one_marked_partial_and_a_restart_never_overwrites(tmp_path):
    writer = RotatingGzipWriter(tmp_path, "spot", ["btcusdt"], 3600)
    writer.write(T23, _line(T23, 0))
    writer.write(T23 + HOUR_NS, _line(T23 + HOUR_NS, 1))
    writer.write(T23 + HOUR_NS + 1, _line(T23 + HOUR_NS + 1, 2))
    writer.flush()
    # "crash": the process dies here, nothing else runs
    finished = tmp_path / "spot_btcusdt_20240808T23.jsonl.gz"
    partial = tmp_path / "spot_btcusdt_20240809T00.jsonl.gz.partial"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [finished.name, sidecar_path(finished).name, partial.name]
    )
    assert verify_sidecar(finished)
    # the partial file is readable up to the last flush, just without a gzip trailer
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert inflate.decompress(partial.read_bytes()) == (
        _line(T23 + HOUR_NS, 1) + _line(T23 + HOUR_NS + 1, 2)
    )
    assert not inflate.eof

    restarted = RotatingGzipWriter(tmp_path, "spot", ["btcusdt"], 3600)
    restarted.write(T23 + HOUR_NS + 2, _line(T23 + HOUR_NS + 2, 3))
    restarted.close()
    again = tmp_path / "spot_btcusdt_20240809T00.1.jsonl.gz"
    assert restarted.files_written == [again] and verify_sidecar(again)
    assert partial.exists()  # left for a human: it is not ours to finish


def test_abort_keeps_the_partial_readable(tmp_path):
    writer = RotatingGzipWriter(tmp_path, "usdm", ["btcusdt"], 60)
    writer.write(T23, _line(T23, 0))
    current = writer.current_partial
    writer.abort()
    assert current is not None and current == partial_path(tmp_path / f"{current.stem}")
    assert [p.name for p in tmp_path.iterdir()] == ["usdm_btcusdt_20240808T2300.jsonl.gz.partial"]
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert inflate.decompress(current.read_bytes()) == _line(T23, 0)
    assert not verify_sidecar(tmp_path / "usdm_btcusdt_20240808T2300.jsonl.gz")
