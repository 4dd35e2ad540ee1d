"""The plan: scales, price range and time order of the inputs, quick (first batches and
statistics, verified on every row) or from a full scan. May import ``decimals``, ``reading``
and ``seed``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
from numba import njit

from rlx_assets.book.reconstruct.decimals import (
    _I64_MIN,
    MAX_SCALE,
    ReconstructionError,
    _decimals_needed,
)
from rlx_assets.book.reconstruct.reading import (
    _ALL_LEVEL_COLUMNS,
    _LEVEL_COLUMNS,
    _first_batch,
    _numpy,
    _statistics_range,
    input_batches,
)
from rlx_assets.book.reconstruct.seed import _Seed


class _PlanMiss(Exception):
    """A row contradicts the plan taken from the first batches: redo from a full scan."""


@njit(cache=True, nogil=True)
def _time_order(times, running_max):
    """(new running max, largest step back below the running max, rows below it)."""
    lag = 0
    late = 0
    m = running_max
    for i in range(times.shape[0]):
        t = times[i]
        if t < m:
            late += 1
            if m - t > lag:
                lag = m - t
        else:
            m = t
    return m, lag, late


@dataclass
class _Plan:
    price_scale: int = 0
    size_scale: int = 0
    price_min: float = np.inf  # book prices (deltas, book rows, seed)
    price_max: float = -np.inf
    lags: dict[str, int] = field(default_factory=lambda: {"trades": 0, "deltas": 0})
    full_scan: bool = False  # established from every row (a miss is then a data error)
    range_known: bool = True  # price_min/max cover every book price
    description: str = ""

    def scale(self, kind: str, values: np.ndarray, what: str, skip_nan: bool = False) -> None:
        if values.size == 0:
            return
        values = np.ascontiguousarray(values, dtype=np.float64)
        current = self.price_scale if kind == "price" else self.size_scale
        scale, bad = _decimals_needed(values, current, skip_nan)
        if bad >= 0:
            raise ReconstructionError(
                f"{what}: {float(values[bad])!r} is not a decimal with at most {MAX_SCALE} places"
            )
        if kind == "price":
            self.price_scale = int(scale)
        else:
            self.size_scale = int(scale)

    def prices(self, values: np.ndarray) -> None:
        if values.size and not np.isnan(values).all():
            self.price_min = min(self.price_min, float(np.nanmin(values)))
            self.price_max = max(self.price_max, float(np.nanmax(values)))

    def book_batch(self, batch: pa.RecordBatch) -> None:
        for (_side, what), names in _LEVEL_COLUMNS.items():
            for name in names:
                values = batch.column(name).to_numpy(zero_copy_only=False)
                self.scale(what, values, f"book.{name}", skip_nan=True)
                if what == "price":
                    self.prices(values)

    def trades_batch(self, batch: pa.RecordBatch) -> None:
        self.scale("price", _numpy(batch, "price"), "trades.price")
        self.scale("size", _numpy(batch, "amount"), "trades.amount")

    def deltas_batch(self, batch: pa.RecordBatch) -> None:
        prices = _numpy(batch, "price")
        self.scale("price", prices, "book_delta_v2.price")
        self.scale("size", _numpy(batch, "size"), "book_delta_v2.size")
        self.prices(prices)

    def seed(self, seed: _Seed) -> None:
        if seed.prices is not None:  # cold: the vendor row's floats
            self.scale("price", seed.prices, "book seed", skip_nan=True)
            self.scale("size", seed.sizes, "book seed", skip_nan=True)
        else:
            self.price_scale = max(self.price_scale, seed.price_scale)
            self.size_scale = max(self.size_scale, seed.size_scale)
            ticks = np.concatenate([seed.bid_ticks, seed.ask_ticks])
            if ticks.size:
                self.prices(ticks / 10.0**seed.price_scale)


def _quick_plan(trades: Path | None, deltas: Path, book: Path, seed: _Seed, rows: int) -> _Plan:
    """Scales from the first batch of each file, price range from the Parquet statistics,
    inputs assumed in time order: every later row is checked against this while it is read."""
    plan = _Plan(description="first batches + statistics, verified on every row")
    plan.seed(seed)
    if (b := _first_batch(trades, ["price", "amount"], rows)) is not None:
        plan.trades_batch(b)
    if (b := _first_batch(deltas, ["price", "size"], rows)) is not None:
        plan.deltas_batch(b)
    if (b := _first_batch(book, _ALL_LEVEL_COLUMNS, max(1, rows // 16))) is not None:
        plan.book_batch(b)
    price_columns = _LEVEL_COLUMNS[("bid", "price")] + _LEVEL_COLUMNS[("ask", "price")]
    ranges = [_statistics_range(deltas, ["price"]), _statistics_range(book, price_columns)]
    if any(r is None for r in ranges):
        plan.range_known = False
    else:
        for lo, hi in ranges:
            if lo <= hi:  # (inf, -inf): no values
                plan.prices(np.array([lo, hi]))
    return plan


def _full_plan(
    trades: Path | None, deltas: Path, book: Path, seed: _Seed, rows: int, why: str
) -> _Plan:
    plan = _Plan(full_scan=True, description=f"full scan ({why})")
    plan.seed(seed)
    for name, path, columns in (
        ("trades", trades, ["timestamp", "price", "amount"]),
        ("deltas", deltas, ["timestamp", "price", "size"]),
    ):
        running, lag = _I64_MIN, 0
        for b in input_batches(path, columns, rows):
            m, batch_lag, _late = _time_order(_numpy(b, "timestamp"), running)
            running, lag = int(m), max(lag, int(batch_lag))
            if name == "trades":
                plan.trades_batch(b)
            else:
                plan.deltas_batch(b)
        plan.lags[name] = lag
    for b in input_batches(book, _ALL_LEVEL_COLUMNS, max(1, rows // 16)):
        plan.book_batch(b)
    return plan
