"""A full-size synthetic recording day, made by tiling the real bundled spot capture.

**Synthetic, for scale only, never evidence of fidelity.** ``rlx bench day`` needs a day of
golden-sample files the size of a real one (24 hourly files, ~13 M lines); the repository
holds ~11 minutes of real Binance BTCUSDT spot (``data/sample/captures/spot_btcusdt_20240808.gz``
and ``..._20240809.gz``, which join without a gap: depth@100ms diffs, trades, bookTicker and one
REST snapshot). This module repeats that piece ("tiles") one after another, with no time gap,
into hourly recorder files ``spot_btcusdt_<YYYYMMDD>T<HH>.jsonl.gz`` in our recorder's line
format, each finished with its ``.sha256`` sidecar by the recorder's own writer
(``RotatingGzipWriter``).

Each tile is made consistent the way a real recorder's continuous connection is, so that the
golden analysis, the converter's sync rule and the chain's gates and anomaly check pass:

* times move on by the tile's span: ``capture_ns`` and the exchange's ``E``/``T`` (ms) together;
* trade ids (``t``; aggTrade ``a``, ``f``, ``l``) run on without gaps across tiles;
* depth update ids (``U``, ``u``, ``pu``; bookTicker ``u``; the snapshot's ``lastUpdateId``) move
  on so that each tile's first diff follows the previous tile's last (``U == previous u + 1``);
* the first tile starts with the real REST snapshot; every later tile starts with one synthetic
  "resync" diff (``U == u == previous u + 1``) whose levels turn the book the previous tile left
  into the snapshot's book (the snapshot's levels, then size-0 deletes of every other level the
  previous tile's end book holds), so every tile replays the real minutes from the same book.
  The end book comes from replaying the piece once with the pure-Python ``ReferenceBook``
  (``rlx bench reconstruct`` does the same for Parquet tiles).

Prices are not moved. Diffs older than the snapshot (``u <= lastUpdateId``) and the lines
before it in the source are left out of every tile, so each tile is the same sequence. The
recording stops at the first line whose receive or exchange time reaches the end of the
requested hours (the receive clock runs ~1.3 s behind the exchange's here), so no message of
the next day is written.

Speed: every source line is turned once into a ``%`` template whose numbers are the fields to
move; a tile is then one numpy addition and one ``str %`` per line, written in large chunks.
Memory does not grow with the day: one tile's lines at a time. Pure code: no Dagster.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np

from rlx_assets.book.reference import ReferenceBook
from rlx_assets.capture.files import RotatingGzipWriter
from rlx_assets.capture.line_format import message_line, snapshot_stream, split_frame
from rlx_assets.capture.reader import stream_channel, stream_symbol

SOURCE_FILES = ("spot_btcusdt_20240808.gz", "spot_btcusdt_20240809.gz")
DEFAULT_DATE = dt.date(2024, 8, 10)  # not a sample partition (2024-08-08/09)
NS_PER_MS = 1_000_000
NS_PER_HOUR = 3_600 * 10**9
TILE_GAP_NS = 100 * NS_PER_MS  # between one tile's last message and the next tile's first
# The recorder's own gzip level, so the files are the size of a real day's (~18 MB an hour).
# Level 1 writes an hour in 1.4 s instead of 3.0 s, but 36% more bytes to read.
COMPRESSLEVEL = 6

# What each moved number is (a column of ``Templates.base``); NONE pads the unused columns.
NONE, CAPTURE_NS, EXCHANGE_MS, DEPTH_ID, TRADE_ID, AGG_TRADE_ID = range(6)
MAX_FIELDS = 8  # capture_ns + at most 7 moved numbers in one message (aggTrade: E,T,a,f,l)
_PAD = "%.0s"  # formats a number as nothing: every template takes MAX_FIELDS values
# Moved fields per channel: key -> kind. Only numeric values match (`"key":digits`).
_MOVED = {
    "depth": {"E": EXCHANGE_MS, "T": EXCHANGE_MS, "U": DEPTH_ID, "u": DEPTH_ID, "pu": DEPTH_ID},
    "trade": {"E": EXCHANGE_MS, "T": EXCHANGE_MS, "t": TRADE_ID},
    "aggTrade": {"E": EXCHANGE_MS, "T": EXCHANGE_MS, "a": AGG_TRADE_ID, "f": TRADE_ID,
                 "l": TRADE_ID},
    "bookTicker": {"E": EXCHANGE_MS, "T": EXCHANGE_MS, "u": DEPTH_ID},
    "depthSnapshot": {"E": EXCHANGE_MS, "T": EXCHANGE_MS, "lastUpdateId": DEPTH_ID},
}  # fmt: skip
_NUMBER_FIELD = re.compile(r'"([A-Za-z]+)":(-?\d+)(?=[,}])')


@dataclass
class Templates:
    """Lines as ``%`` templates and the numbers that fill them (one row per line)."""

    texts: list[str]
    base: np.ndarray  # int64 (lines, MAX_FIELDS): the source's values
    kinds: np.ndarray  # int8 (lines, MAX_FIELDS): what each value is
    event_ms: np.ndarray  # int64 (lines,): the line's exchange time (E, else T; -1: none)

    def __len__(self) -> int:
        return len(self.texts)


def line_template(capture_ns: int, stream: str, data_text: str) -> Templates:
    """One golden-format line as a template: ``capture_ns`` and the channel's moved fields
    become ``%d``; the rest of the raw data text is kept as the exchange wrote it."""
    moved = _MOVED.get(stream_channel(stream), {})
    values, kinds, parts, start = [capture_ns], [CAPTURE_NS], [], 0
    exchange_ms = {}  # E and T as found: the line's exchange time is E, else T
    for match in _NUMBER_FIELD.finditer(data_text):
        key = match.group(1)
        if key not in moved:
            continue
        parts += [data_text[start : match.start(2)].replace("%", "%%"), "%d"]
        start = match.end(2)
        values.append(int(match.group(2)))
        kinds.append(moved[key])
        exchange_ms.setdefault(key, values[-1])
    parts.append(data_text[start:].replace("%", "%%"))
    if len(values) > MAX_FIELDS:
        raise ValueError(f"{stream}: {len(values)} numbers to move, at most {MAX_FIELDS}")
    padding = MAX_FIELDS - len(values)
    # the recorder's own line layout, with %d where capture_ns goes
    text = message_line("%d", stream, "".join(parts)).decode() + _PAD * padding  # type: ignore[arg-type]
    return Templates(
        texts=[text],
        base=np.array([values + [0] * padding], dtype=np.int64),
        kinds=np.array([kinds + [NONE] * padding], dtype=np.int8),
        event_ms=np.array([exchange_ms.get("E", exchange_ms.get("T", -1))], dtype=np.int64),
    )


def concat_templates(parts: list[Templates]) -> Templates:
    return Templates(
        texts=[t for p in parts for t in p.texts],
        base=np.concatenate([p.base for p in parts]),
        kinds=np.concatenate([p.kinds for p in parts]),
        event_ms=np.concatenate([p.event_ms for p in parts]),
    )


# --- the source piece ---------------------------------------------------------------------------
@dataclass
class SourceMessage:
    capture_ns: int
    stream: str
    data_text: str  # the exchange's raw text
    data: dict


def read_sample_messages(paths: list[Path]) -> Iterator[SourceMessage]:
    """The messages of sample-format captures (``<receive ns> <raw JSON>``), raw text kept; a
    bare REST snapshot gets the stream name of the file's symbol (single-symbol files)."""
    for path in paths:
        symbol = None
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                stamp, _, payload = line.strip().partition(" ")
                if payload.startswith('{"stream"'):
                    stream, text = split_frame(payload)
                    symbol = stream_symbol(stream)
                else:
                    if symbol is None:  # the snapshot comes after the first diffs
                        symbol = Path(path).name.split("_")[1]
                    stream, text = snapshot_stream(symbol), payload
                yield SourceMessage(int(stamp), stream, text, json.loads(text))


