"""Discrepancies located on known damage: copies of the real sample lake damaged in one known
way each; the damage appears in ``discrepancies.parquet`` at the right minute with the right
kind, and nothing else does. The golden side is the undamaged sample."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import polars as pl
import pyarrow as pa
import pytest

from rlx_assets.fidelity import discrepancies
from rlx_assets.fidelity.discrepancies import FILE_NAME, KINDS
from rlx_assets.fidelity.markdown import JSON_NAME, MARKDOWN_NAME
from rlx_assets.fidelity.report import build_fidelity_report
from rlx_assets.fidelity.thresholds import FidelityThresholds
from rlx_assets.stats import pieces, quantiles
from rlx_assets.stats.agreement import base as agreement_base
from rlx_assets.stats.agreement import book
from rlx_assets.stats.plots import PNG_SIGNATURE
from rlx_assets_tests.damage import (
    drop_rows,
    in_minute,
    keep_metadata,
    rewrite_parquet,
    set_value,
    shift_times,
)
from rlx_assets_tests.stats.sample_partitions import (
    GOLDEN_TABLES,
    SPOT_0808,
    VENDOR_TABLES,
    reconstruct,
    reconstructions,
)

FAST = FidelityThresholds(tail_bootstrap_resamples=10)
GOLDEN_WITH_BOOK = (*GOLDEN_TABLES, "book")


def minute(hh: int, mm: int) -> int:
    return int(dt.datetime(2024, 8, 8, hh, mm, tzinfo=dt.UTC).timestamp()) * 10**9


def label(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%Y-%m-%dT%H:%MZ")


@pytest.fixture(scope="module")
def recon(sample_lake, tmp_path_factory):
    return reconstructions(sample_lake, tmp_path_factory)


def damaged_copy(sample_lake, tmp_path, table: str, change) -> dict:
    """The partition's vendor files with `table` replaced by a damaged copy (same metadata)."""
    files = SPOT_0808.files(sample_lake, VENDOR_TABLES)
    target = tmp_path / f"{table}.parquet"
    rewrite_parquet(files[table], target, change)
    files[table] = keep_metadata(files[table], target)
    return files


def report(sample_lake, recon_dir, vendor, out_dir, **kwargs) -> tuple[dict, pl.DataFrame]:
    data = build_fidelity_report(
        market=SPOT_0808.market, day=SPOT_0808.day, reconstruction_dir=recon_dir,
        vendor_files=vendor, golden_files=SPOT_0808.files(sample_lake, GOLDEN_WITH_BOOK),
        golden_captures=None, out_dir=out_dir, thresholds=FAST, **kwargs,
    )  # fmt: skip
    return data, pl.read_parquet(out_dir / FILE_NAME)


def lake_vs_golden(found: pl.DataFrame) -> pl.DataFrame:
    return found.filter(pl.col("comparison") == "lake_vs_golden")


def minutes_and_kinds(found: pl.DataFrame) -> set[tuple[str, str]]:
    return {
        (label(t), k) for t, k in found.select(pl.col("time").dt.epoch("ns"), "kind").iter_rows()
    }


def test_the_undamaged_sample_has_no_discrepancy(sample_lake, recon, tmp_path):
    data, found = report(sample_lake, recon[SPOT_0808.key],
                         SPOT_0808.files(sample_lake, VENDOR_TABLES), tmp_path)  # fmt: skip
    assert found.height == 0
    assert found.schema["time"] == pl.Datetime("ns", "UTC")
    assert set(found.columns) >= {"time", "kind", "id", "lake", "golden"}
    assert data["discrepancies"]["rows"] == 0 and data["discrepancies_by_minute"] == {}
    assert data["vendor_book_discrepancies"]["rows"] == 0
    assert data["vendor_book_discrepancies_by_minute"] == {}
    plot = tmp_path / data["plots"]["discrepancies_per_minute"]
    assert plot.read_bytes().startswith(PNG_SIGNATURE)
    assert data["reconstruction_certified"] is True


