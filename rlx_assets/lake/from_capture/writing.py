"""The conversion itself (``convert_captures``): one pass over the files in receive order,
chunk by chunk per symbol, each table's rows spilled as they are built, then written one UTC day
per file in the vendor's layout, atomically. Memory holds one chunk and one row group, whatever
the length of the captures. Imports the converter's other modules, ``rlx_assets.capture``,
``rlx_assets.markets``/``vendor_schemas`` and ``staging`` only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rlx_assets.capture.reader import (
    CaptureFormatError,
    CaptureRecord,
    CaptureStats,
    merge_captures,
    stream_channel,
    stream_symbol,
)
from rlx_assets.lake.from_capture.decimals import ConversionError
from rlx_assets.lake.from_capture.reading import (
    Columns,
    add_message,
    decide_market,
    detect_market,
    vote,
)
from rlx_assets.lake.from_capture.tables import (
    BOOK_BUILDER,
    BookRows,
    BookSyncReport,
    book_delta_columns,
    depth_of,
    level_1_columns,
    trades_columns,
)
from rlx_assets.markets import LakeMarket, lake_market
from rlx_assets.staging import atomic_write, lake_relative_path, sha256_file
from rlx_assets.temp_files import temp_name
from rlx_assets.vendor_schemas import VENDOR_SCHEMAS

CONVERTER = "rlx_assets.lake.from_capture"
CONVERTER_VERSION = "2"  # 2: book table from the pure-Python reference book
MARKETS = ("auto", "spot", "usdm")
NS_PER_DAY = 86_400 * 1_000_000_000
NS_PER_MS = 1_000_000
# Messages of one symbol turned into columns at a time: about 7 minutes of a busy symbol.
CHUNK_MESSAGES = 50_000
# Row groups as pyarrow writes them by default (up to 1 Mi rows), but at most this many bytes of
# values (524 k rows of 6 columns, 38 k of `book`'s 83), so a day's files are written in bounded
# memory. The sample's largest table (443 k rows) still fits in one group, as it was written.
ROW_GROUP_ROWS = 1 << 20
ROW_GROUP_BYTES = 24 << 20
# A day of one busy symbol is millions of lines: say how far the read is at most this often.
PROGRESS_SECONDS = 5.0

# Golden-only (``trade_parts=True``): each aggTrade's raw-trade range and every raw trade, with
# quantities as sent, so the fidelity report checks aggTrade = sum of its trades without parsing
# the captures again. aggTrades of the day by trade time; raw trades within a minute of it.
TRADE_PARTS = "trade_parts"
TRADE_PARTS_SCHEMA = pa.schema(
    [pa.field("channel", pa.string()), pa.field("id", pa.int64()),
     pa.field("first_id", pa.int64()), pa.field("last_id", pa.int64()),
     pa.field("trade_time", pa.int64()), pa.field("quantity", pa.string())]
)  # fmt: skip
_RAW_TRADE_MARGIN_NS = 60 * 1_000_000_000

_LEVEL_1_SPILL = pa.schema(
    [pa.field("event_ms", pa.int64())]
    + [f for f in VENDOR_SCHEMAS["level_1"] if f.name != "timestamp"]
)


class CaptureObserver(Protocol):
    def feed(self, record: CaptureRecord) -> None: ...

    def finish(self, stats: list[CaptureStats]) -> object: ...


class _Spill:
    """Rows of one table, appended chunk by chunk to an Arrow IPC file and read back in batches
    (a table's day file is written only once the whole stream decided its metadata)."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.path, self.schema, self.rows = path, schema, 0
        self._sink: pa.OSFile | None = None
        self._writer: pa.ipc.RecordBatchFileWriter | None = None

    def append(self, columns: dict[str, np.ndarray], keep: np.ndarray | None) -> None:
        arrays = []
        for f in self.schema:
            values = columns[f.name] if keep is None else columns[f.name][keep]
            arrays.append(pa.array(values, type=f.type))
        batch = pa.RecordBatch.from_arrays(arrays, schema=self.schema)
        if batch.num_rows == 0:
            return
        if self._writer is None:
            self._sink = pa.OSFile(str(self.path), "wb")
            self._writer = pa.ipc.new_file(self._sink, self.schema)
        self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def batches(self) -> Iterator[pa.RecordBatch]:
        if self._writer is None:
            return
        self._writer.close()
        self._sink.close()  # type: ignore[union-attr]
        self._writer = None
        with pa.OSFile(str(self.path), "rb") as source:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)


