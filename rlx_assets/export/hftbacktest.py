"""A certified day as hftbacktest's event array (``np.savez_compressed(out, data=...)``).

The format is hftbacktest's documented ``event_dtype`` (``hftbacktest.types``, "Data" page of
its documentation): ``ev`` u8, ``exch_ts`` i8, ``local_ts`` i8, ``px`` f8, ``qty`` f8,
``order_id`` u8, ``ival`` i8, ``fval`` f8, aligned. ``ev`` is an event kind in the low byte
(``DEPTH_EVENT`` 1, ``TRADE_EVENT`` 2, ``DEPTH_CLEAR_EVENT`` 3, ``DEPTH_SNAPSHOT_EVENT`` 4)
or'ed with ``BUY_EVENT`` (bid side / buyer-initiated trade) or ``SELL_EVENT`` and with
``EXCH_EVENT`` / ``LOCAL_EVENT`` (which of the exchange and local processors handles the row,
at ``exch_ts`` / ``local_ts``). hftbacktest is not a dependency (it pins an older numpy): the
constants are copied here and the tests hold the array to them.

What is written, as hftbacktest's own converters (``data/utils/binancefutures.py``,
``tardis.py``) do it:

* first the whole starting book: per side a ``DEPTH_CLEAR_EVENT`` (``px`` = the side's deepest
  price: clear up to it) and a ``DEPTH_SNAPSHOT_EVENT`` per level, at the first exported
  event's exchange time and the earliest receive time, so both processors see the true book
  before anything else. The starting book is the previous day's end book, or for a day that
  started cold the vendor book row it was seeded from (events before it are left out);
* then every stream row in the stream's order: book rows the reconstruction applied (above
  the seed's sequence number, never below one applied) as ``DEPTH_EVENT`` with the level's new
  absolute size (0 removes it), trades as ``TRADE_EVENT`` with the taker's side;
* ``local_ts`` is the receive time, shifted like ``correct_local_timestamp`` when the
  recorder's clock ran behind the exchange (the smallest ``local - exch`` is negative: every
  local time moves by its opposite plus ``base_latency_ns``);
* rows are split into exchange and local copies where the two orders disagree and merged as
  ``correct_event_order`` does (exchange rows by ``exch_ts``, local rows by ``local_ts``; a
  row in the same place of both keeps both flags).

Prices and sizes are the exact decimals converted to float64 (each the nearest double, the
vendor's own value). ``tick_size`` = 10**-price_scale and ``lot_size`` = 10**-size_scale of the
day: the finest increments present in the data, to pass to hftbacktest's ``tick_size`` /
``lot_size`` (the exchange's own may be coarser).
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from numba import njit

from rlx_assets import read
from rlx_assets.book.reconstruct import STREAM_FILE
from rlx_assets.staging import atomic_write

DEPTH_EVENT = 1
TRADE_EVENT = 2
DEPTH_CLEAR_EVENT = 3
DEPTH_SNAPSHOT_EVENT = 4
EXCH_EVENT = 1 << 31
LOCAL_EVENT = 1 << 30
BUY_EVENT = 1 << 29
SELL_EVENT = 1 << 28

EVENT_DTYPE = np.dtype(
    [
        ("ev", "u8"),
        ("exch_ts", "i8"),
        ("local_ts", "i8"),
        ("px", "f8"),
        ("qty", "f8"),
        ("order_id", "u8"),
        ("ival", "i8"),
        ("fval", "f8"),
    ],
    align=True,
)


@dataclass(frozen=True)
class HftExport:
    data: np.ndarray  # EVENT_DTYPE
    tick_size: float
    lot_size: float
    price_scale: int
    size_scale: int
    local_ts_offset_ns: int
    snapshot_levels: int
    stream_rows: int


def _side_flags(side: pl.Expr) -> pl.Expr:
    return (
        pl.when(side.is_in(["bid", "buy"]))
        .then(pl.lit(BUY_EVENT, pl.UInt64))
        .when(side.is_in(["ask", "sell"]))
        .then(pl.lit(SELL_EVENT, pl.UInt64))
        .otherwise(pl.lit(0, pl.UInt64))
    )


def _exported_rows(day: read.CurrentDay, known_from: int | None) -> pl.DataFrame:
    """The stream rows the export carries: trades, and the book rows the reconstruction
    applied; on a cold day only those from the seed on."""
    seed_sequence = int(day.summary.get("seed_sequence") or -1)
    seq = pl.col("sequence_number")
    frame = pl.scan_parquet(day.file(STREAM_FILE)).select(
        "event_time", "received_time", "event_type", "side", "price", "size", "sequence_number"
    )
    is_book = pl.col("event_type") == "book"
    running = seq.fill_null(-1).cum_max()  # trades carry no sequence number
    applied = (seq > seed_sequence) & (seq >= running)
    frame = frame.filter(~is_book | applied)
    if known_from is not None:
        frame = frame.filter(pl.col("event_time").dt.epoch("ns") >= known_from)
    kind = (
        pl.when(is_book)
        .then(pl.lit(DEPTH_EVENT, pl.UInt64))
        .otherwise(pl.lit(TRADE_EVENT, pl.UInt64))
    )
    return frame.select(
        (kind | _side_flags(pl.col("side"))).alias("ev"),
        pl.col("event_time").dt.epoch("ns").alias("exch_ts"),
        pl.col("received_time").dt.epoch("ns").alias("local_ts"),
        pl.col("price").cast(pl.Float64).alias("px"),
        pl.col("size").cast(pl.Float64).alias("qty"),
    ).collect()


def _snapshot_rows(book: pl.DataFrame, exch_ts: int, local_ts: int) -> pl.DataFrame:
    """The whole starting book: per side a clear up to its deepest price, then its levels."""
    parts = []
    for side, flag, best_first in (("bid", BUY_EVENT, True), ("ask", SELL_EVENT, False)):
        levels = book.filter(pl.col("side") == side).sort("price", descending=best_first)
        if levels.height == 0:
            continue
        px = levels["price"].cast(pl.Float64)
        parts.append(pl.DataFrame({"ev": [DEPTH_CLEAR_EVENT | flag], "px": [px[-1]], "qty": [0.0]}))
        parts.append(
            pl.DataFrame(
                {
                    "ev": [DEPTH_SNAPSHOT_EVENT | flag] * levels.height,
                    "px": px,
                    "qty": levels["size"].cast(pl.Float64),
                }
            )  # fmt: skip
        )
    frame = pl.concat(parts) if parts else pl.DataFrame({"ev": [], "px": [], "qty": []})
    return frame.select(
        pl.col("ev").cast(pl.UInt64),
        pl.lit(exch_ts, pl.Int64).alias("exch_ts"),
        pl.lit(local_ts, pl.Int64).alias("local_ts"),
        pl.col("px").cast(pl.Float64),
        pl.col("qty").cast(pl.Float64),
    )


@njit(cache=True)
def _merge_orders(exch_ts, local_ts, by_exch, by_local):
    """``correct_event_order``'s merge: (row index, processor flags) in output order."""
    n = exch_ts.shape[0]
    rows = np.empty(2 * n, np.int64)
    flags = np.empty(2 * n, np.uint64)
    e = lo = k = 0
    while e < n or lo < n:
        if e < n and lo < n:
            x, y = by_exch[e], by_local[lo]
            if x == y:
                rows[k], flags[k] = x, EXCH_EVENT | LOCAL_EVENT
                e += 1
                lo += 1
            elif exch_ts[x] < exch_ts[y] or (
                exch_ts[x] == exch_ts[y] and local_ts[x] <= local_ts[y]
            ):
                rows[k], flags[k] = x, EXCH_EVENT
                e += 1
            else:
                rows[k], flags[k] = y, LOCAL_EVENT
                lo += 1
        elif e < n:
            rows[k], flags[k] = by_exch[e], EXCH_EVENT
            e += 1
        else:
            rows[k], flags[k] = by_local[lo], LOCAL_EVENT
            lo += 1
        k += 1
    return rows[:k], flags[:k]


