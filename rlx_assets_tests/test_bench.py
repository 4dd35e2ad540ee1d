"""``rlx bench reconstruct`` end to end on a small tiled day (no timing assertions)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import rlx_assets.lake.sources as sources
from rlx_assets.bench import build_tiled_partition
from rlx_assets.cli import main

KEYS = {"kernel_events_per_s", "end_to_end_events_per_s", "peak_rss_mb", "events"}


def test_bench_reconstruct_prints_one_json_object(sample_lake, tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "ensure_sample_lake", lambda: sample_lake)
    result = CliRunner().invoke(
        main,
        ["bench", "reconstruct", "--events", "200000", "--json", "--profile"]
        + ["--workdir", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report.keys() >= KEYS
    assert report["events"] >= 200_000 and report["tiles"] == 2
    assert report["result_events"] == report["events"]
    for key in KEYS | {"reference_events_per_s", "kernel_vs_reference"}:
        assert report[key] > 0, key
    # the tiles replay the same real day, so the book agrees with the tiled vendor rows as often
    # as on the real day (a cold start: see test_reconstruct)
    assert report["vendor_book_rows_compared"] == report["vendor_book_rows"] - 1
    # and the drifted tiles agree as often as the real day does (the book follows the prices)
    assert (
        report["vendor_book_rows_equal"]
        >= report["tiles"] * report["real_day_vendor_book_rows_equal"]
    )
    assert report["real_day_result_events"] < report["result_events"]
    assert report["real_day_floor_ratio"] > 0 and 0 < report["floor_ratio"] < 1
    # reconstruction reads the same inputs and writes the same stream, and does more: per CPU
    # second it is slower than pyarrow's reading and writing alone
    floor = report["io_floor_events_per_s"]
    assert 0 < report["end_to_end_events_per_cpu_s"] < floor
    read, write = report["io_floor_read_ns_per_event"], report["io_floor_write_ns_per_event"]
    assert read > 0 and write > 0 and floor == pytest.approx(1e9 / (read + write))
    # the rest of the required I/O (the vendor book read, the snapshot files written) makes a
    # slower floor, still faster than reconstruction per CPU second
    more = report["io_vendor_book_read_ns_per_event"] + report["io_snapshots_write_ns_per_event"]
    assert report["io_vendor_book_read_ns_per_event"] > 0
    assert report["io_snapshots_write_ns_per_event"] > 0
    assert report["io_all_events_per_s"] == pytest.approx(1e9 / (read + write + more))
    assert report["floor_ratio"] < report["all_io_ratio"] < 1
    # --profile: the main thread's CPU by function, the book replay among it
    assert 0 < report["main_thread_cpu_seconds"] <= report["end_to_end_cpu_seconds"]
    assert report["main_thread_top"]["replay._replay"] > 0
    assert list(tmp_path.iterdir()) == []  # temporary files removed


def test_tiles_drift_in_price(sample_lake, tmp_path):
    """Each tile's prices are the previous tile's shifted by the drift: the book moves across
    the dense range instead of replaying the same ticks."""
    part = build_tiled_partition(sample_lake, tmp_path, 400_000)
    assert part.tiles >= 3 and part.drift_ticks > 0
    trades = pq.read_table(part.paths["trades"], columns=["price"]).column("price").to_numpy()
    per_tile = trades.size // part.tiles
    tiles = trades.reshape(part.tiles, per_tile)
    steps = np.diff(tiles, axis=0)
    assert np.allclose(steps, part.drift_ticks / 100)  # BTC-USDT spot: 2 price decimals
    book = pq.read_table(part.paths["book"], columns=["bid_0_price"]).column(0).to_numpy()
    assert book[-1] - book[0] > (part.tiles - 2) * part.drift_ticks / 100
