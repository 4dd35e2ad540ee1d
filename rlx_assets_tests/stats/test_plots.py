"""The report's figures show both sources, labelled, and render to PNG (real trade data)."""

from __future__ import annotations

import io

import numpy as np
import polars as pl
from PIL import Image

from rlx_assets.stats import plots
from rlx_assets.stats.distributions import fit_power_law
from rlx_assets_tests.stats.sample_partitions import FUTURES_0808, SPOT_0808


def _sizes(lake, partition) -> np.ndarray:
    return pl.read_parquet(partition.file(lake, "trades"))["amount"].to_numpy()


def _legend(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def _png(fig) -> Image.Image:
    data = plots.png_bytes(fig)
    assert data.startswith(plots.PNG_SIGNATURE) and len(data) > 5_000
    return Image.open(io.BytesIO(data)).convert("RGB")


def _has_colour(image: Image.Image, hex_colour: str) -> bool:
    target = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    pixels = np.asarray(image).reshape(-1, 3).astype(int)
    return bool((np.abs(pixels - target).sum(axis=1) < 40).sum() > 50)


def test_ecdf_overlay_draws_and_labels_both_sources(sample_lake):
    spot, futures = _sizes(sample_lake, SPOT_0808), _sizes(sample_lake, FUTURES_0808)
    fig = plots.ecdf_figure(
        spot, futures, title="Trade size", xlabel="size", xscale="log", note="K-S D=0.58"
    )
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2
    assert [line.get_label() for line in lines] == _legend(fig)
    assert _legend(fig) == [
        f"{plots.SOURCE_LABELS[0]} (n={spot.size:,})",
        f"{plots.SOURCE_LABELS[1]} (n={futures.size:,})",
    ]
    assert fig.axes[0].get_legend().get_title().get_text() == "K-S D=0.58"
    # each line ends at F = 1 at its own sample's maximum
    for line, values in zip(lines, (spot, futures), strict=True):
        assert line.get_ydata()[-1] == 1.0 and line.get_xdata()[-1] == values.max()
    image = _png(fig)
    assert _has_colour(image, plots.COLOURS[0]) and _has_colour(image, plots.COLOURS[1])


def test_ecdf_symlog_keeps_zero_inter_trade_times(sample_lake):
    times = pl.read_parquet(SPOT_0808.file(sample_lake, "trades"))["timestamp"].to_numpy()
    gaps = np.diff(times) / 1e9
    assert (gaps == 0).mean() > 0.3  # many trades share a millisecond
    fig = plots.ecdf_figure(gaps, gaps, title="t", xlabel="s", xscale="symlog")
    assert fig.axes[0].get_xscale() == "symlog"
    assert all(line.get_xdata()[0] == 0 for line in fig.axes[0].get_lines())
    _png(fig)


def test_tail_plot_shows_both_fitted_exponents(sample_lake):
    spot, futures = _sizes(sample_lake, SPOT_0808), _sizes(sample_lake, FUTURES_0808)
    fit_s, fit_f = fit_power_law(spot), fit_power_law(futures)
    fig = plots.tail_figure(
        spot, futures, fit_s, fit_f, title="tail", xlabel="size",
        intervals=[(2.0, 2.5), (2.4, 2.8)],
    )  # fmt: skip
    legend = _legend(fig)
    assert len(fig.axes[0].get_lines()) == 4 and len(legend) == 4
    assert f"α={fit_s.alpha:.2f} [2.00, 2.50]" in legend[1]
    assert f"α={fit_f.alpha:.2f} [2.40, 2.80]" in legend[3]
    assert legend[0].startswith(plots.SOURCE_LABELS[0]) and legend[2].startswith(
        plots.SOURCE_LABELS[1]
    )
    assert fig.axes[0].get_xscale() == "log" and fig.axes[0].get_yscale() == "log"
    # the fitted line starts at xmin with the tail's share of the sample
    fitted = fig.axes[0].get_lines()[1]
    assert fitted.get_xdata()[0] == fit_s.xmin
    assert np.isclose(fitted.get_ydata()[0], fit_s.n_tail / fit_s.n)
    image = _png(fig)
    assert _has_colour(image, plots.COLOURS[0]) and _has_colour(image, plots.COLOURS[1])


def test_tail_plot_with_one_source(sample_lake):
    spot = _sizes(sample_lake, SPOT_0808)
    fig = plots.tail_figure(spot, None, fit_power_law(spot), None, title="t", xlabel="x")
    assert len(fig.axes[0].get_lines()) == 2
    _png(fig)


def test_agreement_over_time_and_level_figures():
    minutes = np.arange(6) * 60 * 10**9 + 1_723_161_240 * 10**9
    fig = plots.agreement_over_time_figure(
        minutes, np.full(6, 600), np.array([599, 600, 598, 600, 600, 600]),
        threshold=0.999, title="top of book",
    )  # fmt: skip
    line = fig.axes[0].get_lines()[0]
    assert np.allclose(line.get_ydata(), [599 / 600, 1, 598 / 600, 1, 1, 1])
    assert _legend(fig)[1] == "threshold 99.900%"
    _png(fig)
    levels = plots.level_agreement_figure([1.0] * 19 + [0.98], title="levels")
    assert len(levels.axes[0].patches) == 20
    _png(levels)


def test_discrepancies_figure_stacks_kinds_per_minute_and_says_when_there_are_none():
    minutes = np.array([0, 2]) * 60 * 10**9 + 1_723_161_240 * 10**9
    fig = plots.discrepancies_figure(
        minutes, {"sequence_gap": np.array([1, 0]), "trade_missing": np.array([3, 10])},
        title="discrepancies",
    )  # fmt: skip
    bars = fig.axes[0].patches
    assert [b.get_height() for b in bars] == [1, 0, 3, 10]
    assert [b.get_y() for b in bars] == [0, 0, 1, 0]  # stacked on the kind below
    assert _legend(fig) == ["sequence_gap", "trade_missing"]
    _png(fig)
    day = (1_723_075_200 * 10**9, 1_723_161_600 * 10**9)
    empty = plots.discrepancies_figure(np.array([]), {}, title="none", span_ns=day)
    assert [t.get_text() for t in empty.axes[0].texts] == ["no discrepancy"]
    _png(empty)
