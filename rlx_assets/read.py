"""Read certified, current days in one line: the stream, the trades, the snapshots, and the book
at any instant.

Pure functions (no Dagster needed). A day of a market is used only if its reconstruction
exists and its ``summary.json`` records the SHA-256 of the certificate in force
(``certificate_sha256``): a reconstruction built from a certificate that was replaced since is
stale. Otherwise one ``DataNotCurrentError`` lists every missing or stale day with the command
that materialises it, unless ``allow_missing=True`` (those days are then left out).
``verify=True`` also re-verifies each certificate against the ready files, the manifest and the
gate reports (``verified_certificate``: it hashes the certified files, so it reads them).

The data root is ``data_dir`` or ``RLX_DATA_DIR``; an ``s3://`` root is read through its local
working copy (``fetch_tree`` follows a reconstruction's ``CURRENT`` pointer: a reader sees the
whole old or the whole new version).

Prices and sizes stay exact decimals (``pl.Decimal`` at the day's scales; days of different
scales are widened to the finest).

    >>> from rlx_assets import read
    >>> read.stream("BINANCE.BTC-USDT", "2024-08-08", "2024-08-09").collect()
    >>> read.book_at("BINANCE.BTC-USDT", "2024-08-08T23:58:07.250")
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from rlx_assets.book.kernel import DenseBook
from rlx_assets.book.reconstruct import (
    CHECKPOINTS_FILE,
    SNAPSHOTS_1S_FILE,
    SNAPSHOTS_VENDOR_FILE,
    STREAM_FILE,
    decimal_array,
    end_book_levels,
)
from rlx_assets.book.store import read_summary, reconstruction_dir
from rlx_assets.config import load_settings
from rlx_assets.staging import DataLayout, fetch, fetch_tree, open_layout
from rlx_assets.validation.certificate import (
    certificate_fingerprint,
    staleness,
    verified_certificate,
)
from rlx_assets.validation.zones import CertificateError
from rlx_assets.vendor_schemas import BOOK_DEPTH

Instant = dt.date | dt.datetime | str | int
NS_PER_DAY = 86_400_000_000_000
TRADE_COLUMNS = (
    "event_time", "received_time", "side", "price", "size", "trade_id",
    "best_bid_price", "best_bid_size", "best_ask_price", "best_ask_size",
)  # fmt: skip
BOOK_COLUMNS = ("side", "level", "price", "size")


class DataNotCurrentError(LookupError):
    """Days asked for that are not reconstructed from the certificate in force."""

    def __init__(self, market: str, problems: list[tuple[dt.date, str]]):
        self.market = market
        self.days = [day for day, _ in problems]
        lines = [f"{market}: {len(problems)} day(s) not available as certified, current data:"]
        for day, reason in problems:
            lines.append(f"  {day.isoformat()}: {reason}")
        lines.append("materialise each with:")
        lines += [f"  {materialise_command(market, day)}" for day, _ in problems]
        lines.append("(or pass allow_missing=True to leave them out)")
        super().__init__("\n".join(lines))


def materialise_command(market: str, day: dt.date, target: str = "--job daily_chain") -> str:
    return f"dg launch -m rlx_assets.definitions {target} --partition '{day.isoformat()}|{market}'"


@dataclass(frozen=True)
class CurrentDay:
    """One day's reconstruction, checked current."""

    day: dt.date
    directory: Path
    summary: dict[str, Any]

    def file(self, name: str) -> Path:
        return self.directory / name


# --- the data root and the days ------------------------------------------------------------------
def data_layout(data_dir: str | Path | None = None) -> DataLayout:
    """The data root: ``data_dir`` (a path or ``s3://`` URI) or else ``RLX_DATA_DIR``."""
    settings = load_settings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": str(data_dir)})
    return open_layout(settings)


def _timestamp(ns: int) -> pl.Expr:
    """A typed timestamp literal: compared with a timestamp column, Parquet row-group
    statistics skip the row groups outside it (an ``int`` compared with ``dt.epoch`` cannot)."""
    return pl.lit(ns, dtype=pl.Int64).cast(pl.Datetime("ns", "UTC"))


