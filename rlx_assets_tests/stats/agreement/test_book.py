"""Book and top-of-book agreement on the real sample partitions (both judged on one
reconstruction): each passes on the sample and fails on a delta shifted by one tick."""

from __future__ import annotations

import json

import polars as pl
import pyarrow.parquet as pq
import pytest

from rlx_assets.stats import pieces
from rlx_assets.stats.agreement import (
    NotComputable,
    book_agreement,
    book_updates,
    read_book_updates,
    top_of_book_agreement,
)
from rlx_assets.stats.agreement import base as agreement_base
from rlx_assets_tests.stats.sample_partitions import (
    PARTITIONS,
    SPOT_0808,
    SPOT_0809,
    reconstruct,
    reconstructions,
    shift_best_bid_removal,
)


@pytest.fixture(scope="module")
def recon(sample_lake, tmp_path_factory):
    return reconstructions(sample_lake, tmp_path_factory)


def _seed_info(recon_dir) -> dict:
    meta = pq.read_schema(recon_dir / "end_book.parquet").metadata
    meta = {k.decode(): v.decode() for k, v in meta.items() if k.startswith(b"rlx.")}
    return {
        "seed_sequence": int(meta["rlx.seed_sequence"]),
        "started_cold": meta["rlx.seeded_from"] != "previous_day",
        "known_bid_floor": float(meta["rlx.known_bid_floor"]),  # cold start on 2024-08-08
        "known_ask_ceiling": float(meta["rlx.known_ask_ceiling"]),
    }


def _book(recon_dir, lake, partition) -> dict:
    return book_agreement(
        pl.scan_parquet(recon_dir / "snapshots_vendor.parquet"),
        pl.scan_parquet(partition.file(lake, "book")),
        min_share=0.999,
        **_seed_info(recon_dir),
    )


def _top(recon_dir, lake, partition) -> dict:
    figures, per_minute = top_of_book_agreement(
        book_updates(pl.scan_parquet(recon_dir / "stream.parquet")),
        pl.read_parquet(partition.file(lake, "level_1")),
        min_share=0.999,
    )
    assert int(per_minute["compared"].sum()) == figures["compared"]
    assert int(per_minute["equal"].sum()) == figures["equal"]
    return figures


@pytest.mark.parametrize("partition", PARTITIONS, ids=lambda p: p.key)
def test_book_and_top_of_book_agree_on_the_sample(partition, recon, sample_lake):
    directory = recon[partition.key]
    book = _book(directory, sample_lake, partition)
    summary = json.loads((directory / "summary.json").read_text())
    assert book["passed"] and book["agreement"] == 1.0
    assert book["first_mismatches"] == []
    # recomputed from the files, the exact figure is the reconstruction's own
    assert book["rows_compared"] == summary["vendor_book_rows_compared"]
    assert book["rows_equal"] == summary["vendor_book_rows_equal"]
    assert book["exact_rows_match_reconstruction"] is True
    assert len(book["level_agreement"]) == 20
    top = _top(directory, sample_lake, partition)
    assert top["passed"] and top["agreement"] >= 0.999
    assert top["compared"] > 3000


def test_cold_start_differences_lie_outside_the_known_depth(recon, sample_lake):
    """Spot 2024-08-08 starts from the vendor's first top-20 row: deeper levels are unknown,
    so many rows differ from the vendor's full-depth book, but only there."""
    book = _book(recon[SPOT_0808.key], sample_lake, SPOT_0808)
    assert book["exact_share"] < 0.9
    assert book["rows_differing_only_outside_known_depth"] == (
        book["rows_compared"] - book["rows_equal"]
    )
    first = book["first_differences_outside_known_depth"][0]
    assert first["vendor"]["price"] != first["ours"]["price"]


