"""The vendor's tables from the raw columns of one market's files, merged by receive time:
``trades``, ``level_1``, ``book_delta_v2`` and ``book`` (top 20 rebuilt by the pure-Python
reference book). Imports ``rlx_assets.book.reference``, ``rlx_assets.vendor_schemas`` and the
converter's ``decimals`` and ``reading`` only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rlx_assets.book.reference import top_after_each_diff
from rlx_assets.lake.from_capture.decimals import parse_decimals, units_to_float
from rlx_assets.lake.from_capture.reading import Columns, Trades
from rlx_assets.vendor_schemas import BOOK_DEPTH

# Recorded in the book file: what built its rows (the fidelity report reads it to tell a
# cross-implementation check from the kernel agreeing with itself).
BOOK_BUILDER = "rlx_assets.book.reference"
NS_PER_MS = 1_000_000


def _merge_order(captures: list[np.ndarray]) -> np.ndarray:
    """Indices into the concatenation of per-file receive times that merge the files by receive
    time while keeping each file's arrival order (files given in order of their first message)."""
    if not captures:
        return np.zeros(0, dtype=np.int64)
    keys = [np.maximum.accumulate(c) if c.size else c for c in captures]
    return np.argsort(np.concatenate(keys), kind="stable")


def _cat(parts: list[list], dtype) -> np.ndarray:
    if not parts:
        return np.zeros(0, dtype=dtype)
    return np.concatenate([np.asarray(p, dtype=dtype) for p in parts])


def _cat_str(parts: list[list[str]]) -> list[str]:
    return [s for p in parts for s in p]


@dataclass
class Table:
    name: str
    columns: dict[str, np.ndarray]
    timestamp: np.ndarray  # int64 ns: the day split key
    metadata: dict[str, str]


def trades_table(cols: list[Columns], log: Callable[[str], None], key: str) -> Table | None:
    have = {ch for c in cols for ch in c.trades}
    if not have:
        return None
    source = "aggTrade" if "aggTrade" in have else "trade"
    if len(have) > 1:
        log(f"{key}: captures carry both trade and aggTrade frames; trades from aggTrade")
    parts = [c.trades.get(source, Trades()) for c in cols]
    order = _merge_order([np.asarray(p.capture, dtype=np.int64) for p in parts])
    price, price_scale = parse_decimals(_cat_str([p.price for p in parts]), f"{key} trade prices")
    amount, amount_scale = parse_decimals(
        _cat_str([p.quantity for p in parts]), f"{key} trade quantities"
    )
    maker_is_buyer = _cat([p.buyer_is_maker for p in parts], np.bool_)[order]
    columns = {
        "side": np.where(maker_is_buyer, "sell", "buy").astype(object),
        "amount": units_to_float(amount[order], amount_scale),
        "price": units_to_float(price[order], price_scale),
        "id": _cat([p.trade_id for p in parts], np.int64)[order],
        "timestamp": _cat([p.trade_ms for p in parts], np.int64)[order] * NS_PER_MS,
        "receipt_timestamp": _cat([p.capture for p in parts], np.int64)[order],
    }
    return Table("trades", columns, columns["timestamp"], {"rlx.trade_source": source})


def level_1_table(cols: list[Columns], key: str) -> Table | None:
    if not any(c.t_capture for c in cols):
        return None
    order = _merge_order([np.asarray(c.t_capture, dtype=np.int64) for c in cols])
    cap = _cat([c.t_capture for c in cols], np.int64)[order]
    event_ms = _cat([c.t_event_ms for c in cols], np.int64)[order]
    if (event_ms >= 0).all():
        timestamp, source = event_ms * NS_PER_MS, "exchange_time"
    else:  # spot bookTicker frames carry no event time
        timestamp, source = cap, "receive_time"
    columns: dict[str, np.ndarray] = {
        "timestamp": timestamp,
        "receipt_timestamp": cap,
        "sequence_number": _cat([c.t_update for c in cols], np.int64)[order],
    }
    for column, attr in (("bid_0_price", "t_bid"), ("bid_0_size", "t_bid_size"),
                         ("ask_0_price", "t_ask"), ("ask_0_size", "t_ask_size")):  # fmt: skip
        units, scale = parse_decimals(
            _cat_str([getattr(c, attr) for c in cols]), f"{key} bookTicker {column}"
        )
        columns[column] = units_to_float(units[order], scale)
    return Table("level_1", columns, timestamp, {"rlx.level_1_timestamp_source": source})


@dataclass
class Depth:
    """All depth messages (diffs and snapshots) of one market, merged, in receive order."""

    is_snapshot: np.ndarray
    capture: np.ndarray
    event_ms: np.ndarray
    first: np.ndarray
    last: np.ndarray
    prev: np.ndarray
    level_start: np.ndarray  # per message: its levels are [start, end) of the level arrays
    level_end: np.ndarray
    side_is_bid: np.ndarray  # per level
    price: np.ndarray  # ticks
    size: np.ndarray  # lots
    price_scale: int
    size_scale: int


def _gather_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each (s, c)."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    out_start = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(out_start - starts, counts)


