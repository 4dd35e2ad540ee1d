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

Memory and speed. The day is read twice, a record batch of ``BATCH_ROWS`` at a time: first
only its times (the number of rows, the smallest latency and the merge's length, which the
``.npy`` header states before any event), then in full, the events built ``CHUNK_EVENTS`` at a
time and deflated by a background thread straight into the ``.npz`` member: the bytes of
``np.savez_compressed`` (same member, same header, one deflate stream at zlib's default level).
The stream is in exchange-time order (``rlx_assets.book.reconstruct``; checked on every row),
so the exchange order is the rows' own; the local order is sorted as rows arrive, and a row is
released to the merge once no later row can precede it (every later row's local time is at
least its exchange time plus the day's smallest latency; the first pass, not knowing that yet,
assumes the smallest so far and counts again should a later row prove it wrong). Memory holds
one batch plus the rows within the day's spread of latencies, whatever the length of the day
(0.6 GB for a 43 M-event day); the time is mostly zlib's (35 s of CPU for that day's 2.8 GB
array, 9 times the time to read its stream).
"""

from __future__ import annotations

import datetime as dt
import zipfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from numba import njit

from rlx_assets import read
from rlx_assets.book.reconstruct import STREAM_FILE, input_batches
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
# one exported stream row while it waits for its place in the exchange and local orders
_ROW_DTYPE = np.dtype(
    [("ev", "u8"), ("exch_ts", "i8"), ("local_ts", "i8"), ("px", "f8"), ("qty", "f8"),
     ("row", "i8")],
    align=True,
)  # fmt: skip
BATCH_ROWS = 1 << 18  # stream rows read at a time
CHUNK_EVENTS = 1 << 18  # events deflated at a time (16 MiB)
NPY_MEMBER = "data.npy"  # np.savez_compressed(out, data=...)'s one member
_TIME_COLUMNS = ("event_time", "received_time", "event_type", "sequence_number")
_VALUE_COLUMNS = (*_TIME_COLUMNS, "side", "price", "size")


class StreamOrderError(ValueError):
    """The stream is not the reconstruction's (exchange-time order), or changed while read."""


@dataclass(frozen=True)
class _Rows:
    """The stream rows the export carries: trades, and the book rows the reconstruction applied
    (above the seed's sequence number, never below one applied); on a cold day only those from
    the seed on."""

    path: Path
    seed_sequence: int
    known_from: int | None

    def batches(self, values: bool) -> Iterator[np.ndarray]:
        """The rows a record batch at a time (``_ROW_DTYPE``; ``local_ts`` the receive time,
        not shifted yet); without ``values`` only the times (``ev``, ``px``, ``qty`` 0)."""
        columns = _VALUE_COLUMNS if values else _TIME_COLUMNS
        running, last = -1, None  # the highest sequence number so far, the last event time
        seen = exported = 0  # rows of the file, rows of the export
        for batch in input_batches(self.path, list(columns), BATCH_ROWS):  # not pre-buffered
            frame = pl.from_arrow(batch)
            last = self._check_order(frame, seen, last)
            frame, running = self._exported(frame, running, values)
            rows = np.zeros(frame.height, _ROW_DTYPE)
            for name in frame.columns:
                rows[name] = frame[name].to_numpy()
            rows["row"] = np.arange(exported, exported + frame.height)
            seen, exported = seen + batch.num_rows, exported + frame.height
            yield rows

    def _exported(self, frame: pl.DataFrame, running: int, values: bool):
        """The batch's exported rows as the export's columns, and the highest sequence number
        after it (``running`` before it: trades carry none)."""
        seq, is_book = pl.col("sequence_number"), pl.col("event_type") == "book"
        highest = pl.max_horizontal(seq.fill_null(-1).cum_max(), pl.lit(running, pl.Int64))
        applied = (seq > self.seed_sequence) & (seq >= highest)
        if frame.height:
            running = max(running, int(frame["sequence_number"].fill_null(-1).max()))
        frame = frame.filter(~is_book | applied)
        if self.known_from is not None:
            frame = frame.filter(pl.col("event_time").dt.epoch("ns") >= self.known_from)
        columns = [
            pl.col("event_time").dt.epoch("ns").alias("exch_ts"),
            pl.col("received_time").dt.epoch("ns").alias("local_ts"),
        ]
        if values:
            kind = (
                pl.when(is_book)
                .then(pl.lit(DEPTH_EVENT, pl.UInt64))
                .otherwise(pl.lit(TRADE_EVENT, pl.UInt64))
            )
            columns += [
                (kind | _side_flags(pl.col("side"))).alias("ev"),
                pl.col("price").cast(pl.Float64).alias("px"),
                pl.col("size").cast(pl.Float64).alias("qty"),
            ]
        return frame.select(columns), running

    def _check_order(self, frame: pl.DataFrame, first_row: int, last: int | None) -> int | None:
        """The batch's last event time; refuses rows out of exchange-time order (the merge takes
        the rows' own order for it)."""
        if not frame.height:
            return last
        times = frame["event_time"].dt.epoch("ns").to_numpy()
        back = np.flatnonzero(np.diff(times, prepend=times[0] if last is None else last) < 0)
        if back.size:
            row = first_row + int(back[0])
            raise StreamOrderError(
                f"{self.path}: row {row} is earlier in event_time than row {row - 1}: not in "
                "the reconstruction's exchange-time order (reconstruct the day again)"
            )
        return int(times[-1])


