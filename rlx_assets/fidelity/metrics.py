"""The report's metrics computed from its ``Inputs``: each wraps a ``stats`` function with the
thresholds and the facts the inputs carry (seed, known depth, trade source), and raises
``NotComputable`` with the reason when the inputs cannot support it. May import ``inputs``,
``bookkeeping``, ``discrepancies``, ``thresholds`` and ``stats``; nothing writes files here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from rlx_assets.book.reconstruct import SNAPSHOTS_VENDOR_FILE
from rlx_assets.fidelity import discrepancies
from rlx_assets.fidelity.bookkeeping import MetricRecorder
from rlx_assets.fidelity.inputs import Inputs, trades_of
from rlx_assets.fidelity.thresholds import FidelityThresholds
from rlx_assets.stats.agreement import (
    NS_PER_S,
    NotComputable,
    book_agreement,
    iso,
    origin_time_validity,
    read_book_updates,
    to_ns,
    trade_agreement,
)
from rlx_assets.stats.distributions import (
    Counted,
    TailEstimate,
    compare_tails,
    estimate_tail,
    inter_arrival_counts,
    inter_arrival_s,
    ks_two_sample,
    log_returns,
    state_at_batches,
    time_grid,
)
from rlx_assets.stats.pieces import read_pieces, span

# Crypto Lake collects Binance with cryptofeed, whose trades channel is aggTrade.
VENDOR_TRADE_SOURCE = "aggTrade"


def vendor_book_agreement(
    reconstruction_dir: Path, vendor_book: Path, thresholds: FidelityThresholds | None = None
) -> dict:
    """The report's book-agreement figures alone: the reconstruction's own fidelity gate."""
    inputs = Inputs(Path(reconstruction_dir), {"book": Path(vendor_book)}, {})
    return book_figures(inputs, thresholds or FidelityThresholds())


def book_figures(inputs: Inputs, th: FidelityThresholds, mismatch_rows: list | None = None) -> dict:
    """Book agreement with the reconstruction's seed, start and known depth read from its files."""
    path = inputs.recon / SNAPSHOTS_VENDOR_FILE
    if not path.is_file():
        raise NotComputable(f"the reconstruction has no {SNAPSHOTS_VENDOR_FILE}")
    seed = inputs.meta.get("rlx.seed_sequence")
    seeded_from = inputs.meta.get("rlx.seeded_from") or inputs.summary.get("seeded_from")
    cold = inputs.summary.get("started_cold", seeded_from != "previous_day")
    figures = book_agreement(
        pl.scan_parquet(path), pl.scan_parquet(inputs.vendor_path("book")),
        min_share=th.book_agreement_min,
        seed_sequence=int(seed) if seed else None, started_cold=bool(cold),
        known_bid_floor=inputs.known_floor, known_ask_ceiling=inputs.known_ceiling,
        max_listed=th.max_listed, mismatch_rows=mismatch_rows,
    )  # fmt: skip
    if mismatch_rows:
        first = min(int(f["timestamp"].min()) for f in mismatch_rows)
        figures["first_bad_minute"] = _minute_label(first)
    figures["started_cold"] = bool(cold)
    figures["seeded_from"] = seeded_from
    if "vendor_book_rows_compared" in inputs.summary:
        s = inputs.summary
        figures["reconstruction_summary"] = {
            k: s.get(k)
            for k in ("vendor_book_rows_compared", "vendor_book_rows_equal",
                      "vendor_book_rows_equal_within_known_depth")
        }  # fmt: skip
    return figures


def origin_figures(
    frame: pl.DataFrame | pl.LazyFrame, day: dt.date, th: FidelityThresholds
) -> dict:
    """Origin-time validity of one file under the report's thresholds."""
    return origin_time_validity(
        frame, day, negative_latency_bound_s=th.negative_latency_bound_s,
        max_invalid_share=th.origin_time_invalid_share_max, max_listed=th.max_listed,
    )  # fmt: skip


def trade_figures(inputs: Inputs, th: FidelityThresholds) -> dict:
    """Trade agreement, with each side's trade kind from its file metadata (or assumed)."""
    lake_source = inputs.source_of(inputs.vendor_files["trades"])
    lake_from = "file metadata rlx.trade_source"
    if lake_source is None:
        lake_source, lake_from = (
            VENDOR_TRADE_SOURCE,
            "assumed: Crypto Lake collects with cryptofeed",
        )
    golden_source = inputs.source_of(inputs.golden_files["trades"])
    figures = trade_agreement(
        inputs.vendor_scan("trades"), inputs.golden_scan("trades"),
        min_share=th.trade_agreement_min,
        lake_source=lake_source, golden_source=golden_source, max_listed=th.max_listed,
    )  # fmt: skip
    figures["lake_source_from"] = lake_from
    return figures


