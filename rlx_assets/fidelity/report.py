"""The fidelity report of one partition (UTC day x market): how faithful the reconstruction is,
measured against the vendor's own book rows and against the golden recording.

Pure: reads files, writes ``fidelity.json``, ``fidelity.md`` and PNG plots into ``out_dir``
(each atomically), returns the JSON dict. No Dagster.

Inputs: the reconstruction directory (``stream.parquet``, ``snapshots_vendor.parquet``,
``end_book.parquet``, optional ``summary.json``), the vendor files of the partition
(``trades``, ``book``, ``book_delta_v2``), optionally the golden recording in the lake schema
(``trades``, ``book_delta_v2``, ``level_1``) and its raw capture files. Whatever cannot be
computed from what is given is listed in ``not_computed`` with the reason.

Verdicts: ``checks`` holds every judged figure with its threshold and a severity: ``error``
for book and top-of-book agreement (a failure means the stream must not be used), ``warn``
for the rest (drift, not corruption). ``passed`` is true when every computed check passed,
``blocking_passed`` when every computed ``error`` check did.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from rlx_assets.capture.golden import analyse_day
from rlx_assets.capture.reader import (
    CaptureFormatError,
    iter_capture,
    stream_channel,
    stream_symbol,
)
from rlx_assets.fidelity import discrepancies
from rlx_assets.fidelity.markdown import JSON_NAME, KS_VARIABLES, render_markdown
from rlx_assets.fidelity.provenance import Provenance, detect_provenance
from rlx_assets.fidelity.thresholds import FidelityThresholds
from rlx_assets.lake.from_capture import parse_decimals
from rlx_assets.lake.markets import binance_instrument, parse_market_key
from rlx_assets.staging import atomic_write
from rlx_assets.stats import plots
from rlx_assets.stats.agreement import (
    NS_PER_S,
    NotComputable,
    aggtrade_consistency,
    book_agreement,
    book_updates,
    day_bounds,
    golden_sequence_gaps,
    iso,
    lake_sequence_gaps,
    origin_time_validity,
    to_ns,
    top_of_book_agreement,
    trade_agreement,
)
from rlx_assets.stats.distributions import (
    TailEstimate,
    compare_tails,
    estimate_tail,
    inter_arrival_s,
    ks_two_sample,
    log_returns,
    state_at,
    time_grid,
)

REPORT_VERSION = 1
MARKDOWN_NAME = "fidelity.md"
STREAM_FILE = "stream.parquet"
SNAPSHOTS_VENDOR_FILE = "snapshots_vendor.parquet"
END_BOOK_FILE = "end_book.parquet"
SUMMARY_FILE = "summary.json"
VENDOR_TABLES = ("trades", "book", "book_delta_v2")
TIME_COLUMNS = ("timestamp", "receipt_timestamp")
DELTA_COLUMNS = ("timestamp", "sequence_number")
GOLDEN_TABLES = ("trades", "book_delta_v2", "level_1")
# Crypto Lake collects Binance with cryptofeed, whose trades channel is aggTrade.
VENDOR_TRADE_SOURCE = "aggTrade"
PLOT_FILES = {
    "discrepancies_per_minute": "discrepancies_per_minute.png",
    "vendor_book_discrepancies_per_minute": "vendor_book_discrepancies_per_minute.png",
    "top_of_book_agreement": "top_of_book_agreement.png",
    "book_level_agreement": "book_level_agreement.png",
    "tail_ccdf": "tail_ccdf.png",
    **{f"ecdf_{k}": f"ecdf_{k}.png" for k in KS_VARIABLES},
}


def build_fidelity_report(
    *,
    market: str,
    day: dt.date,
    reconstruction_dir: Path,
    vendor_files: dict[str, Path],
    golden_files: dict[str, Path] | None,
    golden_captures: Sequence[Path] | None,
    out_dir: Path,
    thresholds: FidelityThresholds | None = None,
    upstream_gates: dict | None = None,
) -> dict:
    """Compute every metric the inputs allow, write the report files, return the JSON dict.

    ``upstream_gates``: ``{"passed": bool, "summary": str}`` of the partition's integrity gates
    and certificate, when known. The report is written whatever they say (it is the diagnosis
    of a bad day); only its ``reconstruction_certified`` verdict depends on them."""
    th = thresholds or FidelityThresholds()
    out_dir = Path(out_dir)
    reconstruction_dir = Path(reconstruction_dir)
    golden_files = {k: Path(v) for k, v in (golden_files or {}).items()}
    golden_captures = [Path(p) for p in golden_captures or ()]
    provenance = detect_provenance(vendor_files, golden_files)
    report = _Report(th, provenance)
    inputs = _Inputs(reconstruction_dir, vendor_files, golden_files)

    # --- lake-internal ---------------------------------------------------------------------------
    report.market_day = f"{market} {day.isoformat()}"
    vendor_book_rows: list[pl.DataFrame] = []
    book = report.run(
        "book_agreement", "error", lambda: _book(inputs, th, vendor_book_rows), store=("book",)
    )
    report.data["book_agreement"] = book["agreement"] if book else None
    report.data["book_agreement_exact"] = book["exact_share"] if book else None

    report.data["origin_time"] = {"lake": {}, "golden": {}}
    for table in VENDOR_TABLES:
        report.run(
            f"origin_time.lake.{table}", "warn",
            lambda t=table: _origin(inputs.vendor(t, TIME_COLUMNS), day, th),
            store=("origin_time", "lake", table),
        )  # fmt: skip
    report.data["sequence_gaps"] = {}
    report.run(
        "sequence_gaps.lake", "warn",
        lambda: lake_sequence_gaps(
            inputs.vendor("book_delta_v2", DELTA_COLUMNS), max_ratio=th.sequence_gap_ratio_max,
            time_gap_bound_s=th.time_gap_bound_s, max_time_gap_ratio=th.time_gap_ratio_max,
            max_listed=th.max_listed,
        ),
        store=("sequence_gaps", "lake"),
    )  # fmt: skip

    # --- against the golden recording ------------------------------------------------------------
    no_golden = "no golden samples for this partition" if not golden_files else None
    for table in GOLDEN_TABLES:
        reason = no_golden or (
            None if table in golden_files else f"the golden samples have no {table} table"
        )
        report.run(
            f"origin_time.golden.{table}", "warn",
            lambda t=table: _origin(inputs.golden(t, TIME_COLUMNS), day, th),
            store=("origin_time", "golden", table), unavailable=reason,
        )  # fmt: skip
    if "book_delta_v2" in golden_files:
        report.run(
            "sequence_gaps.golden_lake_file", "warn",
            lambda: lake_sequence_gaps(
                inputs.golden("book_delta_v2", DELTA_COLUMNS),
                max_ratio=th.sequence_gap_ratio_max,
                time_gap_bound_s=th.time_gap_bound_s, max_time_gap_ratio=th.time_gap_ratio_max,
                max_listed=th.max_listed,
            ),
            store=("sequence_gaps", "golden_lake_file"),
        )  # fmt: skip

    tob_reason = no_golden or (
        None if "level_1" in golden_files else "the golden samples have no level_1 (bookTicker)"
    )
    per_minute: list[pl.DataFrame] = []

    def top_of_book() -> dict:
        figures, minutes = top_of_book_agreement(
            inputs.updates(), inputs.golden("level_1"), min_share=th.top_of_book_agreement_min,
            max_listed=th.max_listed, known_bid_floor=inputs.known_floor,
            known_ask_ceiling=inputs.known_ceiling,
        )  # fmt: skip
        per_minute.append(minutes)
        first = figures["first_unexplained_mismatch_minute"]
        if first is not None:
            figures["first_bad_minute"] = first[:16] + "Z"
        return figures

    tob = report.run(
        "top_of_book_agreement", "error", top_of_book, unavailable=tob_reason,
        store=("top_of_book",),
    )  # fmt: skip
    report.data["top_of_book_agreement"] = tob["agreement"] if tob else None

    trades_reason = no_golden or (
        None if "trades" in golden_files else "the golden samples have no trades table"
    )
    trades = report.run(
        "trade_agreement", "warn", lambda: _trades(inputs, th), unavailable=trades_reason,
        store=("trades",),
    )  # fmt: skip
    report.data["trade_agreement"] = trades["agreement"] if trades else None

    # --- discrepancies located -------------------------------------------------------------------
    located: dict[str, pl.DataFrame] = {}

    def lake_vs_golden() -> dict:
        located["lake"] = _lake_vs_golden(inputs, th)
        return discrepancies.summary(located["lake"], worst=th.worst_minutes_listed)

    found = report.run("discrepancies", None, lake_vs_golden, unavailable=no_golden)
    report.data["discrepancies_by_minute"] = found.pop("by_minute") if found else None

    def vendor_book() -> dict:
        if book is None:
            raise NotComputable("no book agreement: the reconstruction or vendor book is missing")
        located["book"] = discrepancies.reconstruction_discrepancies(vendor_book_rows)
        return discrepancies.summary(located["book"], worst=th.worst_minutes_listed)

    found = report.run("vendor_book_discrepancies", None, vendor_book)
    report.data["vendor_book_discrepancies_by_minute"] = found.pop("by_minute") if found else None

    # --- captures: sequence continuity and aggTrade = sum of its raw trades -----------------------
    captures_reason = None if golden_captures else "no golden capture files given"
    day_analysis: list[Any] = []

    def golden_gaps() -> dict:
        exchange, symbol = parse_market_key(market)
        instrument = binance_instrument(exchange, symbol)
        try:
            analysis = analyse_day(golden_captures, instrument.market, instrument.symbol, day)
        except CaptureFormatError as error:
            raise NotComputable(f"unreadable golden capture: {error}") from None
        day_analysis.append((analysis, instrument))
        return golden_sequence_gaps(
            analysis, max_ratio=th.sequence_gap_ratio_max, max_listed=th.max_listed
        )

    report.run(
        "sequence_gaps.golden", "warn", golden_gaps, unavailable=captures_reason,
        store=("sequence_gaps", "golden"),
    )  # fmt: skip

    def aggtrades() -> dict:
        if not day_analysis:
            raise NotComputable("the golden captures could not be analysed")
        analysis, instrument = day_analysis[0]
        streams = sorted(analysis.messages_by_stream)
        kinds = {stream_channel(s) for s in streams}
        if not {"aggTrade", "trade"} <= kinds:
            raise NotComputable(
                "needs both aggTrade and raw trade streams in the captures; they hold "
                f"{', '.join(streams) or 'no stream'} of the day"
            )
        agg, raw = _capture_trades(golden_captures, instrument.symbol, day)
        return aggtrade_consistency(
            agg, raw, min_share=th.aggtrade_consistency_min, max_listed=th.max_listed
        )

    report.run(
        "aggtrade_consistency", "warn", aggtrades, unavailable=captures_reason,
        store=("aggtrade_consistency",),
    )  # fmt: skip

    # --- distributions ---------------------------------------------------------------------------
    samples, samples_reason = None, no_golden
    if samples_reason is None:
        try:
            samples = _ks_samples(inputs, th)
        except NotComputable as reason:
            samples_reason = str(reason)
    report.data["ks"] = {}
    for key in KS_VARIABLES:
        report.run(
            f"ks.{key}", "warn", lambda k=key: _ks(samples, k, th),
            unavailable=samples_reason, store=("ks", key),
        )  # fmt: skip
    tails = _tails(report, inputs, samples, samples_reason, th)

    # --- files -----------------------------------------------------------------------------------
    written = _plots(report, out_dir, book, tob, per_minute, samples, tails, th)
    written.update(_discrepancy_plots(report, out_dir, located, day))
    table = pl.concat(
        [located.get("lake", discrepancies.empty()), located.get("book", discrepancies.empty())]
    ).sort("time", maintain_order=True)
    with atomic_write(out_dir / discrepancies.FILE_NAME) as handle:
        table.write_parquet(handle)
    report.finish(market, day, reconstruction_dir, vendor_files, golden_files, golden_captures)
    report.data["discrepancies_file"] = discrepancies.FILE_NAME
    report.data["reconstruction_certified"] = _certified(report.data, upstream_gates)
    report.data["upstream_gates"] = upstream_gates
    report.data["plots"] = written
    out_dir.mkdir(parents=True, exist_ok=True)
    write_file(out_dir / MARKDOWN_NAME, render_markdown(report.data).encode())
    text = json.dumps(report.data, indent=2, default=_json_default, allow_nan=False)
    write_file(out_dir / JSON_NAME, (text + "\n").encode())  # last: its presence means done
    return json.loads(text)


def write_file(path: Path, data: bytes) -> None:
    """Atomically (temp file + rename), readable by all like any report."""
    with atomic_write(path) as handle:
        handle.write(data)


# --- inputs ---------------------------------------------------------------------------------------
class _Inputs:
    """Lazily read, cached inputs."""

    def __init__(self, recon: Path, vendor: dict[str, Path], golden: dict[str, Path]):
        self.recon, self.vendor_files, self.golden_files = recon, vendor, golden
        self._cache: dict[Any, Any] = {}
        meta = _parquet_metadata(recon / END_BOOK_FILE)
        snap_meta = _parquet_metadata(recon / SNAPSHOTS_VENDOR_FILE)
        self.meta = {**snap_meta, **meta}
        self.known_floor = _float_or_none(meta.get("rlx.known_bid_floor"))
        self.known_ceiling = _float_or_none(meta.get("rlx.known_ask_ceiling"))
        summary = recon / SUMMARY_FILE
        self.summary = json.loads(summary.read_text()) if summary.is_file() else {}

    def _read(self, key: Any, load: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = load()
        return self._cache[key]

    def vendor(self, table: str, columns: tuple[str, ...] | None = None) -> pl.DataFrame:
        path = self.vendor_path(table)
        return self._read(("vendor", table, columns), lambda: _read(path, columns))

    def vendor_path(self, table: str) -> Path:
        if table not in self.vendor_files:
            raise NotComputable(f"no vendor {table} file given")
        return Path(self.vendor_files[table])

    def golden(self, table: str, columns: tuple[str, ...] | None = None) -> pl.DataFrame:
        if table not in self.golden_files:
            raise NotComputable(f"no golden {table} file given")
        path = self.golden_files[table]
        return self._read(("golden", table, columns), lambda: _read(path, columns))

    def stream(self) -> pl.LazyFrame:
        path = self.recon / STREAM_FILE
        if not path.is_file():
            raise NotComputable(f"the reconstruction has no {STREAM_FILE}")
        return pl.scan_parquet(path)

    def updates(self) -> pl.DataFrame:
        return self._read("updates", lambda: book_updates(self.stream()))

    def stream_trades(self) -> pl.DataFrame:
        def load() -> pl.DataFrame:
            lf = self.stream()
            schema = lf.collect_schema()
            return (
                lf.filter(pl.col("event_type").cast(pl.String) == "trade")
                .select(to_ns("event_time", schema["event_time"]), pl.col("size").cast(pl.Float64))
                .collect()
            )

        return self._read("stream_trades", load)

    def source_of(self, table_path: Path) -> str | None:
        return _parquet_metadata(table_path).get("rlx.trade_source")


def _read(path: Path, columns: tuple[str, ...] | None) -> pl.DataFrame:
    return pl.read_parquet(path, columns=list(columns) if columns else None)


def _parquet_metadata(path: Path) -> dict[str, str]:
    if not Path(path).is_file():
        return {}
    raw = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in raw.items() if k.startswith(b"rlx.")}


def _float_or_none(text: str | None) -> float | None:
    return float(text) if text else None


# --- metrics --------------------------------------------------------------------------------------
def vendor_book_agreement(
    reconstruction_dir: Path, vendor_book: Path, thresholds: FidelityThresholds | None = None
) -> dict:
    """The report's book-agreement figures alone: the reconstruction's own fidelity gate."""
    inputs = _Inputs(Path(reconstruction_dir), {"book": Path(vendor_book)}, {})
    return _book(inputs, thresholds or FidelityThresholds())


def _book(inputs: _Inputs, th: FidelityThresholds, mismatch_rows: list | None = None) -> dict:
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


def _origin(frame: pl.DataFrame, day: dt.date, th: FidelityThresholds) -> dict:
    return origin_time_validity(
        frame, day, negative_latency_bound_s=th.negative_latency_bound_s,
        max_invalid_share=th.origin_time_invalid_share_max, max_listed=th.max_listed,
    )  # fmt: skip


def _trades(inputs: _Inputs, th: FidelityThresholds) -> dict:
    lake_source = inputs.source_of(inputs.vendor_files["trades"])
    lake_from = "file metadata rlx.trade_source"
    if lake_source is None:
        lake_source, lake_from = (
            VENDOR_TRADE_SOURCE,
            "assumed: Crypto Lake collects with cryptofeed",
        )
    golden_source = inputs.source_of(inputs.golden_files["trades"])
    figures = trade_agreement(
        inputs.vendor("trades"), inputs.golden("trades"), min_share=th.trade_agreement_min,
        lake_source=lake_source, golden_source=golden_source, max_listed=th.max_listed,
    )  # fmt: skip
    figures["lake_source_from"] = lake_from
    return figures


def _capture_trades(
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


def _ks_samples(inputs: _Inputs, th: FidelityThresholds) -> dict:
    """Both sources' samples of each K-S variable over the time window both cover."""
    lake_trades = inputs.stream_trades()
    golden_trades = inputs.golden("trades").select(
        to_ns("timestamp", inputs.golden("trades").schema["timestamp"]), "amount"
    )
    updates = inputs.updates().filter(
        pl.col("best_bid_price").is_not_null() & pl.col("best_ask_price").is_not_null()
    )
    windows = [
        (lake_trades["event_time"].min(), lake_trades["event_time"].max()),
        (golden_trades["timestamp"].min(), golden_trades["timestamp"].max()),
    ]
    if updates.height:
        windows.append((updates["event_time"].min(), updates["event_time"].max()))
    level_1 = None
    if "level_1" in inputs.golden_files:
        level_1 = inputs.golden("level_1").filter(
            pl.col("bid_0_price").is_not_nan() & pl.col("ask_0_price").is_not_nan()
        )
        windows.append((level_1["timestamp"].min(), level_1["timestamp"].max()))
    known = [w for w in windows if w[0] is not None]
    lo, hi = max(w[0] for w in known), min(w[1] for w in known)
    if lo >= hi:
        raise NotComputable("the lake and the golden samples cover no common time window")
    lt = lake_trades.filter(pl.col("event_time").is_between(lo, hi))
    gt = golden_trades.filter(pl.col("timestamp").is_between(lo, hi))
    samples: dict[str, Any] = {
        "window": [iso(lo), iso(hi)],
        "trade_size": (lt["size"].to_numpy(), gt["amount"].to_numpy()),
        "inter_trade_time": (
            inter_arrival_s(lt["event_time"].to_numpy()),
            inter_arrival_s(gt["timestamp"].to_numpy()),
        ),
    }
    if level_1 is not None and updates.height:
        step = int(th.ks_sample_interval_s * NS_PER_S)
        grid = time_grid(lo, hi, step)
        u = updates.sort("event_time")
        ut = u["event_time"].to_numpy()
        bid = u["best_bid_price"].cast(pl.Float64).to_numpy()
        ask = u["best_ask_price"].cast(pl.Float64).to_numpy()
        g = level_1.sort("timestamp")
        gts = g["timestamp"].to_numpy()
        gbid, gask = g["bid_0_price"].to_numpy(), g["ask_0_price"].to_numpy()
        lake_bid, lake_ask = state_at(ut, bid, grid), state_at(ut, ask, grid)
        gold_bid, gold_ask = state_at(gts, gbid, grid), state_at(gts, gask, grid)
        samples["quoted_spread"] = (lake_ask - lake_bid, gold_ask - gold_bid)
        samples["mid_price_return"] = (
            log_returns((lake_ask + lake_bid) / 2),
            log_returns((gold_ask + gold_bid) / 2),
        )
        samples["grid"] = {"interval_s": th.ks_sample_interval_s, "points": int(grid.size)}
    return samples