def test_ten_dropped_trades_are_ten_missing_trades_at_their_minute(sample_lake, recon, tmp_path):
    trades = pl.read_parquet(SPOT_0808.file(sample_lake, "trades"))
    dropped = trades.filter(in_minute(minute(23, 55))).slice(100, 10)["id"].to_list()
    vendor = damaged_copy(sample_lake, tmp_path, "trades", drop_rows(pl.col("id").is_in(dropped)))
    data, found = report(sample_lake, recon[SPOT_0808.key], vendor, tmp_path / "report")
    assert found["id"].to_list() == dropped
    assert minutes_and_kinds(found) == {("2024-08-08T23:55Z", "trade_missing")}
    assert found["lake"].null_count() == 10 and found["golden"].str.contains("price=").all()
    assert data["discrepancies_by_minute"] == {"2024-08-08T23:55Z": {"trade_missing": 10}}
    assert data["trades"]["missing"] == 10


def test_one_changed_price_is_one_mismatched_trade(sample_lake, recon, tmp_path):
    trades = pl.read_parquet(SPOT_0808.file(sample_lake, "trades"))
    row = trades.with_row_index().filter(in_minute(minute(23, 58))).row(500, named=True)
    vendor = damaged_copy(sample_lake, tmp_path, "trades", set_value("price", row["index"], 1.5))
    data, found = report(sample_lake, recon[SPOT_0808.key], vendor, tmp_path / "report")
    assert found.select("kind", "id", "lake", "golden").rows() == [
        ("trade_mismatch", row["id"], "price=1.5", f"price={row['price']}")
    ]
    assert minutes_and_kinds(found) == {("2024-08-08T23:58Z", "trade_mismatch")}


def test_a_minute_of_trades_two_seconds_late_is_located_at_that_minute(
    sample_lake, recon, tmp_path
):
    trades = pl.read_parquet(SPOT_0808.file(sample_lake, "trades"))
    shifted = trades.filter(in_minute(minute(23, 57)))
    vendor = damaged_copy(
        sample_lake, tmp_path, "trades", shift_times(in_minute(minute(23, 57)), 2.0)
    )
    data, found = report(sample_lake, recon[SPOT_0808.key], vendor, tmp_path / "report")
    assert sorted(found["id"].to_list()) == sorted(shifted["id"].to_list())
    assert minutes_and_kinds(found) == {("2024-08-08T23:57Z", "trade_mismatch")}
    assert found["lake"].str.starts_with("time=2024-08-08T23:5").all()
    assert data["discrepancies_by_minute"] == {
        "2024-08-08T23:57Z": {"trade_mismatch": shifted.height}
    }


