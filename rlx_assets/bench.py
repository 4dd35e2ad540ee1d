"""``rlx bench reconstruct``: throughput of the book kernel and of ``reconstruct_partition``.

Input: a day-sized partition made by tiling the real sample partition (Binance spot BTCUSDT,
2024-08-08, from ``data/sample/captures``) in time, sequence number and trade id. Tiling is
synthetic and used only here, for scale, never as evidence of fidelity. Each tile's prices are
shifted by a drift (``DRIFT_PER_DAY`` of the price over the tiled day, as on a volatile day), so
the book wanders across the dense range instead of replaying the same ticks, whose pages and
cache lines would already be warm. Each tile after the first starts with one synthetic "resync"
diff that turns the book left by the previous tile into the tile's (shifted) seed book (the
seed's levels, then deletes of every other level), so every tile replays the real 6 minutes from
the same state relative to its prices (no stale levels piling up into a crossed book); the tiled
vendor ``book`` rows therefore still describe the book as on the real day.

Measured:

* kernel: ``apply_levels`` alone over in-memory arrays of every applied row: rows/s with the
  best bid/ask emitted after every row (how the reconstruction calls it), and with one event
  per diff;
* end to end: ``reconstruct_partition`` from the vendor Parquet files to all outputs, in a child
  process (after a warm-up on the real sample day, so JIT compilation is excluded) whose peak
  RSS (``VmHWM``) is reported; the same figures for the real sample day alone (``real_day_*``,
  its second run in that process: small, so fixed costs weigh more);
* the Parquet I/O floor: pyarrow alone on one thread reading the columns reconstruction reads
  and writing stream rows again with the stream's own options, CPU per event. Reconstruction
  does both and more, so on one core it cannot be faster than this;
* the pure-Python ``ReferenceBook`` on a slice of the same rows, for the speed ratio.

``floor_ratio`` is events per CPU second over the floor's. The floor leaves out Parquet I/O
that every reconstruction must also do: reading the vendor ``book`` rows it compares with and
writing the two snapshot files, each measured alone the same way (``required_io``);
``all_io_ratio`` is events per CPU second over that whole I/O's. Measured (10 M drifting tiled
events, one core, ns per event): floor 153 (read 28, stream write 125), vendor book read 21,
snapshots written 40, so with nothing but the required I/O ``floor_ratio`` would be 153 / 214 =
0.71. On top come the replay (``_replay``, one pass: about 67 ns per stream row, of it ~20 the
book, ~19 the top-20 snapshots at every vendor row and second, the rest the merge and the
stream columns), float -> units conversions (~15) and Python glue: ``floor_ratio`` 0.39,
``all_io_ratio`` 0.55. A ``floor_ratio`` of 0.70 would leave about 5 ns per event for all that,
hence out of reach while the snapshots and the vendor comparison are outputs.
"""

from __future__ import annotations

import contextlib
import cProfile
import datetime as dt
import json
import math
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rlx_assets.book.kernel import DenseBook, TopOfBook, new_state
from rlx_assets.book.reconstruct import (
    BOOK_COLUMNS,
    DELTA_COLUMNS,
    END_BOOK_FILE,
    SNAPSHOT_WRITE_OPTIONS,
    SNAPSHOTS_1S_FILE,
    SNAPSHOTS_VENDOR_FILE,
    STREAM_FILE,
    STREAM_WRITE_OPTIONS,
    TRADE_COLUMNS,
    ReconstructionResult,
    input_batch_rows,
    input_batches,
    reconstruct_partition,
    snapshot_schema,
    stream_schema,
    units,
)
from rlx_assets.book.reference import ReferenceBook
from rlx_assets.staging import lake_relative_path
from rlx_assets.vendor_schemas import VENDOR_SCHEMAS

DEFAULT_EVENTS = 30_000_000
SOURCE_EXCHANGE = "BINANCE"
SOURCE_SYMBOL = "BTC-USDT"
SOURCE_DAY = "2024-08-08"
NS_PER_DAY = 86_400 * 10**9
ROW_GROUP_ROWS = 1 << 20  # what pyarrow writes by default: the vendor files' likely layout
KERNEL_CHUNK = 1 << 21
FLOOR_WRITE_ROWS = 4_000_000  # stream rows written again for the I/O floor
DRIFT_PER_DAY = 0.08  # the tiles' prices move 8% over the tiled day (a volatile BTC day)
TABLES = ("trades", "book_delta_v2", "book")