def to_event_array(frame: pl.DataFrame) -> np.ndarray:
    out = np.zeros(frame.height, EVENT_DTYPE)
    for name in ("ev", "exch_ts", "local_ts", "px", "qty"):
        out[name] = frame[name].to_numpy()
    return out


def hftbacktest_events(
    market: str,
    day: dt.date | str,
    *,
    data_dir: str | Path | None = None,
    base_latency_ns: int = 0,
) -> HftExport:
    """The certified, current day of ``market`` as hftbacktest's event array (module doc)."""
    day = dt.date.fromisoformat(day) if isinstance(day, str) else day
    layout = read.data_layout(data_dir)
    (current,) = read.current_days(layout, market, [day])
    price_type, size_type = read.price_types(current)
    book, known_from = read.starting_book(layout, current, price_type, size_type)
    rows = _exported_rows(current, known_from)
    # like correct_local_timestamp: a recorder clock behind the exchange moves every local time
    latency = int((rows["local_ts"] - rows["exch_ts"]).min()) if rows.height else 0
    offset = -latency + base_latency_ns if latency < 0 else 0
    rows = rows.with_columns(pl.col("local_ts") + offset)
    first_exch = int(rows["exch_ts"].min()) if rows.height else read.to_ns(day)
    if known_from is not None:
        first_exch = min(first_exch, known_from)
    # first in both orders (its local time is at or after its exchange time: see above)
    first_local = int(rows["local_ts"].min()) if rows.height else first_exch
    snapshot = _snapshot_rows(book, first_exch, first_local)
    events = pl.concat([snapshot, rows])
    exch_ts, local_ts = events["exch_ts"].to_numpy(), events["local_ts"].to_numpy()
    order, flags = _merge_orders(
        exch_ts, local_ts, np.argsort(exch_ts, kind="stable"), np.argsort(local_ts, kind="stable")
    )
    data = to_event_array(events)[order]
    data["ev"] |= flags
    ps, ss = price_type.scale, size_type.scale
    return HftExport(data, 10.0**-ps, 10.0**-ss, ps, ss, offset, snapshot.height, rows.height)


def write_npz(export: HftExport, out: Path) -> int:
    """``out`` as hftbacktest's converters write it (one array named ``data``), atomically;
    returns its size in bytes."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, data=export.data)
    with atomic_write(out) as handle:
        handle.write(buffer.getbuffer())
    return out.stat().st_size
