"""The pure-Python reference book, and the compiled kernel checked against it on real data.

The differential tests drive both books with the real ``book_delta_v2`` rows of the sample lake
(spot and USD-M futures, 2024-08-08), seeded identically from the day's first vendor ``book``
row, and compare them level by level after every diff and in full depth at the end.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from rlx_assets.book.kernel import DenseBook
from rlx_assets.book.reconstruct import (
    SNAPSHOTS_VENDOR_FILE,
    STREAM_FILE,
    end_book_levels,
    reconstruct_partition,
    units,
)
from rlx_assets.book.reference import ReferenceBook
from rlx_assets.staging import lake_relative_path

BID, ASK = True, False
MARKETS = {
    "spot": ("BINANCE", "BTC-USDT", 2, 6),
    "futures": ("BINANCE_FUTURES", "BTC-USDT-PERP", 1, 3),
}
DAY = dt.date(2024, 8, 8)


def test_reference_book_semantics():
    book = ReferenceBook()
    book.apply_rows([(BID, 100, 5), (BID, 98, 7), (ASK, 103, 2), (ASK, 105, 1)])
    assert book.best_bid() == (100, 5) and book.best_ask() == (103, 2)
    book.apply(BID, 100, 9)  # absolute size, not a delta
    assert book.best_bid() == (100, 9)
    book.apply(BID, 100, 0)  # deleting the best finds the next one
    assert book.best_bid() == (98, 7)
    book.apply(ASK, 104, 0)  # unknown level: counted, ignored
    assert book.delete_unknown == 1
    assert book.top(5) == ([(98, 7)], [(103, 2), (105, 1)])
    assert book.top(1) == ([(98, 7)], [(103, 2)]) and book.top(0) == ([], [])
    assert not book.crossed()
    book.apply(BID, 103, 1)
    assert book.crossed()
    book.apply_rows([(ASK, 103, 0), (ASK, 105, 0)])
    assert book.best_ask() is None and book.levels()[1] == []


def _partition(lake: Path, market: str) -> dict[str, Path]:
    exchange, symbol, _, _ = MARKETS[market]
    return {
        t: lake / lake_relative_path(t, exchange, symbol, DAY)
        for t in ("trades", "book_delta_v2", "book")
    }


def _seed_and_rows(lake: Path, market: str):
    """Seed levels (first vendor book row) and the delta rows after it, in integer units."""
    _, _, ps, ss = MARKETS[market]
    paths = _partition(lake, market)
    first = pq.read_table(paths["book"]).slice(0, 1).to_pylist()[0]
    seed = []
    for side, is_bid in (("bid", BID), ("ask", ASK)):
        for i in range(20):
            price, size = first[f"{side}_{i}_price"], first[f"{side}_{i}_size"]
            if price == price:  # NaN: no level
                seed.append((is_bid, price, size))
    deltas = pq.read_table(paths["book_delta_v2"])
    keep = deltas.column("sequence_number").to_numpy() > first["sequence_number"]
    deltas = deltas.filter(keep)
    rows = {
        "seq": deltas.column("sequence_number").to_numpy(),
        "bid": deltas.column("side_is_bid").to_numpy(zero_copy_only=False),
        "tick": units(deltas.column("price").to_numpy(), ps, "price"),
        "lots": units(deltas.column("size").to_numpy(), ss, "size"),
    }
    seed_rows = (
        np.array([s[0] for s in seed]),
        units(np.array([s[1] for s in seed]), ps, "price"),
        units(np.array([s[2] for s in seed]), ss, "size"),
    )
    return seed_rows, rows, first["sequence_number"]


def unscaled(column, scale: int) -> list[int | None]:
    """Decimal column -> integer units (exactly; Arrow's decimal -> float cast is not)."""
    return [None if d is None else int(d.scaleb(scale)) for d in column.to_pylist()]


def _top_arrays(levels: list[tuple[int, int]], depth: int) -> tuple[list[int], list[int]]:
    ticks = [t for t, _ in levels] + [-1] * (depth - len(levels))
    lots = [q for _, q in levels] + [0] * (depth - len(levels))
    return ticks, lots


@pytest.mark.parametrize(("market", "top_every"), [("spot", 1), ("futures", 25)])
def test_kernel_agrees_with_reference_after_every_diff(sample_lake, market, top_every):
    """After every diff: each level the diff touched and the best bid/ask (price and size);
    the top 20 after every (spot) or every 25th (futures) diff; the whole book at the end."""
    (s_bid, s_tick, s_lots), rows, _ = _seed_and_rows(sample_lake, market)
    kernel = DenseBook.covering(np.concatenate([s_tick, rows["tick"]]))
    kernel.apply(s_bid, s_tick, s_lots, np.array([s_tick.size]), np.zeros(1, np.uint8))
    reference = ReferenceBook()
    reference.apply_rows(zip(s_bid.tolist(), s_tick.tolist(), s_lots.tolist(), strict=True))

    seq = rows["seq"]
    ends = np.append(np.flatnonzero(np.diff(seq)) + 1, seq.size).tolist()  # one diff each
    bid_l, tick_l, lots_l = rows["bid"].tolist(), rows["tick"].tolist(), rows["lots"].tolist()
    base, one = kernel.base_tick, np.ones(1, dtype=np.int64)
    start = 0
    for e, end in enumerate(ends):
        sl = slice(start, end)
        top = kernel.apply(rows["bid"][sl], rows["tick"][sl], rows["lots"][sl], one * (end - start))
        reference.apply_rows(zip(bid_l[sl], tick_l[sl], lots_l[sl], strict=True))
        for j in range(start, end):
            ours = (kernel.bid_sizes if bid_l[j] else kernel.ask_sizes)[tick_l[j] - base]
            assert ours == (reference.bids if bid_l[j] else reference.asks).sizes.get(
                tick_l[j], 0
            ), j
        bb, ba = kernel.best_bid, kernel.best_ask
        assert reference.best_bid() == (bb, kernel.bid_sizes[bb - base]), e
        assert reference.best_ask() == (ba, kernel.ask_sizes[ba - base]), e
        if e % top_every == 0:
            bids, asks = reference.top(20)
            assert (top.bid_ticks[0].tolist(), top.bid_sizes[0].tolist()) == _top_arrays(bids, 20)
            assert (top.ask_ticks[0].tolist(), top.ask_sizes[0].tolist()) == _top_arrays(asks, 20)
        start = end
    bt, bl, at, al = end_book_levels(kernel)
    ref_bids, ref_asks = reference.levels()
    assert list(zip(bt.tolist(), bl.tolist(), strict=True)) == ref_bids
    assert list(zip(at.tolist(), al.tolist(), strict=True)) == ref_asks
    assert kernel.counters()["delete_unknown"] == reference.delete_unknown > 0  # cold start
    assert len(ends) > 3000


def test_reconstruction_agrees_with_reference_row_by_row(sample_lake, tmp_path):
    """The whole pipeline (windows, merge with trades, snapshot walk) against the reference:
    best bid/ask after every book row of the stream, top 20 at every vendor book row."""
    paths = _partition(sample_lake, "spot")
    reconstruct_partition(
        paths["trades"], paths["book_delta_v2"], paths["book"], tmp_path, None, chunk_rows=40_000
    )
    (s_bid, s_tick, s_lots), rows, seed_seq = _seed_and_rows(sample_lake, "spot")
    reference = ReferenceBook()
    reference.apply_rows(zip(s_bid.tolist(), s_tick.tolist(), s_lots.tolist(), strict=True))

    stream = pq.read_table(tmp_path / STREAM_FILE)
    book_rows = stream.filter(stream.column("event_type").to_numpy(zero_copy_only=False) == "book")
    applied = book_rows.filter(book_rows.column("sequence_number").to_numpy() > seed_seq)
    best_bid = unscaled(applied.column("best_bid_price"), 2)
    best_ask = unscaled(applied.column("best_ask_price"), 2)
    best_bid_size = unscaled(applied.column("best_bid_size"), 6)

    snaps = pq.read_table(tmp_path / SNAPSHOTS_VENDOR_FILE)
    snap_seq = snaps.column("sequence_number").to_numpy()
    snap_cols = {
        name: unscaled(snaps.column(name), 2 if name.endswith("price") else 6)
        for name in snaps.column_names
        if name.startswith(("bid_", "ask_"))
    }
    next_snap = int(np.searchsorted(snap_seq, seed_seq, side="right"))

    seq, bid_l, tick_l, lots_l = (rows[k].tolist() for k in ("seq", "bid", "tick", "lots"))
    checked = 0
    for j in range(len(seq)):
        # the vendor rows whose sequence number is complete before this row's diff
        while next_snap < snap_seq.size and snap_seq[next_snap] < seq[j]:
            bids, asks = reference.top(20)
            for side, levels in (("bid", bids), ("ask", asks)):
                ticks, lots = _top_arrays(levels, 20)
                for i in range(20):
                    price = snap_cols[f"{side}_{i}_price"][next_snap]
                    size = snap_cols[f"{side}_{i}_size"][next_snap]
                    assert (price, size) == ((ticks[i], lots[i]) if ticks[i] >= 0 else (None, None))
            next_snap += 1
            checked += 1
        reference.apply(bid_l[j], tick_l[j], lots_l[j])
        assert reference.best_bid() == (best_bid[j], best_bid_size[j]), j
        assert reference.best_ask()[0] == best_ask[j], j
    assert checked > 3000