def test_a_delta_shifted_by_one_tick_fails_book_and_top_of_book(recon, sample_lake, tmp_path):
    shifted = shift_best_bid_removal(
        SPOT_0808, sample_lake, recon[SPOT_0808.key], tmp_path / "book_delta_v2.parquet"
    )
    damaged = reconstruct(
        SPOT_0808, sample_lake, tmp_path / "recon", book_delta_v2=tmp_path / "book_delta_v2.parquet"
    )
    book = _book(damaged, sample_lake, SPOT_0808)
    assert not book["passed"] and book["agreement"] < 0.99
    first = book["first_mismatches"][0]
    # the best bid that should have been removed is still in our book, not in the vendor's
    assert first["sequence_number"] == shifted["sequence_number"]
    assert (first["side"], first["price"], first["vendor_size"]) == ("bid", shifted["price"], None)
    top = _top(damaged, sample_lake, SPOT_0808)
    assert not top["passed"] and top["agreement"] < 0.99
    stale = [m for m in top["first_mismatches"] if m["ours"]["bid_price"] == shifted["price"]]
    assert stale and stale[0]["sequence_number"] == shifted["sequence_number"]


def test_top_of_book_needs_tickers(recon, sample_lake):
    updates = book_updates(pl.scan_parquet(recon[SPOT_0809.key] / "stream.parquet"))
    empty = pl.read_parquet(SPOT_0809.file(sample_lake, "level_1")).clear()
    with pytest.raises(NotComputable, match="no rows"):
        top_of_book_agreement(updates, empty, min_share=0.999)


def test_vendor_rows_the_reconstruction_lacks_count_as_mismatches(recon, sample_lake, tmp_path):
    """Every 10th row of the reconstruction's vendor snapshots dropped: those vendor rows have
    nothing to be compared with, so the agreement falls by their share instead of ignoring them."""
    recon_dir = recon[SPOT_0809.key]
    whole = _book(recon_dir, sample_lake, SPOT_0809)
    thinned = tmp_path / "recon"
    thinned.mkdir()
    for path in recon_dir.iterdir():
        (thinned / path.name).write_bytes(path.read_bytes())
    snapshots = pl.read_parquet(recon_dir / "snapshots_vendor.parquet")
    kept = snapshots.filter(pl.int_range(pl.len()) % 10 != 5)
    table = kept.to_arrow().replace_schema_metadata(
        pq.read_schema(recon_dir / "snapshots_vendor.parquet").metadata
    )
    pq.write_table(table, thinned / "snapshots_vendor.parquet")
    book = _book(thinned, sample_lake, SPOT_0809)
    dropped = snapshots.height - kept.height
    assert book["rows_without_reconstruction"] == dropped > 300
    assert book["rows_compared"] == whole["rows_compared"]
    assert book["rows_consistent"] == whole["rows_consistent"] - dropped
    assert not book["passed"]
    assert book["first_mismatches"][0]["problem"] == "no reconstruction row for this vendor row"


@pytest.mark.parametrize("flagged", [True, False], ids=["update_complete", "no flag"])
def test_book_updates_read_in_parts_are_the_whole_streams(recon, monkeypatch, flagged):
    """A day's book updates are read in bounded parts: 10 k-row pieces when each update's last
    row is flagged, else ~1 k-row windows of sequence numbers (an update's last row is told
    only with all its rows; a stream without the flag keeps the last row of each number). On
    the real sample stream, with and without the flag, the parts are the whole stream's."""
    stream = pl.read_parquet(recon[SPOT_0808.key] / "stream.parquet")
    if not flagged:
        stream = stream.drop("update_complete")
    monkeypatch.setattr(pieces, "PIECE_ROWS", 10_000)
    monkeypatch.setattr(agreement_base, "WINDOW_ROWS", 1_000)
    parts = list(read_book_updates(stream.lazy(), lambda updates: updates))
    whole = book_updates(stream).collect()
    assert len(parts) > 10
    assert pl.concat(parts).sort("sequence_number").equals(whole.sort("sequence_number"))
