"""Reconstruct one partition (UTC day x market) from Crypto Lake's vendor files.

Input: the day's ``trades``, ``book_delta_v2`` and ``book`` Parquet files in the vendor's raw
columns (``rlx_assets.lake.schemas``; prices and sizes float64, times int64 ns), and optionally
the previous day's ``end_book.parquet``. Output, in ``out_dir`` (each file written atomically):

``stream.parquet``
    Every trade and every ``book_delta_v2`` row of the day in one strictly chronological stream.
    Order: ``event_time`` (the vendor's ``timestamp``, exchange time), then ``received_time``,
    then book rows before trades, then ``sequence_number`` (book) / ``trade_id`` (trades), then
    the vendor file's row order (so the rows of one diff keep the vendor's order). Columns:
    ``event_time``, ``received_time`` (timestamp[ns, UTC]); ``event_type`` ("book" | "trade");
    ``side`` ("bid" | "ask" for book rows, the taker side "buy" | "sell" for trades; null for a
    trade side the vendor did not give as buy/sell); ``price``, ``size`` (DECIMAL(18, scale),
    read back as ``decimal128``; a book row's size is the level's new absolute size, 0 removes
    it); ``trade_id`` (int64, null for book rows); ``sequence_number`` (int64, null for trades);
    ``best_bid_price``, ``best_bid_size``, ``best_ask_price``, ``best_ask_size`` (decimal, the
    book *after* the row; null when that side is empty or the book is not known yet);
    ``update_complete`` (bool). A diff spans several rows with one sequence number and every row
    carries the book after that row, so rows inside a diff can show a transiently crossed book
    (Binance lists a diff's bids before its asks). ``update_complete`` is true for trades and
    for the last row of each diff: the exchange's consistent state.
``snapshots_vendor.parquet``
    Our top 20 at every vendor ``book`` row (the state after every delta with a sequence number
    <= the row's), with the vendor row's ``timestamp`` and ``sequence_number``; columns
    ``bid_{i}_price``, ``bid_{i}_size``, then ``ask_...`` (decimal, null = no level),
    ``matches_vendor`` (all 20 levels x price, size x both sides equal; null when the row is not
    compared) and ``depth_known`` (every level we report lies in the known part of the book).
``snapshots_1s.parquet``
    Our top 20 at every multiple of ``snapshot_every_ns`` since the epoch (UTC-aligned) once the
    book is known, up to the first boundary after the last event: the state after all events
    with ``event_time < timestamp``; ``sequence_number`` = the last applied delta's.
``end_book.parquet``
    The whole book after the last event (``side``, ``price``, ``size`` decimals, ``price_ticks``,
    ``size_lots`` int64; bids best first, then asks best first). File metadata ``rlx.*``: scales,
    last sequence number and event time, market, seeding and the known depth (below). It seeds
    the next day.

Exactness. The scales are the smallest numbers of decimals at which every float of the inputs
(and of the seed) is an exact decimal (``Decimal(repr(x))``). Prices become integer ticks and
sizes integer lots at those scales, and every output decimal equals the input's decimal string;
a seed written at a coarser scale is rescaled exactly. The scales (and the price range of the
dense book and the inputs' time order) are first taken from the first record batch of each file
plus the Parquet statistics, and every row is checked against them while it is read; should a
later row need a finer scale, fall outside the range or arrive out of time order, the partition
is redone from a full scan of the files. Outputs are only ever written with the final scales.

Seeding. With ``previous_end_book`` the book starts from it and only deltas with a sequence
number above its last one are applied. Without it the book starts from the day's first vendor
``book`` row (top 20) and deltas above that row's sequence number are applied; rows before the
book is known carry null best prices (the last row of the seed's own diff carries the seed, the
state after that diff). A top-20 seed leaves deeper levels unknown: when the price
moves, levels that existed before the seed but were never updated are missing. The book is
*complete* only for bids >= the seed's 20th bid and asks <= its 20th ask (the "known depth",
carried across days in ``end_book``'s metadata; no empty tick outside it can be proven empty).
Comparisons with the vendor therefore count, besides exact equality, the rows whose top 20
reaches past the known depth (``vendor_book_rows_unknown_depth``) and the rows equal within it
(``vendor_book_rows_equal_within_known_depth``): a difference inside the known depth is always
a genuine mismatch.

Memory and speed. Inputs are read in record batches of ``chunk_rows // 4`` rows into reused
buffers and merged in windows (about ``chunk_rows // 4`` rows each) of rows older than every
input's lower bound of future timestamps. The book is ``rlx_assets.book.kernel.apply_levels``
over a dense tick array spanning the day's price range (at most ``MAX_DENSE_TICKS`` per side;
a wider range gets a window around the seed, and levels outside it count as ``out_of_range``)
whose untouched pages never become resident, plus an occupancy bitmap for fast top-20 walks.
Peak RSS is about 0.6 GB at the default ``chunk_rows`` plus up to 16 bytes per tick of the
day's price range, whatever the number of rows (0.8-0.9 GB measured for 30M- and 60M-event
BTC-USDT days). Hot loops are compiled; Parquet pages are encoded by a background thread while
the next window is replayed (two sets of output buffers alternate). The stream's ``price`` and
``size`` pages are DELTA_BINARY_PACKED (smaller than plain, and unlike BYTE_STREAM_SPLIT on
integers, readable by every Parquet 2 reader).
"""

from __future__ import annotations

import contextlib
import mmap
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from rlx_assets.book.kernel import (
    ASK_HI,
    ASK_LO,
    BASE_TICK,
    BEST_ASK,
    BEST_BID,
    BID_HI,
    BID_LO,
    FLAG_EMIT,
    N_DELETE_UNKNOWN,
    N_OUT_OF_RANGE,
    DenseBook,
    apply_levels,
    new_state,
)
from rlx_assets.lake.schemas import BOOK_DEPTH
from rlx_assets.staging import atomic_write

STREAM_FILE = "stream.parquet"
SNAPSHOTS_VENDOR_FILE = "snapshots_vendor.parquet"
SNAPSHOTS_1S_FILE = "snapshots_1s.parquet"
END_BOOK_FILE = "end_book.parquet"

DECIMAL_PRECISION = 18  # Parquet INT64 decimals; units stay below 2**52
MAX_SCALE = 15
MAX_DENSE_TICKS = 1 << 26  # per side; 16 bytes per touched tick at most (untouched pages: none)
MAX_FIRST_MISMATCHES = 10
SEED_RANGE_FACTOR = 5  # without Parquet statistics: ticks within seed mid / 5 .. mid * 5 first
WRITE_IN_BACKGROUND = True
DEFAULT_CHUNK_ROWS = 2_000_000
SNAPSHOT_1S_ROW_GROUP = 1 << 16  # rows of 1 s snapshots written together (a day: 86,400)
EVENT_TYPES = ("book", "trade")
SIDES = ("bid", "ask", "buy", "sell")  # codes 0..3
_I64_MIN = int(np.iinfo(np.int64).min)
_I64_MAX = int(np.iinfo(np.int64).max)
_MAX_UNITS = float(2**52)  # below this a float is the nearest to at most one decimal per scale
_POW10 = np.array([10.0**i for i in range(MAX_SCALE + 1)])
# Decimals are written from zero-copy decimal64 arrays as Parquet INT64 DECIMAL(18, s); without
# the stored Arrow schema every reader sees decimal128, plain strings and UTC timestamps. The
# encoder takes 64k values at a time (not 1k: fewer passes through its per-batch overhead).
_WRITE_OPTIONS = {
    "compression": "lz4",
    "store_decimal_as_integer": True,
    "store_schema": False,
    "write_batch_size": 1 << 16,
}
# Delta-packed (measured on the 30 M-event bench day, against plain + lz4): prices take a quarter
# less room and 40% less encoding time, sizes 15% less time for 13% more room, and trade ids
# (they only ever step up) a tenth of the room.
STREAM_WRITE_OPTIONS = {
    **_WRITE_OPTIONS,
    "use_dictionary": ["event_type", "side"],
    "column_encoding": dict.fromkeys(("price", "size", "trade_id"), "DELTA_BINARY_PACKED"),
    "write_statistics": ["event_time", "sequence_number"],
}
_SNAPSHOT_OPTIONS = {
    **_WRITE_OPTIONS,
    "use_dictionary": False,
    "write_statistics": ["timestamp", "sequence_number"],
}
STREAM_ORDER = (
    "event_time, received_time, book before trade, sequence_number | trade_id, vendor row order"
)


class ReconstructionError(ValueError):
    """The inputs cannot be reconstructed (no seed, values that are not exact decimals, ...)."""


class _PlanMiss(Exception):
    """A row contradicts the plan taken from the first batches: redo from a full scan."""


@dataclass(frozen=True)
class ReconstructionResult:
    """What ``reconstruct_partition`` did and measured.

    ``level_agreement[i]``: share of compared vendor rows whose level ``i`` is equal on *both*
    sides (price and size of bid_i and ask_i). ``first_mismatches``: the first vendor rows that
    differ (up to 10), each with its shallowest differing level, whether the difference lies
    inside the known depth (a genuine mismatch) and whether the row's depth was known.

    ``anomalies`` (counted, never raised): ``crossed_after_event`` complete updates (diffs)
    after which best bid >= best ask; ``delete_unknown_level`` size-0 rows for a level the book
    does not hold (expected after a top-20 seed: deeper levels); ``out_of_range`` rows outside
    the dense book (ignored); ``sequence_regressions`` rows whose sequence number is below one
    already applied (refused: never applied); ``deltas_before_seed`` rows at or below the
    seed's sequence number (not applied); ``trades_invalid_side`` trades whose side is neither
    buy nor sell; ``input_rows_out_of_time_order`` input rows older than an earlier row of
    their file (put in order); ``vendor_book_rows_before_seed`` vendor rows older than the seed
    (not compared).
    ``anomaly_first``: for the anomalies the replay can place (``sequence_regressions``,
    ``out_of_range``, ``deltas_before_seed``, ``crossed_after_event``) the first such row's
    ``event_time_ns`` and ``sequence_number`` (a regression also ``after_sequence_number``).
    """

    events: int
    trades: int
    book_updates: int
    price_scale: int
    size_scale: int
    started_cold: bool
    seeded_from: str
    seed_sequence: int | None
    anomalies: dict[str, int]
    first_event_ns: int | None
    last_event_ns: int | None
    vendor_book_rows_compared: int
    vendor_book_rows_equal: int
    level_agreement: list[float]
    first_mismatches: list[dict]
    vendor_book_rows_unknown_depth: int = 0
    vendor_book_rows_equal_within_known_depth: int = 0
    snapshots_1s: int = 0
    market: str = ""
    plan: str = ""  # how scales, price range and time order were established
    anomaly_first: dict[str, dict] = field(default_factory=dict)

    @property
    def vendor_book_agreement(self) -> float | None:
        if not self.vendor_book_rows_compared:
            return None
        return self.vendor_book_rows_equal / self.vendor_book_rows_compared

    def to_dict(self) -> dict:
        return asdict(self)


