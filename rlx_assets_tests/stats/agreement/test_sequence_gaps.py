"""Sequence integrity on the real sample: the lake's decreasing update ids and silences, and
the golden captures' lost diffs."""

from __future__ import annotations

import gzip

import numpy as np
import polars as pl
import pytest

from rlx_assets.capture.golden import analyse_day
from rlx_assets.stats.agreement import golden_sequence_gaps, lake_sequence_gaps
from rlx_assets_tests.stats.sample_partitions import FUTURES_0808


def test_lake_sequence_gaps_on_the_sample_and_when_damaged(sample_lake):
    deltas = pl.read_parquet(FUTURES_0808.file(sample_lake, "book_delta_v2"))
    clean = lake_sequence_gaps(deltas, max_ratio=1e-4, time_gap_bound_s=5, max_time_gap_ratio=1e-3)
    assert clean["passed"] and clean["sequence_decreases"] == 0 and clean["time_gaps"] == 0
    assert clean["continuity_checkable"] is False

    seq = deltas["sequence_number"].to_numpy().copy()
    updates = np.unique(seq)
    middle = updates[updates.size // 2]
    seq[seq == middle] = updates[updates.size // 2 - 5]  # one update carries an old id
    decreased = lake_sequence_gaps(
        deltas.with_columns(pl.Series("sequence_number", seq)),
        max_ratio=1e-4, time_gap_bound_s=5, max_time_gap_ratio=1e-3,
    )  # fmt: skip
    assert decreased["sequence_decreases"] == 1 and not decreased["passed"]
    assert decreased["first_decreases"][0]["came"] == int(updates[updates.size // 2 - 5])

    t = deltas["timestamp"]
    cut = int(t.min()) + 60 * 10**9
    silent = deltas.filter((t < cut) | (t > cut + 20 * 10**9))  # 20 s of deltas lost
    gaps = lake_sequence_gaps(silent, max_ratio=1e-4, time_gap_bound_s=5, max_time_gap_ratio=1e-3)
    assert gaps["time_gaps"] == 1 and 20 <= gaps["time_gap_seconds"] < 21
    assert not gaps["passed"]


def test_golden_sequence_gaps_detect_a_lost_futures_diff(tmp_path):
    """The futures captures' diffs chain by ``pu`` = previous ``u``: losing one breaks it.
    (Only the depth lines are kept, to keep the test fast; the full captures are checked
    by the report tests.)"""
    with gzip.open(FUTURES_0808.capture_paths()[0], "rt") as handle:
        depth = [line for line in handle if "@depth" in line or "lastUpdateId" in line]
    clean_file, damaged_file = tmp_path / "clean.txt", tmp_path / "damaged.txt"  # plain text
    clean_file.write_text("".join(depth))
    lost = len(depth) // 2
    damaged_file.write_text("".join(line for i, line in enumerate(depth) if i != lost))

    def gaps(path):
        day = analyse_day([path], "usdm", "btcusdt", FUTURES_0808.day)
        return golden_sequence_gaps(day, max_ratio=1e-4)

    clean = gaps(clean_file)
    assert clean["passed"] and clean["sequence_gap_ratio"] == 0 and clean["depth_diffs"] > 6000
    result = gaps(damaged_file)
    assert result["gaps_by_source"] == {"depth_sequence": 1}
    assert result["sequence_gap_ratio"] == pytest.approx(1 / (clean["depth_diffs"] - 1))
    assert "pu=" in result["gaps"][0]["detail"] and not result["passed"]
