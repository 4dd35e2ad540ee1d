"""Capture messages into raw columns (one chunk of one symbol, in receive order), and telling
spot from USD-M futures by the messages' fields. Imports ``rlx_assets.capture`` (reader, line
format) and the converter's ``decimals`` only.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rlx_assets.capture.line_format import SNAPSHOT_CHANNEL
from rlx_assets.capture.reader import iter_capture, stream_channel
from rlx_assets.lake.from_capture.decimals import ConversionError


@dataclass
class Trades:
    capture: list[int] = field(default_factory=list)
    trade_id: list[int] = field(default_factory=list)  # "t" (trade) or "a" (aggTrade)
    trade_ms: list[int] = field(default_factory=list)  # "T"
    price: list[str] = field(default_factory=list)
    quantity: list[str] = field(default_factory=list)
    buyer_is_maker: list[bool] = field(default_factory=list)  # "m"
    first_id: list[int] = field(default_factory=list)  # aggTrade "f"
    last_id: list[int] = field(default_factory=list)  # aggTrade "l"


@dataclass
class Columns:
    """Raw columns of one chunk of one symbol's messages, in receive order."""

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


_TRADE_CHANNELS = {"trade": "t", "aggTrade": "a"}  # channel -> id field


def vote(channel: str, data: dict) -> str | None:
    """ "spot" or "usdm" by the message's fields, None for a channel that does not tell."""
    if channel == "depth":
        return "usdm" if "pu" in data else "spot"
    if channel == SNAPSHOT_CHANNEL:
        return "usdm" if "E" in data or "T" in data else "spot"
    if channel == "trade":
        return "usdm" if "X" in data else "spot"
    if channel == "aggTrade":  # spot aggTrade frames carry the (ignored) "M" flag, futures not
        return "spot" if "M" in data else "usdm"
    if channel == "bookTicker":
        return "usdm" if "E" in data else "spot"
    return None


def add_message(cols: Columns, channel: str, d: dict, capture_ns: int) -> bool:
    """Append one message's fields to ``cols``; False for a channel the converter ignores.
    Raises KeyError/IndexError/TypeError for a message lacking a field."""
    if channel == "depth" or channel == SNAPSHOT_CHANNEL:
        if channel == "depth":
            cols.d_snapshot.append(False)
            cols.d_event_ms.append(d["E"])
            cols.d_first.append(d["U"])
            cols.d_last.append(d["u"])
            cols.d_prev.append(d.get("pu", -1))
            bids, asks = d["b"], d["a"]
        else:
            cols.d_snapshot.append(True)
            cols.d_event_ms.append(d.get("E", -1))
            cols.d_first.append(d["lastUpdateId"])
            cols.d_last.append(d["lastUpdateId"])
            cols.d_prev.append(-1)
            bids, asks = d["bids"], d["asks"]
        cols.d_capture.append(capture_ns)
        cols.d_n_bid.append(len(bids))
        cols.d_n_ask.append(len(asks))
        for levels in (bids, asks):
            cols.level_price.extend([lvl[0] for lvl in levels])
            cols.level_size.extend([lvl[1] for lvl in levels])
    elif channel in _TRADE_CHANNELS:
        trades = cols.trades.get(channel)
        if trades is None:
            trades = cols.trades[channel] = Trades()
        trades.capture.append(capture_ns)
        trades.trade_id.append(d[_TRADE_CHANNELS[channel]])
        trades.trade_ms.append(d["T"])
        trades.price.append(d["p"])
        trades.quantity.append(d["q"])
        trades.buyer_is_maker.append(d["m"])
        if channel == "aggTrade":
            trades.first_id.append(d["f"])
            trades.last_id.append(d["l"])
    elif channel == "bookTicker":
        cols.t_capture.append(capture_ns)
        cols.t_update.append(d["u"])
        cols.t_event_ms.append(d.get("E", -1))
        cols.t_bid.append(d["b"])
        cols.t_bid_size.append(d["B"])
        cols.t_ask.append(d["a"])
        cols.t_ask_size.append(d["A"])
    else:
        return False
    return True


def detect_market(path: Path, market_arg: str) -> str:
    """The market of a file: ``market_arg`` unless "auto", else what its first message that
    tells says (the whole file is checked as it is converted: ``decide_market``)."""
    if market_arg != "auto":
        return market_arg
    votes: Counter[str] = Counter()
    for rec in iter_capture(path):
        found = vote(stream_channel(rec.stream), rec.data)
        if found is not None:
            votes[found] += 1
            break
    return decide_market(path, votes, market_arg)


def decide_market(path: Path, votes: Counter[str], market_arg: str) -> str:
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
