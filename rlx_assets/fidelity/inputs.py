"""The inputs of a fidelity report: the reconstruction's files, the vendor's and the golden
recording's lake files (read when a metric asks) and the raw golden captures' trades. May
import the book's file names, the capture reader and ``stats.agreement``; nothing of the report.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from rlx_assets.book.reconstruct import END_BOOK_FILE, SNAPSHOTS_VENDOR_FILE, STREAM_FILE
from rlx_assets.book.store import SUMMARY_NAME
from rlx_assets.capture.reader import iter_capture, stream_channel, stream_symbol
from rlx_assets.lake.from_capture import parse_decimals
from rlx_assets.stats.agreement import NotComputable, book_updates, day_bounds, to_ns

VENDOR_TABLES = ("trades", "book", "book_delta_v2")
GOLDEN_TABLES = ("trades", "book_delta_v2", "level_1")


class Inputs:
    """The report's inputs as lazy scans, read when a metric asks: streamed or collected window
    by window, never cached (a day's files held for the whole report would be gigabytes)."""

    def __init__(self, recon: Path, vendor: dict[str, Path], golden: dict[str, Path]):
        self.recon, self.vendor_files, self.golden_files = recon, vendor, golden
        meta = _parquet_metadata(recon / END_BOOK_FILE)
        snap_meta = _parquet_metadata(recon / SNAPSHOTS_VENDOR_FILE)
        self.meta = {**snap_meta, **meta}
        self.known_floor = _float_or_none(meta.get("rlx.known_bid_floor"))
        self.known_ceiling = _float_or_none(meta.get("rlx.known_ask_ceiling"))
        summary = recon / SUMMARY_NAME
        self.summary = json.loads(summary.read_text()) if summary.is_file() else {}

    def vendor_scan(self, table: str) -> pl.LazyFrame:
        return pl.scan_parquet(self.vendor_path(table))

    def vendor_path(self, table: str) -> Path:
        if table not in self.vendor_files:
            raise NotComputable(f"no vendor {table} file given")
        return Path(self.vendor_files[table])

    def golden_scan(self, table: str) -> pl.LazyFrame:
        return pl.scan_parquet(self.golden_path(table))

    def golden_path(self, table: str) -> Path:
        if table not in self.golden_files:
            raise NotComputable(f"no golden {table} file given")
        return Path(self.golden_files[table])

    def stream(self) -> pl.LazyFrame:
        path = self.recon / STREAM_FILE
        if not path.is_file():
            raise NotComputable(f"the reconstruction has no {STREAM_FILE}")
        return pl.scan_parquet(path)

    def updates(self) -> pl.LazyFrame:
        return book_updates(self.stream())

    def source_of(self, table_path: Path) -> str | None:
        return _parquet_metadata(table_path).get("rlx.trade_source")


def trades_of(stream: pl.LazyFrame) -> pl.LazyFrame:
    """The trades of a reconstructed stream (or of a piece of it): ``event_time`` (ns) and
    ``size`` (float)."""
    schema = stream.collect_schema()
    return stream.filter(pl.col("event_type").cast(pl.String) == "trade").select(
        to_ns("event_time", schema["event_time"]), pl.col("size").cast(pl.Float64)
    )


def _parquet_metadata(path: Path) -> dict[str, str]:
    if not Path(path).is_file():
        return {}
    raw = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in raw.items() if k.startswith(b"rlx.")}


def _float_or_none(text: str | None) -> float | None:
    return float(text) if text else None


def recorded_trades(trade_parts: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``capture_trades`` from the golden ``trade_parts`` file (the captures parsed once)."""
    parts = pl.read_parquet(trade_parts)
    agg = parts.filter(pl.col("channel") == "aggTrade")
    raw = parts.filter(pl.col("channel") == "trade")
    return _trade_frames(
        {
            "a": agg["id"].to_list(),
            "f": agg["first_id"].to_list(),
            "l": agg["last_id"].to_list(),
            "q": agg["quantity"].to_list(),
        },
        {"t": raw["id"].to_list(), "q": raw["quantity"].to_list()},
    )


def capture_trades(
    files: Sequence[Path], symbol: str, day: dt.date
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """aggTrades of the day (``a``, ``f``, ``l``, ``quantity`` units) and every raw trade
    (``t``, ``quantity`` units at the same scale) of ``symbol`` in the captures."""
    start, end = day_bounds(day)
    agg: dict[str, list] = {"a": [], "f": [], "l": [], "q": []}
    raw: dict[str, list] = {"t": [], "q": []}
    for path in files:
        for rec in iter_capture(path):
            if stream_symbol(rec.stream) != symbol:
                continue
            channel, d = stream_channel(rec.stream), rec.data
            if channel == "aggTrade" and start <= int(d["T"]) * 1_000_000 < end:
                for key in ("a", "f", "l"):
                    agg[key].append(int(d[key]))
                agg["q"].append(d["q"])
            elif channel == "trade":
                raw["t"].append(int(d["t"]))
                raw["q"].append(d["q"])
    return _trade_frames(agg, raw)


def _trade_frames(agg, raw) -> tuple[pl.DataFrame, pl.DataFrame]:
    agg_q, agg_scale = parse_decimals(agg["q"], "aggTrade quantities")
    raw_q, raw_scale = parse_decimals(raw["q"], "trade quantities")
    scale = max(agg_scale, raw_scale)
    return (
        pl.DataFrame(
            {
                "a": agg["a"],
                "f": agg["f"],
                "l": agg["l"],
                "quantity": agg_q * 10 ** (scale - agg_scale),
            },
            schema={"a": pl.Int64, "f": pl.Int64, "l": pl.Int64, "quantity": pl.Int64},
        ),
        pl.DataFrame(
            {"t": raw["t"], "quantity": raw_q * 10 ** (scale - raw_scale)},
            schema={"t": pl.Int64, "quantity": pl.Int64},
        ),
    )