def ks_samples(inputs: Inputs, th: FidelityThresholds) -> dict:
    """Both sources' samples of each K-S variable over the time window both cover: trade sizes
    and inter-trade times counted (``Counted``), the quoted spread and mid-price returns on a
    time grid. Read in bounded pieces: memory holds the distinct values and the grid."""
    lake_trades = _Series(lambda: read_pieces(inputs.stream(), trades_of), "event_time", "size")
    golden = inputs.golden_scan("trades")
    golden_ts = to_ns("timestamp", golden.collect_schema()["timestamp"])
    golden_trades = _Series(
        lambda: read_pieces(golden, lambda p: p.select(golden_ts, "amount")), "timestamp", "amount"
    )
    both_sides = pl.col("best_bid_price").is_not_null() & pl.col("best_ask_price").is_not_null()
    quotes = (
        "event_time",
        *(pl.col(c).cast(pl.Float64) for c in ("best_bid_price", "best_ask_price")),
    )

    lake_quotes = _Series(
        lambda: read_book_updates(inputs.stream(), lambda u: u.filter(both_sides).select(quotes)),
        "event_time",
    )
    gold_quotes = None
    if "level_1" in inputs.golden_files:
        level_1 = inputs.golden_scan("level_1")
        quoted = pl.col(_BID).is_not_nan() & pl.col(_ASK).is_not_nan()
        ts = to_ns("timestamp", level_1.collect_schema()["timestamp"])
        gold_quotes = _Series(
            lambda: read_pieces(level_1, lambda p: p.filter(quoted).select(ts, _BID, _ASK)),
            "timestamp",
        )
    spans = [lake_trades.span(), golden_trades.span()]
    updates_span = lake_quotes.span()
    spans += [updates_span, *([gold_quotes.span()] if gold_quotes is not None else [])]
    known = [w for w in spans if w[0] is not None]
    if not known:
        raise NotComputable("neither the lake nor the golden samples hold a trade")
    lo, hi = max(w[0] for w in known), min(w[1] for w in known)
    if lo >= hi:
        raise NotComputable("the lake and the golden samples cover no common time window")
    lake_sizes, lake_gaps = lake_trades.trades_between(lo, hi)
    golden_sizes, golden_gaps = golden_trades.trades_between(lo, hi)
    samples: dict[str, Any] = {
        "window": [iso(lo), iso(hi)],
        "trade_size": (lake_sizes, golden_sizes),
        "inter_trade_time": (lake_gaps, golden_gaps),
    }
    if gold_quotes is not None and updates_span[0] is not None:
        step = int(th.ks_sample_interval_s * NS_PER_S)
        grid = time_grid(lo, hi, step)
        lake_bid, lake_ask = lake_quotes.states_at(grid)
        gold_bid, gold_ask = gold_quotes.states_at(grid)
        samples["quoted_spread"] = (lake_ask - lake_bid, gold_ask - gold_bid)
        samples["mid_price_return"] = (
            log_returns((lake_ask + lake_bid) / 2),
            log_returns((gold_ask + gold_bid) / 2),
        )
        samples["grid"] = {"interval_s": th.ks_sample_interval_s, "points": int(grid.size)}
    return samples


_BID, _ASK = "bid_0_price", "ask_0_price"


@dataclass(frozen=True)
class _Series:
    """A time series read in bounded pieces: ``reads()`` yields its frames in order, each with
    the ``time`` column (ns) first, then its values (a trade's ``size``, or bid and ask)."""

    reads: Callable[[], Iterator[pl.DataFrame]]
    time: str
    size: str | None = None

    def span(self) -> tuple[int | None, int | None]:
        """(first, last) time; (None, None) when the series is empty."""
        return span(self.reads(), self.time)

    def trades_between(self, lo: int, hi: int) -> tuple[Counted, Counted]:
        """The sizes and the inter-arrival times (``inter_arrival_s``) of the trades between
        ``lo`` and ``hi``, counted: one pass while the times come in order (a recording's
        do), else a second one that holds and sorts the times."""
        sizes: list[tuple[np.ndarray, np.ndarray]] = []

        def times() -> Iterator[np.ndarray]:
            sizes.clear()
            for frame in self.reads():
                frame = frame.filter(pl.col(self.time).is_between(lo, hi))
                counts = frame.group_by(self.size).agg(pl.len().alias("_n"))
                sizes.append((counts[self.size].to_numpy(), counts["_n"].to_numpy()))
                yield frame[self.time].to_numpy()

        gaps = inter_arrival_counts(times())
        if gaps is None:
            gaps = Counted.of(inter_arrival_s(np.concatenate([np.zeros(0, np.int64), *times()])))
        return Counted.merged(sizes), gaps

    def states_at(self, grid: np.ndarray) -> list[np.ndarray]:
        """The bid and the ask at each grid time (``state_at``)."""
        batches = (tuple(c.to_numpy() for c in f.get_columns()) for f in self.reads())
        return state_at_batches(batches, grid, 2)