# --- exact decimals -----------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _decimals_needed(values, scale, skip_nan):
    """Smallest scale >= ``scale`` at which every value is an exact decimal (round(x * 10**s)
    / 10**s == x with fewer than 2**52 units); returns (scale, index of a value that is not
    representable, -1 when all are)."""
    for i in range(values.shape[0]):
        x = values[i]
        if x != x:
            if skip_nan:
                continue
            return scale, i
        while True:
            p = _POW10[scale]
            k = np.round(x * p)
            if abs(k) < _MAX_UNITS and k / p == x:
                break
            if scale == MAX_SCALE:
                return scale, i
            scale += 1
    return scale, -1


@njit(cache=True, nogil=True)
def _to_units(values, scale, nan_value, out):
    """Floats -> integers at ``scale`` into ``out``, NaN -> ``nan_value``; returns the index of
    the first value that is not exact at this scale (or is NaN while ``nan_value`` is
    ``_I64_MIN``: NaN not allowed), -1 when all are."""
    p = _POW10[scale]
    for i in range(values.shape[0]):
        x = values[i]
        if x != x:
            if nan_value == _I64_MIN:
                return i
            out[i] = nan_value
            continue
        k = np.round(x * p)
        if not (abs(k) < _MAX_UNITS and k / p == x):
            return i
        out[i] = np.int64(k)
    return -1


