"""The entry point: ``reconstruct_partition`` runs one partition under a plan (redone from a
full scan when a row contradicts the quick one) and writes every output. May import every
other module of ``book.reconstruct``."""

from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rlx_assets.book.kernel import N_DELETE_UNKNOWN, N_OUT_OF_RANGE
from rlx_assets.book.reconstruct.bitmaps import _Book, end_book_levels
from rlx_assets.book.reconstruct.decimals import (
    _I64_MAX,
    _I64_MIN,
    ReconstructionError,
    decimal_string,
)
from rlx_assets.book.reconstruct.inputs import _EMPTY_DELTAS, _EMPTY_TRADES, _Input, _VendorBook
from rlx_assets.book.reconstruct.output import (
    _WRITE_OPTIONS,
    CHECKPOINT_EVERY_NS,
    CHECKPOINT_WRITE_OPTIONS,
    CHECKPOINTS_FILE,
    END_BOOK_FILE,
    SNAPSHOT_1S_ROW_GROUP,
    SNAPSHOT_WRITE_OPTIONS,
    SNAPSHOTS_1S_FILE,
    SNAPSHOTS_VENDOR_FILE,
    STREAM_FILE,
    STREAM_ORDER,
    STREAM_WRITE_OPTIONS,
    _checkpoint_batches,
    _snapshot_batch,
    _stream_batch,
    checkpoint_schema,
    decimal_array,
    end_book_schema,
    snapshot_schema,
    stream_schema,
)
from rlx_assets.book.reconstruct.plan import _full_plan, _Plan, _PlanMiss, _quick_plan
from rlx_assets.book.reconstruct.reading import DEFAULT_CHUNK_ROWS, input_batch_rows
from rlx_assets.book.reconstruct.replay import (
    C_BEFORE_SEED,
    C_CHECKPOINT_STEP,
    C_CROSSED,
    C_CTRL_SIZE,
    C_FIRST_BEFORE_SEED_SEQ,
    C_FIRST_BEFORE_SEED_T,
    C_FIRST_CROSSED_SEQ,
    C_FIRST_CROSSED_T,
    C_FIRST_OUT_OF_RANGE_SEQ,
    C_FIRST_OUT_OF_RANGE_T,
    C_FIRST_REGRESSION_AFTER,
    C_FIRST_REGRESSION_SEQ,
    C_FIRST_REGRESSION_T,
    C_KNOWN,
    C_LAST_SEQ,
    C_NEXT_BOUNDARY,
    C_NEXT_CHECKPOINT,
    C_SEED_SEQ,
    C_SEED_TIME,
    C_SEQ_REGRESSIONS,
    C_STEP,
    OI_TIME,
    _Buffers,
    _levels_major,
    _replay,
)
from rlx_assets.book.reconstruct.result import ReconstructionResult
from rlx_assets.book.reconstruct.seed import _cold_seed, _market_of, _Seed, _seed_from_end_book
from rlx_assets.book.reconstruct.vendor import _Fidelity
from rlx_assets.staging import atomic_write

MAX_DENSE_TICKS = 1 << 26  # per side; 16 bytes per touched tick at most (untouched pages: none)
SEED_RANGE_FACTOR = 5  # without Parquet statistics: ticks within seed mid / 5 .. mid * 5 first
WRITE_IN_BACKGROUND = True


