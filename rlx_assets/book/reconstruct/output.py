"""Arrow output: the output files' names, schemas and writer options, and record batches
built zero-copy from the replay's buffers. May import ``decimals`` and ``replay``."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from rlx_assets.book.reconstruct.decimals import DECIMAL_PRECISION
from rlx_assets.book.reconstruct.replay import (
    OB_ASK_VALID,
    OB_BID_VALID,
    OB_COMPLETE,
    OB_SIDE,
    OB_TYPE,
    OD_BA_P,
    OD_BA_S,
    OD_BB_P,
    OD_BB_S,
    OD_PRICE,
    OD_SIZE,
    OI_ID,
    OI_RECV,
    OI_SEQ,
    OI_TIME,
    _Buffers,
)
from rlx_assets.vendor_schemas import BOOK_DEPTH

STREAM_FILE = "stream.parquet"
SNAPSHOTS_VENDOR_FILE = "snapshots_vendor.parquet"
SNAPSHOTS_1S_FILE = "snapshots_1s.parquet"
END_BOOK_FILE = "end_book.parquet"
CHECKPOINTS_FILE = "checkpoints.parquet"
CHECKPOINT_EVERY_NS = 60_000_000_000  # a full book every minute of exchange time

SNAPSHOT_1S_ROW_GROUP = 1 << 16  # rows of 1 s snapshots written together (a day: 86,400)
EVENT_TYPES = ("book", "trade")
SIDES = ("bid", "ask", "buy", "sell")  # codes 0..3
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
SNAPSHOT_WRITE_OPTIONS = {
    **_WRITE_OPTIONS,
    "use_dictionary": False,
    "write_statistics": ["timestamp", "sequence_number"],
}
# Row groups of a few checkpoints: a reader filtering on ``timestamp`` (typed literal) decodes
# one of them (a footer of a row group per checkpoint took longer to read than the rows);
# timestamps and sequence numbers are runs.
CHECKPOINTS_PER_ROW_GROUP = 16
CHECKPOINT_WRITE_OPTIONS = {
    **_WRITE_OPTIONS,
    "use_dictionary": ["timestamp", "sequence_number", "side"],
    "column_encoding": {"price": "DELTA_BINARY_PACKED"},
    "write_statistics": ["timestamp"],
}
STREAM_ORDER = (
    "event_time, received_time, book before trade, sequence_number | trade_id, vendor row order"
)


def _validity(mask: np.ndarray) -> pa.Buffer | None:
    if mask.all():
        return None
    return pa.py_buffer(np.packbits(mask.view(np.bool_), bitorder="little"))


def decimal_array(values: np.ndarray, scale: int, valid: np.ndarray | None = None) -> pa.Array:
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


def checkpoint_schema(price_scale: int, size_scale: int, written: bool = False) -> pa.Schema:
    """``checkpoints.parquet``: one row per level of the whole book at each checkpoint time;
    an empty book is one row with null side, price and size."""
    text = pa.dictionary(pa.int8(), pa.string()) if written else pa.string()
    return pa.schema([
        pa.field("timestamp", pa.timestamp("ns", "UTC"), nullable=False),
        pa.field("sequence_number", pa.int64(), nullable=False),
        pa.field("side", text),
        pa.field("price", _decimal_type(price_scale, written)),
        pa.field("size", _decimal_type(size_scale, written)),
    ])  # fmt: skip


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
        decimal_array(od[OD_PRICE, :n], ps),
        decimal_array(od[OD_SIZE, :n], ss),
        _int64(oi[OI_ID, :n], is_trade),
        _int64(oi[OI_SEQ, :n], ~is_trade),
        decimal_array(od[OD_BB_P, :n], ps, bid_ok),
        decimal_array(od[OD_BB_S, :n], ss, bid_ok),
        decimal_array(od[OD_BA_P, :n], ps, ask_ok),
        decimal_array(od[OD_BA_S, :n], ss, ask_ok),
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
            columns.append(decimal_array(ticks[i], ps, present))
            columns.append(decimal_array(lots[i], ss, present))
    return pa.RecordBatch.from_arrays(columns + list(extra), schema=schema)


def _checkpoint_batches(
    checkpoints: list[tuple[int, int, tuple[np.ndarray, ...]]], schema: pa.Schema, ps: int, ss: int
) -> list[pa.RecordBatch]:
    """Checkpoints (time, last applied sequence number, ``end_book_levels`` of the book then),
    ``CHECKPOINTS_PER_ROW_GROUP`` to a record batch."""
    batches = []
    for first in range(0, len(checkpoints), CHECKPOINTS_PER_ROW_GROUP):
        times, seqs, sides, ticks, lots = [], [], [], [], []
        for time, seq, (bid_ticks, bid_lots, ask_ticks, ask_lots) in checkpoints[
            first : first + CHECKPOINTS_PER_ROW_GROUP
        ]:
            empty = np.zeros(int(bid_ticks.size + ask_ticks.size == 0), np.int64)  # a null row
            counts = [bid_ticks.size, ask_ticks.size, empty.size]
            sides.append(np.repeat(np.array([0, 1, -1], np.int8), counts))
            ticks += [bid_ticks, ask_ticks, empty]
            lots += [bid_lots, ask_lots, empty]
            times.append(np.full(sum(counts), time, np.int64))
            seqs.append(np.full(sum(counts), seq, np.int64))
        side = np.concatenate(sides)
        present = side >= 0
        columns = [
            _timestamps(np.concatenate(times)),
            pa.array(np.concatenate(seqs)),
            _dictionary(side, SIDES[:2]),
            decimal_array(np.concatenate(ticks), ps, present),
            decimal_array(np.concatenate(lots), ss, present),
        ]
        batches.append(pa.RecordBatch.from_arrays(columns, schema=schema))
    return batches
