"""The PNG plots of a fidelity report: which file holds which figure, built from the computed
metrics (``stats.plots`` draws them) and written atomically; a plot that cannot be drawn is
listed in ``plot_errors``, never sinks the report. May import ``discrepancies``,
``markdown`` and ``stats``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rlx_assets.fidelity import discrepancies
from rlx_assets.fidelity.markdown import KS_VARIABLES
from rlx_assets.staging import atomic_write
from rlx_assets.stats.agreement import NS_PER_S, NotComputable, day_bounds

PLOT_FILES = {
    "discrepancies_per_minute": "discrepancies_per_minute.png",
    "vendor_book_discrepancies_per_minute": "vendor_book_discrepancies_per_minute.png",
    "top_of_book_agreement": "top_of_book_agreement.png",
    "book_level_agreement": "book_level_agreement.png",
    "tail_ccdf": "tail_ccdf.png",
    **{f"ecdf_{k}": f"ecdf_{k}.png" for k in KS_VARIABLES},
}


def write_file(path: Path, data: bytes) -> None:
    """Atomically (temp file + rename), readable by all like any report."""
    with atomic_write(path) as handle:
        handle.write(data)


def write_discrepancy_plots(report, out_dir, located, day) -> dict[str, str]:
    from rlx_assets.stats import plots  # matplotlib loads only when a report draws (~1.5 s)

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


def write_plots(report, out_dir, book, tob, per_minute, samples, tails, th) -> dict[str, str]:
    from rlx_assets.stats import plots  # matplotlib loads only when a report draws (~1.5 s)

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
