"""The fidelity report of one partition (UTC day x market): how faithful the reconstruction is,
measured against the vendor's own book rows and against the golden recording.

Pure: reads files, writes ``fidelity.json``, ``fidelity.md`` and PNG plots into ``out_dir``
(each atomically), returns the JSON dict. No Dagster. This module is the entry point and the
order of the metrics; what they read is in ``inputs``, how each is computed in ``metrics``, how
results and verdicts are recorded in ``bookkeeping``, the plots in ``plot_files``, the page in
``markdown``. May import all of those, ``discrepancies`` and ``stats``.

Inputs: the reconstruction directory (``stream.parquet``, ``snapshots_vendor.parquet``,
``end_book.parquet``, optional ``summary.json``), the vendor files of the partition
(``trades``, ``book``, ``book_delta_v2``), optionally the golden recording in the lake schema
(``trades``, ``book_delta_v2``, ``level_1``) and its raw capture files. Whatever cannot be
computed from what is given is listed in ``not_computed`` with the reason.

Verdicts: ``checks`` holds every judged figure with its threshold and a severity: ``error``
for book and top-of-book agreement (a failure means the stream must not be used), ``warn``
for the rest (drift, not corruption). ``passed`` is true when every computed check that is
independent evidence passed, ``blocking_passed`` when every such ``error`` check did; either is
null when there is no such check (no evidence is no verdict).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from rlx_assets.capture.golden import GoldenDay, analyse_day
from rlx_assets.capture.reader import CaptureFormatError, stream_channel
from rlx_assets.fidelity import discrepancies
from rlx_assets.fidelity.bookkeeping import MetricRecorder, certified, json_default
from rlx_assets.fidelity.inputs import (
    GOLDEN_TABLES,
    VENDOR_TABLES,
    Inputs,
    capture_trades,
    recorded_trades,
)
from rlx_assets.fidelity.markdown import JSON_NAME, KS_VARIABLES, MARKDOWN_NAME, render_markdown
from rlx_assets.fidelity.metrics import (
    book_figures,
    ks_figures,
    ks_samples,
    locate_lake_vs_golden,
    origin_figures,
    tail_figures,
    trade_figures,
)
from rlx_assets.fidelity.plot_files import write_discrepancy_plots, write_file, write_plots
from rlx_assets.fidelity.provenance import detect_provenance
from rlx_assets.fidelity.thresholds import FidelityThresholds
from rlx_assets.markets import binance_instrument, parse_market_key
from rlx_assets.staging import atomic_write
from rlx_assets.stats.agreement import (
    NotComputable,
    aggtrade_consistency,
    golden_sequence_gaps,
    lake_sequence_gaps,
    top_of_book_agreement,
)


def build_fidelity_report(
    *,
    market: str,
    day: dt.date,
    reconstruction_dir: Path,
    vendor_files: dict[str, Path],
    golden_files: dict[str, Path] | None,
    golden_captures: Sequence[Path] | None,
    out_dir: Path,
    golden_analysis: GoldenDay | None = None,
    golden_trade_parts: Path | None = None,
    thresholds: FidelityThresholds | None = None,
    upstream_gates: dict | None = None,
) -> dict:
    """Compute every metric the inputs allow, write the report files, return the JSON dict.

    ``upstream_gates``: ``{"passed": bool, "summary": str}`` of the partition's integrity gates
    and certificate, when known. The report is written whatever they say (it is the diagnosis
    of a bad day); only its ``reconstruction_certified`` verdict depends on them.
    ``golden_analysis`` (what ``golden_samples`` recorded) and ``golden_trade_parts`` (its
    ``trade_parts`` file) stand in for reading ``golden_captures`` again."""
    th = thresholds or FidelityThresholds()
    out_dir = Path(out_dir)
    reconstruction_dir = Path(reconstruction_dir)
    golden_files = {k: Path(v) for k, v in (golden_files or {}).items()}
    golden_captures = [Path(p) for p in golden_captures or ()]
    provenance = detect_provenance(vendor_files, golden_files)
    report = MetricRecorder(th, provenance)
    inputs = Inputs(reconstruction_dir, vendor_files, golden_files)

    # --- lake-internal ---------------------------------------------------------------------------
    report.market_day = f"{market} {day.isoformat()}"
    vendor_book_rows: list[pl.DataFrame] = []
    book = report.run(
        "book_agreement",
        "error",
        lambda: book_figures(inputs, th, vendor_book_rows),
        store=("book",),
    )
    report.data["book_agreement"] = book["agreement"] if book else None
    report.data["book_agreement_exact"] = book["exact_share"] if book else None

    report.data["origin_time"] = {"lake": {}, "golden": {}}
    for table in VENDOR_TABLES:
        report.run(
            f"origin_time.lake.{table}", "warn",
            lambda t=table: origin_figures(inputs.vendor_scan(t), day, th),
            store=("origin_time", "lake", table),
        )  # fmt: skip
    report.data["sequence_gaps"] = {}
    report.run(
        "sequence_gaps.lake", "warn",
        lambda: lake_sequence_gaps(
            inputs.vendor_scan("book_delta_v2"), max_ratio=th.sequence_gap_ratio_max,
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
            lambda t=table: origin_figures(inputs.golden_scan(t), day, th),
            store=("origin_time", "golden", table), unavailable=reason,
        )  # fmt: skip
    if "book_delta_v2" in golden_files:
        report.run(
            "sequence_gaps.golden_lake_file", "warn",
            lambda: lake_sequence_gaps(
                inputs.golden_scan("book_delta_v2"),
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
            inputs.updates(), inputs.golden_scan("level_1"),
            min_share=th.top_of_book_agreement_min,
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
        "trade_agreement", "warn", lambda: trade_figures(inputs, th), unavailable=trades_reason,
        store=("trades",),
    )  # fmt: skip
    report.data["trade_agreement"] = trades["agreement"] if trades else None

    # --- discrepancies located -------------------------------------------------------------------
    located: dict[str, pl.DataFrame] = {}

    def lake_vs_golden() -> dict:
        located["lake"] = locate_lake_vs_golden(inputs, th)
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
    captures_reason = (
        None if golden_captures or golden_analysis else "no golden capture files given"
    )
    day_analysis: list[Any] = []

    def golden_gaps() -> dict:
        exchange, symbol = parse_market_key(market)
        instrument = binance_instrument(exchange, symbol)
        analysis = golden_analysis
        if analysis is None:
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
        if golden_trade_parts is not None:
            agg, raw = recorded_trades(golden_trade_parts)
        else:
            agg, raw = capture_trades(golden_captures, instrument.symbol, day)
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
            samples = ks_samples(inputs, th)
        except NotComputable as reason:
            samples_reason = str(reason)
    report.data["ks"] = {}
    for key in KS_VARIABLES:
        report.run(
            f"ks.{key}", "warn", lambda k=key: ks_figures(samples, k, th),
            unavailable=samples_reason, store=("ks", key),
        )  # fmt: skip
    tails = tail_figures(report, inputs, samples, samples_reason, th)

    # --- files -----------------------------------------------------------------------------------
    written = write_plots(report, out_dir, book, tob, per_minute, samples, tails, th)
    written.update(write_discrepancy_plots(report, out_dir, located, day))
    table = pl.concat(
        [located.get("lake", discrepancies.empty()), located.get("book", discrepancies.empty())]
    ).sort("time", maintain_order=True)
    with atomic_write(out_dir / discrepancies.FILE_NAME) as handle:
        table.write_parquet(handle)
    report.finish(market, day, reconstruction_dir, vendor_files, golden_files, golden_captures)
    report.data["discrepancies_file"] = discrepancies.FILE_NAME
    report.data["reconstruction_certified"] = certified(report.data, upstream_gates)
    report.data["upstream_gates"] = upstream_gates
    report.data["plots"] = written
    out_dir.mkdir(parents=True, exist_ok=True)
    write_file(out_dir / MARKDOWN_NAME, render_markdown(report.data).encode())
    text = json.dumps(report.data, indent=2, default=json_default, allow_nan=False)
    write_file(out_dir / JSON_NAME, (text + "\n").encode())  # last: its presence means done
    return json.loads(text)