def _partition_paths(lake: Path) -> dict[str, Path]:
    """The source partition's files below a lake root (the tiled day uses the same layout)."""
    day = dt.date.fromisoformat(SOURCE_DAY)
    return {t: lake / lake_relative_path(t, SOURCE_EXCHANGE, SOURCE_SYMBOL, day) for t in TABLES}


@dataclass
class TiledPartition:
    paths: dict[str, Path]
    tiles: int
    events: int  # trade rows + delta rows
    trades: int
    book_updates: int
    book_rows: int
    # every delta row of the first tile as the book applies it (sides, ticks, lots)
    tile_sides: np.ndarray
    tile_ticks: np.ndarray
    tile_lots: np.ndarray
    tile_diff_starts: np.ndarray  # True where a row starts a new diff
    drift_ticks: int  # tile k's prices are the first tile's + k * drift_ticks
    resyncs: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # tiles 1..: the resync diff

    def applied_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(sides, ticks, lots, diff starts) of every delta row of the tiled day, in order."""
        parts: list[tuple[np.ndarray, ...]] = []
        for k in range(self.tiles):
            if k:
                bid, ticks, lots = self.resyncs[k - 1]
                parts.append((bid, ticks, lots, np.arange(ticks.size) == 0))
            shifted = self.tile_ticks + k * self.drift_ticks
            parts.append((self.tile_sides, shifted, self.tile_lots, self.tile_diff_starts))
        return tuple(np.concatenate(column) for column in zip(*parts, strict=True))


def build_tiled_partition(
    source_lake: Path, out_dir: Path, events: int, log=lambda _m: None, start_ns: int = 0
) -> TiledPartition:
    """Write vendor files (trades, book_delta_v2, book) of at least ``events`` events below
    ``out_dir`` by tiling the sample partition, the first tile ``start_ns`` after midnight."""
    src = _partition_paths(source_lake)
    trades = pq.read_table(src["trades"])
    deltas = pq.read_table(src["book_delta_v2"])
    book = pq.read_table(src["book"])
    seed_seq = int(book.column("sequence_number")[0].as_py())
    seed_time = int(book.column("timestamp")[0].as_py())
    seed_recv = int(book.column("receipt_timestamp")[0].as_py())
    d_seq = deltas.column("sequence_number").to_numpy()
    deltas = deltas.filter(pa.array(d_seq > seed_seq))  # older rows are inside the seed
    d_seq_kept = deltas.column("sequence_number").to_numpy()

    # The book one tile leaves behind, and the seed it must return to: one real run of tile 0.
    with tempfile.TemporaryDirectory() as tmp:
        res = reconstruct_partition(
            src["trades"], src["book_delta_v2"], src["book"], Path(tmp), None
        )
        end = pq.read_table(Path(tmp) / END_BOOK_FILE)
    ps, ss = res.price_scale, res.size_scale
    seed_bid_ticks, seed_bid_lots, seed_ask_ticks, seed_ask_lots = _seed_levels(book, ps, ss)
    end_bid = end.column("side").to_numpy(zero_copy_only=False) == "bid"
    end_ticks = end.column("price_ticks").to_numpy()
    # in-memory rows for the kernel benchmark: tile 0's applied rows, then resync + rows
    rows_bid = deltas.column("side_is_bid").to_numpy(zero_copy_only=False)
    rows_ticks = units(deltas.column("price").to_numpy(), ps, "price")
    rows_lots = units(deltas.column("size").to_numpy(), ss, "size")

    # with a drift no level survives a resync: it deletes every end level and inserts the seed
    resync_rows = end_ticks.size + seed_bid_ticks.size + seed_ask_ticks.size
    per_tile = trades.num_rows + deltas.num_rows + resync_rows
    tiles = max(1, math.ceil((events - trades.num_rows - deltas.num_rows) / per_tile) + 1)
    mid = (int(seed_bid_ticks[0]) + int(seed_ask_ticks[0])) // 2
    drift = int(mid * DRIFT_PER_DAY / tiles)
    resyncs = [
        _resync_rows(
            end_bid, end_ticks + (k - 1) * drift, seed_bid_ticks + k * drift, seed_bid_lots,
            seed_ask_ticks + k * drift, seed_ask_lots,
        )
        for k in range(1, tiles)
    ]  # fmt: skip
    price_ticks = {  # the price columns as ticks (-1: no level), shifted per tile
        table: {
            name: units(source.column(name).to_numpy(zero_copy_only=False), ps, name, -1)
            for name in source.column_names
            if name == "price" or name.endswith("_price")
        }
        for table, source in (("trades", trades), ("book_delta_v2", deltas), ("book", book))
    }
    all_times = np.concatenate(
        [trades.column("timestamp").to_numpy(), deltas.column("timestamp").to_numpy(),
         book.column("timestamp").to_numpy()]
    )  # fmt: skip
    t_min, t_max = int(all_times.min()), int(all_times.max())
    time_span = t_max - t_min + 1_000_000
    day_start = t_min // NS_PER_DAY * NS_PER_DAY
    base_shift = day_start + start_ns - t_min  # the first tile starts start_ns after midnight
    seq_span = max(int(d_seq.max()), int(book.column("sequence_number").to_numpy().max())) + 1
    seq_span -= seed_seq
    t_ids = trades.column("id").to_numpy()
    id_span = int(t_ids.max() - t_ids.min()) + 1

    def resync_table(k: int) -> pa.Table:
        """Tile k's resync diff, at the seed's time and sequence number (shifted with the tile)."""
        bid, ticks, lots = resyncs[k - 1]
        return pa.table(
            {
                "timestamp": np.full(ticks.size, seed_time, np.int64),
                "receipt_timestamp": np.full(ticks.size, seed_recv, np.int64),
                "sequence_number": np.full(ticks.size, seed_seq, np.int64),
                "side_is_bid": bid,
                "price": ticks / 10.0**ps,  # already at the tile's prices
                "size": lots / 10.0**ss,
            },
            schema=VENDOR_SCHEMAS["book_delta_v2"],
        )

    paths = _partition_paths(out_dir)
    sources = {"trades": trades, "book_delta_v2": deltas, "book": book}
    shift_cols = {
        "trades": {"timestamp": "t", "receipt_timestamp": "t", "id": "id"},
        "book_delta_v2": {"timestamp": "t", "receipt_timestamp": "t", "sequence_number": "seq"},
        "book": {"timestamp": "t", "receipt_timestamp": "t", "sequence_number": "seq"},
    }
    for table, path in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        schema = VENDOR_SCHEMAS[table]
        with pq.ParquetWriter(path, schema, compression="snappy") as writer:
            pending: list[pa.Table] = []
            pending_rows = 0
            for k in range(tiles):
                shifts = {"t": base_shift + k * time_span, "seq": k * seq_span, "id": k * id_span}
                parts = [sources[table]]
                if table == "book_delta_v2" and k > 0:
                    parts = [resync_table(k), sources[table]]
                for part in parts:
                    cols = []
                    for field in schema:
                        col = part.column(field.name)
                        key = shift_cols[table].get(field.name)
                        if key is not None:
                            col = pa.array(col.to_numpy() + shifts[key], pa.int64())
                        elif field.name in price_ticks[table] and part is sources[table]:
                            ticks = price_ticks[table][field.name]
                            col = pa.array(_prices(ticks, k * drift, ps), pa.float64())
                        cols.append(col)
                    pending.append(pa.Table.from_arrays(cols, schema=schema))
                    pending_rows += part.num_rows
                if pending_rows >= ROW_GROUP_ROWS or k == tiles - 1:
                    writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
                    pending, pending_rows = [], 0
        log(f"wrote {table}: {pq.read_metadata(path).num_rows} rows")
    n_trades = tiles * trades.num_rows
    n_deltas = tiles * deltas.num_rows + sum(r[1].size for r in resyncs)
    return TiledPartition(
        paths=paths,
        tiles=tiles,
        events=n_trades + n_deltas,
        trades=n_trades,
        book_updates=n_deltas,
        book_rows=tiles * book.num_rows,
        tile_sides=rows_bid,
        tile_ticks=rows_ticks,
        tile_lots=rows_lots,
        tile_diff_starts=np.diff(d_seq_kept, prepend=-1) != 0,
        drift_ticks=drift,
        resyncs=resyncs,
    )


def _prices(ticks: np.ndarray, shift: int, scale: int) -> np.ndarray:
    """Ticks shifted by ``shift`` as the vendor's floats (the nearest float to the decimal, so
    still an exact decimal at ``scale``); tick -1 (no level) stays NaN."""
    return np.where(ticks < 0, np.nan, (ticks + shift) / 10.0**scale)


def _resync_rows(end_bid, end_ticks, bid_ticks, bid_lots, ask_ticks, ask_lots):
    """One diff turning the end book into the seed: per side the seed's levels first, then
    deletes of the end book's other levels, best first. Inserting first keeps each side
    non-empty, so no delete has to scan the dense array for a new best level."""
    sides, ticks, lots = [], [], []
    for is_bid, seed_ticks, seed_lots in (
        (True, bid_ticks, bid_lots),
        (False, ask_ticks, ask_lots),
    ):
        old = end_ticks[end_bid == is_bid]
        old = old[~np.isin(old, seed_ticks)]
        sides.append(np.full(seed_ticks.size + old.size, is_bid))
        ticks += [seed_ticks, old]
        lots += [seed_lots, np.zeros(old.size, np.int64)]
    return np.concatenate(sides), np.concatenate(ticks), np.concatenate(lots)


def _seed_levels(book: pa.Table, ps: int, ss: int) -> tuple[np.ndarray, ...]:
    out = []
    for side in ("bid", "ask"):
        prices = np.array([book.column(f"{side}_{i}_price")[0].as_py() for i in range(20)], float)
        sizes = np.array([book.column(f"{side}_{i}_size")[0].as_py() for i in range(20)], float)
        present = ~np.isnan(prices)
        out += [units(prices[present], ps, "seed"), units(sizes[present], ss, "seed")]
    return tuple(out)


# --- measurements -------------------------------------------------------------------------------
def kernel_throughput(part: TiledPartition) -> dict:
    """``apply_levels`` over every applied delta row of the tiled day, in memory, on a book whose
    pages are already resident (first touches are a property of the machine, not the kernel):

    * ``kernel_events_per_s``: rows/s with every row an event and the best bid/ask emitted
      after each, as ``reconstruct_partition`` uses it;
    * ``kernel_diff_events_per_s``: rows/s with one event per diff (best bid/ask after each)."""
    sides, ticks, lots, diff_starts = part.applied_rows()
    n = ticks.size
    lo, hi = int(ticks.min()), int(ticks.max())
    chunk = min(KERNEL_CHUNK, n)
    book = DenseBook(lo, hi - lo + 1)
    out = TopOfBook.empty(chunk, 1)

    def run(per_row: bool) -> float:
        book.bid_sizes[:] = 0
        book.ask_sizes[:] = 0
        book.state[:] = new_state(lo)
        seconds = 0.0
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            if per_row:
                ends = np.arange(1, b - a + 1, dtype=np.int64)
            else:  # a chunk ends on a diff boundary or mid-diff: either way every row applies
                ends = np.append(np.flatnonzero(diff_starts[a + 1 : b]) + 1, b - a)
            t0 = time.perf_counter()
            book.apply(sides[a:b], ticks[a:b], lots[a:b], ends, depth=1, out=out)
            seconds += time.perf_counter() - t0
        return seconds

    run(True)  # compile, make every page resident
    run(False)
    per_row = min(run(True) for _ in range(3))
    per_diff = min(run(False) for _ in range(3))
    return {
        "kernel_rows": n,
        "kernel_seconds": per_row,
        "kernel_events_per_s": n / per_row,
        "kernel_diff_events_per_s": n / per_diff,
    }


def reference_throughput(part: TiledPartition, rows: int) -> dict:
    """The pure-Python book on the first ``rows`` rows, best bid/ask read after every row."""
    rows = min(rows, part.tile_ticks.size)
    sides = part.tile_sides[:rows].tolist()
    ticks = part.tile_ticks[:rows].tolist()
    lots = part.tile_lots[:rows].tolist()
    book = ReferenceBook()
    t0 = time.perf_counter()
    for s, t, q in zip(sides, ticks, lots, strict=True):
        book.apply(s, t, q)
        book.best_bid()
        book.best_ask()
    seconds = time.perf_counter() - t0
    return {"reference_rows": rows, "reference_events_per_s": rows / seconds}


def _peak_rss_mb() -> float:
    """This process's peak RSS. On Linux ``ru_maxrss`` survives fork + exec (a child reports at
    least its parent's RSS at spawn), so the memory map's own high-water mark is read."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def end_to_end(
    part: TiledPartition, source_lake: Path, out_dir: Path, profile: bool = False
) -> dict:
    """``reconstruct_partition`` on the tiled files in a fresh process (its own peak RSS)."""
    args = {
        "paths": {k: str(v) for k, v in part.paths.items()},
        "warmup": {k: str(v) for k, v in _partition_paths(source_lake).items()},
        "out": str(out_dir),
        "profile": profile,
    }
    proc = subprocess.run(
        [sys.executable, "-c", "from rlx_assets.bench import _child; _child()"],
        input=json.dumps(args),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def parquet_io_floor(
    paths: dict[str, Path], stream: Path, schema: pa.Schema, scratch: Path
) -> dict:
    """CPU per event of pyarrow alone on this thread (no pool threads, no reconstruction):
    reading the input columns reconstruction reads, and writing the first ``FLOOR_WRITE_ROWS``
    rows of ``stream`` (written as ``schema``) again, row group by row group, with the stream's
    writer options."""
    events = 0
    t0 = time.thread_time()
    for table, columns in (("book_delta_v2", DELTA_COLUMNS), ("trades", TRADE_COLUMNS)):
        for batch in input_batches(paths[table], columns, input_batch_rows(), use_threads=False):
            events += batch.num_rows
    read_ns = (time.thread_time() - t0) * 1e9 / events
    seconds, rows = _rewrite_seconds(stream, schema, scratch, STREAM_WRITE_OPTIONS)
    write_ns = seconds * 1e9 / rows
    return {
        "io_floor_read_ns_per_event": read_ns,
        "io_floor_write_ns_per_event": write_ns,
        "io_floor_events_per_s": 1e9 / (read_ns + write_ns),
    }


def required_io(paths: dict[str, Path], out: Path, events: int, ps: int, ss: int) -> dict:
    """CPU per event of the rest of the Parquet I/O every reconstruction must do, by pyarrow
    alone on this thread: reading the vendor ``book`` rows it compares with, and writing the
    two snapshot files again (row group by row group, with their writer options)."""
    t0 = time.thread_time()
    rows = max(1, input_batch_rows() // 32)  # as reconstruction reads it
    for _batch in input_batches(paths["book"], BOOK_COLUMNS, rows, use_threads=False):
        pass
    book_read_ns = (time.thread_time() - t0) * 1e9 / events
    write_ns = 0.0
    for name, vendor in ((SNAPSHOTS_VENDOR_FILE, True), (SNAPSHOTS_1S_FILE, False)):
        schema = snapshot_schema(ps, ss, vendor, written=True)
        seconds, _rows = _rewrite_seconds(
            out / name, schema, out.parent / "floor.parquet", SNAPSHOT_WRITE_OPTIONS, None
        )
        write_ns += seconds * 1e9 / events
    return {
        "io_vendor_book_read_ns_per_event": book_read_ns,
        "io_snapshots_write_ns_per_event": write_ns,
    }


def _rewrite_seconds(
    source: Path, schema: pa.Schema, scratch: Path, options: dict, max_rows=FLOOR_WRITE_ROWS
) -> tuple[float, int]:
    """Thread CPU seconds of writing ``source``'s rows (the first ``max_rows``; None: all) again
    as ``schema`` with ``options``, row group by row group (read untimed), and the rows written."""
    dictionary = [f.name for f in schema if pa.types.is_dictionary(f.type)]
    handle = pq.ParquetFile(source, read_dictionary=dictionary)
    seconds, rows = 0.0, 0
    with pq.ParquetWriter(scratch, schema, **options) as writer:
        for i in range(handle.num_row_groups):
            if max_rows is not None and rows >= max_rows:
                break
            group = handle.read_row_group(i, use_threads=False).cast(schema)
            t0 = time.thread_time()
            writer.write_table(group)
            seconds += time.thread_time() - t0
            rows += group.num_rows
    scratch.unlink()
    return seconds, rows


def _main_thread_profile(profiler: cProfile.Profile, top: int = 8) -> dict:
    """CPU seconds of this thread: in all, and the ``top`` functions by their own time (the
    compiled kernels, conversions and pyarrow calls made here; Parquet pages are encoded on the
    writer thread, whose CPU is the process's minus this)."""
    stats = pstats.Stats(profiler).stats
    rows = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    return {
        "main_thread_cpu_seconds": sum(v[2] for v in stats.values()),
        "main_thread_top": {f"{Path(k[0]).stem}.{k[2]}": round(v[2], 4) for k, v in rows},
    }


def _timed_run(paths: dict[str, Path], out: Path, profile: bool = False) -> dict:
    """``reconstruct_partition`` on ``paths`` into ``out``: wall and CPU figures, the result's
    counts and the Parquet I/O floor of the same files (measured after, on this thread);
    ``profile``: also this thread's CPU by function (``_main_thread_profile``)."""
    profiler = cProfile.Profile(time.thread_time) if profile else None
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    with profiler or contextlib.nullcontext():
        result: ReconstructionResult = reconstruct_partition(
            paths["trades"], paths["book_delta_v2"], paths["book"], out, None
        )
    seconds = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu0
    peak_rss_mb = _peak_rss_mb()  # before the floor holds its stream rows in memory
    size = sum(f.stat().st_size for f in out.iterdir())
    schema = stream_schema(result.price_scale, result.size_scale, written=True)
    floor = parquet_io_floor(paths, out / STREAM_FILE, schema, out.parent / "floor.parquet")
    floor.update(required_io(paths, out, result.events, result.price_scale, result.size_scale))
    all_io_ns = sum(floor[k] for k in floor if k.endswith("_ns_per_event"))
    per_cpu_s = result.events / cpu if cpu else None
    return {
        "end_to_end_seconds": seconds,
        "end_to_end_cpu_seconds": cpu,
        "end_to_end_events_per_s": result.events / seconds,
        "end_to_end_events_per_cpu_s": per_cpu_s,
        **floor,
        "floor_ratio": per_cpu_s / floor["io_floor_events_per_s"] if per_cpu_s else None,
        "io_all_events_per_s": 1e9 / all_io_ns,
        "all_io_ratio": per_cpu_s * all_io_ns / 1e9 if per_cpu_s else None,
        "peak_rss_mb": peak_rss_mb,
        "output_mb": size / 1e6,
        "result_events": result.events,
        "vendor_book_rows_compared": result.vendor_book_rows_compared,
        "vendor_book_rows_equal": result.vendor_book_rows_equal,
        "anomalies": result.anomalies,
        **(_main_thread_profile(profiler) if profiler else {}),
    }


def _child() -> None:
    args = json.loads(sys.stdin.read())
    out = Path(args["out"])
    real = {k: Path(v) for k, v in args["warmup"].items()}
    reconstruct_partition(real["trades"], real["book_delta_v2"], real["book"], out / "warmup", None)
    real_day = _timed_run(real, out / "real_day")
    keep = (
        "end_to_end_seconds", "end_to_end_cpu_seconds", "end_to_end_events_per_s",
        "end_to_end_events_per_cpu_s", "io_floor_events_per_s", "floor_ratio", "result_events",
        "vendor_book_rows_equal", "io_all_events_per_s", "all_io_ratio",
    )  # fmt: skip
    tiled = _timed_run({k: Path(v) for k, v in args["paths"].items()}, out / "day", args["profile"])
    print(json.dumps({**tiled, **{f"real_day_{k}": real_day[k] for k in keep}}))


def run_benchmark(
    events: int = DEFAULT_EVENTS,
    workdir: Path | None = None,
    reference_rows: int = 200_000,
    log=lambda _m: None,
    profile: bool = False,
) -> dict:
    from rlx_assets.lake.sources import ensure_sample_lake

    source_lake = ensure_sample_lake()
    with tempfile.TemporaryDirectory(dir=workdir, prefix="rlx-bench-") as tmp:
        tmp_path = Path(tmp)
        t0 = time.perf_counter()
        part = build_tiled_partition(source_lake, tmp_path / "lake", events, log)
        log(f"built {part.events} events in {part.tiles} tiles ({time.perf_counter() - t0:.1f}s)")
        input_mb = sum(p.stat().st_size for p in part.paths.values()) / 1e6
        kernel = kernel_throughput(part)
        log(f"kernel: {kernel['kernel_events_per_s'] / 1e6:.1f}M book updates/s")
        reference = reference_throughput(part, reference_rows)
        del part.tile_sides, part.tile_ticks, part.tile_lots, part.tile_diff_starts, part.resyncs
        e2e = end_to_end(part, source_lake, tmp_path / "out", profile)
        log(
            f"end to end: {e2e['end_to_end_events_per_s'] / 1e6:.2f}M events/s "
            f"({e2e['end_to_end_events_per_cpu_s'] / 1e6:.2f}M per CPU second); Parquet I/O "
            f"alone on one core: {e2e['io_floor_events_per_s'] / 1e6:.2f}M events/s"
        )
    return {
        "events": part.events,
        "trades": part.trades,
        "book_updates": part.book_updates,
        "vendor_book_rows": part.book_rows,
        "tiles": part.tiles,
        "input_mb": input_mb,
        **kernel,
        **reference,
        "kernel_vs_reference": kernel["kernel_events_per_s"] / reference["reference_events_per_s"],
        **e2e,
        "cpus": os.cpu_count(),
    }
