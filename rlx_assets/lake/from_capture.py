"""Convert Binance captures into Crypto Lake's raw layout (``rlx lake-from-capture``).

Output: ``{out}/{table}/exchange={EX}/symbol={SYM}/dt={YYYY-MM-DD}/1.snappy.parquet`` with the
vendor's raw columns (``rlx_assets.lake.schemas.VENDOR_SCHEMAS``), so that a capture can stand in
for (or be compared with) the vendor's files.

How the tables are derived:

* ``trades``: ``aggTrade`` frames when the capture has them (cryptofeed's source), else
  ``trade`` frames; ``side`` is the taker side (``m`` true -> the buyer made, the taker sold).
* ``book_delta_v2``: one row per level of every depth diff, ``sequence_number`` = the diff's
  ``u``.
* ``book``: top 20 after every depth diff applied to a book rebuilt from the REST snapshot under
  Binance's sync rule, in integer ticks, by the pure-Python reference book
  (``rlx_assets.book.reference``): nothing shared with the reconstruction's compiled kernel.
* ``level_1``: ``bookTicker`` frames; spot frames carry no event time, so the receive time
  stands in (recorded in the file metadata).

Files of the same market are merged by receive time and processed as one stream; rows go to
UTC days by exchange time (``timestamp``). Depth prices and sizes are parsed to integers with a
scale detected from the data, and converted to float64 only when written.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numba import njit

from rlx_assets.book.reference import top_after_each_diff
from rlx_assets.capture.reader import (
    SNAPSHOT_CHANNEL,
    CaptureFormatError,
    CaptureStats,
    iter_capture,
    stream_channel,
    stream_symbol,
)
from rlx_assets.lake.markets import LakeMarket, lake_market, split_symbol
from rlx_assets.lake.schemas import BOOK_DEPTH, VENDOR_SCHEMAS
from rlx_assets.staging import atomic_write, lake_relative_path, sha256_file

CONVERTER = "rlx_assets.lake.from_capture"
CONVERTER_VERSION = "2"  # 2: book table from the pure-Python reference book
# Recorded in the book file: what built its rows (the fidelity report reads it to tell a
# cross-implementation check from the kernel agreeing with itself).
BOOK_BUILDER = "rlx_assets.book.reference"
MARKETS = ("auto", "spot", "usdm")

NS_PER_MS = 1_000_000
NS_PER_DAY = 86_400 * 1_000_000_000
_MAX_EXACT = 2**53  # integers up to here convert to float64 exactly
# A day of one busy symbol is millions of lines: say how far the read is at most this often.
PROGRESS_SECONDS = 5.0


class ConversionError(ValueError):
    """The captures cannot be converted (the message says why)."""


# --- decimal strings -> integers ------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _scan_decimals(buf):
    """Rows of ASCII digits with an optional '.' (NUL padded) -> integer part, fraction digits,
    number of fraction digits, significant fraction digits; and the first bad row (-1: none)."""
    n, width = buf.shape
    int_part = np.empty(n, dtype=np.int64)
    frac = np.empty(n, dtype=np.int64)
    n_frac = np.empty(n, dtype=np.int64)
    sig = np.empty(n, dtype=np.int64)
    for r in range(n):
        ip = 0
        fp = 0
        nf = 0
        sg = 0
        digits = 0
        dot = False
        for c in range(width):
            ch = buf[r, c]
            if ch == 0:
                break
            if ch == 46:  # '.'
                if dot:
                    return int_part, frac, n_frac, sig, r
                dot = True
                continue
            if ch < 48 or ch > 57:
                return int_part, frac, n_frac, sig, r
            digits += 1
            if dot:
                nf += 1
                if nf > 18:
                    return int_part, frac, n_frac, sig, r
                fp = fp * 10 + (ch - 48)
                if ch != 48:
                    sg = nf
            else:
                if ip > 10**16:
                    return int_part, frac, n_frac, sig, r
                ip = ip * 10 + (ch - 48)
        if digits == 0:
            return int_part, frac, n_frac, sig, r
        int_part[r] = ip
        frac[r] = fp
        n_frac[r] = nf
        sig[r] = sg
    return int_part, frac, n_frac, sig, -1


@njit(cache=True, nogil=True)
def _to_units(int_part, frac, n_frac, scale, limit):
    n = int_part.shape[0]
    out = np.empty(n, dtype=np.int64)
    unit = 10**scale
    for r in range(n):
        nf = n_frac[r]
        f = frac[r]
        # digits beyond `scale` are zeros (scale >= significant digits): drop them exactly
        while nf > scale:
            f //= 10
            nf -= 1
        while nf < scale:
            f *= 10
            nf += 1
        if int_part[r] > (limit - f) // unit:
            return out, r
        out[r] = int_part[r] * unit + f
    return out, -1


def parse_decimals(strings: Sequence[str], what: str) -> tuple[np.ndarray, int]:
    """Decimal strings -> (integers, scale) with value = integer / 10**scale exactly; the scale
    is the largest number of significant fraction digits seen. ``what`` names the values in
    errors."""
    if len(strings) == 0:
        return np.zeros(0, dtype=np.int64), 0
    try:
        raw = np.array(strings, dtype=np.bytes_)
    except UnicodeEncodeError:
        raise ConversionError(f"{what}: non-ASCII characters in a decimal value") from None
    if raw.itemsize == 0:
        raise ConversionError(f"{what}: empty decimal value")
    matrix = raw.view(np.uint8).reshape(raw.shape[0], raw.itemsize)
    int_part, frac, n_frac, sig, bad = _scan_decimals(matrix)
    if bad >= 0:
        raise ConversionError(f"{what}: not a plain decimal number: {strings[bad]!r}")
    scale = int(sig.max())
    if scale > 15:
        raise ConversionError(f"{what}: {scale} significant decimals, too many for exact floats")
    units, bad = _to_units(int_part, frac, n_frac, scale, _MAX_EXACT)
    if bad >= 0:
        raise ConversionError(
            f"{what}: {strings[bad]!r} at scale {scale} exceeds 2**53 units (not exact as float64)"
        )
    return units, scale


def _units_to_float(units: np.ndarray, scale: int) -> np.ndarray:
    # Both operands are exact doubles, so IEEE division gives the correctly rounded value:
    # the same float64 as parsing the decimal string directly.
    return units.astype(np.float64) / float(10**scale)


# --- reading ------------------------------------------------------------------------------------
@dataclass
class _Trades:
    capture: list[int] = field(default_factory=list)
    trade_id: list[int] = field(default_factory=list)  # "t" (trade) or "a" (aggTrade)
    trade_ms: list[int] = field(default_factory=list)  # "T"
    price: list[str] = field(default_factory=list)
    quantity: list[str] = field(default_factory=list)
    buyer_is_maker: list[bool] = field(default_factory=list)  # "m"


@dataclass
class _Columns:
    """Raw columns of one symbol in one file, in arrival order."""

    # depth: diffs and REST snapshots in one sequence (the sync rule needs their order)
    d_snapshot: list[bool] = field(default_factory=list)
    d_capture: list[int] = field(default_factory=list)
    d_event_ms: list[int] = field(default_factory=list)
    d_first: list[int] = field(default_factory=list)
    d_last: list[int] = field(default_factory=list)
    d_prev: list[int] = field(default_factory=list)
    d_n_bid: list[int] = field(default_factory=list)
    d_n_ask: list[int] = field(default_factory=list)
    level_price: list[str] = field(default_factory=list)
    level_size: list[str] = field(default_factory=list)
    # trades, per source channel
    trades: dict[str, _Trades] = field(default_factory=dict)
    # bookTicker
    t_capture: list[int] = field(default_factory=list)
    t_update: list[int] = field(default_factory=list)
    t_event_ms: list[int] = field(default_factory=list)
    t_bid: list[str] = field(default_factory=list)
    t_bid_size: list[str] = field(default_factory=list)
    t_ask: list[str] = field(default_factory=list)
    t_ask_size: list[str] = field(default_factory=list)


@dataclass
class _CaptureFile:
    path: Path
    sha256: str
    stats: CaptureStats
    market: str
    first_capture_ns: int
    symbols: dict[str, _Columns]
    ignored: Counter[str]


_TRADE_CHANNELS = {"trade": "t", "aggTrade": "a"}  # channel -> id field


def _read_file(
    path: Path, market_arg: str, log: Callable[[str], None] = lambda _m: None
) -> _CaptureFile:
    stats = CaptureStats()
    started = last_report = time.monotonic()
    symbols: dict[str, _Columns] = {}
    votes: Counter[str] = Counter()
    ignored: Counter[str] = Counter()
    first_ns: int | None = None
    for rec in iter_capture(path, stats):
        if first_ns is None:
            first_ns = rec.capture_ns
        if not stats.messages % 8192 and time.monotonic() - last_report >= PROGRESS_SECONDS:
            last_report = time.monotonic()
            rate = stats.lines / (last_report - started)
            log(f"{path.name}: {stats.lines:,} lines read ({rate:,.0f} lines/s)")
        channel = stream_channel(rec.stream)
        d = rec.data
        cols = symbols.get(stream_symbol(rec.stream))
        if cols is None:
            split_symbol(stream_symbol(rec.stream))  # unknown symbols fail before a long read
            cols = symbols[stream_symbol(rec.stream)] = _Columns()
        try:
            if channel == "depth" or channel == SNAPSHOT_CHANNEL:
                if channel == "depth":
                    votes["usdm" if "pu" in d else "spot"] += 1
                    cols.d_snapshot.append(False)
                    cols.d_event_ms.append(d["E"])
                    cols.d_first.append(d["U"])
                    cols.d_last.append(d["u"])
                    cols.d_prev.append(d.get("pu", -1))
                    bids, asks = d["b"], d["a"]
                else:
                    votes["usdm" if "E" in d or "T" in d else "spot"] += 1
                    cols.d_snapshot.append(True)
                    cols.d_event_ms.append(d.get("E", -1))
                    cols.d_first.append(d["lastUpdateId"])
                    cols.d_last.append(d["lastUpdateId"])
                    cols.d_prev.append(-1)
                    bids, asks = d["bids"], d["asks"]
                cols.d_capture.append(rec.capture_ns)
                cols.d_n_bid.append(len(bids))
                cols.d_n_ask.append(len(asks))
                for levels in (bids, asks):
                    cols.level_price.extend([lvl[0] for lvl in levels])
                    cols.level_size.extend([lvl[1] for lvl in levels])
            elif channel in _TRADE_CHANNELS:
                if channel == "trade":
                    votes["usdm" if "X" in d else "spot"] += 1
                else:  # spot aggTrade frames carry the (ignored) "M" flag, futures ones do not
                    votes["spot" if "M" in d else "usdm"] += 1
                trades = cols.trades.setdefault(channel, _Trades())
                trades.capture.append(rec.capture_ns)
                trades.trade_id.append(d[_TRADE_CHANNELS[channel]])
                trades.trade_ms.append(d["T"])
                trades.price.append(d["p"])
                trades.quantity.append(d["q"])
                trades.buyer_is_maker.append(d["m"])
            elif channel == "bookTicker":
                votes["usdm" if "E" in d else "spot"] += 1
                cols.t_capture.append(rec.capture_ns)
                cols.t_update.append(d["u"])
                cols.t_event_ms.append(d.get("E", -1))
                cols.t_bid.append(d["b"])
                cols.t_bid_size.append(d["B"])
                cols.t_ask.append(d["a"])
                cols.t_ask_size.append(d["A"])
            else:
                ignored[channel] += 1
        except (KeyError, IndexError, TypeError) as exc:
            raise CaptureFormatError(
                f"{path}:{rec.line}: {rec.stream} message lacks an expected field ({exc!r})"
            ) from None
    if first_ns is None:
        raise ConversionError(f"{path}: no market-data messages in the file")
    market = _decide_market(path, votes, market_arg)
    return _CaptureFile(path, sha256_file(path), stats, market, first_ns, symbols, ignored)


def _decide_market(path: Path, votes: Counter[str], market_arg: str) -> str:
    if votes["spot"] and votes["usdm"]:
        raise ConversionError(
            f"{path}: mixes spot and USD-M futures messages ({votes['spot']} look like spot, "
            f"{votes['usdm']} like futures); split the file per market"
        )
    detected = "usdm" if votes["usdm"] else "spot" if votes["spot"] else None
    if market_arg == "auto":
        if detected is None:
            raise ConversionError(f"{path}: cannot tell spot from USD-M; pass --market")
        return detected
    if detected is not None and detected != market_arg:
        raise ConversionError(
            f"{path}: --market {market_arg} given, but the messages are {detected} "
            "(futures depth diffs carry 'pu', futures trades 'X', futures bookTicker 'E')"
        )
    return market_arg


# --- merging files of one market ----------------------------------------------------------------
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
class _Table:
    name: str
    columns: dict[str, np.ndarray]
    timestamp: np.ndarray  # int64 ns: the day split key
    metadata: dict[str, str]


def _trades_table(cols: list[_Columns], log: Callable[[str], None], key: str) -> _Table | None:
    have = {ch for c in cols for ch in c.trades}
    if not have:
        return None
    source = "aggTrade" if "aggTrade" in have else "trade"
    if len(have) > 1:
        log(f"{key}: captures carry both trade and aggTrade frames; trades from aggTrade")
    parts = [c.trades.get(source, _Trades()) for c in cols]
    order = _merge_order([np.asarray(p.capture, dtype=np.int64) for p in parts])
    price, price_scale = parse_decimals(_cat_str([p.price for p in parts]), f"{key} trade prices")
    amount, amount_scale = parse_decimals(
        _cat_str([p.quantity for p in parts]), f"{key} trade quantities"
    )
    maker_is_buyer = _cat([p.buyer_is_maker for p in parts], np.bool_)[order]
    columns = {
        "side": np.where(maker_is_buyer, "sell", "buy").astype(object),
        "amount": _units_to_float(amount[order], amount_scale),
        "price": _units_to_float(price[order], price_scale),
        "id": _cat([p.trade_id for p in parts], np.int64)[order],
        "timestamp": _cat([p.trade_ms for p in parts], np.int64)[order] * NS_PER_MS,
        "receipt_timestamp": _cat([p.capture for p in parts], np.int64)[order],
    }
    return _Table("trades", columns, columns["timestamp"], {"rlx.trade_source": source})


def _level_1_table(cols: list[_Columns], key: str) -> _Table | None:
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
        columns[column] = _units_to_float(units[order], scale)
    return _Table("level_1", columns, timestamp, {"rlx.level_1_timestamp_source": source})


@dataclass
class _Depth:
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


def _depth(cols: list[_Columns], key: str) -> _Depth | None:
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
    return _Depth(
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


def _book_delta_table(depth: _Depth) -> _Table | None:
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
        "price": _units_to_float(depth.price[levels], depth.price_scale),
        "size": _units_to_float(depth.size[levels], depth.size_scale),
    }
    meta = {"rlx.price_scale": str(depth.price_scale), "rlx.size_scale": str(depth.size_scale)}
    return _Table("book_delta_v2", columns, timestamp, meta)


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


def _book_table(depth: _Depth, futures: bool) -> tuple[_Table | None, BookSyncReport]:
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
        prices = np.where(present, _units_to_float(ticks, depth.price_scale), np.nan)
        sizes = np.where(present, _units_to_float(lots, depth.size_scale), np.nan)
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
    return _Table("book", columns, timestamp, meta), report


# --- writing ------------------------------------------------------------------------------------
def _write_days(
    table: _Table, market: LakeMarket, out_dir: Path, metadata: dict[str, str]
) -> list[tuple[dt.date, int, Path]]:
    schema = VENDOR_SCHEMAS[table.name]
    day_index = table.timestamp // NS_PER_DAY
    written = []
    for day in np.unique(day_index):
        mask = day_index == day
        arrays = [pa.array(table.columns[f.name][mask], type=f.type) for f in schema]
        meta = {**metadata, **table.metadata, "rlx.table": table.name}
        arrow = pa.Table.from_arrays(arrays, schema=schema.with_metadata(meta))
        date = dt.date(1970, 1, 1) + dt.timedelta(days=int(day))
        dest = out_dir / lake_relative_path(table.name, market.exchange, market.symbol, date)
        with atomic_write(dest) as handle:
            pq.write_table(arrow, handle, compression="snappy")
        written.append((date, int(mask.sum()), dest))
    return written


def convert_captures(
    paths: Sequence[Path | str],
    out_dir: Path | str,
    market: str = "auto",
    log: Callable[[str], None] | None = None,
) -> list[Path]:
    """Convert Binance capture files into Crypto Lake's raw layout below ``out_dir``.

    ``market``: "spot", "usdm" or "auto" (detected per file from the messages). Files of the
    same market and symbol, in any order, form one stream. Returns the written files. Raises
    ``CaptureFormatError`` / ``ConversionError`` (both ValueError) with messages naming the
    file, ``FileNotFoundError`` for missing inputs and ValueError for unknown symbols.
    ``log`` receives progress lines (the CLI prints them to stderr): one as each input file
    starts and ends (lines, messages, rate), one every ``PROGRESS_SECONDS`` while a file is
    read, and one per written file.
    """
    log = log or (lambda _message: None)
    if market not in MARKETS:
        raise ConversionError(f"unknown market {market!r}; expected one of {MARKETS}")
    unique: dict[Path, None] = {}
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise FileNotFoundError(f"capture file not found: {path}")
        unique.setdefault(path.resolve(), None)
    if not unique:
        raise ConversionError("no capture files given")

    groups: dict[tuple[str, str], list[_CaptureFile]] = {}
    markets: dict[tuple[str, str], LakeMarket] = {}
    for number, path in enumerate(unique, 1):
        log(f"reading {number}/{len(unique)} {path.name} ({path.stat().st_size / 1e6:.1f} MB)")
        started = time.monotonic()
        capture = _read_file(path, market, log)
        seconds = time.monotonic() - started
        names = []
        for symbol in capture.symbols:
            gkey = (capture.market, symbol)
            if gkey not in markets:
                markets[gkey] = lake_market(symbol, capture.market)  # ValueError: unknown symbol
            groups.setdefault(gkey, []).append(capture)
            names.append(markets[gkey].key)
        extra = f"; ignored {dict(capture.ignored)}" if capture.ignored else ""
        summary = capture.stats.describe()
        rate = f"{capture.stats.lines / seconds:,.0f} lines/s" if seconds > 0 else "-"
        log(
            f"read {path.name}: {capture.market} {', '.join(names)}: {summary}{extra} "
            f"in {seconds:.1f} s ({rate})"
        )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for gkey, files in groups.items():
        files.sort(key=lambda f: (f.first_capture_ns, f.path.name))
        lake = markets[gkey]
        log(f"building the tables of {lake.key} from {len(files)} file(s)")
        cols = [f.symbols[gkey[1]] for f in files]
        metadata = {
            "rlx.converter": CONVERTER,
            "rlx.converter_version": CONVERTER_VERSION,
            "rlx.source_files": json.dumps(
                [{"name": f.path.name, "sha256": f.sha256} for f in files]
            ),
            "rlx.market_key": lake.key,
            "rlx.binance_symbol": gkey[1].upper(),
            "rlx.binance_market": gkey[0],
        }
        tables = [_trades_table(cols, log, lake.key)]
        depth = _depth(cols, lake.key)
        if depth is not None:
            book, report = _book_table(depth, futures=gkey[0] == "usdm")
            log(f"{lake.key}: {report.describe()}")
            tables += [book, _book_delta_table(depth)]
        tables.append(_level_1_table(cols, lake.key))
        for table in sorted((t for t in tables if t is not None), key=lambda t: t.name):
            for date, rows, dest in _write_days(table, lake, out_dir, metadata):
                log(f"wrote {table.name} {lake.key} {date}: {rows} rows")
                written.append(dest)
    return written