def _side_flags(side: pl.Expr) -> pl.Expr:
    return (
        pl.when(side.is_in(["bid", "buy"]))
        .then(pl.lit(BUY_EVENT, pl.UInt64))
        .when(side.is_in(["ask", "sell"]))
        .then(pl.lit(SELL_EVENT, pl.UInt64))
        .otherwise(pl.lit(0, pl.UInt64))
    )


def _snapshot_events(book: pl.DataFrame, exch_ts: int, local_ts: int) -> np.ndarray:
    """The whole starting book: per side a clear up to its deepest price, then its levels; first
    in both orders (handled by both processors)."""
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
    events = np.zeros(frame.height, EVENT_DTYPE)
    events["ev"] = frame["ev"].cast(pl.UInt64).to_numpy() | (EXCH_EVENT | LOCAL_EVENT)
    events["exch_ts"], events["local_ts"] = exch_ts, local_ts
    events["px"] = frame["px"].cast(pl.Float64).to_numpy()
    events["qty"] = frame["qty"].cast(pl.Float64).to_numpy()
    return events


@njit(cache=True)
def _put(out, k, row, flags, offset):
    event = out[k]
    event.ev = row.ev | flags
    event.exch_ts = row.exch_ts
    event.local_ts = row.local_ts + offset
    event.px = row.px
    event.qty = row.qty


@njit(cache=True)
def _merge(by_exch, e, by_local, lo, released, final, offset, out, k):
    """``correct_event_order``'s merge of the rows in exchange order (``by_exch[e:]``) and the
    released rows in local order (``by_local[lo:released]``) into ``out[k:]``, until ``out`` is
    full or, unless ``final``, the next step needs a row not read yet; returns ``e, lo, k``."""
    both = np.uint64(EXCH_EVENT | LOCAL_EVENT)
    n = by_exch.shape[0]
    while k < out.shape[0]:
        if e < n and lo < released:
            x, y = by_exch[e], by_local[lo]
            if x.row == y.row:
                _put(out, k, x, both, offset)
                e += 1
                lo += 1
            elif x.exch_ts < y.exch_ts or (x.exch_ts == y.exch_ts and x.local_ts <= y.local_ts):
                _put(out, k, x, np.uint64(EXCH_EVENT), offset)
                e += 1
            else:
                _put(out, k, y, np.uint64(LOCAL_EVENT), offset)
                lo += 1
        elif final and e < n:
            _put(out, k, by_exch[e], np.uint64(EXCH_EVENT), offset)
            e += 1
        elif final and lo < released:
            _put(out, k, by_local[lo], np.uint64(LOCAL_EVENT), offset)
            lo += 1
        else:
            break
        k += 1
    return e, lo, k