def units(
    values: np.ndarray,
    scale: int,
    what: str,
    nan_value: int | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Float64 values -> int64 units at ``scale``, exactly (ReconstructionError otherwise);
    NaN becomes ``nan_value`` and is an error when it is None."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    if out is None:
        out = np.empty(values.shape[0], dtype=np.int64)
    bad = _to_units(values, scale, _I64_MIN if nan_value is None else nan_value, out)
    if bad >= 0:
        raise ReconstructionError(
            f"{what}: {float(values[bad])!r} is not exact at {scale} decimals"
        )
    return out


def decimal_string(value: int, scale: int) -> str:
    """Integer units at ``scale`` -> plain decimal text (6183763, 2 -> "61837.63")."""
    return f"{Decimal(int(value)).scaleb(-scale):f}"


# --- reading ------------------------------------------------------------------------------------
_LEVEL_COLUMNS = {
    (side, what): [f"{side}_{i}_{what}" for i in range(BOOK_DEPTH)]
    for side in ("bid", "ask")
    for what in ("price", "size")
}
_LEVEL_ORDER = (("bid", "price"), ("bid", "size"), ("ask", "price"), ("ask", "size"))
_ALL_LEVEL_COLUMNS = [c for key in _LEVEL_ORDER for c in _LEVEL_COLUMNS[key]]
TRADE_COLUMNS = ["side", "amount", "price", "id", "timestamp", "receipt_timestamp"]
DELTA_COLUMNS = [
    "timestamp",
    "receipt_timestamp",
    "sequence_number",
    "side_is_bid",
    "price",
    "size",
]
_BOOK_COLUMNS = ["timestamp", "sequence_number", *_ALL_LEVEL_COLUMNS]


def _open(path: Path) -> pq.ParquetFile:
    # buffered page reads: a file written as one huge row group is still read in small pieces
    return pq.ParquetFile(path, buffer_size=1 << 22, pre_buffer=False)


def input_batch_rows(chunk_rows: int = DEFAULT_CHUNK_ROWS) -> int:
    """Rows per input batch: a window of both inputs, their buffers and outputs fit in
    ``chunk_rows``."""
    return max(1, chunk_rows // 4)


def input_batches(path: Path | None, columns: list[str], rows: int, use_threads: bool = True):
    """``columns`` of an input file (none for ``path`` None) in batches of ``rows``."""
    if path is None:
        return
    with _open(path) as handle:
        yield from handle.iter_batches(batch_size=rows, columns=columns, use_threads=use_threads)


def _first_batch(path: Path | None, columns: list[str], rows: int) -> pa.RecordBatch | None:
    for batch in input_batches(path, columns, rows):
        return batch
    return None


def _statistics_range(path: Path | None, columns: list[str]) -> tuple[float, float] | None:
    """(min, max) over ``columns`` from the row-group statistics; None when any is missing."""
    if path is None:
        return (np.inf, -np.inf)
    meta = pq.read_metadata(path)
    index = {meta.schema.column(i).name: i for i in range(meta.num_columns)}
    lo, hi = np.inf, -np.inf
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for name in columns:
            chunk = group.column(index[name])
            stats = chunk.statistics
            if chunk.num_values and (stats is None or not stats.has_min_max):
                return None
            if chunk.num_values:
                lo, hi = min(lo, float(stats.min)), max(hi, float(stats.max))
    return lo, hi


def _numpy(batch: pa.RecordBatch, name: str) -> np.ndarray:
    column = batch.column(name)
    if column.null_count:
        raise ReconstructionError(f"{name}: {column.null_count} null values")
    return column.to_numpy(zero_copy_only=False)


# --- the plan: scales, price range, time order --------------------------------------------------
@njit(cache=True, nogil=True)
def _time_order(times, running_max):
    """(new running max, largest step back below the running max, rows below it)."""
    lag = 0
    late = 0
    m = running_max
    for i in range(times.shape[0]):
        t = times[i]
        if t < m:
            late += 1
            if m - t > lag:
                lag = m - t
        else:
            m = t
    return m, lag, late


@dataclass
class _Plan:
    price_scale: int = 0
    size_scale: int = 0
    price_min: float = np.inf  # book prices (deltas, book rows, seed)
    price_max: float = -np.inf
    lags: dict[str, int] = field(default_factory=lambda: {"trades": 0, "deltas": 0})
    full_scan: bool = False  # established from every row (a miss is then a data error)
    range_known: bool = True  # price_min/max cover every book price
    description: str = ""

    def scale(self, kind: str, values: np.ndarray, what: str, skip_nan: bool = False) -> None:
        if values.size == 0:
            return
        values = np.ascontiguousarray(values, dtype=np.float64)
        current = self.price_scale if kind == "price" else self.size_scale
        scale, bad = _decimals_needed(values, current, skip_nan)
        if bad >= 0:
            raise ReconstructionError(
                f"{what}: {float(values[bad])!r} is not a decimal with at most {MAX_SCALE} places"
            )
        if kind == "price":
            self.price_scale = int(scale)
        else:
            self.size_scale = int(scale)

    def prices(self, values: np.ndarray) -> None:
        if values.size and not np.isnan(values).all():
            self.price_min = min(self.price_min, float(np.nanmin(values)))
            self.price_max = max(self.price_max, float(np.nanmax(values)))

    def book_batch(self, batch: pa.RecordBatch) -> None:
        for (_side, what), names in _LEVEL_COLUMNS.items():
            for name in names:
                values = batch.column(name).to_numpy(zero_copy_only=False)
                self.scale(what, values, f"book.{name}", skip_nan=True)
                if what == "price":
                    self.prices(values)

    def trades_batch(self, batch: pa.RecordBatch) -> None:
        self.scale("price", _numpy(batch, "price"), "trades.price")
        self.scale("size", _numpy(batch, "amount"), "trades.amount")

    def deltas_batch(self, batch: pa.RecordBatch) -> None:
        prices = _numpy(batch, "price")
        self.scale("price", prices, "book_delta_v2.price")
        self.scale("size", _numpy(batch, "size"), "book_delta_v2.size")
        self.prices(prices)

    def seed(self, seed: _Seed) -> None:
        if seed.prices is not None:  # cold: the vendor row's floats
            self.scale("price", seed.prices, "book seed", skip_nan=True)
            self.scale("size", seed.sizes, "book seed", skip_nan=True)
        else:
            self.price_scale = max(self.price_scale, seed.price_scale)
            self.size_scale = max(self.size_scale, seed.size_scale)
            ticks = np.concatenate([seed.bid_ticks, seed.ask_ticks])
            if ticks.size:
                self.prices(ticks / 10.0**seed.price_scale)


def _quick_plan(trades: Path | None, deltas: Path, book: Path, seed: _Seed, rows: int) -> _Plan:
    """Scales from the first batch of each file, price range from the Parquet statistics,
    inputs assumed in time order: every later row is checked against this while it is read."""
    plan = _Plan(description="first batches + statistics, verified on every row")
    plan.seed(seed)
    if (b := _first_batch(trades, ["price", "amount"], rows)) is not None:
        plan.trades_batch(b)
    if (b := _first_batch(deltas, ["price", "size"], rows)) is not None:
        plan.deltas_batch(b)
    if (b := _first_batch(book, _ALL_LEVEL_COLUMNS, max(1, rows // 16))) is not None:
        plan.book_batch(b)
    price_columns = _LEVEL_COLUMNS[("bid", "price")] + _LEVEL_COLUMNS[("ask", "price")]
    ranges = [_statistics_range(deltas, ["price"]), _statistics_range(book, price_columns)]
    if any(r is None for r in ranges):
        plan.range_known = False
    else:
        for lo, hi in ranges:
            if lo <= hi:  # (inf, -inf): no values
                plan.prices(np.array([lo, hi]))
    return plan


def _full_plan(
    trades: Path | None, deltas: Path, book: Path, seed: _Seed, rows: int, why: str
) -> _Plan:
    plan = _Plan(full_scan=True, description=f"full scan ({why})")
    plan.seed(seed)
    for name, path, columns in (
        ("trades", trades, ["timestamp", "price", "amount"]),
        ("deltas", deltas, ["timestamp", "price", "size"]),
    ):
        running, lag = _I64_MIN, 0
        for b in input_batches(path, columns, rows):
            m, batch_lag, _late = _time_order(_numpy(b, "timestamp"), running)
            running, lag = int(m), max(lag, int(batch_lag))
            if name == "trades":
                plan.trades_batch(b)
            else:
                plan.deltas_batch(b)
        plan.lags[name] = lag
    for b in input_batches(book, _ALL_LEVEL_COLUMNS, max(1, rows // 16)):
        plan.book_batch(b)
    return plan


# --- seeds --------------------------------------------------------------------------------------
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
    batch = _first_batch(book, _BOOK_COLUMNS, 1)
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


# --- memory and the occupancy bitmaps -----------------------------------------------------------
def _lazy_zeros(n: int, dtype=np.int64) -> np.ndarray:
    """Zeroed array on an anonymous mapping of small pages: untouched pages cost nothing, and
    first touches do not stall on huge-page compaction (numpy advises huge pages for large
    arrays, which makes sparse first touches slow on some machines)."""
    nbytes = max(int(n) * np.dtype(dtype).itemsize, 1)
    buffer = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return np.frombuffer(buffer, dtype=dtype, count=int(n))


class _Book(DenseBook):
    """``DenseBook`` on lazily mapped arrays, plus one occupancy bit per tick and side so that
    the top-20 walk skips empty ticks 64 at a time (``_top_levels``)."""

    def __init__(self, base_tick: int, width: int):
        if width <= 0:
            raise ValueError(f"book width must be positive, got {width}")
        self.base_tick = int(base_tick)
        self.bid_sizes = _lazy_zeros(width)
        self.ask_sizes = _lazy_zeros(width)
        self.state = new_state(self.base_tick)
        words = width // 64 + 1
        self.bid_bits = _lazy_zeros(words, np.uint64)
        self.ask_bits = _lazy_zeros(words, np.uint64)

    def apply(self, sides, ticks, sizes, event_ends, event_flags=None, depth=20, out=None):
        top = super().apply(sides, ticks, sizes, event_ends, event_flags, depth, out)
        _mark(self.bid_bits, self.ask_bits, self.state, self.bid_sizes.size, sides, ticks, sizes)
        return top


@intrinsic
def _ctlz(typingctx, x):
    """Leading zero bits of a non-zero uint64 (LLVM ctlz)."""

    def codegen(context, builder, signature, args):
        return builder.ctlz(args[0], ir.Constant(ir.IntType(1), 1))

    return types.uint64(types.uint64), codegen


@intrinsic
def _cttz(typingctx, x):
    """Trailing zero bits of a non-zero uint64 (LLVM cttz)."""

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))

    return types.uint64(types.uint64), codegen


@njit(cache=True, nogil=True)
def _mark(bid_bits, ask_bits, state, width, sides, ticks, lots):
    """Replay rows (as ``apply_levels`` applied them) onto the occupancy bits: a level's bit
    ends up set iff its last size is non-zero, i.e. iff the book holds it."""
    base = state[BASE_TICK]
    one = np.uint64(1)
    for j in range(ticks.shape[0]):
        i = ticks[j] - base
        if i < 0 or i >= width:
            continue
        bits = bid_bits if sides[j] else ask_bits
        bit = one << np.uint64(i & 63)
        if lots[j] != 0:
            bits[i >> 6] |= bit
        else:
            bits[i >> 6] &= ~bit


@njit(cache=True, nogil=True)
def _next_below(bits, i, lo):
    """Highest set index <= i and >= lo, -1 when none."""
    if i < lo:
        return -1
    w = i >> 6
    word = bits[w] & ((np.uint64(2) << np.uint64(i & 63)) - np.uint64(1))
    stop = lo >> 6
    while word == 0:
        w -= 1
        if w < stop:
            return -1
        word = bits[w]
    found = (w << 6) + 63 - np.int64(_ctlz(word))
    return found if found >= lo else -1


@njit(cache=True, nogil=True)
def _next_above(bits, i, hi):
    """Lowest set index >= i and <= hi, -1 when none."""
    if i > hi or i < 0:
        return -1
    w = i >> 6
    word = bits[w] & ~((np.uint64(1) << np.uint64(i & 63)) - np.uint64(1))
    stop = hi >> 6
    while word == 0:
        w += 1
        if w > stop:
            return -1
        word = bits[w]
    found = (w << 6) + np.int64(_cttz(word))
    return found if found <= hi else -1


# --- the replay: merge, book, snapshots ---------------------------------------------------------
# ctrl slots (int64), carried from window to window
C_KNOWN = 0  # the book is known (seeded and reached)
C_SEED_SEQ = 1
C_SEED_TIME = 2  # cold start: the seed row's timestamp; _I64_MIN: known from the first event
C_LAST_SEQ = 3  # last applied sequence number
C_NEXT_BOUNDARY = 4  # next 1 s snapshot time; _I64_MIN until the book is known
C_STEP = 5
C_BB_T = 6  # best bid tick / lots, best ask tick / lots after the last event (-1: none)
C_BB_S = 7
C_BA_T = 8
C_BA_S = 9
C_BEFORE_SEED = 10  # delta rows with sequence <= the seed's, not applied
C_SEQ_REGRESSIONS = 11
C_CROSSED = 12  # complete updates (diffs) after which best bid >= best ask
# the first row of each gated anomaly (event time, sequence number; _I64_MIN time: none yet)
C_FIRST_REGRESSION_T = 13
C_FIRST_REGRESSION_SEQ = 14
C_FIRST_REGRESSION_AFTER = 15  # the last applied sequence number it came after
C_FIRST_OUT_OF_RANGE_T = 16
C_FIRST_OUT_OF_RANGE_SEQ = 17
C_FIRST_CROSSED_T = 18
C_FIRST_CROSSED_SEQ = 19
C_FIRST_BEFORE_SEED_T = 20
C_FIRST_BEFORE_SEED_SEQ = 21
C_CTRL_SIZE = 24

# stream output rows: int64 matrix, int8 matrix, decimal units matrix
OI_TIME, OI_RECV, OI_ID, OI_SEQ = range(4)
OB_TYPE, OB_SIDE, OB_COMPLETE, OB_BID_VALID, OB_ASK_VALID = range(5)
OD_PRICE, OD_SIZE, OD_BB_P, OD_BB_S, OD_BA_P, OD_BA_S = range(6)


@njit(cache=True, nogil=True)
def _top_levels(bid_sizes, ask_sizes, bid_bits, ask_bits, state, out, row):
    """The book's top ``out.shape[1]`` levels into ``out[0..3, :, row]``: bid ticks, bid lots,
    ask ticks, ask lots, best first; tick -1 / lots 0 = no level. (Level-major: a window's
    snapshots ``out[q, level, :n]`` are the output columns as they are, without a transpose.)"""
    base = state[BASE_TICK]
    depth = out.shape[1]
    k = 0
    i = state[BEST_BID]
    lo = state[BID_LO]
    while k < depth:
        i = _next_below(bid_bits, i, lo)
        if i < 0:
            break
        out[0, k, row] = i + base
        out[1, k, row] = bid_sizes[i]
        k += 1
        i -= 1
    while k < depth:
        out[0, k, row] = -1
        out[1, k, row] = 0
        k += 1
    k = 0
    i = state[BEST_ASK]
    hi = state[ASK_HI]
    while k < depth:
        i = _next_above(ask_bits, i, hi)
        if i < 0:
            break
        out[2, k, row] = i + base
        out[3, k, row] = ask_sizes[i]
        k += 1
        i += 1
    while k < depth:
        out[2, k, row] = -1
        out[3, k, row] = 0
        k += 1


@njit(cache=True, nogil=True)
def _replay(
    d_time, d_recv, d_seq, d_bid, d_tick, d_lots,
    t_time, t_recv, t_id, t_price, t_size, t_side,
    v_seq, final,
    bid_sizes, ask_sizes, bid_bits, ask_bits, state, ctrl,
    ap_bid, ap_tick, ap_lots, ap_ends, ap_flags, ap_bt, ap_bs, ap_at, ap_as,
    row_ap, trig_pos, trig_kind, trig_ref,
    oi, ob, od, vsnap, ssnap, s_time, s_seq,
):  # fmt: skip
    """Merge one window of deltas and trades (each sorted by its key) into the stream, apply the
    deltas to the book and take the snapshots. Returns (stream rows, vendor rows consumed,
    1 s snapshots)."""
    nd = d_time.shape[0]
    nt = t_time.shape[0]
    nv = v_seq.shape[0]
    width = bid_sizes.shape[0]
    step = ctrl[C_STEP]
    known = ctrl[C_KNOWN] != 0
    i = 0
    j = 0
    r = 0
    n_ap = 0
    n_trig = 0
    v_ptr = 0
    n_s = 0
    # ctrl slots used per row live in locals (stored back below): ctrl is an int64 array the
    # compiler must assume aliases the output arrays, so each access would be a memory round trip
    seed_seq = ctrl[C_SEED_SEQ]
    seed_time = ctrl[C_SEED_TIME]
    next_boundary = ctrl[C_NEXT_BOUNDARY]
    last_seq = ctrl[C_LAST_SEQ]
    n_regressions = 0
    n_before_seed = 0
    base_tick = state[BASE_TICK]
    first_reg_t = ctrl[C_FIRST_REGRESSION_T]
    first_reg_s = ctrl[C_FIRST_REGRESSION_SEQ]
    first_reg_after = ctrl[C_FIRST_REGRESSION_AFTER]
    first_oor_t = ctrl[C_FIRST_OUT_OF_RANGE_T]
    first_oor_s = ctrl[C_FIRST_OUT_OF_RANGE_SEQ]
    first_bs_t = ctrl[C_FIRST_BEFORE_SEED_T]
    first_bs_s = ctrl[C_FIRST_BEFORE_SEED_SEQ]
    # phase A: merge order, stream columns, which rows are applied, where snapshots fall
    while i < nd or j < nt:
        take_delta = j >= nt or (
            i < nd
            and (d_time[i] < t_time[j] or (d_time[i] == t_time[j] and d_recv[i] <= t_recv[j]))
        )
        t = d_time[i] if take_delta else t_time[j]
        if not known:  # cold start: known from the first applied delta or the seed's time
            known = d_seq[i] > seed_seq if take_delta else t >= seed_time
        if known:
            if next_boundary == _I64_MIN:
                base = seed_time if seed_time != _I64_MIN else t
                next_boundary = (base // step + 1) * step
            while next_boundary <= t:
                trig_pos[n_trig] = n_ap
                trig_kind[n_trig] = 1
                trig_ref[n_trig] = n_s
                n_trig += 1
                s_time[n_s] = next_boundary
                s_seq[n_s] = last_seq
                n_s += 1
                next_boundary += step
        oi[OI_TIME, r] = t
        if take_delta:
            s = d_seq[i]
            oi[OI_RECV, r] = d_recv[i]
            oi[OI_ID, r] = 0
            oi[OI_SEQ, r] = s
            ob[OB_TYPE, r] = 0
            ob[OB_SIDE, r] = 0 if d_bid[i] else 1
            ob[OB_COMPLETE, r] = i + 1 >= nd or d_seq[i + 1] != s
            od[OD_PRICE, r] = d_tick[i]
            od[OD_SIZE, r] = d_lots[i]
            if s > seed_seq and s < last_seq:
                # older than a delta already applied: refused (applying it would bring back a
                # stale level), counted and gated by `reconstruction_anomalies`
                if first_reg_t == _I64_MIN:
                    first_reg_t, first_reg_s, first_reg_after = t, s, last_seq
                n_regressions += 1
                row_ap[r] = -1
            elif s > seed_seq:
                k = d_tick[i] - base_tick
                if (k < 0 or k >= width) and first_oor_t == _I64_MIN:
                    first_oor_t, first_oor_s = t, s  # the kernel ignores it (out_of_range)
                while v_ptr < nv and v_seq[v_ptr] < s:
                    trig_pos[n_trig] = n_ap
                    trig_kind[n_trig] = 0
                    trig_ref[n_trig] = v_ptr
                    n_trig += 1
                    v_ptr += 1
                ap_bid[n_ap] = d_bid[i]
                ap_tick[n_ap] = d_tick[i]
                ap_lots[n_ap] = d_lots[i]
                row_ap[r] = n_ap
                n_ap += 1
                last_seq = s
            else:
                if first_bs_t == _I64_MIN:
                    first_bs_t, first_bs_s = t, s
                n_before_seed += 1
                row_ap[r] = -1
                if s == seed_seq and ob[OB_COMPLETE, r]:
                    known = True  # the vendor row seeding the book is the state after this diff
            i += 1
        else:
            oi[OI_RECV, r] = t_recv[j]
            oi[OI_ID, r] = t_id[j]
            oi[OI_SEQ, r] = 0
            ob[OB_TYPE, r] = 1
            ob[OB_SIDE, r] = t_side[j]
            ob[OB_COMPLETE, r] = 1
            od[OD_PRICE, r] = t_price[j]
            od[OD_SIZE, r] = t_size[j]
            row_ap[r] = -1
            j += 1
        ob[OB_BID_VALID, r] = known  # phase C turns this into the validity of the best bid/ask
        r += 1
    ctrl[C_NEXT_BOUNDARY] = next_boundary
    ctrl[C_LAST_SEQ] = last_seq
    ctrl[C_SEQ_REGRESSIONS] += n_regressions
    ctrl[C_BEFORE_SEED] += n_before_seed
    ctrl[C_FIRST_REGRESSION_T] = first_reg_t
    ctrl[C_FIRST_REGRESSION_SEQ] = first_reg_s
    ctrl[C_FIRST_REGRESSION_AFTER] = first_reg_after
    ctrl[C_FIRST_OUT_OF_RANGE_T] = first_oor_t
    ctrl[C_FIRST_OUT_OF_RANGE_SEQ] = first_oor_s
    ctrl[C_FIRST_BEFORE_SEED_T] = first_bs_t
    ctrl[C_FIRST_BEFORE_SEED_SEQ] = first_bs_s
    if final:
        while v_ptr < nv:
            trig_pos[n_trig] = n_ap
            trig_kind[n_trig] = 0
            trig_ref[n_trig] = v_ptr
            n_trig += 1
            v_ptr += 1
        if known and ctrl[C_NEXT_BOUNDARY] != _I64_MIN:
            trig_pos[n_trig] = n_ap
            trig_kind[n_trig] = 1
            trig_ref[n_trig] = n_s
            n_trig += 1
            s_time[n_s] = ctrl[C_NEXT_BOUNDARY]
            s_seq[n_s] = ctrl[C_LAST_SEQ]
            n_s += 1
    ctrl[C_KNOWN] = 1 if known else 0
    # phase B: the book, segment by segment between snapshots (best bid/ask after every row)
    a = 0
    for k in range(n_trig + 1):
        b = trig_pos[k] if k < n_trig else n_ap
        if b > a:
            apply_levels(
                bid_sizes, ask_sizes, state,
                ap_bid[a:b], ap_tick[a:b], ap_lots[a:b], ap_ends[: b - a], ap_flags[: b - a],
                ap_bt[a:b], ap_bs[a:b], ap_at[a:b], ap_as[a:b],
            )  # fmt: skip
            _mark(bid_bits, ask_bits, state, width, ap_bid[a:b], ap_tick[a:b], ap_lots[a:b])
            a = b
        if k < n_trig:
            snap = vsnap if trig_kind[k] == 0 else ssnap
            _top_levels(bid_sizes, ask_sizes, bid_bits, ask_bits, state, snap, trig_ref[k])
    # phase C: best bid/ask after every stream row
    bb_t = ctrl[C_BB_T]
    bb_s = ctrl[C_BB_S]
    ba_t = ctrl[C_BA_T]
    ba_s = ctrl[C_BA_S]
    for q in range(r):
        k = row_ap[q]
        if k >= 0:
            bb_t = ap_bt[k, 0]
            bb_s = ap_bs[k, 0]
            ba_t = ap_at[k, 0]
            ba_s = ap_as[k, 0]
            if ob[OB_COMPLETE, q] and bb_t >= 0 and ba_t >= 0 and bb_t >= ba_t:
                if ctrl[C_CROSSED] == 0:
                    ctrl[C_FIRST_CROSSED_T] = oi[OI_TIME, q]
                    ctrl[C_FIRST_CROSSED_SEQ] = oi[OI_SEQ, q]
                ctrl[C_CROSSED] += 1
        row_known = ob[OB_BID_VALID, q] != 0
        ob[OB_BID_VALID, q] = row_known and bb_t >= 0
        ob[OB_ASK_VALID, q] = row_known and ba_t >= 0
        od[OD_BB_P, q] = bb_t
        od[OD_BB_S, q] = bb_s
        od[OD_BA_P, q] = ba_t
        od[OD_BA_S, q] = ba_s
    ctrl[C_BB_T] = bb_t
    ctrl[C_BB_S] = bb_s
    ctrl[C_BA_T] = ba_t
    ctrl[C_BA_S] = ba_s
    return r, v_ptr, n_s


def _levels_major(snap: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` snapshots (4, 20, n) of a buffer written by ``_top_levels``: a view whose
    price/size columns ``[q, level]`` are contiguous."""
    return snap[:, :, :n]


class _Buffers:
    """Scratch and output arrays of ``_replay``, grown on demand and reused across windows."""

    def __init__(self, rows: int) -> None:
        self.rows = self.vendor = self.seconds = self.triggers = 0
        self.ensure(rows, 1024, 1024)

    def ensure(self, rows: int, vendor: int, seconds: int) -> None:
        if rows > self.rows:
            n = self.rows = max(rows, self.rows * 5 // 4, 1024)
            self.ap_bid = _lazy_zeros(n, np.bool_)
            self.ap_tick = _lazy_zeros(n)
            self.ap_lots = _lazy_zeros(n)
            self.ap_ends = np.arange(1, n + 1, dtype=np.int64)
            self.ap_flags = np.full(n, FLAG_EMIT, dtype=np.uint8)
            self.ap_best = [_lazy_zeros(n).reshape(n, 1) for _ in range(4)]
            self.row_ap = _lazy_zeros(n)
            self.oi = _lazy_zeros(4 * n).reshape(4, n)
            self.ob = _lazy_zeros(5 * n, np.int8).reshape(5, n)
            self.od = _lazy_zeros(6 * n).reshape(6, n)
        if vendor > self.vendor:
            self.vendor = max(vendor, self.vendor * 5 // 4)
            self.vsnap = np.empty((4, BOOK_DEPTH, self.vendor), dtype=np.int64)
        if seconds > self.seconds:
            self.seconds = max(seconds, self.seconds * 5 // 4)
            self.ssnap = np.empty((4, BOOK_DEPTH, self.seconds), dtype=np.int64)
            self.s_time = np.empty(self.seconds, dtype=np.int64)
            self.s_seq = np.empty(self.seconds, dtype=np.int64)
        if vendor + seconds > self.triggers:
            self.triggers = max(vendor + seconds, self.triggers * 5 // 4)
            self.trig = [np.empty(self.triggers, dtype=np.int64) for _ in range(3)]


# --- inputs -------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _is_sorted(time, recv, tie):
    for i in range(1, time.shape[0]):
        if time[i] != time[i - 1]:
            if time[i] < time[i - 1]:
                return False
        elif recv[i] != recv[i - 1]:
            if recv[i] < recv[i - 1]:
                return False
        elif tie[i] < tie[i - 1]:
            return False
    return True


_DELTA_DTYPES = {"time": np.int64, "recv": np.int64, "seq": np.int64, "bid": np.bool_,
                 "tick": np.int64, "lots": np.int64}  # fmt: skip
_TRADE_DTYPES = {"time": np.int64, "recv": np.int64, "id": np.int64, "price": np.int64,
                 "size": np.int64, "side": np.int8}  # fmt: skip


class _Input:
    """One time-ordered input (trades or deltas) read batch by batch into reused column buffers
    and released in windows of rows older than ``cut``."""

    def __init__(self, name: str, path: Path | None, plan: _Plan, dense: _Book, rows: int):
        self.name = name
        self.plan = plan
        self.dense = dense
        self.dtypes = _DELTA_DTYPES if name == "deltas" else _TRADE_DTYPES
        self.tie = "seq" if name == "deltas" else "id"
        self.lag_ns = plan.lags[name]
        columns = DELTA_COLUMNS if name == "deltas" else TRADE_COLUMNS
        self.batches = input_batches(path, columns, rows)
        self.cols = {k: _lazy_zeros(rows * 5 // 4 + 1024, t) for k, t in self.dtypes.items()}
        self.n = 0  # rows held
        self.done = path is None
        self.running_max = _I64_MIN
        self.released_cut = _I64_MIN  # every row in the stream so far is older than this
        self.invalid_side = 0
        self.late_rows = 0  # rows older than an earlier row of the file
        self.released = 0  # rows handed out by the last release

    @property
    def safe_cut(self) -> int:
        """Every row still to be read has a time >= this."""
        if self.done:
            return _I64_MAX
        if self.running_max == _I64_MIN:
            return _I64_MIN
        return self.running_max - self.lag_ns

    def read(self) -> None:
        batch = next(self.batches, None)
        if batch is None:
            self.done = True
            return
        m = batch.num_rows
        if self.n + m > self.cols["time"].size:
            size = max(self.n + m, self.cols["time"].size * 3 // 2)
            for k, v in self.cols.items():
                grown = _lazy_zeros(size, v.dtype)
                grown[: self.n] = v[: self.n]
                self.cols[k] = grown
        a, b = self.n, self.n + m
        if self.name == "deltas":
            self._fill_deltas(batch, a, b)
        else:
            self._fill_trades(batch, a, b)
        time = self.cols["time"][a:b]
        if m:
            if int(time.min()) < self.released_cut:  # only possible when the plan assumed order
                self._miss(f"{self.name} out of time order")
            running_max, _lag, late = _time_order(time, self.running_max)
            self.running_max, self.late_rows = int(running_max), self.late_rows + int(late)
        self.n = b

    def _miss(self, why: str) -> None:
        if self.plan.full_scan:
            raise ReconstructionError(f"{why}, although a full scan planned for it")
        raise _PlanMiss(why)

    def _units(self, batch: pa.RecordBatch, column: str, scale: int, out: np.ndarray) -> None:
        values = np.ascontiguousarray(_numpy(batch, column), dtype=np.float64)
        bad = _to_units(values, scale, _I64_MIN, out)
        if bad >= 0:
            what = f"{'book_delta_v2' if self.name == 'deltas' else 'trades'}.{column}"
            if self.plan.full_scan or np.isnan(values[bad]):
                raise ReconstructionError(
                    f"{what}: {float(values[bad])!r} is not exact at {scale} decimals"
                )
            self._miss(f"{what} {float(values[bad])!r} needs more than {scale} decimals")

    def _fill_deltas(self, batch: pa.RecordBatch, a: int, b: int) -> None:
        c = self.cols
        c["time"][a:b] = _numpy(batch, "timestamp")
        c["recv"][a:b] = _numpy(batch, "receipt_timestamp")
        c["seq"][a:b] = _numpy(batch, "sequence_number")
        c["bid"][a:b] = _numpy(batch, "side_is_bid")
        self._units(batch, "price", self.plan.price_scale, c["tick"][a:b])
        self._units(batch, "size", self.plan.size_scale, c["lots"][a:b])
        if not self.plan.range_known and b > a:
            lo, hi = int(c["tick"][a:b].min()), int(c["tick"][a:b].max())
            base = self.dense.base_tick
            if lo < base or hi >= base + self.dense.bid_sizes.size:
                self._miss("book_delta_v2 prices outside the assumed range")

    def _fill_trades(self, batch: pa.RecordBatch, a: int, b: int) -> None:
        c = self.cols
        c["time"][a:b] = _numpy(batch, "timestamp")
        c["recv"][a:b] = _numpy(batch, "receipt_timestamp")
        c["id"][a:b] = _numpy(batch, "id")
        self._units(batch, "price", self.plan.price_scale, c["price"][a:b])
        self._units(batch, "amount", self.plan.size_scale, c["size"][a:b])
        side = batch.column("side")
        buy = pc.fill_null(pc.equal(side, "buy"), False).to_numpy(zero_copy_only=False)
        sell = pc.fill_null(pc.equal(side, "sell"), False).to_numpy(zero_copy_only=False)
        codes = c["side"][a:b]
        codes[:] = -1
        codes[buy] = 2
        codes[sell] = 3
        self.invalid_side += int((~(buy | sell)).sum())

    def release(self, cut: int) -> dict[str, np.ndarray] | None:
        """Views of the held rows older than ``cut``, sorted by the stream key; valid until
        ``consume`` is called."""
        n = self.n
        if n == 0:
            return None
        c = {k: v[:n] for k, v in self.cols.items()}
        if not _is_sorted(c["time"], c["recv"], c[self.tie]):
            order = np.lexsort((c[self.tie], c["recv"], c["time"]))  # stable: row order last
            for v in c.values():
                v[:] = v[order]
        k = n if cut == _I64_MAX else int(np.searchsorted(c["time"], cut, side="left"))
        self.released = k
        return {key: v[:k] for key, v in c.items()} if k else None

    def consume(self) -> None:
        """Drop the rows of the last ``release``, keeping the rest at the buffer's start."""
        k, n = self.released, self.n
        if k:
            for v in self.cols.values():
                v[: n - k] = v[k:n]
            self.n = n - k
        self.released = 0


class _VendorBook:
    """The vendor's book rows in sequence order, read as far as the replay needs them; levels
    level-major: ``lv[q, level, row]`` with q = bid ticks, bid lots, ask ticks, ask lots."""

    def __init__(self, path: Path, rows: int, plan: _Plan):
        self.batches = input_batches(path, _BOOK_COLUMNS, rows)
        self.plan = plan
        self.done = False
        self.pieces: list[dict[str, np.ndarray]] = []
        self.offset = 0  # rows of pieces[0] already taken
        self.seq = np.zeros(0, dtype=np.int64)  # pending sequence numbers

    def _convert(self, b: pa.RecordBatch) -> dict[str, np.ndarray]:
        n = b.num_rows
        lv = np.empty((4, BOOK_DEPTH, n), dtype=np.int64)
        for q, key in enumerate(_LEVEL_ORDER):
            scale = self.plan.price_scale if key[1] == "price" else self.plan.size_scale
            for i, name in enumerate(_LEVEL_COLUMNS[key]):
                values = np.ascontiguousarray(
                    b.column(name).to_numpy(zero_copy_only=False), dtype=np.float64
                )
                bad = _to_units(values, scale, -1 if key[1] == "price" else 0, lv[q, i])
                if bad >= 0:
                    if self.plan.full_scan:
                        raise ReconstructionError(
                            f"book.{name}: {float(values[bad])!r} is not exact at {scale} decimals"
                        )
                    raise _PlanMiss(
                        f"book.{name} {float(values[bad])!r} needs more than {scale} decimals"
                    )
        return {"time": _numpy(b, "timestamp"), "seq": _numpy(b, "sequence_number"), "lv": lv}

    def cover(self, seq: int) -> None:
        """Read until every row with a sequence number <= ``seq`` is pending."""
        while not self.done and (self.seq.size == 0 or self.seq[-1] <= seq):
            b = next(self.batches, None)
            if b is None:
                self.done = True
                return
            piece = self._convert(b)
            self.pieces.append(piece)
            self.seq = np.concatenate([self.seq, piece["seq"]])

    def take(self, n: int) -> list[dict[str, np.ndarray]]:
        """The first ``n`` pending rows as views of the pieces holding them (no copy), removed
        from the pending ones."""
        parts = []
        need = n
        while need:
            piece = self.pieces[0]
            size = piece["seq"].size - self.offset
            k = min(size, need)
            parts.append({key: v[..., self.offset : self.offset + k] for key, v in piece.items()})
            need -= k
            if k == size:
                self.pieces.pop(0)
                self.offset = 0
            else:
                self.offset += k
        self.seq = self.seq[n:]
        return parts


# --- Arrow output -------------------------------------------------------------------------------
def _validity(mask: np.ndarray) -> pa.Buffer | None:
    if mask.all():
        return None
    return pa.py_buffer(np.packbits(mask.view(np.bool_), bitorder="little"))


def _decimal(values: np.ndarray, scale: int, valid: np.ndarray | None = None) -> pa.Array:
    """int64 units -> decimal64(18, scale), zero copy (written as Parquet INT64 decimals)."""
    vb = None if valid is None else _validity(valid)
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(
        pa.decimal64(DECIMAL_PRECISION, scale), values.shape[0], [vb, pa.py_buffer(values)]
    )


def _timestamps(values: np.ndarray) -> pa.Array:
    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(
        pa.timestamp("ns", "UTC"), values.shape[0], [None, pa.py_buffer(values)]
    )


def _int64(values: np.ndarray, valid: np.ndarray) -> pa.Array:
    return pa.Array.from_buffers(
        pa.int64(), values.shape[0], [_validity(valid), pa.py_buffer(values)]
    )


def _dictionary(codes: np.ndarray, values: tuple[str, ...]) -> pa.Array:
    valid = codes >= 0
    if not valid.all():
        codes = np.where(valid, codes, 0).astype(np.int8)
    indices = pa.Array.from_buffers(
        pa.int8(), codes.shape[0], [_validity(valid), pa.py_buffer(codes)]
    )
    return pa.DictionaryArray.from_arrays(indices, pa.array(values, pa.string()))


def _decimal_type(scale: int, written: bool) -> pa.DataType:
    # written from decimal64 arrays; read back (any reader) as decimal128
    return (pa.decimal64 if written else pa.decimal128)(DECIMAL_PRECISION, scale)


def stream_schema(price_scale: int, size_scale: int, written: bool = False) -> pa.Schema:
    """The schema of ``stream.parquet`` as read back (``written``: as written, with decimal64
    and dictionary-encoded strings)."""
    ts = pa.timestamp("ns", "UTC")
    text = pa.dictionary(pa.int8(), pa.string()) if written else pa.string()
    price, size = _decimal_type(price_scale, written), _decimal_type(size_scale, written)
    return pa.schema([
        pa.field("event_time", ts, nullable=False),
        pa.field("received_time", ts, nullable=False),
        pa.field("event_type", text, nullable=False),
        pa.field("side", text),
        pa.field("price", price, nullable=False),
        pa.field("size", size, nullable=False),
        pa.field("trade_id", pa.int64()),
        pa.field("sequence_number", pa.int64()),
        pa.field("best_bid_price", price),
        pa.field("best_bid_size", size),
        pa.field("best_ask_price", price),
        pa.field("best_ask_size", size),
        pa.field("update_complete", pa.bool_(), nullable=False),
    ])  # fmt: skip


def snapshot_schema(price_scale: int, size_scale: int, vendor: bool, written: bool = False):
    fields = [
        pa.field("timestamp", pa.timestamp("ns", "UTC"), nullable=False),
        pa.field("sequence_number", pa.int64()),
    ]
    for side in ("bid", "ask"):
        for i in range(BOOK_DEPTH):
            fields.append(pa.field(f"{side}_{i}_price", _decimal_type(price_scale, written)))
            fields.append(pa.field(f"{side}_{i}_size", _decimal_type(size_scale, written)))
    if vendor:
        fields += [pa.field("matches_vendor", pa.bool_()), pa.field("depth_known", pa.bool_())]
    return pa.schema(fields)


def end_book_schema(price_scale: int, size_scale: int, written: bool = False) -> pa.Schema:
    return pa.schema([
        pa.field("side", pa.string(), nullable=False),
        pa.field("price", _decimal_type(price_scale, written), nullable=False),
        pa.field("size", _decimal_type(size_scale, written), nullable=False),
        pa.field("price_ticks", pa.int64(), nullable=False),
        pa.field("size_lots", pa.int64(), nullable=False),
    ])  # fmt: skip


def _stream_batch(buf: _Buffers, n: int, schema: pa.Schema, ps: int, ss: int) -> pa.RecordBatch:
    oi, ob, od = buf.oi, buf.ob, buf.od
    is_trade = ob[OB_TYPE, :n] == 1
    bid_ok = ob[OB_BID_VALID, :n].view(np.bool_)
    ask_ok = ob[OB_ASK_VALID, :n].view(np.bool_)
    columns = [
        _timestamps(oi[OI_TIME, :n]),
        _timestamps(oi[OI_RECV, :n]),
        _dictionary(ob[OB_TYPE, :n], EVENT_TYPES),
        _dictionary(ob[OB_SIDE, :n], SIDES),
        _decimal(od[OD_PRICE, :n], ps),
        _decimal(od[OD_SIZE, :n], ss),
        _int64(oi[OI_ID, :n], is_trade),
        _int64(oi[OI_SEQ, :n], ~is_trade),
        _decimal(od[OD_BB_P, :n], ps, bid_ok),
        _decimal(od[OD_BB_S, :n], ss, bid_ok),
        _decimal(od[OD_BA_P, :n], ps, ask_ok),
        _decimal(od[OD_BA_S, :n], ss, ask_ok),
        pa.array(ob[OB_COMPLETE, :n].view(np.bool_)),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _snapshot_batch(
    lv: np.ndarray, time: np.ndarray, seq: np.ndarray, schema: pa.Schema, ps: int, ss: int,
    extra: tuple[pa.Array, ...] = (),
) -> pa.RecordBatch:  # fmt: skip
    """``lv``: (4, 20, n) bid ticks, bid lots, ask ticks, ask lots (tick -1: no level)."""
    columns = [_timestamps(time), pa.array(np.ascontiguousarray(seq), pa.int64())]
    for ticks, lots in ((lv[0], lv[1]), (lv[2], lv[3])):
        for i in range(BOOK_DEPTH):
            present = ticks[i] >= 0
            columns.append(_decimal(ticks[i], ps, present))
            columns.append(_decimal(lots[i], ss, present))
    return pa.RecordBatch.from_arrays(columns + list(extra), schema=schema)


# --- fidelity vs the vendor's book rows ---------------------------------------------------------
@njit(cache=True, nogil=True)
def _compare_levels(
    obt, obs, oat, oas, vbt, vbs, vat, vas, bid_floor, ask_ceiling,
    compared, level_equal, row_eq, depth_known, known_eq,
):  # fmt: skip
    """Our levels against the vendor's, ``[level, row]`` (ticks -1 = no level). Per row: every
    level equal (price and size, both sides), every level of ours inside the known depth (bids
    >= ``bid_floor``, asks <= ``ask_ceiling``; ``_I64_MIN`` / ``_I64_MAX``: the whole side), and
    equal wherever either book puts a level inside the known depth (there both are exact);
    ``level_equal[i]`` counts the ``compared`` rows whose level i is equal on both sides."""
    depth, n = obt.shape
    whole_bids = bid_floor == _I64_MIN
    whole_asks = ask_ceiling == _I64_MAX
    row_eq[:] = True
    depth_known[:] = True
    known_eq[:] = True
    for level in range(depth):  # level-major, as the arrays are laid out
        equal = 0
        for r in range(n):
            bid_eq = obt[level, r] == vbt[level, r] and obs[level, r] == vbs[level, r]
            ask_eq = oat[level, r] == vat[level, r] and oas[level, r] == vas[level, r]
            o_bid_in = whole_bids or obt[level, r] >= bid_floor
            v_bid_in = whole_bids or vbt[level, r] >= bid_floor
            o_ask_in = whole_asks or (oat[level, r] >= 0 and oat[level, r] <= ask_ceiling)
            v_ask_in = whole_asks or (vat[level, r] >= 0 and vat[level, r] <= ask_ceiling)
            if not (bid_eq and ask_eq):
                row_eq[r] = False
            elif compared[r]:
                equal += 1
            if not (o_bid_in and o_ask_in):
                depth_known[r] = False
            bid_ok = bid_eq or not (o_bid_in or v_bid_in)
            ask_ok = ask_eq or not (o_ask_in or v_ask_in)
            if not (bid_ok and ask_ok):
                known_eq[r] = False
        level_equal[level] += equal


@dataclass
class _Fidelity:
    bid_floor: int
    ask_ceiling: int
    seed_sequence: int
    cold: bool  # the seed is the vendor row at seed_sequence: equal to itself, not compared
    price_scale: int
    size_scale: int
    compared: int = 0
    equal: int = 0
    unknown_depth: int = 0
    equal_known: int = 0
    before_seed: int = 0
    level_equal: np.ndarray = field(default_factory=lambda: np.zeros(BOOK_DEPTH, dtype=np.int64))
    first_mismatches: list[dict] = field(default_factory=list)

    def compare(
        self, ours: np.ndarray, vendor: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row: (all levels equal, compared, our top 20 within the known depth)."""
        obt, obs, oat, oas = ours
        vbt, vbs, vat, vas = vendor["lv"]
        seq = vendor["seq"]
        # Rows before the seed describe a book we never held; with a previous-day seed the
        # row at the seed's own sequence number is a real check of the carried-over book.
        compared = seq > self.seed_sequence if self.cold else seq >= self.seed_sequence
        self.before_seed += int((seq < self.seed_sequence).sum())
        n = seq.shape[0]
        row_eq, depth_known, known_eq = (np.empty(n, dtype=np.bool_) for _ in range(3))
        _compare_levels(
            obt, obs, oat, oas, vbt, vbs, vat, vas, self.bid_floor, self.ask_ceiling,
            compared, self.level_equal, row_eq, depth_known, known_eq,
        )  # fmt: skip
        c = compared
        self.compared += int(c.sum())
        self.equal += int((row_eq & c).sum())
        self.unknown_depth += int((~depth_known & c).sum())
        self.equal_known += int((known_eq & c).sum())
        room = MAX_FIRST_MISMATCHES - len(self.first_mismatches)
        for r in np.flatnonzero(c & ~row_eq)[: max(room, 0)]:
            self.first_mismatches.append(
                self._describe(int(r), ours, vendor, bool(known_eq[r]), bool(depth_known[r]))
            )
        return row_eq, compared, depth_known

    def _describe(self, r: int, ours, vendor, known_eq: bool, depth_known: bool) -> dict:
        lv = vendor["lv"]
        for level in range(BOOK_DEPTH):
            for side, q in (("bid", 0), ("ask", 2)):
                if (
                    ours[q, level, r] != lv[q, level, r]
                    or ours[q + 1, level, r] != lv[q + 1, level, r]
                ):
                    return {
                        "sequence_number": int(vendor["seq"][r]),
                        "timestamp": int(vendor["time"][r]),
                        "level": level,
                        "side": side,
                        "ours": self._level(ours[q, level, r], ours[q + 1, level, r]),
                        "vendor": self._level(lv[q, level, r], lv[q + 1, level, r]),
                        "within_known_depth": not known_eq,
                        "depth_known": depth_known,
                    }
        raise AssertionError("row differs but no level does")

    def _level(self, tick: int, lots: int) -> dict | None:
        if tick < 0:
            return None
        return {
            "price": decimal_string(tick, self.price_scale),
            "size": decimal_string(lots, self.size_scale),
        }


# --- the entry point ----------------------------------------------------------------------------
def reconstruct_partition(
    trades: Path | None,
    book_delta_v2: Path,
    book: Path,
    out_dir: Path,
    previous_end_book: Path | None,
    *,
    snapshot_every_ns: int = 1_000_000_000,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> ReconstructionResult:
    """Reconstruct one partition into ``out_dir`` (see the module docstring for the outputs).

    ``trades`` may be None (a day without trades). Raises ``ReconstructionError`` when the book
    cannot be seeded or a value is not an exact decimal; book anomalies (crossed books, deletes
    of unknown levels, ...) are counted in ``anomalies``, never raised."""
    if snapshot_every_ns <= 0:
        raise ValueError("snapshot_every_ns must be positive")
    rows = input_batch_rows(chunk_rows)
    trades = Path(trades) if trades is not None else None
    book_delta_v2, book, out_dir = Path(book_delta_v2), Path(book), Path(out_dir)
    market = _market_of(book_delta_v2, book, trades)
    seed = _seed_from_end_book(Path(previous_end_book)) if previous_end_book else _cold_seed(book)
    if seed.source == "previous_day" and seed.market and market and seed.market != market:
        raise ReconstructionError(
            f"the previous day's book is for {seed.market}, this partition is {market}"
        )
    paths = (trades, book_delta_v2, book)
    try:
        plan = _quick_plan(*paths, seed, rows)
        return _Reconstruction(paths, out_dir, seed, plan, market, snapshot_every_ns, rows).run()
    except _PlanMiss as miss:
        plan = _full_plan(*paths, seed, rows, str(miss))
        return _Reconstruction(paths, out_dir, seed, plan, market, snapshot_every_ns, rows).run()


def _dense_book(plan: _Plan, seed: _Seed) -> _Book:
    """Dense arrays over the day's price range; without statistics (or when the range is too
    wide) a window around the seed (a quick plan checks every price against it)."""
    p = 10.0**plan.price_scale
    best = [int(x[0]) for x in (seed.bid_ticks, seed.ask_ticks) if x.size]
    mid = sum(best) // len(best) if best else None
    if np.isfinite(plan.price_min):
        lo, hi = int(round(plan.price_min * p)), int(round(plan.price_max * p))
    else:
        lo, hi = 0, 0
    if not plan.range_known and mid is not None:
        lo, hi = min(lo, mid // SEED_RANGE_FACTOR), max(hi, mid * SEED_RANGE_FACTOR)
    width = hi - lo + 1
    if width <= MAX_DENSE_TICKS:
        return _Book(lo, width)
    # Too wide for the dense arrays: a window around the seed (levels outside: out_of_range)
    centre = mid if mid is not None else (lo + hi) // 2
    return _Book(max(lo, centre - MAX_DENSE_TICKS // 2), MAX_DENSE_TICKS)


def _seed_book(dense: _Book, seed: _Seed) -> None:
    sides = np.concatenate(
        [np.ones(seed.bid_ticks.size, bool), np.zeros(seed.ask_ticks.size, bool)]
    )
    ticks = np.concatenate([seed.bid_ticks, seed.ask_ticks]).astype(np.int64)
    lots = np.concatenate([seed.bid_lots, seed.ask_lots]).astype(np.int64)
    if ticks.size:
        dense.apply(sides, ticks, lots, np.array([ticks.size]), np.zeros(1, np.uint8), depth=1)


def end_book_levels(dense: DenseBook) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(bid ticks best first, bid lots, ask ticks best first, ask lots) of the whole book."""
    s = dense.state
    bits = (dense.bid_bits, dense.ask_bits) if isinstance(dense, _Book) else (None, None)
    out: list[np.ndarray] = []
    for sizes, side_bits, lo, hi, best_first in (
        (dense.bid_sizes, bits[0], s[BID_LO], s[BID_HI], -1),
        (dense.ask_sizes, bits[1], s[ASK_LO], s[ASK_HI], 1),
    ):
        if lo > hi:
            out += [np.zeros(0, np.int64), np.zeros(0, np.int64)]
            continue
        if side_bits is None:
            idx = np.flatnonzero(sizes[lo : hi + 1]) + lo
        else:  # the occupancy bits: 1/64 of the memory (and no untouched page mapped in)
            idx = _set_bits(side_bits, int(lo), int(hi))
        idx = idx[::best_first]
        out += [idx + dense.base_tick, sizes[idx]]
    return out[0], out[1], out[2], out[3]


@njit(cache=True, nogil=True)
def _set_bits(bits, lo, hi):
    """Indices in ``[lo, hi]`` whose bit is set, ascending."""
    n = 0
    for w in range(lo >> 6, (hi >> 6) + 1):
        word = bits[w]
        while word:
            i = (w << 6) + np.int64(_cttz(word))
            if lo <= i <= hi:
                n += 1
            word &= word - np.uint64(1)
    out = np.empty(n, dtype=np.int64)
    n = 0
    for w in range(lo >> 6, (hi >> 6) + 1):
        word = bits[w]
        while word:
            i = (w << 6) + np.int64(_cttz(word))
            if lo <= i <= hi:
                out[n] = i
                n += 1
            word &= word - np.uint64(1)
    return out


class _Reconstruction:
    """One run over the inputs under one plan."""

    def __init__(self, paths, out_dir: Path, seed: _Seed, plan: _Plan, market: str, step, rows):
        self.trades_path, self.deltas_path, self.book_path = paths
        self.out_dir = out_dir
        self.plan = plan
        self.market = market
        self.step = step
        self.rows = rows
        self.seed = seed.at(plan.price_scale, plan.size_scale)

    def run(self) -> ReconstructionResult:
        plan, seed = self.plan, self.seed
        ps, ss = plan.price_scale, plan.size_scale
        self.dense = dense = _dense_book(plan, seed)
        _seed_book(dense, seed)
        ctrl = self.ctrl = np.zeros(C_CTRL_SIZE, dtype=np.int64)
        ctrl[C_KNOWN] = seed.time_ns is None
        ctrl[C_SEED_SEQ] = seed.sequence
        ctrl[C_SEED_TIME] = seed.time_ns if seed.time_ns is not None else _I64_MIN
        ctrl[C_LAST_SEQ] = seed.sequence
        ctrl[C_NEXT_BOUNDARY] = _I64_MIN
        ctrl[C_STEP] = self.step
        for slot in (C_FIRST_REGRESSION_T, C_FIRST_OUT_OF_RANGE_T, C_FIRST_BEFORE_SEED_T):
            ctrl[slot] = _I64_MIN
        top = np.empty((4, 1, 1), dtype=np.int64)
        _top_levels(
            dense.bid_sizes, dense.ask_sizes, dense.bid_bits, dense.ask_bits, dense.state, top, 0
        )
        ctrl[C_BB_T], ctrl[C_BB_S], ctrl[C_BA_T], ctrl[C_BA_S] = top[:, 0, 0]
        self.fidelity = _Fidelity(
            seed.bid_floor, seed.ask_ceiling, seed.sequence, seed.time_ns is not None, ps, ss
        )
        self.deltas = _Input("deltas", self.deltas_path, plan, dense, self.rows)
        self.trades = _Input("trades", self.trades_path, plan, dense, self.rows)
        self.vendor = _VendorBook(self.book_path, max(1, self.rows // 32), plan)
        self.counts = {"events": 0, "trades": 0, "deltas": 0, "snap_1s": 0}
        self.pending_1s: list[pa.RecordBatch] = []  # 1 s snapshots not yet written (copies)
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.meta = {
            "rlx.market": self.market,
            "rlx.price_scale": str(ps),
            "rlx.size_scale": str(ss),
            "rlx.seeded_from": seed.source,
            "rlx.seed_sequence": str(seed.sequence),
            "rlx.plan": plan.description,
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            self.writers = {}
            for name, schema, options in (
                (STREAM_FILE, stream_schema(ps, ss, written=True), STREAM_WRITE_OPTIONS),
                (SNAPSHOTS_VENDOR_FILE, snapshot_schema(ps, ss, True, written=True),
                 _SNAPSHOT_OPTIONS),
                (SNAPSHOTS_1S_FILE, snapshot_schema(ps, ss, False, written=True),
                 _SNAPSHOT_OPTIONS),
            ):  # fmt: skip
                handle = stack.enter_context(atomic_write(self.out_dir / name))
                writer = pq.ParquetWriter(handle, schema, **options)
                stack.callback(writer.close)
                self.writers[name] = (writer, schema)
            # closed first on the way out: no page is being encoded while the files close
            self.executor = stack.enter_context(ThreadPoolExecutor(max_workers=1))
            self._loop()
            extra = {STREAM_FILE: {"rlx.stream_order": STREAM_ORDER}}
            for name, (writer, _schema) in self.writers.items():
                writer.add_key_value_metadata({**self.meta, **extra.get(name, {})})
        self._write_end_book()
        return self._result()

    def _loop(self) -> None:
        # a window holds about one batch of the limiting input and part of the other's
        buffers = [_Buffers(self.rows * 5 // 4 + 1024) for _ in range(2)]
        writes: list[list[Future]] = [[], []]
        inputs = (self.deltas, self.trades)
        window = 0
        while True:
            open_inputs = [x for x in inputs if not x.done]
            if open_inputs:  # read from the input that holds the cut back
                min(open_inputs, key=lambda x: x.safe_cut).read()
            cut = min(x.safe_cut for x in inputs)
            final = all(x.done for x in inputs)
            d, t = self.deltas.release(cut), self.trades.release(cut)
            if d is None and t is None and not final:
                continue
            for x in inputs:  # no row of either input may be older than rows now in the stream
                x.released_cut = max(x.released_cut, cut)
            slot = window % 2
            for job in writes[slot]:  # the buffers' previous contents must be written first
                job.result()
            writes[slot] = self._replay_window(buffers[slot], d, t, final)
            self.deltas.consume()
            self.trades.consume()
            window += 1
            if final:
                break
        for jobs in writes:
            for job in jobs:
                job.result()

    def _submit(self, name: str, data: pa.RecordBatch | pa.Table) -> Future:
        writer = self.writers[name][0]
        write = writer.write_table if isinstance(data, pa.Table) else writer.write_batch
        if WRITE_IN_BACKGROUND:
            return self.executor.submit(write, data)
        future: Future = Future()
        write(data)
        future.set_result(None)
        return future

    def _replay_window(self, buf: _Buffers, d, t, final: bool) -> list[Future]:
        ps, ss = self.plan.price_scale, self.plan.size_scale
        ctrl, step = self.ctrl, self.step
        d = d if d is not None else _EMPTY_DELTAS
        t = t if t is not None else _EMPTY_TRADES
        nd, nt = d["time"].size, t["time"].size
        if nd:
            self.vendor.cover(int(d["seq"].max()))
        if final:
            self.vendor.cover(_I64_MAX)
        n = nd + nt
        seconds = 2
        if n:
            times = [int(x["time"][k]) for x in (d, t) if x["time"].size for k in (0, -1)]
            start = int(ctrl[C_NEXT_BOUNDARY])
            if start == _I64_MIN:
                start = min(
                    times + ([int(ctrl[C_SEED_TIME])] if ctrl[C_SEED_TIME] != _I64_MIN else [])
                )
            seconds += max(0, (max(times) - start) // step + 1)
        v_seq = self.vendor.seq
        buf.ensure(n, v_seq.size, seconds)
        rows, v_used, n_s = _replay(
            d["time"], d["recv"], d["seq"], d["bid"], d["tick"], d["lots"],
            t["time"], t["recv"], t["id"], t["price"], t["size"], t["side"],
            v_seq, final,
            self.dense.bid_sizes, self.dense.ask_sizes, self.dense.bid_bits,
            self.dense.ask_bits, self.dense.state, ctrl,
            buf.ap_bid, buf.ap_tick, buf.ap_lots, buf.ap_ends, buf.ap_flags, *buf.ap_best,
            buf.row_ap, *buf.trig,
            buf.oi, buf.ob, buf.od, buf.vsnap, buf.ssnap, buf.s_time, buf.s_seq,
        )  # fmt: skip
        jobs = []
        if rows:
            schema = self.writers[STREAM_FILE][1]
            jobs.append(self._submit(STREAM_FILE, _stream_batch(buf, rows, schema, ps, ss)))
            self.counts["events"] += rows
            self.counts["trades"] += nt
            self.counts["deltas"] += nd
            if self.first_ns is None:
                self.first_ns = int(buf.oi[OI_TIME, 0])
            self.last_ns = int(buf.oi[OI_TIME, rows - 1])
        if v_used:
            ours = _levels_major(buf.vsnap, v_used)
            start, checks = 0, []
            parts = self.vendor.take(v_used)
            for part in parts:  # compared piece by piece: the vendor's levels are not copied
                end = start + part["seq"].size
                checks.append(self.fidelity.compare(ours[:, :, start:end], part))
                start = end
            row_eq, compared, depth_known = (np.concatenate(x) for x in zip(*checks, strict=True))
            extra = (pa.array(row_eq, mask=~compared), pa.array(depth_known))
            schema = self.writers[SNAPSHOTS_VENDOR_FILE][1]
            time, seq = (np.concatenate([p[k] for p in parts]) for k in ("time", "seq"))
            batch = _snapshot_batch(ours, time, seq, schema, ps, ss, extra)
            jobs.append(self._submit(SNAPSHOTS_VENDOR_FILE, batch))
        if n_s:
            # A window holds few 1 s snapshots; one row group each would cost three times the
            # encoding time (and size) of row groups of SNAPSHOT_1S_ROW_GROUP rows: they are
            # copied out of the window's buffers and written together.
            schema = self.writers[SNAPSHOTS_1S_FILE][1]
            batch = _snapshot_batch(
                np.array(_levels_major(buf.ssnap, n_s)), buf.s_time[:n_s].copy(),
                buf.s_seq[:n_s].copy(), schema, ps, ss,
            )  # fmt: skip
            self.pending_1s.append(batch)
            self.counts["snap_1s"] += n_s
        pending = sum(b.num_rows for b in self.pending_1s)
        if pending and (final or pending >= SNAPSHOT_1S_ROW_GROUP):
            table = pa.Table.from_batches(self.pending_1s)
            jobs.append(self._submit(SNAPSHOTS_1S_FILE, table))
            self.pending_1s = []
        return jobs

    def _write_end_book(self) -> None:
        ps, ss, seed = self.plan.price_scale, self.plan.size_scale, self.seed
        bt, bl, at, al = end_book_levels(self.dense)
        ticks = np.concatenate([bt, at])
        lots = np.concatenate([bl, al])
        table = pa.Table.from_arrays(
            [
                pa.array(["bid"] * bt.size + ["ask"] * at.size, pa.string()),
                _decimal(ticks, ps),
                _decimal(lots, ss),
                pa.array(ticks, pa.int64()),
                pa.array(lots, pa.int64()),
            ],
            schema=end_book_schema(ps, ss, written=True),
        )
        floor, ceiling = seed.bid_floor, seed.ask_ceiling
        meta = {
            **self.meta,
            "rlx.last_sequence_number": str(int(self.ctrl[C_LAST_SEQ])),
            "rlx.last_event_time_ns": "" if self.last_ns is None else str(self.last_ns),
            "rlx.known_bid_floor": "" if floor == _I64_MIN else decimal_string(floor, ps),
            "rlx.known_ask_ceiling": "" if ceiling == _I64_MAX else decimal_string(ceiling, ps),
        }
        with atomic_write(self.out_dir / END_BOOK_FILE) as handle:
            writer = pq.ParquetWriter(handle, table.schema, **_WRITE_OPTIONS)
            writer.write_table(table)
            writer.add_key_value_metadata(meta)
            writer.close()

    def _result(self) -> ReconstructionResult:
        f, ctrl, state = self.fidelity, self.ctrl, self.dense.state
        anomalies = {
            "crossed_after_event": int(ctrl[C_CROSSED]),
            "delete_unknown_level": int(state[N_DELETE_UNKNOWN]),
            "out_of_range": int(state[N_OUT_OF_RANGE]),
            "sequence_regressions": int(ctrl[C_SEQ_REGRESSIONS]),
            "deltas_before_seed": int(ctrl[C_BEFORE_SEED]),
            "trades_invalid_side": self.trades.invalid_side,
            "input_rows_out_of_time_order": self.trades.late_rows + self.deltas.late_rows,
            "vendor_book_rows_before_seed": f.before_seed,
        }
        return ReconstructionResult(
            events=self.counts["events"],
            trades=self.counts["trades"],
            book_updates=self.counts["deltas"],
            price_scale=self.plan.price_scale,
            size_scale=self.plan.size_scale,
            started_cold=self.seed.source != "previous_day",
            seeded_from=self.seed.source,
            seed_sequence=self.seed.sequence,
            anomalies=anomalies,
            first_event_ns=self.first_ns,
            last_event_ns=self.last_ns,
            vendor_book_rows_compared=f.compared,
            vendor_book_rows_equal=f.equal,
            level_agreement=[float(x) / f.compared if f.compared else 0.0 for x in f.level_equal],
            first_mismatches=f.first_mismatches,
            vendor_book_rows_unknown_depth=f.unknown_depth,
            vendor_book_rows_equal_within_known_depth=f.equal_known,
            snapshots_1s=self.counts["snap_1s"],
            market=self.market,
            plan=self.plan.description,
            anomaly_first=self._anomaly_first(),
        )

    def _anomaly_first(self) -> dict[str, dict]:
        """Where each placeable anomaly first occurred (only those that occurred)."""
        ctrl, first = self.ctrl, {}
        for name, t_slot, s_slot in (
            ("sequence_regressions", C_FIRST_REGRESSION_T, C_FIRST_REGRESSION_SEQ),
            ("out_of_range", C_FIRST_OUT_OF_RANGE_T, C_FIRST_OUT_OF_RANGE_SEQ),
            ("deltas_before_seed", C_FIRST_BEFORE_SEED_T, C_FIRST_BEFORE_SEED_SEQ),
        ):
            if ctrl[t_slot] != _I64_MIN:
                first[name] = {
                    "event_time_ns": int(ctrl[t_slot]), "sequence_number": int(ctrl[s_slot])
                }  # fmt: skip
        if "sequence_regressions" in first:
            first["sequence_regressions"]["after_sequence_number"] = int(
                ctrl[C_FIRST_REGRESSION_AFTER]
            )
        if ctrl[C_CROSSED]:
            first["crossed_after_event"] = {
                "event_time_ns": int(ctrl[C_FIRST_CROSSED_T]),
                "sequence_number": int(ctrl[C_FIRST_CROSSED_SEQ]),
            }
        return first


_EMPTY_DELTAS = {k: np.zeros(0, t) for k, t in _DELTA_DTYPES.items()}
_EMPTY_TRADES = {k: np.zeros(0, t) for k, t in _TRADE_DTYPES.items()}
