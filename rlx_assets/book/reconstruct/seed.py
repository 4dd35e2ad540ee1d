"""Seeds: the starting book, from the previous day's ``end_book`` or the day's first vendor
row. May import ``decimals`` and ``reading``."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from rlx_assets.book.reconstruct.decimals import _I64_MAX, _I64_MIN, ReconstructionError, units
from rlx_assets.book.reconstruct.reading import _LEVEL_COLUMNS, BOOK_COLUMNS, _first_batch
from rlx_assets.vendor_schemas import BOOK_DEPTH


@dataclass
class _Seed:
    """A starting book: levels in units at its own scales (or, for a cold start, the vendor
    row's floats until the day's scales are known)."""

    source: str  # "previous_day" | "vendor_book_first_row"
    sequence: int
    time_ns: int | None  # the vendor row's timestamp (cold start); None: known from the start
    price_scale: int = 0
    size_scale: int = 0
    bid_ticks: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    bid_lots: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ask_ticks: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ask_lots: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    bid_floor: int = _I64_MIN  # the book is complete for bids >= floor (_I64_MIN: whole side)
    ask_ceiling: int = _I64_MAX  # ... and for asks <= ceiling (_I64_MAX: whole side)
    market: str = ""
    prices: np.ndarray | None = None  # cold start: 20 bid then 20 ask prices (NaN = no level)
    sizes: np.ndarray | None = None

    def at(self, price_scale: int, size_scale: int) -> _Seed:
        """The seed in units at the day's scales (exact: the scales are at least as fine)."""
        if self.prices is not None:
            return self._from_floats(price_scale, size_scale)
        pf = 10 ** (price_scale - self.price_scale)
        sf = 10 ** (size_scale - self.size_scale)

        def edge(v: int) -> int:
            return v if v in (_I64_MIN, _I64_MAX) else v * pf

        return _Seed(
            self.source, self.sequence, self.time_ns, price_scale, size_scale,
            self.bid_ticks * pf, self.bid_lots * sf, self.ask_ticks * pf, self.ask_lots * sf,
            edge(self.bid_floor), edge(self.ask_ceiling), self.market,
        )  # fmt: skip

    def _from_floats(self, price_scale: int, size_scale: int) -> _Seed:
        ticks = units(self.prices, price_scale, "book seed prices", nan_value=-1)
        lots = units(self.sizes, size_scale, "book seed sizes", nan_value=0)
        present = (ticks >= 0) & ~np.isnan(self.sizes)
        d = BOOK_DEPTH
        bid_ok, ask_ok = present[:d], present[d:]
        # A full top 20 says nothing about deeper levels: complete only down to the 20th level
        # (a shorter side is the whole side).
        bid_floor = int(ticks[d - 1]) if bid_ok.all() else _I64_MIN
        ask_ceiling = int(ticks[2 * d - 1]) if ask_ok.all() else _I64_MAX
        return _Seed(
            self.source, self.sequence, self.time_ns, price_scale, size_scale,
            ticks[:d][bid_ok], lots[:d][bid_ok], ticks[d:][ask_ok], lots[d:][ask_ok],
            bid_floor, ask_ceiling, self.market,
        )  # fmt: skip


def _market_of(*paths: Path | None) -> str:
    for path in paths:
        if path is None:
            continue
        parts = {k: v for k, _, v in (p.partition("=") for p in Path(path).parts) if v}
        if "exchange" in parts and "symbol" in parts:
            return f"{parts['exchange']}.{parts['symbol']}"
    for path in paths:
        if path is not None:
            meta = pq.read_metadata(path).metadata or {}
            if b"rlx.market_key" in meta:
                return meta[b"rlx.market_key"].decode()
    return ""


def _seed_from_end_book(path: Path) -> _Seed:
    table = pq.read_table(path)
    meta = {k.decode(): v.decode() for k, v in (pq.read_metadata(path).metadata or {}).items()}
    try:
        price_scale = int(meta["rlx.price_scale"])
        size_scale = int(meta["rlx.size_scale"])
        sequence = int(meta["rlx.last_sequence_number"])
    except (KeyError, ValueError) as exc:
        raise ReconstructionError(
            f"{path}: not an end_book file ({exc!r} in its metadata)"
        ) from None
    side = np.asarray(table.column("side").to_pylist())
    ticks = table.column("price_ticks").to_numpy()
    lots = table.column("size_lots").to_numpy()
    bids, asks = side == "bid", side == "ask"

    def edge(key: str, default: int) -> int:
        text = meta.get(key, "")
        return int(Decimal(text).scaleb(price_scale)) if text else default

    return _Seed(
        "previous_day", sequence, None, price_scale, size_scale,
        ticks[bids], lots[bids], ticks[asks], lots[asks],
        edge("rlx.known_bid_floor", _I64_MIN), edge("rlx.known_ask_ceiling", _I64_MAX),
        meta.get("rlx.market", ""),
    )  # fmt: skip


def _cold_seed(book: Path) -> _Seed:
    batch = _first_batch(book, BOOK_COLUMNS, 1)
    if batch is None or batch.num_rows == 0:
        raise ReconstructionError(
            f"{book}: no vendor book rows and no previous day's book: cannot seed the book"
        )

    def first(names: list[str]) -> np.ndarray:
        return np.array([batch.column(n)[0].as_py() for n in names], dtype=np.float64)

    return _Seed(
        "vendor_book_first_row",
        int(batch.column("sequence_number")[0].as_py()),
        int(batch.column("timestamp")[0].as_py()),
        prices=first(_LEVEL_COLUMNS[("bid", "price")] + _LEVEL_COLUMNS[("ask", "price")]),
        sizes=first(_LEVEL_COLUMNS[("bid", "size")] + _LEVEL_COLUMNS[("ask", "size")]),
    )