class _DayFile:
    """One day's Parquet file of one table, written row group by row group."""

    def __init__(self, handle, schema: pa.Schema):
        width = 8 * len(schema)  # bytes per row: int64/float64 values, short strings
        self.group_rows = max(1, min(ROW_GROUP_ROWS, ROW_GROUP_BYTES // width))
        self.schema = schema
        self.writer = pq.ParquetWriter(handle, schema, compression="snappy")
        self.pending: list[pa.RecordBatch] = []
        self.pending_rows = self.rows = 0

    def append(self, batch: pa.RecordBatch) -> None:
        self.pending.append(batch)
        self.pending_rows += batch.num_rows
        self.rows += batch.num_rows
        while self.pending_rows >= self.group_rows:
            table = pa.Table.from_batches(self.pending, schema=self.schema)
            self._write(table.slice(0, self.group_rows))
            rest = table.slice(self.group_rows)
            self.pending, self.pending_rows = rest.to_batches(), rest.num_rows

    def close(self) -> None:
        if self.pending_rows:
            self._write(pa.Table.from_batches(self.pending, schema=self.schema))
        self.writer.close()

    def _write(self, table: pa.Table) -> None:
        # One contiguous row group, as pq.write_table writes a table of that size.
        self.writer.write_table(table.combine_chunks(), row_group_size=self.group_rows)


class _SymbolTables:
    """The vendor's tables of one market and symbol, built chunk by chunk."""

    def __init__(
        self, market: str, lake: LakeMarket, days: Collection[dt.date] | None, spill,
        trade_parts: bool,
    ):  # fmt: skip
        self.market, self.lake = market, lake
        self.day_numbers = None if days is None else {(d - dt.date(1970, 1, 1)).days for d in days}
        self.cols = Columns()
        self.pending = 0
        self.files: dict[int, None] = {}  # indices of the files holding this symbol, in order
        self.book = BookRows(futures=market == "usdm")
        self.depth_seen = False
        self.level_1_event_time_missing = False  # spot bookTicker frames carry no event time
        self.spills = {
            "trades.aggTrade": _Spill(spill("trades.aggTrade"), VENDOR_SCHEMAS["trades"]),
            "trades.trade": _Spill(spill("trades.trade"), VENDOR_SCHEMAS["trades"]),
            "book": _Spill(spill("book"), VENDOR_SCHEMAS["book"]),
            "book_delta_v2": _Spill(spill("book_delta_v2"), VENDOR_SCHEMAS["book_delta_v2"]),
            "level_1": _Spill(spill("level_1"), _LEVEL_1_SPILL),
        }
        if trade_parts:
            self.spills[TRADE_PARTS] = _Spill(spill(TRADE_PARTS), TRADE_PARTS_SCHEMA)

    def add(self, file_index: int, channel: str, record: CaptureRecord) -> bool:
        self.files.setdefault(file_index, None)
        if not add_message(self.cols, channel, record.data, record.capture_ns):
            return False
        self.pending += 1
        if self.pending >= CHUNK_MESSAGES:
            self.flush()
        return True

    def flush(self) -> None:
        cols, key = self.cols, self.lake.key
        self.cols, self.pending = Columns(), 0
        for channel, trades in cols.trades.items():
            columns = trades_columns(trades, key)
            self.spills[f"trades.{channel}"].append(columns, self._in_days(columns["timestamp"]))
        if TRADE_PARTS in self.spills:
            self._spill_trade_parts(cols)
        level_1 = level_1_columns(cols, key)
        if level_1 is not None:
            self.level_1_event_time_missing |= bool((level_1["event_ms"] < 0).any())
            event_ns = np.where(level_1["event_ms"] >= 0, level_1["event_ms"] * NS_PER_MS, -1)
            keep = self._in_days(level_1["receipt_timestamp"], event_ns)
            self.spills["level_1"].append(level_1, keep)
        depth = depth_of(cols, key)
        if depth is None:
            return
        self.depth_seen = True
        deltas = book_delta_columns(depth)
        if deltas is not None:
            self.spills["book_delta_v2"].append(deltas, self._in_days(deltas["timestamp"]))
        book = self.book.add(depth)
        if book is not None:
            self.spills["book"].append(book, self._in_days(book["timestamp"]))

    def _spill_trade_parts(self, cols: Columns) -> None:
        for channel, trades in cols.trades.items():
            times = np.asarray(trades.trade_ms, dtype=np.int64) * NS_PER_MS
            ids = np.asarray(trades.trade_id, dtype=np.int64)
            if channel == "aggTrade":
                first, last, keep = trades.first_id, trades.last_id, self._in_days(times)
            else:
                first = last = [-1] * len(ids)
                keep = self._in_days(times - _RAW_TRADE_MARGIN_NS, times + _RAW_TRADE_MARGIN_NS)
            columns = {
                "channel": np.full(len(ids), channel, dtype=object), "id": ids,
                "first_id": np.asarray(first, dtype=np.int64),
                "last_id": np.asarray(last, dtype=np.int64), "trade_time": times,
                "quantity": np.asarray(trades.quantity, dtype=object),
            }  # fmt: skip
            self.spills[TRADE_PARTS].append(columns, keep)

    def _in_days(self, *timestamps: np.ndarray) -> np.ndarray | None:
        if self.day_numbers is None:
            return None
        wanted = np.fromiter(self.day_numbers, dtype=np.int64)
        return np.logical_or.reduce([np.isin(t // NS_PER_DAY, wanted) for t in timestamps])


def convert_captures(
    paths: Sequence[Path | str],
    out_dir: Path | str,
    market: str = "auto",
    log: Callable[[str], None] | None = None,
    *,
    symbols: Collection[str] | None = None,
    days: Collection[dt.date] | None = None,
    checksums: Mapping[str, str] | None = None,
    observer: CaptureObserver | None = None,
    trade_parts: bool = False,
) -> list[Path]:
    """Convert Binance capture files into Crypto Lake's raw layout below ``out_dir``.

    ``market``: "spot", "usdm" or "auto" (detected per file from the messages). Files of the
    same market and symbol, in any order, form one stream, merged by receive time. ``symbols``
    (lower case, e.g. "btcusdt") and ``days`` limit what is converted and written; every message
    of a converted symbol still goes through the book, so a day starts from the book before it.
    ``checksums`` (file name -> SHA-256, e.g. already verified against sidecars) saves hashing
    the files again for the metadata; ``observer`` is fed every message once, as read, then the
    files' line counts (the golden analysis walks the day in the same pass); ``trade_parts``
    also writes the golden-only ``trade_parts`` table of each day. Returns the written files. Raises
    ``CaptureFormatError`` / ``ConversionError`` (both ValueError) with messages naming the
    file, ``FileNotFoundError`` for missing inputs and ValueError for unknown symbols; nothing
    is written then. ``log`` receives progress lines (the CLI prints them to stderr).
    """
    log = log or (lambda _message: None)
    if trade_parts and (days is None or len(days) != 1):
        raise ValueError("trade_parts are written for one day at a time")
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
    files, out_dir = list(unique), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=temp_name("spill"), dir=out_dir) as tmp:
        groups, stats = _read(files, market, log, symbols, days, Path(tmp), observer, trade_parts)
        if observer is not None:
            observer.finish(stats)
        return _write(groups, files, stats, out_dir, checksums or {}, log)


def _read(files, market_arg, log, symbols, days, spill_dir, observer, trade_parts):
    total_mb = sum(p.stat().st_size for p in files) / 1e6
    log(f"reading {len(files)} file(s), {total_mb:.1f} MB, in receive order")
    file_markets = [detect_market(path, market_arg) for path in files]
    votes = [Counter() for _ in files]
    stats = [CaptureStats() for _ in files]
    groups: dict[tuple[str, str], _SymbolTables] = {}
    ignored: Counter[str] = Counter()
    started = last_report = time.monotonic()
    messages = 0
    for index, record in merge_captures(files, stats):
        messages += 1
        if not messages % 8192 and time.monotonic() - last_report >= PROGRESS_SECONDS:
            last_report = time.monotonic()
            lines = sum(s.lines for s in stats)
            rate = lines / (last_report - started)
            log(f"{lines:,} lines read ({rate:,.0f} lines/s)")
        if observer is not None:
            observer.feed(record)
        symbol = stream_symbol(record.stream)
        if symbols is not None and symbol not in symbols:
            continue
        channel, file_market = stream_channel(record.stream), file_markets[index]
        found = vote(channel, record.data)
        if found is not None:
            votes[index][found] += 1
            if found != file_market:
                decide_market(files[index], votes[index], market_arg)  # raises, naming the file
        gkey = (file_market, symbol)
        tables = groups.get(gkey)
        if tables is None:
            lake = lake_market(symbol, file_market)  # ValueError: unknown symbol
            name = f"{len(groups)}"
            tables = groups[gkey] = _SymbolTables(
                file_market,
                lake,
                days,
                lambda table, n=name: spill_dir / f"{n}.{table}.arrow",
                trade_parts,
            )
        try:
            if not tables.add(index, channel, record):
                ignored[channel] += 1
        except (KeyError, IndexError, TypeError) as exc:
            raise CaptureFormatError(
                f"{files[index]}:{record.line}: {record.stream} message lacks an expected field "
                f"({exc!r})"
            ) from None
    for index, path in enumerate(files):
        if stats[index].messages == 0:
            raise ConversionError(f"{path}: no market-data messages in the file")
        names = [t.lake.key for t in groups.values() if index in t.files]
        log(f"read {path.name}: {file_markets[index]} {', '.join(names) or '-'}: "
            f"{stats[index].describe()}")  # fmt: skip
    if ignored:
        log(f"ignored {dict(ignored)}")
    seconds = time.monotonic() - started
    lines = sum(s.lines for s in stats)
    rate = lines / max(seconds, 1e-9)
    log(f"all files read: {lines:,} lines in {seconds:.1f} s ({rate:,.0f} lines/s)")
    for tables in groups.values():
        tables.flush()
    return groups, stats


def _write(groups, files, stats, out_dir, checksums, log) -> list[Path]:
    written: list[Path] = []
    ranked = sorted(range(len(files)), key=lambda i: (stats[i].first_capture_ns, files[i].name))
    for (binance_market, symbol), tables in groups.items():
        lake = tables.lake
        own = [files[i] for i in ranked if i in tables.files]
        metadata = {
            "rlx.converter": CONVERTER,
            "rlx.converter_version": CONVERTER_VERSION,
            "rlx.source_files": json.dumps(
                [{"name": p.name, "sha256": checksums.get(p.name) or sha256_file(p)} for p in own]
            ),
            "rlx.market_key": lake.key,
            "rlx.binance_symbol": symbol.upper(),
            "rlx.binance_market": binance_market,
        }
        for name, spill, table_meta, timestamp in _tables_to_write(tables, lake.key, log):
            for date, rows, dest in _write_days(name, spill, timestamp, lake, out_dir,
                                                {**metadata, **table_meta},
                                                tables.day_numbers):  # fmt: skip
                log(f"wrote {name} {lake.key} {date}: {rows} rows")
                written.append(dest)
    return written


def _tables_to_write(tables: _SymbolTables, key: str, log):
    """(table, spill, table metadata, timestamp of a spilled batch) in table-name order."""
    out = []
    spills = tables.spills
    if tables.depth_seen:
        sync, book = tables.book.top.counters()
        report = BookSyncReport(sync, book, book["events"])
        log(f"{key}: {report.describe()}")
        # the book's units: the finest scale of any chunk
        scales = {"rlx.price_scale": str(tables.book.price_scale),
                  "rlx.size_scale": str(tables.book.size_scale)}  # fmt: skip
        out.append(("book", spills["book"], {
            **scales,
            "rlx.book_sync": json.dumps({**sync, **book}, sort_keys=True),
            "rlx.book_gaps": str(sync["gaps"]),
            "rlx.book_builder": BOOK_BUILDER,
        }, _column("timestamp")))  # fmt: skip
        out.append(("book_delta_v2", spills["book_delta_v2"], scales, _column("timestamp")))
    level_1 = spills["level_1"]
    if level_1.rows:
        exchange_time = not tables.level_1_event_time_missing
        source = "exchange_time" if exchange_time else "receive_time"
        out.append(("level_1", level_1, {"rlx.level_1_timestamp_source": source},
                    _level_1_timestamp(exchange_time)))  # fmt: skip
    if TRADE_PARTS in spills and spills[TRADE_PARTS].rows:
        (day,) = tables.day_numbers  # one day: raw trades of its margins go to its file too
        out.append((TRADE_PARTS, spills[TRADE_PARTS], {},
                    lambda batch: np.full(batch.num_rows, day * NS_PER_DAY)))  # fmt: skip
    have = [ch for ch in ("aggTrade", "trade") if spills[f"trades.{ch}"].rows]
    if have:
        if len(have) > 1:
            log(f"{key}: captures carry both trade and aggTrade frames; trades from aggTrade")
        out.append(("trades", spills[f"trades.{have[0]}"], {"rlx.trade_source": have[0]},
                    _column("timestamp")))  # fmt: skip
    return sorted(out, key=lambda item: item[0])


def _column(name: str):
    return lambda batch: batch.column(name).to_numpy()


def _level_1_timestamp(exchange_time: bool):
    def timestamp(batch: pa.RecordBatch) -> np.ndarray:
        if exchange_time:
            return batch.column("event_ms").to_numpy() * NS_PER_MS
        return batch.column("receipt_timestamp").to_numpy()

    return timestamp


def _write_days(name, spill, timestamp_of, market, out_dir, metadata, day_numbers):
    """Stream ``spill`` into one Parquet file per UTC day (by ``timestamp_of``; only
    ``day_numbers`` unless None); returns (date, rows, path) per file, in date order."""
    schema = TRADE_PARTS_SCHEMA if name == TRADE_PARTS else VENDOR_SCHEMAS[name]
    schema = schema.with_metadata({**metadata, "rlx.table": name})
    with contextlib.ExitStack() as stack:
        days: dict[int, tuple[_DayFile, Path]] = {}
        for batch in spill.batches():
            timestamp = timestamp_of(batch)
            rows = pa.RecordBatch.from_arrays(
                [pa.array(timestamp) if f.name == "timestamp" else batch.column(f.name)
                 for f in schema], schema=schema,
            )  # fmt: skip
            day_index = timestamp // NS_PER_DAY
            for day in np.unique(day_index).tolist():
                if day_numbers is not None and day not in day_numbers:
                    continue
                if day not in days:
                    date = dt.date(1970, 1, 1) + dt.timedelta(days=day)
                    rel = lake_relative_path(name, market.exchange, market.symbol, date)
                    handle = stack.enter_context(atomic_write(out_dir / rel))
                    days[day] = (_DayFile(handle, schema), out_dir / rel)
                mask = day_index == day
                days[day][0].append(rows if mask.all() else rows.filter(pa.array(mask)))
        for day_file, _ in days.values():
            day_file.close()
    out = []
    for day in sorted(days):
        day_file, path = days[day]
        out.append((dt.date(1970, 1, 1) + dt.timedelta(days=day), day_file.rows, path))
    return out