def test_a_dropped_minute_of_book_deltas_breaks_the_book_and_is_located(sample_lake, tmp_path):
    """Every book_delta_v2 row of 23:56 dropped: lake vs golden shows one sequence gap and one
    time gap at 23:56 and nothing else; the book rebuilt from the damaged deltas disagrees
    with the vendor's book from then on, the blocking checks fail and name that minute, and
    the report is written even though the upstream gates failed on this day."""
    vendor = damaged_copy(
        sample_lake, tmp_path, "book_delta_v2", drop_rows(in_minute(minute(23, 56)))
    )
    recon_dir = reconstruct(
        SPOT_0808, sample_lake, tmp_path / "recon", book_delta_v2=vendor["book_delta_v2"]
    )
    gates = {"passed": False, "summary": "temporal gate: 60 s without book_delta_v2 rows"}
    out = tmp_path / "report"
    data, found = report(sample_lake, recon_dir, vendor, out, upstream_gates=gates)
    ours = lake_vs_golden(found)
    assert minutes_and_kinds(ours) == {
        ("2024-08-08T23:56Z", "sequence_gap"), ("2024-08-08T23:56Z", "time_gap"),
    }  # fmt: skip
    assert ours.height == 2
    deltas = pl.read_parquet(SPOT_0808.file(sample_lake, "book_delta_v2"))
    lost = deltas.filter(in_minute(minute(23, 56)))["sequence_number"].unique().sort()
    gap = ours.filter(pl.col("kind") == "sequence_gap").row(0, named=True)
    assert gap["id"] == lost[0] and gap["lake"] == "absent"
    assert gap["golden"] == f"u {lost[0]}..{lost[-1]}: {lost.len()} updates"

    book = found.filter(pl.col("comparison") == "reconstruction_vs_vendor_book")
    assert book.height > 100 and set(book["kind"]) == {"book_mismatch"}
    first_bad = label(book["time"].dt.epoch("ns").min())
    assert first_bad >= "2024-08-08T23:56Z"
    assert data["checks"]["book_agreement"]["passed"] is False
    assert data["blocking_passed"] is False and data["reconstruction_certified"] is False
    assert data["book"]["first_bad_minute"] == first_bad
    assert data["checks"]["book_agreement"]["first_bad_minute"] == first_bad
    assert data["discrepancies"]["worst_minutes"][0]["minute"] == "2024-08-08T23:56Z"
    # the diagnosis is complete although the gates failed upstream
    assert json.loads((out / JSON_NAME).read_text())["upstream_gates"] == gates
    markdown = (out / MARKDOWN_NAME).read_text()
    assert "Reconstruction certified: **no**" in markdown
    assert "| 2024-08-08T23:56Z | 2 | sequence_gap 1, time_gap 1 |" in markdown
    assert f"first bad minute {first_bad}" in markdown
    assert (out / data["plots"]["vendor_book_discrepancies_per_minute"]).is_file()


def test_without_a_reconstruction_the_lake_vs_golden_diagnosis_is_still_written(
    sample_lake, tmp_path
):
    """An upstream gate failed, so there is no reconstruction: the report still locates what
    the lake lacks, and says what it could not compute."""
    vendor = damaged_copy(
        sample_lake, tmp_path, "book_delta_v2", drop_rows(in_minute(minute(23, 56)))
    )
    missing = tmp_path / "no-reconstruction"
    data, found = report(sample_lake, missing, vendor, tmp_path / "report",
                         upstream_gates={"passed": False, "summary": "quarantined"})  # fmt: skip
    assert minutes_and_kinds(found) == {
        ("2024-08-08T23:56Z", "sequence_gap"), ("2024-08-08T23:56Z", "time_gap"),
    }  # fmt: skip
    reasons = {n["metric"] for n in data["not_computed"]}
    assert {"book_agreement", "top_of_book_agreement", "vendor_book_discrepancies"} <= reasons
    assert data["reconstruction_certified"] is False
    assert set(KINDS) >= set(found["kind"])
    shutil.rmtree(tmp_path / "report")


@pytest.mark.parametrize(
    ("table", "size"), [("book_delta_v2", "size"), ("book", "bid_3_size")]
)  # fmt: skip
def test_a_day_compared_window_by_window_finds_what_the_whole_comparison_finds(
    sample_lake, monkeypatch, table, size
):
    """A day's files are compared in windows of sequence numbers (bounded memory), rows only of
    updates whose fingerprints differ: on the real sample with every 97th row's size doubled and
    every 501st row dropped on the golden side, ~240-row windows locate exactly the rows one
    whole-file comparison does, and every damaged update."""
    lake = pl.read_parquet(SPOT_0808.file(sample_lake, table))
    row = pl.int_range(pl.len())
    golden = lake.with_columns(
        pl.when(row % 97 == 0).then(pl.col(size) * 2).otherwise(pl.col(size)).alias(size)
    ).filter(row % 501 != 250)
    compare = {
        "book_delta_v2": lambda a, b: discrepancies.delta_discrepancies(
            a, b, time_gap_bound_s=FidelityThresholds().time_gap_bound_s
        ),
        "book": discrepancies.book_row_discrepancies,
    }[table]
    order = ["time", "kind", "id", "lake", "golden"]
    monkeypatch.setattr(agreement_base, "WINDOW_ROWS", 10**12)
    whole = compare(lake, golden).sort(order)
    monkeypatch.setattr(agreement_base, "WINDOW_ROWS", 240)
    windowed = compare(lake.lazy(), golden.lazy()).sort(order)
    assert whole.height > 30
    assert windowed.equals(whole)
    if table == "book_delta_v2":  # every damaged update, found from the damage itself
        doubled = (row % 97 == 0) & (pl.col(size) != 0)  # a removal (size 0) stays one
        damaged = lake.filter(doubled | (row % 501 == 250))["sequence_number"]
        found = windowed.filter(pl.col("kind") == "book_mismatch")["id"]
        # an update whose only row was dropped is missing altogether: a sequence gap instead
        held = set(golden["sequence_number"].to_list())
        assert set(found.to_list()) == set(damaged.to_list()) & held