def _words(rows: np.ndarray) -> np.ndarray:
    """Rows as a 2-D array of 8-byte words: numpy copies those at memcpy speed, structured
    arrays field by field."""
    return rows.view(np.int64).reshape(rows.size, _ROW_DTYPE.itemsize // 8)


def _concatenate(first: np.ndarray, then: np.ndarray) -> np.ndarray:
    return np.concatenate([_words(first), _words(then)]).view(_ROW_DTYPE).ravel()


class _Merger:
    """``correct_event_order`` over batches of rows in exchange-time order (module doc), yielding
    the events in chunks of ``CHUNK_EVENTS``. A row leaves the local order once no later row can
    come before it: every later row's latency is at least ``min_latency``. Unknown (None: the
    measuring pass), the smallest latency so far stands in for it, and ``exact`` turns false when
    a later row comes before a row the merge already used."""

    def __init__(self, path: Path, min_latency: int | None, offset: int):
        self.path, self.min_latency, self.offset = path, min_latency, offset
        self.known, self.exact = min_latency is not None, True
        self.used = np.iinfo(np.int64).min  # the latest local time released to the merge
        self.by_exch = self.by_local = np.zeros(0, _ROW_DTYPE)
        self.out, self.k = np.zeros(CHUNK_EVENTS, EVENT_DTYPE), 0

    def add(self, rows: np.ndarray) -> Iterator[np.ndarray]:
        if not rows.size:
            return
        self._latency(rows)
        self.exact &= int(rows["local_ts"].min()) >= self.used
        self.by_exch = _concatenate(self.by_exch, rows)
        waiting = _concatenate(self.by_local, rows)  # earlier rows first: ties keep the order
        order = np.argsort(waiting["local_ts"], kind="stable")
        self.by_local = _words(waiting)[order].view(_ROW_DTYPE).ravel()
        bound = int(rows["exch_ts"][-1]) + self.min_latency  # no later row's local time is below
        released = int(np.searchsorted(self.by_local["local_ts"], bound, "right"))
        if released:
            self.used = max(self.used, int(self.by_local["local_ts"][released - 1]))
        yield from self._run(released)

    def finish(self) -> Iterator[np.ndarray]:
        yield from self._run(self.by_local.size, final=True)
        if self.k:
            yield self.out[: self.k]

    def _run(self, released: int, final: bool = False) -> Iterator[np.ndarray]:
        e = lo = 0
        while True:
            e, lo, self.k = _merge(
                self.by_exch, e, self.by_local, lo, released, final, self.offset, self.out, self.k
            )
            if self.k < self.out.size:
                break
            yield self.out
            self.out, self.k = np.zeros(CHUNK_EVENTS, EVENT_DTYPE), 0
        self.by_exch, self.by_local = self.by_exch[e:], self.by_local[lo:]

    def _latency(self, rows: np.ndarray) -> None:
        least = int((rows["local_ts"] - rows["exch_ts"]).min())
        if not self.known:
            self.min_latency = least if self.min_latency is None else min(self.min_latency, least)
        elif least < self.min_latency:
            raise StreamOrderError(f"{self.path} changed while it was exported: export it again")


def _merged(rows: _Rows, min_latency: int, offset: int, values: bool) -> Iterator[np.ndarray]:
    merger = _Merger(rows.path, min_latency, offset)
    for batch in rows.batches(values):
        yield from merger.add(batch)
    yield from merger.finish()


@dataclass(frozen=True)
class _Measures:
    rows: int
    min_latency: int
    first_exch: int | None
    first_local: int | None
    merged: int  # the merge's length


def _measure(rows: _Rows) -> _Measures:
    """One pass over the rows' times: their number, the smallest latency, the first times and
    the merge's length (counted again, knowing the smallest latency, if the pass's guess of it
    proved wrong)."""
    merger = _Merger(rows.path, None, 0)
    n = merged = 0
    first_exch = first_local = None
    for batch in rows.batches(values=False):
        merged += sum(chunk.size for chunk in merger.add(batch))
        if batch.size:
            n += batch.size
            earliest = int(batch["local_ts"].min())
            first_local = earliest if first_local is None else min(first_local, earliest)
            first_exch = int(batch["exch_ts"][0]) if first_exch is None else first_exch
    merged += sum(chunk.size for chunk in merger.finish())
    latency = merger.min_latency or 0
    if not merger.exact:
        merged = sum(chunk.size for chunk in _merged(rows, latency, 0, values=False))
    return _Measures(n, latency, first_exch, first_local, merged)


@dataclass(frozen=True)
class HftExport:
    """One day's export, measured before its events are built: ``chunks()`` yields them."""

    events: int
    tick_size: float
    lot_size: float
    price_scale: int
    size_scale: int
    local_ts_offset_ns: int
    snapshot_levels: int
    stream_rows: int
    snapshot: np.ndarray = field(repr=False)  # EVENT_DTYPE: the first events
    rows: _Rows = field(repr=False)
    min_latency_ns: int = 0

    def chunks(self) -> Iterator[np.ndarray]:
        """The events in order, in arrays of at most ``CHUNK_EVENTS``."""
        yield self.snapshot
        yield from _merged(self.rows, self.min_latency_ns, self.local_ts_offset_ns, values=True)


def hftbacktest_events(
    market: str,
    day: dt.date | str,
    *,
    data_dir: str | Path | None = None,
    base_latency_ns: int = 0,
) -> HftExport:
    """The certified, current day of ``market`` as hftbacktest's event array (module doc),
    measured: ``chunks()`` builds the events, ``write_npz`` writes them."""
    day = dt.date.fromisoformat(day) if isinstance(day, str) else day
    layout = read.data_layout(data_dir)
    (current,) = read.current_days(layout, market, [day])
    price_type, size_type = read.price_types(current)
    book, known_from = read.starting_book(layout, current, price_type, size_type)
    seed_sequence = int(current.summary.get("seed_sequence") or -1)
    rows = _Rows(current.file(STREAM_FILE), seed_sequence, known_from)
    measures = _measure(rows)
    # like correct_local_timestamp: a recorder clock behind the exchange moves every local time
    latency = measures.min_latency
    offset = -latency + base_latency_ns if latency < 0 else 0
    first_exch = measures.first_exch if measures.rows else read.to_ns(day)
    if known_from is not None:
        first_exch = min(first_exch, known_from)
    # first in both orders (its local time is at or after its exchange time: see above)
    first_local = measures.first_local + offset if measures.rows else first_exch
    snapshot = _snapshot_events(book, first_exch, first_local)
    ps, ss = price_type.scale, size_type.scale
    return HftExport(
        snapshot.size + measures.merged, 10.0**-ps, 10.0**-ss, ps, ss, offset, snapshot.size,
        measures.rows, snapshot, rows, latency,
    )  # fmt: skip


def write_npz(export: HftExport, out: Path) -> int:
    """``out`` as hftbacktest's converters write it (``np.savez_compressed(out, data=...)``: one
    member ``data.npy``, deflated), atomically, the events compressed by a background thread as
    they are built; returns its size in bytes."""
    header = np.lib.format.header_data_from_array_1_0(np.zeros(0, EVENT_DTYPE))
    header["shape"] = (export.events,)
    written = 0
    with (
        atomic_write(out) as handle,
        zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive,
        archive.open(NPY_MEMBER, "w", force_zip64=True) as member,
        ThreadPoolExecutor(1, thread_name_prefix="npz-deflate") as deflate,
    ):
        np.lib.format.write_array_header_1_0(member, header)  # what write_array picks for it
        pending: Future | None = None
        for chunk in export.chunks():
            if pending is not None:
                pending.result()  # one chunk deflating while the next is built
            written += chunk.size
            pending = deflate.submit(member.write, chunk)
        if pending is not None:
            pending.result()
        if written != export.events:
            raise StreamOrderError(
                f"{export.rows.path} changed while it was exported: export it again"
            )
    return out.stat().st_size