def to_ns(value: Instant) -> int:
    """An instant as int64 ns since the epoch (UTC; a naive datetime or text is UTC)."""
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, dt.datetime):  # a date: its midnight
        value = dt.datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def _is_date(value: Instant) -> bool:
    if isinstance(value, str):
        return len(value.strip()) == 10
    return isinstance(value, dt.date) and not isinstance(value, dt.datetime)


def _day_of(ns: int) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(days=ns // NS_PER_DAY)


def time_range(start: Instant, end: Instant | None) -> tuple[int, int]:
    """[first, last) in ns: a date covers its whole UTC day (``end`` inclusive for dates); an
    instant is exact (``end`` exclusive); no ``end``: to the end of ``start``'s day."""
    first = to_ns(start)
    if end is None:
        last = (first // NS_PER_DAY + 1) * NS_PER_DAY
    elif _is_date(end):
        last = to_ns(end) + NS_PER_DAY
    else:
        last = to_ns(end)
    if last <= first:
        raise ValueError(f"empty range: {start} .. {end}")
    return first, last


def days_between(first_ns: int, last_ns: int) -> list[dt.date]:
    first, last = _day_of(first_ns), _day_of(last_ns - 1)
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def day_problem(layout: DataLayout, market: str, day: dt.date, verify: bool) -> str | None:
    """Why (market, day) cannot be read as certified, current data; None when it can."""
    directory = reconstruction_dir(layout, market, day)
    if not fetch_tree(directory):
        return "not reconstructed"
    summary = read_summary(layout, market, day)
    if summary is None:
        return "no summary.json in its reconstruction (incomplete)"
    in_force = certificate_fingerprint(layout, market, day)
    reason = staleness(summary.get("certificate_sha256"), in_force, "reconstruction")
    if reason is None and verify:
        try:
            verified_certificate(layout, market, day)
        except CertificateError as error:
            reason = f"its certificate no longer holds: {error}"
    return reason


def current_days(
    layout: DataLayout,
    market: str,
    days: Sequence[dt.date],
    *,
    allow_missing: bool = False,
    verify: bool = False,
) -> list[CurrentDay]:
    """The days that are current; raises one DataNotCurrentError naming all that are not
    (unless ``allow_missing``)."""
    found, problems = [], []
    for day in days:
        reason = day_problem(layout, market, day, verify)
        if reason is None:
            directory = reconstruction_dir(layout, market, day)
            found.append(CurrentDay(day, directory, read_summary(layout, market, day) or {}))
        else:
            problems.append((day, reason))
    if problems and (not allow_missing or not found):  # nothing left to read: say why
        raise DataNotCurrentError(market, problems)
    return found


# --- frames over days ----------------------------------------------------------------------------
def _decimal_columns(paths: list[Path]) -> dict[str, int]:
    """Decimal columns and their finest scale over the files."""
    scales: dict[str, int] = {}
    for path in paths:
        for field in pq.read_schema(path):
            scale = getattr(field.type, "scale", None)
            if scale is not None:
                scales[field.name] = max(scales.get(field.name, 0), scale)
    return scales


def scan_days(paths: list[Path], time_column: str, first_ns: int, last_ns: int) -> pl.LazyFrame:
    """The files one after the other (their own order kept), rows in [first_ns, last_ns)."""
    scales = _decimal_columns(paths)
    frames = []
    for path in paths:
        frame = pl.scan_parquet(path)
        own = {f.name: f.type.scale for f in pq.read_schema(path) if hasattr(f.type, "scale")}
        if any(own[name] != scale for name, scale in scales.items()):  # widen, exactly
            frame = frame.with_columns(pl.col(n).cast(pl.Decimal(38, s)) for n, s in scales.items())
        frames.append(frame)
    frame = pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]
    at = pl.col(time_column)
    return frame.filter((at >= _timestamp(first_ns)) & (at < _timestamp(last_ns)))


def _files(
    market: str, start: Instant, end: Instant | None, name: str, data_dir, allow_missing, verify
) -> tuple[list[Path], int, int]:
    first, last = time_range(start, end)
    layout = data_layout(data_dir)
    days = current_days(
        layout, market, days_between(first, last), allow_missing=allow_missing, verify=verify
    )
    return [d.file(name) for d in days], first, last


def stream(
    market: str,
    start: Instant,
    end: Instant | None = None,
    *,
    data_dir: str | Path | None = None,
    columns: Sequence[str] | None = None,
    allow_missing: bool = False,
    verify: bool = False,
) -> pl.LazyFrame:
    """Every trade and book row of ``market`` in [start, end] in the stream's order (see
    ``rlx_assets.book.reconstruct``): exchange time, then receive time, book before trade,
    sequence number or trade id, vendor row order. Each row carries the best bid and ask after
    it."""
    paths, first, last = _files(market, start, end, STREAM_FILE, data_dir, allow_missing, verify)
    frame = scan_days(paths, "event_time", first, last)
    return frame.select(list(columns)) if columns else frame


def trades(
    market: str,
    start: Instant,
    end: Instant | None = None,
    *,
    data_dir: str | Path | None = None,
    columns: Sequence[str] | None = None,
    allow_missing: bool = False,
    verify: bool = False,
) -> pl.LazyFrame:
    """The trades of the stream (taker ``side`` buy/sell), with the best bid and ask after
    each."""
    frame = stream(
        market, start, end, data_dir=data_dir, allow_missing=allow_missing, verify=verify
    ).filter(pl.col("event_type") == "trade")
    return frame.select(list(columns or TRADE_COLUMNS))


def snapshots(
    market: str,
    start: Instant,
    end: Instant | None = None,
    *,
    data_dir: str | Path | None = None,
    columns: Sequence[str] | None = None,
    allow_missing: bool = False,
    verify: bool = False,
    every: str = "1s",
) -> pl.LazyFrame:
    """Top-20 snapshots: ``every="1s"`` at every UTC second (the book after every event
    strictly before ``timestamp``), or ``every="vendor"`` at every vendor ``book`` row (ours,
    with ``matches_vendor``)."""
    names = {"1s": SNAPSHOTS_1S_FILE, "vendor": SNAPSHOTS_VENDOR_FILE}
    if every not in names:
        raise ValueError(f"every={every!r}: use '1s' or 'vendor'")
    paths, first, last = _files(market, start, end, names[every], data_dir, allow_missing, verify)
    frame = scan_days(paths, "timestamp", first, last)
    return frame.select(list(columns)) if columns else frame


# --- the book at an instant ----------------------------------------------------------------------
class BookNotKnownError(LookupError):
    """The instant lies before the book of a cold-started day was seeded."""


def book_at(
    market: str,
    when: Instant,
    *,
    depth: int | None = 20,
    data_dir: str | Path | None = None,
    verify: bool = False,
) -> pl.DataFrame:
    """The book right after every event with ``event_time <= when``: columns ``side`` ("bid"
    then "ask"), ``level`` (0 = best), ``price``, ``size`` (exact decimals), ``depth`` levels
    per side (``None``: the whole book).

    It starts from the day's last full-book checkpoint at or before ``when`` (written every
    minute of exchange time by the reconstruction; before the first one, from the day's
    starting book: the previous day's end book, or the vendor book row a cold day was seeded
    from) and applies the stream's book rows since with the compiled kernel; the row groups
    outside that minute are not read. A row is applied as the reconstruction applies it: its
    sequence number above the seed's and not below one already applied.

    A day reconstructed before checkpoints existed is read as before, with a warning: up to 20
    levels from the 1 s snapshot at or before ``when`` plus the rows since, should its 20 levels
    still cover the depth asked for once those rows are applied, else from the day's starting
    book plus every book row of the day up to ``when`` (slow on a full day)."""
    if depth is not None and depth < 1:
        raise ValueError(f"depth={depth}: ask for at least one level, or None for all")
    t = to_ns(when)
    layout = data_layout(data_dir)
    (day,) = current_days(layout, market, [_day_of(t)], verify=verify)
    book = _book_from_checkpoint(layout, day, t, depth)
    if book is not None:
        return book
    if depth is not None and depth <= BOOK_DEPTH:
        book = _book_from_snapshot(day, t, depth)
        if book is not None:
            return book
    return _book_from_start(layout, day, t, depth)


def price_types(day: CurrentDay) -> tuple[pl.Decimal, pl.Decimal]:
    schema = pq.read_schema(day.file(STREAM_FILE))
    price, size = schema.field("price").type, schema.field("size").type
    return pl.Decimal(price.precision, price.scale), pl.Decimal(size.precision, size.scale)


def _book_rows(day: CurrentDay, first_ns: int | None, t: int) -> pl.LazyFrame:
    """The day's book rows with ``first_ns <= event_time <= t``, in stream order."""
    at = pl.col("event_time")
    keep = (pl.col("event_type") == "book") & (at <= _timestamp(t))
    if first_ns is not None:
        keep &= at >= _timestamp(first_ns)
    return (
        pl.scan_parquet(day.file(STREAM_FILE))
        .filter(keep)
        .select("side", "price", "size", "sequence_number")
    )


def _applied(rows: pl.LazyFrame, seed_sequence: int, last_applied: int) -> pl.LazyFrame:
    """The rows the reconstruction applies: above the seed, never below one already applied
    (a regression is refused)."""
    seq = pl.col("sequence_number")
    running = pl.max_horizontal(seq.cum_max(), pl.lit(last_applied))
    return rows.filter((seq > seed_sequence) & (seq >= running))


def _levels_after(start: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
    """Each (side, price)'s last size over the starting levels then the rows; empty levels
    dropped; bids best first, then asks best first."""
    both = pl.concat([start.select("side", "price", "size"), rows.select("side", "price", "size")])
    last = both.group_by("side", "price", maintain_order=True).agg(pl.col("size").last())
    last = last.filter(pl.col("size") > 0)
    bids = last.filter(pl.col("side") == "bid").sort("price", descending=True)
    asks = last.filter(pl.col("side") == "ask").sort("price")
    return pl.concat([bids, asks]).with_columns(
        pl.int_range(pl.len()).over("side").cast(pl.Int64).alias("level")
    )


def _top(levels: pl.DataFrame, depth: int | None) -> pl.DataFrame:
    frame = levels if depth is None else levels.filter(pl.col("level") < depth)
    return frame.select(BOOK_COLUMNS)


def _snapshot_levels(row: dict[str, Any], price_type, size_type) -> pl.DataFrame:
    sides, prices, sizes = [], [], []
    for side in ("bid", "ask"):
        for i in range(BOOK_DEPTH):
            price = row[f"{side}_{i}_price"]
            if price is not None:
                sides.append(side)
                prices.append(price)
                sizes.append(row[f"{side}_{i}_size"])
    return pl.DataFrame(
        {"side": sides, "price": prices, "size": sizes},
        schema={"side": pl.String, "price": price_type, "size": size_type},
    )


def _book_from_snapshot(day: CurrentDay, t: int, depth: int) -> pl.DataFrame | None:
    """Top ``depth`` from the last 1 s snapshot at or before ``t`` plus the rows since; None
    when there is no such snapshot or its 20 levels no longer cover ``depth``."""
    snapshot = (
        pl.scan_parquet(day.file(SNAPSHOTS_1S_FILE))
        .filter(pl.col("timestamp") <= _timestamp(t))
        .last()
        .collect()
    )
    if snapshot.height == 0:
        return None
    row = snapshot.row(0, named=True)
    start_ns = to_ns(row["timestamp"])
    price_type, size_type = price_types(day)
    start = _snapshot_levels(row, price_type, size_type)
    seed_sequence = _seed_sequence(day)
    last_applied = row["sequence_number"] if row["sequence_number"] is not None else seed_sequence
    rows = _applied(_book_rows(day, start_ns, t), seed_sequence, last_applied).collect()
    levels = _levels_after(start, rows)
    # The snapshot is exact down to its 20th level; deeper levels are only those the rows set.
    for side, deeper in (("bid", pl.col("price") < _edge(row, "bid")),
                         ("ask", pl.col("price") > _edge(row, "ask"))):  # fmt: skip
        if _edge(row, side) is None:
            continue  # fewer than 20 levels: the snapshot held the whole side
        known = levels.filter((pl.col("side") == side) & ~deeper)
        if known.height < depth:
            return None
    return _top(levels, depth)


def _edge(row: dict[str, Any], side: str):
    return row[f"{side}_{BOOK_DEPTH - 1}_price"]


def starting_book(layout: DataLayout, day: CurrentDay, price_type, size_type):
    """The book the day started from and when it became known (None: before the day)."""
    summary = day.summary
    if summary.get("seeded_from") == "previous_day":
        path = layout.root / summary["seed_book"]
        if not fetch(path):
            raise FileNotFoundError(f"{day.day}: its seed book {path} is gone")
        book = pl.read_parquet(path, columns=["side", "price", "size"])
        return book.with_columns(
            pl.col("price").cast(price_type), pl.col("size").cast(size_type)
        ), None
    # A cold day: the vendor book row it was seeded from is the first vendor snapshot (ours at
    # that row is the seed: nothing of the day was applied before it).
    seed = (
        pl.scan_parquet(day.file(SNAPSHOTS_VENDOR_FILE))
        .filter(pl.col("sequence_number") == summary["seed_sequence"])
        .head(1)
        .collect()
    )
    if seed.height == 0:
        raise BookNotKnownError(f"{day.day}: no vendor snapshot at the seed's sequence number")
    row = seed.row(0, named=True)
    return _snapshot_levels(row, price_type, size_type), to_ns(row["timestamp"])


def _known_starting_book(layout: DataLayout, day: CurrentDay, t: int, price_type, size_type):
    """The day's starting book; BookNotKnownError when ``t`` precedes a cold day's seed."""
    start, known_from = starting_book(layout, day, price_type, size_type)
    if known_from is not None and t < known_from:
        raise BookNotKnownError(
            f"{day.summary.get('market', '')} {day.day}: the book is not known before "
            f"{_iso(known_from)} (the day started cold from the vendor's first book row)"
        )
    return start


def _seed_sequence(day: CurrentDay) -> int:
    return int(day.summary.get("seed_sequence") or -1)


def _book_from_start(layout: DataLayout, day: CurrentDay, t: int, depth: int | None):
    price_type, size_type = price_types(day)
    start = _known_starting_book(layout, day, t, price_type, size_type)
    seed_sequence = _seed_sequence(day)
    rows = _applied(_book_rows(day, None, t), seed_sequence, seed_sequence).collect()
    return _top(_levels_after(start, rows), depth)


# --- from a full-book checkpoint -----------------------------------------------------------------
def _checkpoint_at_or_before(summary: dict[str, Any], t: int) -> int | None:
    """The last checkpoint time <= ``t`` (None: before the first). The reconstruction writes
    one at every multiple of its step from the first on, the last after the day's last event."""
    first, step, count = (summary[k] for k in (
        "first_checkpoint_ns", "checkpoint_every_ns", "checkpoints"))  # fmt: skip
    if not count or t < first:
        return None
    return first + min(count - 1, (t - first) // step) * step


def _read_checkpoint(day: CurrentDay, at: int) -> pl.DataFrame:
    """The checkpoint at ``at``: its rows only (from the row group holding it; the others are
    skipped on their statistics)."""
    return (
        pl.scan_parquet(day.file(CHECKPOINTS_FILE))
        .filter(pl.col("timestamp") == _timestamp(at))
        .select("sequence_number", "side", "price", "size")
        .collect()
    )


def _book_from_checkpoint(
    layout: DataLayout, day: CurrentDay, t: int, depth: int | None
) -> pl.DataFrame | None:
    """The checkpoint at or before ``t`` (or the day's starting book) plus the book rows since,
    applied by the kernel; None, with a warning, when the day has no such checkpoint."""
    path = day.file(CHECKPOINTS_FILE)
    if day.summary.get("checkpoint_every_ns") is None:
        return _without_checkpoint(day, "reconstructed without full-book checkpoints (before "
                                   "they existed)")  # fmt: skip
    if not path.is_file():
        return _without_checkpoint(day, f"its checkpoints are missing ({path})")
    price_type, size_type = price_types(day)
    seed_sequence = _seed_sequence(day)
    at = _checkpoint_at_or_before(day.summary, t)
    if at is None:
        start = _known_starting_book(layout, day, t, price_type, size_type)
        last_applied = seed_sequence
    else:
        checkpoint = _read_checkpoint(day, at)
        if checkpoint.height == 0:
            return _without_checkpoint(day, f"{path} has no checkpoint at {_iso(at)} (damaged?)")
        last_applied = checkpoint["sequence_number"][0]
        start = checkpoint.filter(pl.col("side").is_not_null())
    rows = _applied(_book_rows(day, at, t), seed_sequence, last_applied).collect()
    both = pl.concat([x.select("side", "price", "size") for x in (start, rows)])
    levels = _kernel_levels(both, price_type, size_type)
    return _levels_frame(levels, depth, price_type, size_type)


def _without_checkpoint(day: CurrentDay, why: str) -> None:
    market = day.summary.get("market", "")
    command = materialise_command(market, day.day, "--assets reconstructed_stream")
    warnings.warn(
        f"{market} {day.day}: {why}: book_at replays every book row of the day up to the "
        f"instant instead (slow on a full day); reconstruct it again for fast reads: {command}",
        stacklevel=4,
    )


def _units(values: pl.Series, dtype: pl.Decimal) -> np.ndarray:
    """Decimals as int64 units at ``dtype``'s scale (exact)."""
    return values.cast(dtype).to_physical().cast(pl.Int64).to_numpy()


def _kernel_levels(rows: pl.DataFrame, price_type, size_type) -> tuple[np.ndarray, ...]:
    """Each (side, price)'s last size over ``rows`` in order, empty levels dropped, as the
    compiled kernel applies them: (bid price units best first, their size units, ask price
    units best first, their size units). The kernel's dense book is indexed by each price's
    rank among the rows' prices: as wide as the distinct prices, whatever their range."""
    prices, ranks = np.unique(_units(rows["price"], price_type), return_inverse=True)
    book = DenseBook(0, max(prices.size, 1))
    if rows.height:
        is_bid = (rows["side"] == "bid").to_numpy()
        lots = _units(rows["size"], size_type)
        one_event = np.array([rows.height]), np.zeros(1, np.uint8)
        book.apply(is_bid, ranks, lots, *one_event, depth=1)
    bid_ranks, bid_lots, ask_ranks, ask_lots = end_book_levels(book)
    return prices[bid_ranks], bid_lots, prices[ask_ranks], ask_lots


def _levels_frame(levels, depth: int | None, price_type, size_type) -> pl.DataFrame:
    """Levels from ``_kernel_levels`` as ``book_at``'s frame, ``depth`` per side."""
    bid_prices, bid_sizes, ask_prices, ask_sizes = (x[:depth] for x in levels)
    n_bid, n_ask = bid_prices.size, ask_prices.size
    side = pl.Series("side", ["bid", "ask"]).gather(np.repeat([0, 1], [n_bid, n_ask]))
    level = np.concatenate([np.arange(n_bid), np.arange(n_ask)]).astype(np.int64)
    price = decimal_array(np.concatenate([bid_prices, ask_prices]), price_type.scale)
    size = decimal_array(np.concatenate([bid_sizes, ask_sizes]), size_type.scale)
    return pl.DataFrame({
        "side": side,
        "level": level,
        "price": pl.Series(pl.from_arrow(price)).cast(price_type),
        "size": pl.Series(pl.from_arrow(size)).cast(size_type),
    })  # fmt: skip


def _iso(ns: int) -> str:
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=ns // 1000)
    return moment.isoformat()