def merged_depth(cols: list[Columns], key: str) -> Depth | None:
    if not any(c.d_capture for c in cols):
        return None
    order = _merge_order([np.asarray(c.d_capture, dtype=np.int64) for c in cols])
    n_bid = _cat([c.d_n_bid for c in cols], np.int64)
    n_ask = _cat([c.d_n_ask for c in cols], np.int64)
    counts = n_bid + n_ask
    starts = np.cumsum(counts) - counts  # in the file-order concatenation
    sides_file_order = np.repeat(
        np.tile(np.array([True, False]), counts.size), np.stack([n_bid, n_ask], axis=1).ravel()
    )
    prices, price_scale = parse_decimals(
        _cat_str([c.level_price for c in cols]), f"{key} depth prices"
    )
    sizes, size_scale = parse_decimals(_cat_str([c.level_size for c in cols]), f"{key} depth sizes")
    gather = _gather_ranges(starts[order], counts[order])
    level_end = np.cumsum(counts[order])
    return Depth(
        is_snapshot=_cat([c.d_snapshot for c in cols], np.bool_)[order],
        capture=_cat([c.d_capture for c in cols], np.int64)[order],
        event_ms=_cat([c.d_event_ms for c in cols], np.int64)[order],
        first=_cat([c.d_first for c in cols], np.int64)[order],
        last=_cat([c.d_last for c in cols], np.int64)[order],
        prev=_cat([c.d_prev for c in cols], np.int64)[order],
        level_start=level_end - counts[order],
        level_end=level_end,
        side_is_bid=sides_file_order[gather],
        price=prices[gather],
        size=sizes[gather],
        price_scale=price_scale,
        size_scale=size_scale,
    )


def book_delta_table(depth: Depth) -> Table | None:
    diffs = np.flatnonzero(~depth.is_snapshot)
    if diffs.size == 0:
        return None
    counts = depth.level_end[diffs] - depth.level_start[diffs]
    levels = _gather_ranges(depth.level_start[diffs], counts)
    timestamp = np.repeat(depth.event_ms[diffs] * NS_PER_MS, counts)
    columns = {
        "timestamp": timestamp,
        "receipt_timestamp": np.repeat(depth.capture[diffs], counts),
        "sequence_number": np.repeat(depth.last[diffs], counts),
        "side_is_bid": depth.side_is_bid[levels],
        "price": units_to_float(depth.price[levels], depth.price_scale),
        "size": units_to_float(depth.size[levels], depth.size_scale),
    }
    meta = {"rlx.price_scale": str(depth.price_scale), "rlx.size_scale": str(depth.size_scale)}
    return Table("book_delta_v2", columns, timestamp, meta)


@dataclass
class BookSyncReport:
    """How the book table was rebuilt: the sync rule's counters and the reference book's
    anomalies (``kernel``: the name kept for callers)."""

    sync: dict[str, int]
    kernel: dict[str, int]
    rows: int

    def describe(self) -> str:
        s, k = self.sync, self.kernel
        return (
            f"{self.rows} book rows; {s['gaps']} sequence gaps, snapshots used "
            f"{s['snapshots_used']} / ignored {s['snapshots_ignored']} / unusable "
            f"{s['snapshots_unusable']}, {s['diffs_stale']} diffs older than their snapshot; "
            f"crossed after {k['crossed']} events, {k['delete_unknown']} deletes of levels "
            "the book did not hold (e.g. deeper than the snapshot)"
        )


def book_table(depth: Depth, futures: bool) -> tuple[Table | None, BookSyncReport]:
    # The pure-Python reference book, sharing no code with the reconstruction's kernel: the
    # fidelity report's book agreement on a converted lake is then a cross-implementation check.
    emitted, bid_ticks, bid_lots, ask_ticks, ask_lots, sync, kernel = top_after_each_diff(
        depth.is_snapshot, depth.first, depth.last, depth.prev, depth.level_start,
        depth.level_end, depth.side_is_bid, depth.price, depth.size, futures=futures,
        depth=BOOK_DEPTH,
    )  # fmt: skip
    report = BookSyncReport(sync, kernel, int(emitted.size))
    if emitted.size == 0:
        return None, report
    timestamp = depth.event_ms[emitted] * NS_PER_MS
    columns: dict[str, np.ndarray] = {
        "timestamp": timestamp,
        "receipt_timestamp": depth.capture[emitted],
        "sequence_number": depth.last[emitted],
    }
    for side, ticks, lots in (("bid", bid_ticks, bid_lots), ("ask", ask_ticks, ask_lots)):
        present = ticks >= 0
        prices = np.where(present, units_to_float(ticks, depth.price_scale), np.nan)
        sizes = np.where(present, units_to_float(lots, depth.size_scale), np.nan)
        for i in range(BOOK_DEPTH):
            columns[f"{side}_{i}_price"] = prices[:, i]
            columns[f"{side}_{i}_size"] = sizes[:, i]
    meta = {
        "rlx.price_scale": str(depth.price_scale),
        "rlx.size_scale": str(depth.size_scale),
        "rlx.book_sync": json.dumps({**sync, **report.kernel}, sort_keys=True),
        "rlx.book_gaps": str(sync["gaps"]),
        "rlx.book_builder": BOOK_BUILDER,
    }
    return Table("book", columns, timestamp, meta), report
