"""Inputs: trades and deltas read batch by batch into reused buffers and released in time-
ordered windows, and the vendor's book rows read as far as the replay needs them. May import
``decimals``, ``reading``, ``plan`` and ``bitmaps``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

from rlx_assets.book.reconstruct.bitmaps import _Book, _lazy_zeros
from rlx_assets.book.reconstruct.decimals import (
    _I64_MAX,
    _I64_MIN,
    ReconstructionError,
    _to_units,
)
from rlx_assets.book.reconstruct.plan import _Plan, _PlanMiss, _time_order
from rlx_assets.book.reconstruct.reading import (
    _LEVEL_COLUMNS,
    _LEVEL_ORDER,
    BOOK_COLUMNS,
    DELTA_COLUMNS,
    TRADE_COLUMNS,
    _numpy,
    input_batches,
)
from rlx_assets.vendor_schemas import BOOK_DEPTH


@njit(cache=True, nogil=True)
def _is_sorted(time, recv, tie):
    for i in range(1, time.shape[0]):
        if time[i] != time[i - 1]:
            if time[i] < time[i - 1]:
                return False
        elif recv[i] != recv[i - 1]:
            if recv[i] < recv[i - 1]:
                return False
        elif tie[i] < tie[i - 1]:
            return False
    return True


_DELTA_DTYPES = {"time": np.int64, "recv": np.int64, "seq": np.int64, "bid": np.bool_,
                 "tick": np.int64, "lots": np.int64}  # fmt: skip
_TRADE_DTYPES = {"time": np.int64, "recv": np.int64, "id": np.int64, "price": np.int64,
                 "size": np.int64, "side": np.int8}  # fmt: skip


class _Input:
    """One time-ordered input (trades or deltas) read batch by batch into reused column buffers
    and released in windows of rows older than ``cut``."""

    def __init__(self, name: str, path: Path | None, plan: _Plan, dense: _Book, rows: int):
        self.name = name
        self.plan = plan
        self.dense = dense
        self.dtypes = _DELTA_DTYPES if name == "deltas" else _TRADE_DTYPES
        self.tie = "seq" if name == "deltas" else "id"
        self.lag_ns = plan.lags[name]
        columns = DELTA_COLUMNS if name == "deltas" else TRADE_COLUMNS
        self.batches = input_batches(path, columns, rows)
        self.cols = {k: _lazy_zeros(rows * 5 // 4 + 1024, t) for k, t in self.dtypes.items()}
        self.n = 0  # rows held
        self.done = path is None
        self.running_max = _I64_MIN
        self.released_cut = _I64_MIN  # every row in the stream so far is older than this
        self.invalid_side = 0
        self.late_rows = 0  # rows older than an earlier row of the file
        self.released = 0  # rows handed out by the last release

    @property
    def safe_cut(self) -> int:
        """Every row still to be read has a time >= this."""
        if self.done:
            return _I64_MAX
        if self.running_max == _I64_MIN:
            return _I64_MIN
        return self.running_max - self.lag_ns

    def read(self) -> None:
        batch = next(self.batches, None)
        if batch is None:
            self.done = True
            return
        m = batch.num_rows
        if self.n + m > self.cols["time"].size:
            size = max(self.n + m, self.cols["time"].size * 3 // 2)
            for k, v in self.cols.items():
                grown = _lazy_zeros(size, v.dtype)
                grown[: self.n] = v[: self.n]
                self.cols[k] = grown
        a, b = self.n, self.n + m
        if self.name == "deltas":
            self._fill_deltas(batch, a, b)
        else:
            self._fill_trades(batch, a, b)
        time = self.cols["time"][a:b]
        if m:
            if int(time.min()) < self.released_cut:  # only possible when the plan assumed order
                self._miss(f"{self.name} out of time order")
            running_max, _lag, late = _time_order(time, self.running_max)
            self.running_max, self.late_rows = int(running_max), self.late_rows + int(late)
        self.n = b

    def _miss(self, why: str) -> None:
        if self.plan.full_scan:
            raise ReconstructionError(f"{why}, although a full scan planned for it")
        raise _PlanMiss(why)

    def _units(self, batch: pa.RecordBatch, column: str, scale: int, out: np.ndarray) -> None:
        values = np.ascontiguousarray(_numpy(batch, column), dtype=np.float64)
        bad = _to_units(values, scale, _I64_MIN, out)
        if bad >= 0:
            what = f"{'book_delta_v2' if self.name == 'deltas' else 'trades'}.{column}"
            if self.plan.full_scan or np.isnan(values[bad]):
                raise ReconstructionError(
                    f"{what}: {float(values[bad])!r} is not exact at {scale} decimals"
                )
            self._miss(f"{what} {float(values[bad])!r} needs more than {scale} decimals")

    def _fill_deltas(self, batch: pa.RecordBatch, a: int, b: int) -> None:
        c = self.cols
        c["time"][a:b] = _numpy(batch, "timestamp")
        c["recv"][a:b] = _numpy(batch, "receipt_timestamp")
        c["seq"][a:b] = _numpy(batch, "sequence_number")
        c["bid"][a:b] = _numpy(batch, "side_is_bid")
        self._units(batch, "price", self.plan.price_scale, c["tick"][a:b])
        self._units(batch, "size", self.plan.size_scale, c["lots"][a:b])
        if not self.plan.range_known and b > a:
            lo, hi = int(c["tick"][a:b].min()), int(c["tick"][a:b].max())
            base = self.dense.base_tick
            if lo < base or hi >= base + self.dense.bid_sizes.size:
                self._miss("book_delta_v2 prices outside the assumed range")

    def _fill_trades(self, batch: pa.RecordBatch, a: int, b: int) -> None:
        c = self.cols
        c["time"][a:b] = _numpy(batch, "timestamp")
        c["recv"][a:b] = _numpy(batch, "receipt_timestamp")
        c["id"][a:b] = _numpy(batch, "id")
        self._units(batch, "price", self.plan.price_scale, c["price"][a:b])
        self._units(batch, "amount", self.plan.size_scale, c["size"][a:b])
        side = batch.column("side")
        buy = pc.fill_null(pc.equal(side, "buy"), False).to_numpy(zero_copy_only=False)
        sell = pc.fill_null(pc.equal(side, "sell"), False).to_numpy(zero_copy_only=False)
        codes = c["side"][a:b]
        codes[:] = -1
        codes[buy] = 2
        codes[sell] = 3
        self.invalid_side += int((~(buy | sell)).sum())

    def release(self, cut: int) -> dict[str, np.ndarray] | None:
        """Views of the held rows older than ``cut``, sorted by the stream key; valid until
        ``consume`` is called."""
        n = self.n
        if n == 0:
            return None
        c = {k: v[:n] for k, v in self.cols.items()}
        if not _is_sorted(c["time"], c["recv"], c[self.tie]):
            order = np.lexsort((c[self.tie], c["recv"], c["time"]))  # stable: row order last
            for v in c.values():
                v[:] = v[order]
        k = n if cut == _I64_MAX else int(np.searchsorted(c["time"], cut, side="left"))
        self.released = k
        return {key: v[:k] for key, v in c.items()} if k else None

    def consume(self) -> None:
        """Drop the rows of the last ``release``, keeping the rest at the buffer's start."""
        k, n = self.released, self.n
        if k:
            for v in self.cols.values():
                v[: n - k] = v[k:n]
            self.n = n - k
        self.released = 0


