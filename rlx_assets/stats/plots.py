"""Figures of the fidelity report, drawn with matplotlib's Agg renderer into PNG bytes.

Figures are built as ``matplotlib.figure.Figure`` objects with an Agg canvas, never through
``pyplot``: no global figure registry, no GUI backend, safe in worker threads. Each builder
returns the figure (tests inspect its lines and legend); ``png_bytes`` renders it (the report
writes the files).
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence

import matplotlib.dates as mdates
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rlx_assets.stats.distributions import Counted, PowerLawFit, ecdf_points

SOURCE_LABELS = ("lake (reconstructed)", "golden (Binance capture)")
COLOURS = ("#1f77b4", "#d62728")
# lake wide and solid, golden thin and dashed on top: both stay visible when they coincide
LINES = ({"ls": "-", "lw": 2.8}, {"ls": "--", "lw": 1.4})
MARKERS = ({"marker": "o", "ms": 4, "alpha": 0.5}, {"marker": ".", "ms": 2, "alpha": 0.9})
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def new_figure(width: float = 7.0, height: float = 4.2) -> tuple[Figure, object]:
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    # fixed margins: constrained/tight layout would double the rendering time
    fig.subplots_adjust(left=0.11, right=0.97, top=0.91, bottom=0.13)
    return fig, fig.add_subplot()


def png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def ecdf_figure(
    a: np.ndarray | Counted,
    b: np.ndarray | Counted,
    *,
    title: str,
    xlabel: str,
    labels: Sequence[str] = SOURCE_LABELS,
    xscale: str = "linear",
    note: str | None = None,
) -> Figure:
    """Overlaid empirical CDFs of two samples (one step line each, labelled)."""
    fig, ax = new_figure()
    for values, label, colour, style in zip((a, b), labels, COLOURS, LINES, strict=True):
        x, y = ecdf_points(values)
        if xscale == "log":
            keep = x > 0
            x, y = x[keep], y[keep]
        n = Counted.of(values).n
        ax.step(x, y, where="post", label=f"{label} (n={n:,})", color=colour, **style)
    if xscale == "symlog":
        positive = np.concatenate([Counted.of(a).values, Counted.of(b).values])
        positive = np.abs(positive[positive != 0])
        ax.set_xscale("symlog", linthresh=float(positive.min()) if positive.size else 1.0)
    else:
        ax.set_xscale(xscale)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("empirical CDF")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", title=note)
    return fig


def _ccdf_points(
    values: np.ndarray | Counted, max_points: int = 2000
) -> tuple[np.ndarray, np.ndarray]:
    """(x, P(X >= x)) at the distinct positive values, thinned for plotting."""
    sample = Counted.of(values)
    positive = sample.values > 0
    u, counts = sample.values[positive], sample.counts[positive]
    if u.size == 0:
        return u, u.astype(float)
    p = 1.0 - (np.cumsum(counts) - counts) / counts.sum()
    if u.size > max_points:
        keep = np.unique(np.geomspace(1, u.size, max_points).astype(np.int64) - 1)
        u, p = u[keep], p[keep]
    return u, p


def tail_figure(
    a: np.ndarray | Counted,
    b: np.ndarray | Counted | None,
    fit_a: PowerLawFit | None,
    fit_b: PowerLawFit | None,
    *,
    title: str,
    xlabel: str,
    labels: Sequence[str] = SOURCE_LABELS,
    intervals: Sequence[tuple[float, float] | None] = (None, None),
) -> Figure:
    """Log-log complementary CDFs with each source's fitted power law from its xmin."""
    fig, ax = new_figure()
    for values, fit, label, colour, ci, style, marker in zip(
        (a, b), (fit_a, fit_b), labels, COLOURS, intervals, LINES, MARKERS, strict=True
    ):
        if values is None:
            continue
        x, p = _ccdf_points(values)
        ax.loglog(x, p, ls="none", color=colour, label=f"{label} data", **marker)
        if fit is not None:
            xs = np.geomspace(fit.xmin, max(float(x.max()), fit.xmin * 1.0001), 100)
            ci_text = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci is not None else ""
            ax.loglog(
                xs, fit.ccdf_at(xs), color=colour, **style,
                label=f"{label} fit: α={fit.alpha:.2f}{ci_text}, xmin={fit.xmin:g}",
            )  # fmt: skip
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("P(X ≥ x)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower left", fontsize="small")
    return fig


def agreement_over_time_figure(
    minutes_ns: np.ndarray,
    compared: np.ndarray,
    equal: np.ndarray,
    *,
    threshold: float,
    title: str,
) -> Figure:
    """Share of equal updates per minute, with the threshold."""
    fig, ax = new_figure(8.0, 3.8)
    times = [dt.datetime.fromtimestamp(int(m) / 1e9, dt.UTC) for m in minutes_ns]
    share = np.asarray(equal, float) / np.maximum(np.asarray(compared, float), 1.0)
    ax.plot(times, share, "-o", ms=3, color=COLOURS[0], label="lake vs golden, share per minute")
    ax.axhline(threshold, ls="--", color=COLOURS[1], label=f"threshold {threshold:.3%}")
    low = min(float(share.min()) if share.size else 1.0, threshold)
    ax.set_ylim(max(0.0, low - (1 - low) * 0.5 - 1e-4), 1.0 + (1 - low) * 0.1 + 1e-4)
    ax.set_title(title)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=dt.UTC))
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("equal best bid/ask")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    return fig


def level_agreement_figure(level_agreement: Sequence[float], *, title: str) -> Figure:
    """Share of vendor book rows equal at each level (both sides, price and size)."""
    fig, ax = new_figure(7.0, 3.4)
    levels = np.arange(len(level_agreement))
    ax.bar(levels, level_agreement, color=COLOURS[0], label="ours = vendor at this level")
    ax.set_xticks(levels)
    ax.set_ylim(min(min(level_agreement, default=1.0), 0.99) - 0.01, 1.0)
    ax.set_title(title)
    ax.set_xlabel("level (0 = best)")
    ax.set_ylabel("share of rows")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="lower left", fontsize="small")
    return fig


def discrepancies_figure(
    minutes_ns: np.ndarray, counts: dict[str, np.ndarray], *, title: str, span_ns=None
) -> Figure:
    """Discrepancies per minute, one stacked bar colour per kind; an empty chart says so."""
    fig, ax = new_figure(8.0, 3.8)
    times = [dt.datetime.fromtimestamp(int(m) / 1e9, dt.UTC) for m in minutes_ns]
    bottom = np.zeros(len(times))
    width = 1 / 1440 * 0.8  # days: 80% of a minute
    for kind, values in counts.items():
        values = np.asarray(values, float)
        ax.bar(times, values, width=width, bottom=bottom, label=kind, align="edge")
        bottom += values
    if not counts:
        ax.text(0.5, 0.5, "no discrepancy", transform=ax.transAxes, ha="center", va="center")
        if span_ns is not None:
            ax.set_xlim(*(dt.datetime.fromtimestamp(int(t) / 1e9, dt.UTC) for t in span_ns))
    else:
        ax.legend(loc="upper right", fontsize="small")
    ax.set_title(title)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=dt.UTC))
    ax.set_xlabel("time (UTC, minute)")
    ax.set_ylabel("discrepancies")
    ax.grid(alpha=0.3, axis="y")
    return fig
