"""The vendor's tables from one chunk of one symbol's raw columns (``reading.Columns``, in receive
order): ``trades``, ``level_1``, ``book_delta_v2`` and ``book`` (top 20 rebuilt by the pure-Python
reference book, whose state and sync carry over from chunk to chunk). Imports
``rlx_assets.book.reference``, ``rlx_assets.vendor_schemas`` and the converter's ``decimals`` and
``reading`` only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from rlx_assets.book.reference import TopAfterEachDiff
from rlx_assets.lake.from_capture.decimals import (
    MAX_EXACT_UNITS,
    ConversionError,
    parse_decimals,
    units_to_float,
)
from rlx_assets.lake.from_capture.reading import Columns, Trades
from rlx_assets.vendor_schemas import BOOK_DEPTH

# Recorded in the book file: what built its rows (the fidelity report reads it to tell a
# cross-implementation check from the kernel agreeing with itself).
BOOK_BUILDER = "rlx_assets.book.reference"
NS_PER_MS = 1_000_000


def trades_columns(trades: Trades, key: str) -> dict[str, np.ndarray]:
    """The vendor's trades columns of one trade channel's rows."""
    price, price_scale = parse_decimals(trades.price, f"{key} trade prices")
    amount, amount_scale = parse_decimals(trades.quantity, f"{key} trade quantities")
    maker_is_buyer = np.asarray(trades.buyer_is_maker, dtype=np.bool_)
    return {
        "side": np.where(maker_is_buyer, "sell", "buy").astype(object),
        "amount": units_to_float(amount, amount_scale),
        "price": units_to_float(price, price_scale),
        "id": np.asarray(trades.trade_id, dtype=np.int64),
        "timestamp": np.asarray(trades.trade_ms, dtype=np.int64) * NS_PER_MS,
        "receipt_timestamp": np.asarray(trades.capture, dtype=np.int64),
    }


def level_1_columns(cols: Columns, key: str) -> dict[str, np.ndarray] | None:
    """``bookTicker`` rows with both candidate timestamps: ``event_ms`` (-1 where the frame has
    no event time, as on spot) decides the ``timestamp`` once the whole stream was seen."""
    if not cols.t_capture:
        return None
    columns: dict[str, np.ndarray] = {
        "event_ms": np.asarray(cols.t_event_ms, dtype=np.int64),
        "receipt_timestamp": np.asarray(cols.t_capture, dtype=np.int64),
        "sequence_number": np.asarray(cols.t_update, dtype=np.int64),
    }
    for column, attr in (("bid_0_price", "t_bid"), ("bid_0_size", "t_bid_size"),
                         ("ask_0_price", "t_ask"), ("ask_0_size", "t_ask_size")):  # fmt: skip
        units, scale = parse_decimals(getattr(cols, attr), f"{key} bookTicker {column}")
        columns[column] = units_to_float(units, scale)
    return columns


@dataclass
class Depth:
    """Depth messages (diffs and snapshots) of one symbol, in receive order."""

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

    # The per-message arrays other than the level ranges (all indexed by message).
    MESSAGE_FIELDS = ("is_snapshot", "capture", "event_ms", "first", "last", "prev")

    @property
    def messages(self) -> int:
        return int(self.is_snapshot.size)

    def tail(self, start: int) -> Depth:
        """Messages ``start`` onwards, their levels re-indexed from 0."""
        base = int(self.level_start[start]) if start < self.messages else int(self.price.size)
        return replace(
            self, **{name: getattr(self, name)[start:] for name in self.MESSAGE_FIELDS},
            level_start=self.level_start[start:] - base, level_end=self.level_end[start:] - base,
            side_is_bid=self.side_is_bid[base:], price=self.price[base:], size=self.size[base:],
        )  # fmt: skip

    def at_scales(self, price_scale: int, size_scale: int) -> Depth:
        """The same levels in finer units; raises if they stop being exact as float64."""
        price = _upscaled(self.price, price_scale - self.price_scale, "depth prices")
        size = _upscaled(self.size, size_scale - self.size_scale, "depth sizes")
        return replace(self, price=price, size=size, price_scale=price_scale,
                       size_scale=size_scale)  # fmt: skip

    def then(self, later: Depth) -> Depth:
        """This chunk followed by ``later`` (both at the same scales)."""
        offset = int(self.price.size)
        joined = {
            name: np.concatenate([getattr(self, name), getattr(later, name)])
            for name in (*self.MESSAGE_FIELDS, "side_is_bid", "price", "size")
        }
        return replace(
            self, **joined,
            level_start=np.concatenate([self.level_start, later.level_start + offset]),
            level_end=np.concatenate([self.level_end, later.level_end + offset]),
        )  # fmt: skip


def _upscaled(units: np.ndarray, digits: int, what: str) -> np.ndarray:
    if digits == 0:
        return units
    scaled = units * 10**digits
    if scaled.size and int(np.abs(scaled).max()) > MAX_EXACT_UNITS:
        raise ConversionError(f"{what}: a value exceeds 2**53 units at {digits} more decimals")
    return scaled


def depth_of(cols: Columns, key: str) -> Depth | None:
    if not cols.d_capture:
        return None
    n_bid = np.asarray(cols.d_n_bid, dtype=np.int64)
    n_ask = np.asarray(cols.d_n_ask, dtype=np.int64)
    counts = n_bid + n_ask
    level_end = np.cumsum(counts)
    sides = np.repeat(
        np.tile(np.array([True, False]), counts.size), np.stack([n_bid, n_ask], axis=1).ravel()
    )
    prices, price_scale = parse_decimals(cols.level_price, f"{key} depth prices")
    sizes, size_scale = parse_decimals(cols.level_size, f"{key} depth sizes")
    return Depth(
        is_snapshot=np.asarray(cols.d_snapshot, dtype=np.bool_),
        capture=np.asarray(cols.d_capture, dtype=np.int64),
        event_ms=np.asarray(cols.d_event_ms, dtype=np.int64),
        first=np.asarray(cols.d_first, dtype=np.int64),
        last=np.asarray(cols.d_last, dtype=np.int64),
        prev=np.asarray(cols.d_prev, dtype=np.int64),
        level_start=level_end - counts,
        level_end=level_end,
        side_is_bid=sides,
        price=prices,
        size=sizes,
        price_scale=price_scale,
        size_scale=size_scale,
    )


def _gather_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each (s, c)."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    out_start = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(out_start - starts, counts)


def book_delta_columns(depth: Depth) -> dict[str, np.ndarray] | None:
    """One row per level of every diff (snapshots are not deltas)."""
    diffs = np.flatnonzero(~depth.is_snapshot)
    if diffs.size == 0:
        return None
    counts = depth.level_end[diffs] - depth.level_start[diffs]
    levels = _gather_ranges(depth.level_start[diffs], counts)
    return {
        "timestamp": np.repeat(depth.event_ms[diffs] * NS_PER_MS, counts),
        "receipt_timestamp": np.repeat(depth.capture[diffs], counts),
        "sequence_number": np.repeat(depth.last[diffs], counts),
        "side_is_bid": depth.side_is_bid[levels],
        "price": units_to_float(depth.price[levels], depth.price_scale),
        "size": units_to_float(depth.size[levels], depth.size_scale),
    }


class BookRows:
    """The vendor ``book`` table of one symbol, chunk by chunk: the top 20 after every diff
    applied to a book rebuilt from the REST snapshot under Binance's sync rule, by the pure-Python
    reference book, sharing no code with the reconstruction's kernel, so that the fidelity
    report's book agreement on a converted lake is a cross-implementation check. Messages the
    sync rule still holds at a chunk's end (a snapshot, diffs waiting for one) are carried into
    the next chunk; the book moves to finer units when a chunk has more decimals."""

    def __init__(self, futures: bool) -> None:
        self.top = TopAfterEachDiff(futures=futures, depth=BOOK_DEPTH)
        self.carried: Depth | None = None
        self.price_scale = self.size_scale = 0

    def add(self, chunk: Depth) -> dict[str, np.ndarray] | None:
        price_scale = max(self.price_scale, chunk.price_scale)
        size_scale = max(self.size_scale, chunk.size_scale)
        if (price_scale, size_scale) != (self.price_scale, self.size_scale):
            self.top.rescale(10 ** (price_scale - self.price_scale),
                             10 ** (size_scale - self.size_scale))  # fmt: skip
            if self.carried is not None:
                self.carried = self.carried.at_scales(price_scale, size_scale)
            self.price_scale, self.size_scale = price_scale, size_scale
        depth = chunk.at_scales(price_scale, size_scale)
        start = 0
        if self.carried is not None:
            start = self.carried.messages
            depth = self.carried.then(depth)
        emitted, bid_ticks, bid_lots, ask_ticks, ask_lots = self.top.feed(
            depth.is_snapshot, depth.first, depth.last, depth.prev, depth.level_start,
            depth.level_end, depth.side_is_bid, depth.price, depth.size, start=start,
        )  # fmt: skip
        keep = self.top.carried_from(depth.messages)
        self.carried = depth.tail(keep) if keep < depth.messages else None
        self.top.rebase(keep)
        if emitted.size == 0:
            return None
        columns: dict[str, np.ndarray] = {
            "timestamp": depth.event_ms[emitted] * NS_PER_MS,
            "receipt_timestamp": depth.capture[emitted],
            "sequence_number": depth.last[emitted],
        }
        for side, ticks, lots in (("bid", bid_ticks, bid_lots), ("ask", ask_ticks, ask_lots)):
            present = ticks >= 0
            prices = np.where(present, units_to_float(ticks, price_scale), np.nan)
            sizes = np.where(present, units_to_float(lots, size_scale), np.nan)
            for i in range(BOOK_DEPTH):
                columns[f"{side}_{i}_price"] = prices[:, i]
                columns[f"{side}_{i}_size"] = sizes[:, i]
        return columns


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
