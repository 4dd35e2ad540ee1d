"""The conversion itself (``convert_captures``): read every file, build each market's tables,
and write them one UTC day per file in the vendor's layout, atomically. Imports the converter's
other modules, ``rlx_assets.markets``/``vendor_schemas`` and ``staging`` only.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rlx_assets.lake.from_capture.decimals import ConversionError
from rlx_assets.lake.from_capture.reading import CaptureFile, read_capture_file
from rlx_assets.lake.from_capture.tables import (
    Table,
    book_delta_table,
    book_table,
    level_1_table,
    merged_depth,
    trades_table,
)
from rlx_assets.markets import LakeMarket, lake_market
from rlx_assets.staging import atomic_write, lake_relative_path
from rlx_assets.vendor_schemas import VENDOR_SCHEMAS

CONVERTER = "rlx_assets.lake.from_capture"
CONVERTER_VERSION = "2"  # 2: book table from the pure-Python reference book
MARKETS = ("auto", "spot", "usdm")
NS_PER_DAY = 86_400 * 1_000_000_000


def write_days(
    table: Table, market: LakeMarket, out_dir: Path, metadata: dict[str, str]
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

    groups: dict[tuple[str, str], list[CaptureFile]] = {}
    markets: dict[tuple[str, str], LakeMarket] = {}
    for number, path in enumerate(unique, 1):
        log(f"reading {number}/{len(unique)} {path.name} ({path.stat().st_size / 1e6:.1f} MB)")
        started = time.monotonic()
        capture = read_capture_file(path, market, log)
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
        tables = [trades_table(cols, log, lake.key)]
        depth = merged_depth(cols, lake.key)
        if depth is not None:
            book, report = book_table(depth, futures=gkey[0] == "usdm")
            log(f"{lake.key}: {report.describe()}")
            tables += [book, book_delta_table(depth)]
        tables.append(level_1_table(cols, lake.key))
        for table in sorted((t for t in tables if t is not None), key=lambda t: t.name):
            for date, rows, dest in write_days(table, lake, out_dir, metadata):
                log(f"wrote {table.name} {lake.key} {date}: {rows} rows")
                written.append(dest)
    return written