class _VendorBook:
    """The vendor's book rows in sequence order, read as far as the replay needs them; levels
    level-major: ``lv[q, level, row]`` with q = bid ticks, bid lots, ask ticks, ask lots."""

    def __init__(self, path: Path, rows: int, plan: _Plan):
        self.batches = input_batches(path, BOOK_COLUMNS, rows)
        self.plan = plan
        self.done = False
        self.pieces: list[dict[str, np.ndarray]] = []
        self.offset = 0  # rows of pieces[0] already taken
        self.seq = np.zeros(0, dtype=np.int64)  # pending sequence numbers

    def _convert(self, b: pa.RecordBatch) -> dict[str, np.ndarray]:
        n = b.num_rows
        lv = np.empty((4, BOOK_DEPTH, n), dtype=np.int64)
        for q, key in enumerate(_LEVEL_ORDER):
            scale = self.plan.price_scale if key[1] == "price" else self.plan.size_scale
            for i, name in enumerate(_LEVEL_COLUMNS[key]):
                values = np.ascontiguousarray(
                    b.column(name).to_numpy(zero_copy_only=False), dtype=np.float64
                )
                bad = _to_units(values, scale, -1 if key[1] == "price" else 0, lv[q, i])
                if bad >= 0:
                    if self.plan.full_scan:
                        raise ReconstructionError(
                            f"book.{name}: {float(values[bad])!r} is not exact at {scale} decimals"
                        )
                    raise _PlanMiss(
                        f"book.{name} {float(values[bad])!r} needs more than {scale} decimals"
                    )
        return {"time": _numpy(b, "timestamp"), "seq": _numpy(b, "sequence_number"), "lv": lv}

    def cover(self, seq: int) -> None:
        """Read until every row with a sequence number <= ``seq`` is pending."""
        while not self.done and (self.seq.size == 0 or self.seq[-1] <= seq):
            b = next(self.batches, None)
            if b is None:
                self.done = True
                return
            piece = self._convert(b)
            self.pieces.append(piece)
            self.seq = np.concatenate([self.seq, piece["seq"]])

    def take(self, n: int) -> list[dict[str, np.ndarray]]:
        """The first ``n`` pending rows as views of the pieces holding them (no copy), removed
        from the pending ones."""
        parts = []
        need = n
        while need:
            piece = self.pieces[0]
            size = piece["seq"].size - self.offset
            k = min(size, need)
            parts.append({key: v[..., self.offset : self.offset + k] for key, v in piece.items()})
            need -= k
            if k == size:
                self.pieces.pop(0)
                self.offset = 0
            else:
                self.offset += k
        self.seq = self.seq[n:]
        return parts


_EMPTY_DELTAS = {k: np.zeros(0, t) for k, t in _DELTA_DTYPES.items()}
_EMPTY_TRADES = {k: np.zeros(0, t) for k, t in _TRADE_DTYPES.items()}