@dataclass
class TilePlan:
    """What every tile repeats, and how far each one moves times and ids."""

    symbol: str
    snapshot: Templates  # the first tile's head line
    resync: Templates  # every later tile's head line
    body: Templates  # the lines every tile repeats
    span_ns: int  # a tile's duration: the next one starts that much later (a multiple of 1 ms)
    depth_id_step: int
    trade_id_step: int
    agg_trade_id_step: int
    first_capture_ns: int  # the body's first receive time, rounded down to the ms
    seed_levels: int
    end_levels_deleted: int

    def shifts(self, tile: int, day_start_ns: int) -> np.ndarray:
        """The amount added to each kind of value in ``tile`` (0-based)."""
        capture = day_start_ns - self.first_capture_ns + tile * self.span_ns
        return np.array(
            [0, capture, capture // NS_PER_MS, tile * self.depth_id_step,
             tile * self.trade_id_step, tile * self.agg_trade_id_step],
            dtype=np.int64,
        )  # fmt: skip


def plan_tiles(paths: list[Path], piece_seconds: float | None = None) -> TilePlan:
    """Read the real capture once: the body every tile repeats, the head lines and the steps.

    ``piece_seconds``: tile only the first seconds after the snapshot (small tiles for tests);
    None: the whole capture."""
    messages = list(read_sample_messages(paths))
    snapshots = [i for i, m in enumerate(messages) if stream_channel(m.stream) == "depthSnapshot"]
    if len(snapshots) != 1:
        raise ValueError(f"the source needs exactly one REST snapshot, found {len(snapshots)}")
    snapshot = messages[snapshots[0]]
    last_update_id = int(snapshot.data["lastUpdateId"])
    body = [
        m
        for i, m in enumerate(messages)
        if i != snapshots[0] and not _stale_diff(m, last_update_id)
    ]
    if piece_seconds is not None:
        end = body[0].capture_ns + int(piece_seconds * 1e9)
        body = [m for m in body if m.capture_ns < end]
    diffs = [m.data for m in body if stream_channel(m.stream) == "depth"]
    if not diffs or int(diffs[0]["U"]) > last_update_id + 1:
        raise ValueError("the source's diffs do not follow its snapshot")
    _check_continuous(body)
    end_book_deletes = _end_levels_not_in_seed(snapshot.data, diffs)
    first_diff = diffs[0]
    resync_data = {
        "e": "depthUpdate",
        "E": int(first_diff["E"]),
        "s": first_diff["s"],
        "U": int(first_diff["U"]) - 1,
        "u": int(first_diff["U"]) - 1,
        "b": snapshot.data["bids"] + end_book_deletes[0],
        "a": snapshot.data["asks"] + end_book_deletes[1],
    }
    first_ns = body[0].capture_ns
    depth_stream = next(m.stream for m in body if stream_channel(m.stream) == "depth")
    body_templates = concat_templates(
        [line_template(m.capture_ns, m.stream, m.data_text) for m in body]
    )
    times = np.concatenate(
        [body_templates.base[:, 0], body_templates.event_ms[body_templates.event_ms >= 0]
         * NS_PER_MS]
    )  # fmt: skip
    span_ns = _ceil_ms(int(times.max() - times.min()) + TILE_GAP_NS)
    return TilePlan(
        symbol=stream_symbol(depth_stream),
        snapshot=line_template(first_ns, snapshot.stream, snapshot.data_text),
        resync=line_template(
            first_ns, depth_stream, json.dumps(resync_data, separators=(",", ":"))
        ),
        body=body_templates,
        span_ns=span_ns,
        depth_id_step=int(diffs[-1]["u"]) - int(first_diff["U"]) + 2,
        trade_id_step=_id_step(body, "trade", "t"),
        agg_trade_id_step=_id_step(body, "aggTrade", "a"),
        first_capture_ns=first_ns // NS_PER_MS * NS_PER_MS,
        seed_levels=len(snapshot.data["bids"]) + len(snapshot.data["asks"]),
        end_levels_deleted=len(end_book_deletes[0]) + len(end_book_deletes[1]),
    )