def _ks(samples: dict | None, key: str, th: FidelityThresholds) -> dict:
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
    out["median"] = {"lake": float(np.nanmedian(a)), "golden": float(np.nanmedian(b))}
    return out


def _tails(
    report: _Report,
    inputs: _Inputs,
    samples: dict | None,
    samples_reason: str | None,
    th: FidelityThresholds,
) -> tuple[dict[str, TailEstimate], dict[str, np.ndarray]]:
    report.data["tail"] = {}
    kwargs = {
        "resamples": th.tail_bootstrap_resamples, "seed": th.tail_bootstrap_seed,
        "ci_level": th.tail_ci_level, "min_tail": th.tail_min_size,
        "max_candidates": th.tail_max_xmin_candidates,
    }  # fmt: skip
    estimates: dict[str, TailEstimate] = {}
    values: dict[str, np.ndarray] = {}

    def fit(source: str) -> dict:
        if samples is not None:
            x = samples["trade_size"][0 if source == "lake" else 1]
        elif source == "lake":
            x = inputs.stream_trades()["size"].to_numpy()
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


# --- discrepancies -------------------------------------------------------------------------------
def _lake_vs_golden(inputs: _Inputs, th: FidelityThresholds) -> pl.DataFrame:
    """Every located difference of the lake's files from the golden recording's."""
    parts = []
    both = set(inputs.vendor_files) & set(inputs.golden_files)
    if not both & {"trades", "book_delta_v2", "book"}:
        raise NotComputable("the lake and the golden samples share no trades or book table")
    if "trades" in both:
        parts.append(
            discrepancies.trade_discrepancies(inputs.vendor("trades"), inputs.golden("trades"))
        )
    if "book_delta_v2" in both:
        parts.append(discrepancies.delta_discrepancies(
            inputs.vendor("book_delta_v2"), inputs.golden("book_delta_v2"),
            time_gap_bound_s=th.time_gap_bound_s,
        ))  # fmt: skip
    if "book" in both:
        parts.append(
            discrepancies.book_row_discrepancies(inputs.vendor("book"), inputs.golden("book"))
        )
    return pl.concat(parts).sort("time", "kind", "id")


