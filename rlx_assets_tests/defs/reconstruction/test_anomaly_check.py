"""The reconstruction_anomalies gate: passes on the real sample days, fails on damaged input."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from rlx_assets.book.reconstruct import reconstruct_partition
from rlx_assets.book.store import read_summary, reconstruction_dir
from rlx_assets.definitions import defs as project_defs
from rlx_assets.defs.reconstruction.checks import GATED_ANOMALIES, anomalies_check_result
from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets.staging import DataLayout, lake_relative_path
from rlx_assets.validation.profiles import PROFILES
from rlx_assets_tests.conftest import dagster_test_instance
from rlx_assets_tests.damage import rewrite_parquet

SPOT = "BINANCE.BTC-USDT"
DAY8, DAY9 = dt.date(2024, 8, 8), dt.date(2024, 8, 9)
CHAIN = dg.AssetSelection.groups("acquisition", "validation", "reconstruction")
PRODUCTION = PROFILES["production"]


@pytest.fixture
def env(sample_lake, tmp_path):
    lake = Path(shutil.copytree(sample_lake, tmp_path / "lake"))
    resource = RlxEnvironment(
        data_dir=str(tmp_path / "data"), lake_uri=str(lake), gate_profile="sample"
    )
    with dagster_test_instance() as instance:
        yield {"lake": lake, "layout": DataLayout(tmp_path / "data"), "instance": instance,
               "resources": {"rlx": resource}}  # fmt: skip


def run(env, day: dt.date):
    return dg.materialize(
        [*project_defs.assets, *project_defs.asset_checks],
        selection=CHAIN,
        partition_key=f"{day.isoformat()}|{SPOT}",
        instance=env["instance"],
        resources=env["resources"],
        raise_on_error=False,
    )


def gate(result) -> dg.AssetCheckEvaluation:
    return next(
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "reconstruction_anomalies"
    )


def test_the_gate_passes_on_the_real_sample_days_under_both_profiles(env):
    for day in (DAY8, DAY9):
        result = run(env, day)
        assert result.success
        evaluation = gate(result)
        assert evaluation.passed
        meta = evaluation.metadata
        for name, field in GATED_ANOMALIES.items():
            assert meta[f"{name}_threshold"].value == getattr(PROFILES["sample"], field)
        assert meta["sequence_regressions"].value == meta["out_of_range"].value == 0
        assert anomalies_check_result(
            read_summary(env["layout"], SPOT, day), PRODUCTION, "production"
        ).passed
    # the cold day's deltas before its first vendor book row are counted and placed
    summary8 = read_summary(env["layout"], SPOT, DAY8)
    deltas = pl.read_parquet(env["lake"] / lake_relative_path("book_delta_v2", "BINANCE",
                                                              "BTC-USDT", DAY8))  # fmt: skip
    before = deltas.filter(pl.col("sequence_number") <= summary8["seed_sequence"])
    assert summary8["anomalies"]["deltas_before_seed"] == before.height > 0
    assert summary8["anomaly_first"]["deltas_before_seed"]["sequence_number"] == int(
        before["sequence_number"][0]
    )


def test_a_diff_stamped_after_its_successor_fails_both_gates_naming_it(env, tmp_path):
    """The vendor file stays in sequence order, but one diff's exchange time is later than the
    next diff's: in time order it arrives after a newer diff was applied. The raw file's
    temporal gate stops the chain first; and were it let through, reconstruction refuses the
    diff, counts it and its own gate fails naming it."""
    paths = {t: env["lake"] / lake_relative_path(t, "BINANCE", "BTC-USDT", DAY8)
             for t in ("trades", "book_delta_v2", "book")}  # fmt: skip
    frame = pl.read_parquet(paths["book_delta_v2"])
    seq, time = frame["sequence_number"].to_numpy(), frame["timestamp"].to_numpy()
    starts = np.flatnonzero(np.diff(seq) != 0) + 1
    k = starts.size // 2
    start, end, after = int(starts[k]), int(starts[k + 1]), int(starts[k + 2])
    late = int(time[after]) + 1  # 1 ns after the next diff: later than every row stamped then
    damaged = np.zeros(seq.size, bool)
    damaged[start:end] = True
    applied_before = int(seq[(time < late) & ~damaged].max())

    def stamp_late(f: pl.DataFrame):
        index = pl.int_range(pl.len())
        return f.with_columns(
            pl.when((index >= start) & (index < end)).then(pl.lit(late, pl.Int64))
            .otherwise(pl.col("timestamp")).alias("timestamp")
        ).to_arrow()  # fmt: skip

    rewrite_parquet(paths["book_delta_v2"], paths["book_delta_v2"], stamp_late)
    result = run(env, DAY8)
    assert not result.success
    temporal = next(
        e
        for e in result.get_asset_check_evaluations()
        if e.asset_key == dg.AssetKey("raw_book_delta_v2") and e.check_name == "temporal"
    )
    assert not temporal.passed
    assert not reconstruction_dir(env["layout"], SPOT, DAY8).exists()

    out = tmp_path / "out"
    rebuilt = reconstruct_partition(
        paths["trades"], paths["book_delta_v2"], paths["book"], out, None
    )
    summary = {"market": SPOT, "date": DAY8.isoformat(), "anomalies": rebuilt.anomalies,
               "anomaly_first": rebuilt.anomaly_first}  # fmt: skip
    evaluation = anomalies_check_result(summary, PROFILES["sample"], "sample")
    assert not evaluation.passed
    meta = evaluation.metadata
    assert meta["sequence_regressions"].value == end - start
    assert meta["sequence_regressions_threshold"].value == 0
    assert f"sequence {int(seq[start])} (after {applied_before} was applied)" in (
        meta["sequence_regressions_first"].value
    )
    assert "sequence_regressions" in meta["summary"].value


def test_a_crossed_book_after_a_complete_update_fails_in_production(env, tmp_path):
    """A bid moved $500 up (through the asks) crosses the book after its diff."""
    lake = env["lake"]
    paths = {t: lake / lake_relative_path(t, "BINANCE", "BTC-USDT", DAY8)
             for t in ("trades", "book_delta_v2", "book")}  # fmt: skip
    frame = pl.read_parquet(paths["book_delta_v2"])
    row = int(
        frame.with_row_index("i").filter(pl.col("side_is_bid") & (pl.col("size") > 0))["i"][2000]
    )

    def raise_bid(f: pl.DataFrame):
        index = pl.int_range(pl.len())
        return f.with_columns(
            pl.when(index == row).then(pl.col("price") + 500).otherwise(pl.col("price"))
            .alias("price")
        ).to_arrow()  # fmt: skip

    damaged = rewrite_parquet(paths["book_delta_v2"], tmp_path / "deltas.parquet", raise_bid)
    out = tmp_path / "out"
    result = reconstruct_partition(paths["trades"], damaged, paths["book"], out, None)
    summary = {"market": SPOT, "date": DAY8.isoformat(), "anomalies": result.anomalies,
               "anomaly_first": result.anomaly_first}  # fmt: skip
    evaluation = anomalies_check_result(summary, PRODUCTION, "production")
    assert not evaluation.passed
    crossed = evaluation.metadata["crossed_after_event"].value
    assert crossed == result.anomalies["crossed_after_event"] > 0
    assert evaluation.metadata["crossed_after_event_first"].value.endswith(
        f"sequence {int(frame['sequence_number'][row])}"
    )
    assert not reconstruction_dir(env["layout"], SPOT, DAY8).exists()