def _stale_diff(message: SourceMessage, last_update_id: int) -> bool:
    """A diff the snapshot already holds: no tile replays it."""
    return stream_channel(message.stream) == "depth" and int(message.data["u"]) <= last_update_id


def _check_continuous(body: list[SourceMessage]) -> None:
    """The source itself must have no gap: the tiles repeat it."""
    last: dict[str, int] = {}
    for m in body:
        channel = stream_channel(m.stream)
        first, ident = {"depth": ("U", "u"), "trade": ("t", "t"), "aggTrade": ("a", "a")}.get(
            channel, (None, None)
        )
        if first is None:
            continue
        if channel in last and int(m.data[first]) != last[channel] + 1:
            raise ValueError(f"the source has a {channel} gap at capture_ns {m.capture_ns}")
        last[channel] = int(m.data[ident])


def _id_step(body: list[SourceMessage], channel: str, key: str) -> int:
    ids = [int(m.data[key]) for m in body if stream_channel(m.stream) == channel]
    return ids[-1] - ids[0] + 1 if ids else 0


def _ceil_ms(ns: int) -> int:
    return -(-ns // NS_PER_MS) * NS_PER_MS


def _end_levels_not_in_seed(snapshot: dict, diffs: list[dict]) -> tuple[list, list]:
    """Size-0 deletes (bids, asks) of the levels the book holds after replaying the diffs on the
    snapshot that the snapshot does not hold: the resync diff's second part."""
    book = ReferenceBook()
    spelling: dict[int, str] = {}  # ticks -> the exchange's price text, to write deletes back

    def apply(is_bid: bool, levels: list) -> None:
        for price, size in levels:
            ticks = _ticks(price)
            spelling[ticks] = price
            book.apply(is_bid, ticks, _ticks(size))

    apply(True, snapshot["bids"])
    apply(False, snapshot["asks"])
    for diff in diffs:
        apply(True, diff["b"])
        apply(False, diff["a"])
    zero = "0." + "0" * _decimals(snapshot["bids"][0][1]) if snapshot["bids"] else "0"
    deletes = []
    bids, asks = book.levels()
    for levels, seed in ((bids, snapshot["bids"]), (asks, snapshot["asks"])):
        seed_ticks = {_ticks(price) for price, _ in seed}
        deletes.append([[spelling[t], zero] for t, _ in levels if t not in seed_ticks])
    return deletes[0], deletes[1]


def _decimals(text: str) -> int:
    return len(text.partition(".")[2])


def _ticks(text: str) -> int:
    """A decimal text in units of 1e-12 (finer than any Binance price or size): exact keys."""
    return int(Decimal(text).scaleb(12))


# --- writing the day ----------------------------------------------------------------------------
@dataclass
class GeneratedDay:
    files: list[Path]
    lines: int
    bytes: int
    tiles: int


def generate_day(
    out_dir: Path,
    day: dt.date = DEFAULT_DATE,
    hours: int = 24,
    plan: TilePlan | None = None,
    *,
    sources: list[Path] | None = None,
    piece_seconds: float | None = None,
    duration_s: float | None = None,
    period_s: int = 3600,
    compresslevel: int = COMPRESSLEVEL,
    log: Callable[[str], None] = lambda _m: None,
) -> GeneratedDay:
    """Write the tiled recording of ``day`` from 00:00 UTC for ``hours`` hours (or
    ``duration_s`` seconds when given) as recorder files of ``period_s`` below ``out_dir``.

    ``plan``: from ``plan_tiles`` (default: of ``sources``, by default the bundled captures,
    and ``piece_seconds``)."""
    if plan is None:
        plan = plan_tiles(sources or default_sources(), piece_seconds)
    day_start = int(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp()) * 10**9
    seconds = hours * 3600 if duration_s is None else duration_s
    end_ns = day_start + int(seconds * 1e9)
    writer = RotatingGzipWriter(
        out_dir, "spot", [plan.symbol], period_s, compresslevel=compresslevel
    )
    lines = tiles = 0
    try:
        while True:
            head = plan.snapshot if tiles == 0 else plan.resync
            capture, texts = _tile_lines(plan, head, tiles, day_start, end_ns)
            for capture_ns, chunk in _period_chunks(capture, texts, period_s):
                writer.write(capture_ns, chunk)
            lines += len(texts)
            tiles += bool(texts)
            if len(texts) < len(plan.body) + 1:
                break  # the end of the recording fell in this tile
            if tiles % 10 == 0:
                log(f"generated {tiles} tiles, {lines:,} lines")
        writer.close()
    except BaseException:
        writer.abort()
        raise
    files = writer.files_written
    return GeneratedDay(files, lines, sum(f.stat().st_size for f in files), tiles)


def default_sources() -> list[Path]:
    from rlx_assets.config import SAMPLE_CAPTURES_DIR

    return [SAMPLE_CAPTURES_DIR / name for name in SOURCE_FILES]


def _tile_lines(
    plan: TilePlan, head: Templates, tile: int, day_start: int, end_ns: int
) -> tuple[np.ndarray, list[str]]:
    """(receive times, line texts) of one tile, cut where the recording ends."""
    shifts = plan.shifts(tile, day_start)
    base = np.concatenate([head.base, plan.body.base])
    values = base + shifts[np.concatenate([head.kinds, plan.body.kinds])]
    event_ms = np.concatenate([head.event_ms, plan.body.event_ms])
    event_ns = np.where(event_ms >= 0, (event_ms + shifts[EXCHANGE_MS]) * NS_PER_MS, 0)
    past_end = (values[:, 0] >= end_ns) | (event_ns >= end_ns)
    cut = int(np.argmax(past_end)) if past_end.any() else len(values)
    texts = head.texts + plan.body.texts
    columns = values[:cut].T.tolist()
    lines = list(map(operator.mod, texts[:cut], zip(*columns, strict=True)))
    return values[:cut, 0], lines


def _period_chunks(
    capture: np.ndarray, texts: list[str], period_s: int
) -> Iterator[tuple[int, bytes]]:
    """(first receive time, joined lines) per recorder period: one write each rather than a
    Python and a zlib call per line; the writer files a write by its first line's time."""
    if not texts:
        return
    period = np.maximum.accumulate(capture) // (period_s * 10**9)
    starts = np.flatnonzero(np.diff(period, prepend=period[0] - 1))
    for a, b in zip(starts, [*starts[1:], len(texts)], strict=True):
        yield int(capture[a]), "".join(texts[a:b]).encode()