def _minute_label(ns: int) -> str:
    return iso(ns // NS_PER_S // 60 * 60 * NS_PER_S)[:16] + "Z"


def _certified(data: dict, upstream: dict | None) -> bool:
    """Reconstruction certified: upstream gates did not fail, and the blocking checks
    passed on independent evidence of the book."""
    gates_ok = upstream is None or bool(upstream.get("passed"))
    return bool(gates_ok and data["blocking_passed"] and "book_agreement" in data["evidence"])


def _discrepancy_plots(report, out_dir, located, day) -> dict[str, str]:
    written: dict[str, str] = {}
    start, end = day_bounds(day)
    for key, name, what in (
        ("lake", "discrepancies_per_minute", "lake vs golden"),
        ("book", "vendor_book_discrepancies_per_minute", "reconstruction vs vendor book rows"),
    ):
        if key not in located:
            continue
        frame = located[key]
        minutes = discrepancies.by_minute(frame)
        keys = sorted(minutes)
        ns = np.array(
            [int(dt.datetime.fromisoformat(m).timestamp()) * NS_PER_S for m in keys], np.int64
        )
        kinds = sorted({k for v in minutes.values() for k in v})
        counts = {k: np.array([minutes[m].get(k, 0) for m in keys]) for k in kinds}
        fig = plots.discrepancies_figure(
            ns, counts, span_ns=(start, end),
            title=f"Discrepancies per minute, {what}, {report.market_day}: {frame.height:,}",
        )  # fmt: skip
        write_file(out_dir / PLOT_FILES[name], plots.png_bytes(fig))
        written[name] = PLOT_FILES[name]
    return written


# --- plots ----------------------------------------------------------------------------------------
def _plots(report, out_dir, book, tob, per_minute, samples, tails, th) -> dict[str, str]:
    written: dict[str, str] = {}
    market_day = f"{report.market_day}"

    def save(key: str, build: Callable[[], Any]) -> None:
        try:
            fig = build()
        except (ValueError, NotComputable) as error:  # a plot never sinks the report
            report.data.setdefault("plot_errors", {})[key] = str(error)
            return
        write_file(out_dir / PLOT_FILES[key], plots.png_bytes(fig))
        written[key] = PLOT_FILES[key]

    out_dir.mkdir(parents=True, exist_ok=True)
    if tob and per_minute:
        m = per_minute[0]
        save(
            "top_of_book_agreement",
            lambda: plots.agreement_over_time_figure(
                m["minute"].to_numpy(), m["compared"].to_numpy(), m["equal"].to_numpy(),
                threshold=th.top_of_book_agreement_min,
                title=f"Top of book vs golden bookTicker, {market_day}: "
                f"{tob['agreement']:.3%} equal",
            ),
        )  # fmt: skip
    if book and book["level_agreement"]:
        save(
            "book_level_agreement",
            lambda: plots.level_agreement_figure(
                book["level_agreement"],
                title=f"Top 20 vs vendor book rows by level (exact), {market_day}",
            ),
        )
    if samples is not None:
        for key, (title, xlabel, scale) in KS_VARIABLES.items():
            ks = report.data["ks"].get(key)
            if key not in samples or not ks:
                continue
            a, b = samples[key]
            note = f"K-S D={ks['statistic']:.4f}, p={ks['pvalue']:.3g}"
            if not ks["independent"]:
                note += " (identity check: one recording on both sides)"
            save(
                f"ecdf_{key}",
                lambda a=a, b=b, t=title, x=xlabel, s=scale, n=note: plots.ecdf_figure(
                    a, b, title=f"{t}, {market_day}", xlabel=x, xscale=s, note=n
                ),
            )
    estimates, values = tails
    if "lake" in values:
        fits = [estimates.get(s) for s in ("lake", "golden")]
        save(
            "tail_ccdf",
            lambda: plots.tail_figure(
                values["lake"], values.get("golden"),
                *(e.fit if e else None for e in fits),
                title=f"Trade-size tail, {market_day}", xlabel="trade size (base asset)",
                intervals=[(e.ci_low, e.ci_high) if e else None for e in fits],
            ),
        )  # fmt: skip
    return written


# --- bookkeeping ----------------------------------------------------------------------------------
class _Report:
    def __init__(self, th: FidelityThresholds, provenance: Provenance):
        self.th = th
        self.provenance = provenance
        self.data: dict[str, Any] = {}
        self.checks: dict[str, dict] = {}
        self.figures: dict[str, dict] = {}  # metric -> basis and independence
        self.not_computed: list[dict[str, str]] = []
        self.market_day = ""

    def run(
        self,
        name: str,
        severity: str | None,
        compute: Callable[[], dict],
        *,
        store: tuple[str, ...] | None = (),
        unavailable: str | None = None,
    ) -> dict | None:
        """Run one metric; record it under ``store`` (default: ``name``'s parts) with what it
        compares and whether that is independent, its verdict in ``checks`` (when
        ``severity``), or the reason it could not be computed."""
        about = self.provenance.describe(name)
        self.figures[name] = about
        if unavailable is None:
            try:
                result = compute()
            except NotComputable as reason:
                unavailable = str(reason)
        if unavailable is not None:
            self.not_computed.append({"metric": name, "reason": unavailable})
            result = None
        if result is not None:
            result.update(about)
        if store is not None:
            path = store or tuple(name.split("."))
            target = self.data
            for part in path[:-1]:
                target = target.setdefault(part, {})
            target[path[-1]] = result
        if severity and result is not None and "passed" in result:
            self.checks[name] = {
                "passed": result["passed"],
                "value": _headline(result),
                "threshold": _threshold(result),
                "severity": severity,
                "independent": about["independent"],
            }
            if result.get("first_bad_minute"):
                self.checks[name]["first_bad_minute"] = result["first_bad_minute"]
        return result

    def finish(self, market, day, recon, vendor_files, golden_files, captures) -> None:
        # Identity checks cannot fail by construction: shown, never counted as evidence.
        computed = [c for c in self.checks.values() if c["passed"] is not None]
        evidence = [c for c in computed if c["independent"]]
        blocking = [c for c in evidence if c["severity"] == "error"]
        head = {
            "report_version": REPORT_VERSION,
            "market": market,
            "date": day.isoformat(),
            "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "passed": all(c["passed"] for c in evidence),
            "blocking_passed": all(c["passed"] for c in blocking),
            "evidence": sorted(n for n, c in self.checks.items() if c["independent"]),
            "identity_checks": sorted(
                n
                for n, f in self.figures.items()
                if not f["independent"] and n not in {m["metric"] for m in self.not_computed}
            ),
            "top_of_book_agreement": self.data.pop("top_of_book_agreement", None),
            "book_agreement": self.data.pop("book_agreement", None),
            "book_agreement_exact": self.data.pop("book_agreement_exact", None),
            "trade_agreement": self.data.pop("trade_agreement", None),
            "checks": self.checks,
            "not_computed": self.not_computed,
            "provenance": self.provenance.to_dict(),
            "figures": self.figures,
        }
        rest = self.data
        self.data = {
            **head,
            **rest,
            "thresholds": self.th.model_dump(),
            "inputs": {
                "reconstruction_dir": str(recon),
                "vendor_files": {k: str(v) for k, v in vendor_files.items()},
                "golden_files": {k: str(v) for k, v in golden_files.items()} or None,
                "golden_captures": [str(p) for p in captures] or None,
            },
        }


def _headline(result: dict) -> Any:
    for key in ("agreement", "invalid_share", "sequence_gap_ratio", "alpha_difference"):
        if key in result:
            return result[key]
    if "statistic" in result:
        return {"statistic": result["statistic"], "pvalue": result["pvalue"]}
    return None


def _threshold(result: dict) -> Any:
    if "min_pvalue" in result:
        return {"min_pvalue": result["min_pvalue"], "max_statistic": result["max_statistic"]}
    return result.get("threshold", result.get("tolerance"))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (dt.date, Path)):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