def test_a_damaged_day_read_in_small_pieces_and_windows_gives_the_same_report(
    sample_lake, monkeypatch, tmp_path
):
    """A day's files are read in pieces of rows and compared in windows of sequence numbers
    and trade ids, so that memory does not grow with the day; the sample fits in one of each.
    Forced to 20 k-row pieces, ~2 k-row windows, 500-row book chunks and narrowing latency
    quantiles, a damaged day (a minute of book deltas dropped: the book and top of book fail,
    one sequence gap spans several windows; ten trades dropped, one repriced) gives the same
    report, figure for figure, plot for plot, and the same discrepancies."""
    gap = drop_rows(in_minute(minute(23, 56)))
    deltas = damaged_copy(sample_lake, tmp_path, "book_delta_v2", gap)["book_delta_v2"]
    trades = pl.read_parquet(SPOT_0808.file(sample_lake, "trades"))
    dropped = trades.filter(in_minute(minute(23, 55))).slice(100, 10)["id"].implode()
    repriced = trades.filter(in_minute(minute(23, 58)))["id"][500]

    def damage_trades(frame: pl.DataFrame) -> pa.Table:
        price = pl.when(pl.col("id") == repriced).then(1.5).otherwise(pl.col("price"))
        return (
            frame.filter(~pl.col("id").is_in(dropped)).with_columns(price.alias("price")).to_arrow()
        )

    vendor = {
        **damaged_copy(sample_lake, tmp_path, "trades", damage_trades),
        "book_delta_v2": deltas,
    }
    recon_dir = reconstruct(SPOT_0808, sample_lake, tmp_path / "recon", book_delta_v2=deltas)
    whole, whole_found = report(sample_lake, recon_dir, vendor, tmp_path / "whole")
    monkeypatch.setattr(pieces, "PIECE_ROWS", 20_000)
    monkeypatch.setattr(agreement_base, "WINDOW_ROWS", 2_000)
    monkeypatch.setattr(book, "CHUNK_ROWS", 500)
    monkeypatch.setattr(quantiles, "BUCKETS", 8)
    monkeypatch.setattr(quantiles, "MAX_HELD", 1_000)
    small, small_found = report(sample_lake, recon_dir, vendor, tmp_path / "small")

    assert not whole["blocking_passed"]
    assert (whole["trades"]["missing"], whole["trades"]["mismatched"]) == (10, 1)
    lost = pl.read_parquet(SPOT_0808.file(sample_lake, "book_delta_v2")).filter(
        in_minute(minute(23, 56))
    )
    assert lost.height > 2 * 2_000  # the lost rows span windows on the golden side
    gaps = whole_found.filter(pl.col("kind") == "sequence_gap")
    updates = lost["sequence_number"].n_unique()
    assert gaps.height == 1 and gaps["golden"][0].endswith(f": {updates} updates")
    assert small_found.equals(whole_found)
    for data in (whole, small):
        data.pop("generated_at")
    assert small == whole
    for name in whole["plots"].values():
        assert (tmp_path / "small" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
