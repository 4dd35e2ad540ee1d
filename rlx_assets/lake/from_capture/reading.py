"""Reading capture files into raw columns per symbol, in arrival order, and telling spot from
USD-M futures by the messages' fields. Imports ``rlx_assets.capture`` (reader, line format),
``rlx_assets.markets``, ``staging`` and the converter's ``decimals`` only.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rlx_assets.capture.line_format import SNAPSHOT_CHANNEL
from rlx_assets.capture.reader import (
    CaptureFormatError,
    CaptureStats,
    iter_capture,
    stream_channel,
    stream_symbol,
)
from rlx_assets.lake.from_capture.decimals import ConversionError
from rlx_assets.markets import split_symbol
from rlx_assets.staging import sha256_file

# A day of one busy symbol is millions of lines: say how far the read is at most this often.
PROGRESS_SECONDS = 5.0


@dataclass
class Trades:
    capture: list[int] = field(default_factory=list)
    trade_id: list[int] = field(default_factory=list)  # "t" (trade) or "a" (aggTrade)
    trade_ms: list[int] = field(default_factory=list)  # "T"
    price: list[str] = field(default_factory=list)
    quantity: list[str] = field(default_factory=list)
    buyer_is_maker: list[bool] = field(default_factory=list)  # "m"


@dataclass
class Columns:
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
    trades: dict[str, Trades] = field(default_factory=dict)
    # bookTicker
    t_capture: list[int] = field(default_factory=list)
    t_update: list[int] = field(default_factory=list)
    t_event_ms: list[int] = field(default_factory=list)
    t_bid: list[str] = field(default_factory=list)
    t_bid_size: list[str] = field(default_factory=list)
    t_ask: list[str] = field(default_factory=list)
    t_ask_size: list[str] = field(default_factory=list)


@dataclass
class CaptureFile:
    path: Path
    sha256: str
    stats: CaptureStats
    market: str
    first_capture_ns: int
    symbols: dict[str, Columns]
    ignored: Counter[str]


_TRADE_CHANNELS = {"trade": "t", "aggTrade": "a"}  # channel -> id field


def read_capture_file(
    path: Path, market_arg: str, log: Callable[[str], None] = lambda _m: None
) -> CaptureFile:
    stats = CaptureStats()
    started = last_report = time.monotonic()
    symbols: dict[str, Columns] = {}
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
            cols = symbols[stream_symbol(rec.stream)] = Columns()
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
                trades = cols.trades.setdefault(channel, Trades())
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
    return CaptureFile(path, sha256_file(path), stats, market, first_ns, symbols, ignored)


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