def reconstruct_partition(
    trades: Path | None,
    book_delta_v2: Path,
    book: Path,
    out_dir: Path,
    previous_end_book: Path | None,
    *,
    snapshot_every_ns: int = 1_000_000_000,
    checkpoint_every_ns: int = CHECKPOINT_EVERY_NS,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> ReconstructionResult:
    """Reconstruct one partition into ``out_dir`` (see the module docstring for the outputs).

    ``trades`` may be None (a day without trades). Raises ``ReconstructionError`` when the book
    cannot be seeded or a value is not an exact decimal; book anomalies (crossed books, deletes
    of unknown levels, ...) are counted in ``anomalies``, never raised."""
    if snapshot_every_ns <= 0 or checkpoint_every_ns <= 0:
        raise ValueError("snapshot_every_ns and checkpoint_every_ns must be positive")
    rows = input_batch_rows(chunk_rows)
    trades = Path(trades) if trades is not None else None
    book_delta_v2, book, out_dir = Path(book_delta_v2), Path(book), Path(out_dir)
    market = _market_of(book_delta_v2, book, trades)
    seed = _seed_from_end_book(Path(previous_end_book)) if previous_end_book else _cold_seed(book)
    if seed.source == "previous_day" and seed.market and market and seed.market != market:
        raise ReconstructionError(
            f"the previous day's book is for {seed.market}, this partition is {market}"
        )
    paths = (trades, book_delta_v2, book)
    steps = (snapshot_every_ns, checkpoint_every_ns)
    try:
        plan = _quick_plan(*paths, seed, rows)
        return _Reconstruction(paths, out_dir, seed, plan, market, steps, rows).run()
    except _PlanMiss as miss:
        plan = _full_plan(*paths, seed, rows, str(miss))
        return _Reconstruction(paths, out_dir, seed, plan, market, steps, rows).run()


def _dense_book(plan: _Plan, seed: _Seed) -> _Book:
    """Dense arrays over the day's price range; without statistics (or when the range is too
    wide) a window around the seed (a quick plan checks every price against it)."""
    p = 10.0**plan.price_scale
    best = [int(x[0]) for x in (seed.bid_ticks, seed.ask_ticks) if x.size]
    mid = sum(best) // len(best) if best else None
    if np.isfinite(plan.price_min):
        lo, hi = int(round(plan.price_min * p)), int(round(plan.price_max * p))
    else:
        lo, hi = 0, 0
    if not plan.range_known and mid is not None:
        lo, hi = min(lo, mid // SEED_RANGE_FACTOR), max(hi, mid * SEED_RANGE_FACTOR)
    width = hi - lo + 1
    if width <= MAX_DENSE_TICKS:
        return _Book(lo, width)
    # Too wide for the dense arrays: a window around the seed (levels outside: out_of_range)
    centre = mid if mid is not None else (lo + hi) // 2
    return _Book(max(lo, centre - MAX_DENSE_TICKS // 2), MAX_DENSE_TICKS)


def _seed_book(dense: _Book, seed: _Seed) -> None:
    sides = np.concatenate(
        [np.ones(seed.bid_ticks.size, bool), np.zeros(seed.ask_ticks.size, bool)]
    )
    ticks = np.concatenate([seed.bid_ticks, seed.ask_ticks]).astype(np.int64)
    lots = np.concatenate([seed.bid_lots, seed.ask_lots]).astype(np.int64)
    if ticks.size:
        dense.apply(sides, ticks, lots, np.array([ticks.size]), np.zeros(1, np.uint8), depth=1)


class _Reconstruction:
    """One run over the inputs under one plan."""

    def __init__(self, paths, out_dir: Path, seed: _Seed, plan: _Plan, market: str, steps, rows):
        self.trades_path, self.deltas_path, self.book_path = paths
        self.out_dir = out_dir
        self.plan = plan
        self.market = market
        self.step, self.checkpoint_step = steps
        self.rows = rows
        self.seed = seed.at(plan.price_scale, plan.size_scale)

    def run(self) -> ReconstructionResult:
        plan, seed = self.plan, self.seed
        ps, ss = plan.price_scale, plan.size_scale
        self.dense = dense = _dense_book(plan, seed)
        _seed_book(dense, seed)
        ctrl = self.ctrl = np.zeros(C_CTRL_SIZE, dtype=np.int64)
        ctrl[C_KNOWN] = seed.time_ns is None
        ctrl[C_SEED_SEQ] = seed.sequence
        ctrl[C_SEED_TIME] = seed.time_ns if seed.time_ns is not None else _I64_MIN
        ctrl[C_LAST_SEQ] = seed.sequence
        ctrl[C_NEXT_BOUNDARY] = _I64_MIN
        ctrl[C_STEP] = self.step
        ctrl[C_NEXT_CHECKPOINT] = _I64_MIN
        ctrl[C_CHECKPOINT_STEP] = self.checkpoint_step
        for slot in (C_FIRST_REGRESSION_T, C_FIRST_OUT_OF_RANGE_T, C_FIRST_BEFORE_SEED_T):
            ctrl[slot] = _I64_MIN
        self.fidelity = _Fidelity(
            seed.bid_floor, seed.ask_ceiling, seed.sequence, seed.time_ns is not None, ps, ss
        )
        self.deltas = _Input("deltas", self.deltas_path, plan, dense, self.rows)
        self.trades = _Input("trades", self.trades_path, plan, dense, self.rows)
        self.vendor = _VendorBook(self.book_path, max(1, self.rows // 32), plan)
        self.counts = {"events": 0, "trades": 0, "deltas": 0, "snap_1s": 0, "checkpoints": 0}
        self.pending_checkpoints: list[tuple] = []  # (time, sequence number, levels)
        self.first_checkpoint_ns: int | None = None
        self.pending_1s: list[pa.RecordBatch] = []  # 1 s snapshots not yet written (copies)
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.meta = {
            "rlx.market": self.market,
            "rlx.price_scale": str(ps),
            "rlx.size_scale": str(ss),
            "rlx.seeded_from": seed.source,
            "rlx.seed_sequence": str(seed.sequence),
            "rlx.plan": plan.description,
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            self.writers = {}
            for name, schema, options in (
                (STREAM_FILE, stream_schema(ps, ss, written=True), STREAM_WRITE_OPTIONS),
                (SNAPSHOTS_VENDOR_FILE, snapshot_schema(ps, ss, True, written=True),
                 SNAPSHOT_WRITE_OPTIONS),
                (SNAPSHOTS_1S_FILE, snapshot_schema(ps, ss, False, written=True),
                 SNAPSHOT_WRITE_OPTIONS),
                (CHECKPOINTS_FILE, checkpoint_schema(ps, ss, written=True),
                 CHECKPOINT_WRITE_OPTIONS),
            ):  # fmt: skip
                handle = stack.enter_context(atomic_write(self.out_dir / name))
                writer = pq.ParquetWriter(handle, schema, **options)
                stack.callback(writer.close)
                self.writers[name] = (writer, schema)
            # closed first on the way out: no page is being encoded while the files close
            self.executor = stack.enter_context(ThreadPoolExecutor(max_workers=1))
            self._loop()
            extra = {
                STREAM_FILE: {"rlx.stream_order": STREAM_ORDER},
                CHECKPOINTS_FILE: {"rlx.checkpoint_every_ns": str(self.checkpoint_step)},
            }
            for name, (writer, _schema) in self.writers.items():
                writer.add_key_value_metadata({**self.meta, **extra.get(name, {})})
        self._write_end_book()
        return self._result()

    def _loop(self) -> None:
        # a window holds about one batch of the limiting input and part of the other's
        buffers = [_Buffers(self.rows * 5 // 4 + 1024) for _ in range(2)]
        writes: list[list[Future]] = [[], []]
        inputs = (self.deltas, self.trades)
        window = 0
        while True:
            open_inputs = [x for x in inputs if not x.done]
            if open_inputs:  # read from the input that holds the cut back
                min(open_inputs, key=lambda x: x.safe_cut).read()
            cut = min(x.safe_cut for x in inputs)
            final = all(x.done for x in inputs)
            d, t = self.deltas.release(cut), self.trades.release(cut)
            if d is None and t is None and not final:
                continue
            for x in inputs:  # no row of either input may be older than rows now in the stream
                x.released_cut = max(x.released_cut, cut)
            slot = window % 2
            for job in writes[slot]:  # the buffers' previous contents must be written first
                job.result()
            writes[slot] = self._replay_window(buffers[slot], d, t, final)
            self.deltas.consume()
            self.trades.consume()
            window += 1
            if final:
                break
        for jobs in writes:
            for job in jobs:
                job.result()

    def _submit(self, name: str, data: pa.RecordBatch | pa.Table) -> Future:
        writer = self.writers[name][0]
        write = writer.write_table if isinstance(data, pa.Table) else writer.write_batch
        if WRITE_IN_BACKGROUND:
            return self.executor.submit(write, data)
        future: Future = Future()
        write(data)
        future.set_result(None)
        return future

    def _replay_window(self, buf: _Buffers, d, t, final: bool) -> list[Future]:
        ps, ss = self.plan.price_scale, self.plan.size_scale
        ctrl, step = self.ctrl, self.step
        d = d if d is not None else _EMPTY_DELTAS
        t = t if t is not None else _EMPTY_TRADES
        nd, nt = d["time"].size, t["time"].size
        if nd:
            self.vendor.cover(int(d["seq"].max()))
        if final:
            self.vendor.cover(_I64_MAX)
        n = nd + nt
        seconds = 2
        if n:
            times = [int(x["time"][k]) for x in (d, t) if x["time"].size for k in (0, -1)]
            start = int(ctrl[C_NEXT_BOUNDARY])
            if start == _I64_MIN:
                start = min(
                    times + ([int(ctrl[C_SEED_TIME])] if ctrl[C_SEED_TIME] != _I64_MIN else [])
                )
            seconds += max(0, (max(times) - start) // step + 1)
        v_seq = self.vendor.seq
        buf.ensure(n, v_seq.size, seconds)
        pos = np.zeros(5, dtype=np.int64)
        while _replay(
            d["time"], d["recv"], d["seq"], d["bid"], d["tick"], d["lots"],
            t["time"], t["recv"], t["id"], t["price"], t["size"], t["side"],
            v_seq, final,
            self.dense.bid_sizes, self.dense.ask_sizes, self.dense.bid_bits,
            self.dense.ask_bits, self.dense.state, ctrl,
            buf.oi, buf.ob, buf.od, buf.vsnap, buf.ssnap, buf.s_time, buf.s_seq, pos,
        ):  # fmt: skip
            self._take_checkpoint()  # stopped at the next checkpoint time
        if final and ctrl[C_KNOWN] and ctrl[C_NEXT_CHECKPOINT] != _I64_MIN:
            self._take_checkpoint()  # after the last event
        rows, v_used, n_s = (int(x) for x in pos[2:])
        jobs = []
        if rows:
            schema = self.writers[STREAM_FILE][1]
            jobs.append(self._submit(STREAM_FILE, _stream_batch(buf, rows, schema, ps, ss)))
            self.counts["events"] += rows
            self.counts["trades"] += nt
            self.counts["deltas"] += nd
            if self.first_ns is None:
                self.first_ns = int(buf.oi[OI_TIME, 0])
            self.last_ns = int(buf.oi[OI_TIME, rows - 1])
        if v_used:
            ours = _levels_major(buf.vsnap, v_used)
            start, checks = 0, []
            parts = self.vendor.take(v_used)
            for part in parts:  # compared piece by piece: the vendor's levels are not copied
                end = start + part["seq"].size
                checks.append(self.fidelity.compare(ours[:, :, start:end], part))
                start = end
            row_eq, compared, depth_known = (np.concatenate(x) for x in zip(*checks, strict=True))
            extra = (pa.array(row_eq, mask=~compared), pa.array(depth_known))
            schema = self.writers[SNAPSHOTS_VENDOR_FILE][1]
            time, seq = (np.concatenate([p[k] for p in parts]) for k in ("time", "seq"))
            batch = _snapshot_batch(ours, time, seq, schema, ps, ss, extra)
            jobs.append(self._submit(SNAPSHOTS_VENDOR_FILE, batch))
        if n_s:
            # A window holds few 1 s snapshots; one row group each would cost three times the
            # encoding time (and size) of row groups of SNAPSHOT_1S_ROW_GROUP rows: they are
            # copied out of the window's buffers and written together.
            schema = self.writers[SNAPSHOTS_1S_FILE][1]
            batch = _snapshot_batch(
                np.array(_levels_major(buf.ssnap, n_s)), buf.s_time[:n_s].copy(),
                buf.s_seq[:n_s].copy(), schema, ps, ss,
            )  # fmt: skip
            self.pending_1s.append(batch)
            self.counts["snap_1s"] += n_s
        if self.pending_checkpoints:
            schema = self.writers[CHECKPOINTS_FILE][1]
            for batch in _checkpoint_batches(self.pending_checkpoints, schema, ps, ss):
                jobs.append(self._submit(CHECKPOINTS_FILE, batch))  # a row group each (<= 16)
            self.pending_checkpoints = []
        pending = sum(b.num_rows for b in self.pending_1s)
        if pending and (final or pending >= SNAPSHOT_1S_ROW_GROUP):
            table = pa.Table.from_batches(self.pending_1s)
            jobs.append(self._submit(SNAPSHOTS_1S_FILE, table))
            self.pending_1s = []
        return jobs

    def _take_checkpoint(self) -> None:
        """The whole book as the checkpoint at ``C_NEXT_CHECKPOINT``, which moves on a step."""
        ctrl = self.ctrl
        at = int(ctrl[C_NEXT_CHECKPOINT])
        levels = end_book_levels(self.dense)  # copies: the book goes on changing
        self.pending_checkpoints.append((at, int(ctrl[C_LAST_SEQ]), levels))
        ctrl[C_NEXT_CHECKPOINT] = at + self.checkpoint_step
        if self.first_checkpoint_ns is None:
            self.first_checkpoint_ns = at
        self.counts["checkpoints"] += 1

    def _write_end_book(self) -> None:
        ps, ss, seed = self.plan.price_scale, self.plan.size_scale, self.seed
        bt, bl, at, al = end_book_levels(self.dense)
        ticks = np.concatenate([bt, at])
        lots = np.concatenate([bl, al])
        table = pa.Table.from_arrays(
            [
                pa.array(["bid"] * bt.size + ["ask"] * at.size, pa.string()),
                decimal_array(ticks, ps),
                decimal_array(lots, ss),
                pa.array(ticks, pa.int64()),
                pa.array(lots, pa.int64()),
            ],
            schema=end_book_schema(ps, ss, written=True),
        )
        floor, ceiling = seed.bid_floor, seed.ask_ceiling
        meta = {
            **self.meta,
            "rlx.last_sequence_number": str(int(self.ctrl[C_LAST_SEQ])),
            "rlx.last_event_time_ns": "" if self.last_ns is None else str(self.last_ns),
            "rlx.known_bid_floor": "" if floor == _I64_MIN else decimal_string(floor, ps),
            "rlx.known_ask_ceiling": "" if ceiling == _I64_MAX else decimal_string(ceiling, ps),
        }
        with atomic_write(self.out_dir / END_BOOK_FILE) as handle:
            writer = pq.ParquetWriter(handle, table.schema, **_WRITE_OPTIONS)
            writer.write_table(table)
            writer.add_key_value_metadata(meta)
            writer.close()

    def _result(self) -> ReconstructionResult:
        f, ctrl, state = self.fidelity, self.ctrl, self.dense.state
        anomalies = {
            "crossed_after_event": int(ctrl[C_CROSSED]),
            "delete_unknown_level": int(state[N_DELETE_UNKNOWN]),
            "out_of_range": int(state[N_OUT_OF_RANGE]),
            "sequence_regressions": int(ctrl[C_SEQ_REGRESSIONS]),
            "deltas_before_seed": int(ctrl[C_BEFORE_SEED]),
            "trades_invalid_side": self.trades.invalid_side,
            "input_rows_out_of_time_order": self.trades.late_rows + self.deltas.late_rows,
            "vendor_book_rows_before_seed": f.before_seed,
        }
        return ReconstructionResult(
            events=self.counts["events"],
            trades=self.counts["trades"],
            book_updates=self.counts["deltas"],
            price_scale=self.plan.price_scale,
            size_scale=self.plan.size_scale,
            started_cold=self.seed.source != "previous_day",
            seeded_from=self.seed.source,
            seed_sequence=self.seed.sequence,
            anomalies=anomalies,
            first_event_ns=self.first_ns,
            last_event_ns=self.last_ns,
            vendor_book_rows_compared=f.compared,
            vendor_book_rows_equal=f.equal,
            level_agreement=[float(x) / f.compared if f.compared else 0.0 for x in f.level_equal],
            first_mismatches=f.first_mismatches,
            vendor_book_rows_unknown_depth=f.unknown_depth,
            vendor_book_rows_equal_within_known_depth=f.equal_known,
            snapshots_1s=self.counts["snap_1s"],
            checkpoints=self.counts["checkpoints"],
            checkpoint_every_ns=self.checkpoint_step,
            first_checkpoint_ns=self.first_checkpoint_ns,
            market=self.market,
            plan=self.plan.description,
            anomaly_first=self._anomaly_first(),
        )

    def _anomaly_first(self) -> dict[str, dict]:
        """Where each placeable anomaly first occurred (only those that occurred)."""
        ctrl, first = self.ctrl, {}
        for name, t_slot, s_slot in (
            ("sequence_regressions", C_FIRST_REGRESSION_T, C_FIRST_REGRESSION_SEQ),
            ("out_of_range", C_FIRST_OUT_OF_RANGE_T, C_FIRST_OUT_OF_RANGE_SEQ),
            ("deltas_before_seed", C_FIRST_BEFORE_SEED_T, C_FIRST_BEFORE_SEED_SEQ),
        ):
            if ctrl[t_slot] != _I64_MIN:
                first[name] = {
                    "event_time_ns": int(ctrl[t_slot]), "sequence_number": int(ctrl[s_slot])
                }  # fmt: skip
        if "sequence_regressions" in first:
            first["sequence_regressions"]["after_sequence_number"] = int(
                ctrl[C_FIRST_REGRESSION_AFTER]
            )
        if ctrl[C_CROSSED]:
            first["crossed_after_event"] = {
                "event_time_ns": int(ctrl[C_FIRST_CROSSED_T]),
                "sequence_number": int(ctrl[C_FIRST_CROSSED_SEQ]),
            }
        return first