def counted_column(frames: Iterator[pl.DataFrame], column: str) -> Counted:
    """The finite values of one column of frames read piece by piece, counted."""
    counts = (f.group_by(column).agg(pl.len().alias("_n")) for f in frames)
    return Counted.merged([(c[column].to_numpy(), c["_n"].to_numpy()) for c in counts])


def ks_figures(samples: dict | None, key: str, th: FidelityThresholds) -> dict:
    """The K-S test of one variable over the common window, with both medians."""
    if key not in samples:
        raise NotComputable(
            "needs the golden level_1 (bookTicker) and a known book in the stream"
            if key in ("quoted_spread", "mid_price_return")
            else "no samples"
        )
    a, b = samples[key]
    try:
        result = ks_two_sample(a, b, min_pvalue=th.ks_min_pvalue, max_statistic=th.ks_max_statistic)
    except ValueError as error:
        raise NotComputable(str(error)) from None
    out = result.to_dict()
    out["window"] = samples["window"]
    if key in ("quoted_spread", "mid_price_return"):
        out["sampling"] = samples.get("grid")
    out["median"] = {"lake": Counted.of(a).median(), "golden": Counted.of(b).median()}
    return out


def tail_figures(
    report: MetricRecorder,
    inputs: Inputs,
    samples: dict | None,
    samples_reason: str | None,
    th: FidelityThresholds,
) -> tuple[dict[str, TailEstimate], dict[str, Counted]]:
    report.data["tail"] = {}
    kwargs = {
        "resamples": th.tail_bootstrap_resamples, "seed": th.tail_bootstrap_seed,
        "ci_level": th.tail_ci_level, "min_tail": th.tail_min_size,
        "max_candidates": th.tail_max_xmin_candidates,
    }  # fmt: skip
    estimates: dict[str, TailEstimate] = {}
    values: dict[str, Counted] = {}

    def fit(source: str) -> dict:
        if samples is not None:
            x = samples["trade_size"][0 if source == "lake" else 1]
        elif source == "lake":
            x = counted_column(read_pieces(inputs.stream(), trades_of), "size")
        else:
            raise NotComputable("no golden samples for this partition")
        values[source] = x
        # independent resamples per source: with one seed, equal samples would give equal
        # resamples and a zero-width interval for the difference
        seed = th.tail_bootstrap_seed + (0 if source == "lake" else 1)
        try:
            estimates[source] = estimate_tail(x, **{**kwargs, "seed": seed})
        except ValueError as error:
            raise NotComputable(str(error)) from None
        return estimates[source].to_dict()

    report.run("tail.lake", None, lambda: fit("lake"), store=("tail", "lake"))
    report.run(
        "tail.golden", None, lambda: fit("golden"),
        unavailable=None if samples is not None else samples_reason,
        store=("tail", "golden"),
    )  # fmt: skip

    def difference() -> dict:
        if len(estimates) < 2:
            raise NotComputable("needs a tail fit of both sources")
        return compare_tails(
            estimates["lake"], estimates["golden"], tolerance=th.tail_alpha_tolerance
        )

    report.run("tail.difference", "warn", difference, store=("tail", "difference"))
    if samples is not None:
        report.data["tail"]["window"] = samples["window"]
    return estimates, values


def locate_lake_vs_golden(inputs: Inputs, th: FidelityThresholds) -> pl.DataFrame:
    """Every located difference of the lake's files from the golden recording's."""
    parts = []
    both = set(inputs.vendor_files) & set(inputs.golden_files)
    if not both & {"trades", "book_delta_v2", "book"}:
        raise NotComputable("the lake and the golden samples share no trades or book table")
    if "trades" in both:
        parts.append(
            discrepancies.trade_discrepancies(
                inputs.vendor_scan("trades"), inputs.golden_scan("trades")
            )
        )
    if "book_delta_v2" in both:
        parts.append(discrepancies.delta_discrepancies(
            inputs.vendor_scan("book_delta_v2"), inputs.golden_scan("book_delta_v2"),
            time_gap_bound_s=th.time_gap_bound_s,
        ))  # fmt: skip
    if "book" in both:
        parts.append(discrepancies.book_row_discrepancies(
            inputs.vendor_scan("book"), inputs.golden_scan("book")
        ))  # fmt: skip
    return pl.concat(parts).sort("time", "kind", "id")


def _minute_label(ns: int) -> str:
    return iso(ns // NS_PER_S // 60 * 60 * NS_PER_S)[:16] + "Z"
