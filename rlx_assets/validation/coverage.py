"""The coverage calendar: the state of every day x market of a date range, read from the data root.

One state a cell, the first that applies:

* ``failed_gate``: a gate report in force (``staging/validating``) has a failed gate; the day is
  blocked and its bad file is in quarantine;
* ``quarantined``: a vendor file of the day is in quarantine while the gates in force pass (a bad
  republish was rejected and the last good version kept; its certificate, if any, stands);
* ``certified_reconstructed``: a certificate and a published reconstruction;
* ``certified``: a certificate, no reconstruction yet;
* ``acquired``: vendor files downloaded, not (yet) certified and no gate failed;
* ``missing``: nothing for that day.

Partitions come from `compute_status` (the zones and certificates), reconstructions from one
listing of ``reconstruction/``; only the gate reports of uncertified or quarantined days are read.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
import polars as pl
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from rlx_assets.book.store import SUMMARY_NAME
from rlx_assets.remote import POINTER_FILE
from rlx_assets.staging import DataLayout, atomic_write, fetch, list_files
from rlx_assets.stats.plots import new_figure
from rlx_assets.validation.status import compute_status
from rlx_assets.validation.zones import REQUIRED_TABLES, gate_report_path, read_json

# name: (legend text, terminal character, colour), in the legend's order
STATES = {
    "certified_reconstructed": ("certified and reconstructed", "R", "#1a9850"),
    "certified": ("certified", "C", "#91cf60"),
    "acquired": ("acquired, not certified", "a", "#fee08b"),
    "quarantined": ("quarantined (last good kept)", "Q", "#fc8d59"),
    "failed_gate": ("failed gate", "F", "#d73027"),
    "missing": ("missing", ".", "#e0e0e0"),
}
SCHEMA = {"day": pl.Date, "market": pl.String, "state": pl.String}


def reconstructed_partitions(layout: DataLayout) -> set[tuple[str, str]]:
    """(date, market) of every published reconstruction: ``<market>/<date>/summary.json`` (a
    local or flat directory) or ``<market>/<date>/CURRENT`` (a versioned one on S3); directories
    still being built or retired start with a dot."""
    root = layout.root / "reconstruction"
    found = set()
    for path in list_files(root, ""):
        parts = path.relative_to(root).parts
        if len(parts) == 3 and parts[2] in (SUMMARY_NAME, POINTER_FILE) and parts[1][0] != ".":
            found.add((parts[1], parts[0]))
    return found


def gate_failed(layout: DataLayout, market: str, day: dt.date) -> bool:
    """Whether a gate report in force of the partition has a failed gate."""
    for table in REQUIRED_TABLES:
        path = gate_report_path(layout, table, market, day)
        if fetch(path) and not all(g["passed"] for g in read_json(path)["gates"]):
            return True
    return False


def cell_state(layout: DataLayout, market: str, day: dt.date, partition: dict | None,
               reconstructed: bool) -> str:  # fmt: skip
    if partition is None:
        return "missing"
    state = partition["state"]
    if state == "certified" and partition.get("vendor_file_quarantined"):
        return "quarantined"  # a bad republish held back: the certificate stays in force
    if state == "certified":
        return "certified_reconstructed" if reconstructed else "certified"
    failed = gate_failed(layout, market, day)
    if state == "quarantined":
        return "failed_gate" if failed else "quarantined"
    if state in ("raw", "ready"):
        return "failed_gate" if failed else "acquired"
    raise ValueError(f"{day}|{market}: unknown state {state!r} in the acquisition status")


def coverage_table(layout: DataLayout, days: list[dt.date], markets: list[str]) -> pl.DataFrame:
    """One row per day x market (market, then day order): day, market, state."""
    if not days or not markets:
        raise ValueError("the coverage calendar needs at least one day and one market")
    partitions = compute_status(layout)["partitions"]
    reconstructed = reconstructed_partitions(layout)
    rows = [
        (day, market, cell_state(layout, market, day, partitions.get(f"{day}|{market}"),
                                 (day.isoformat(), market) in reconstructed))
        for market in markets
        for day in days
    ]  # fmt: skip
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")


def write_table(table: pl.DataFrame, path: Path) -> None:
    with atomic_write(path) as handle:
        table.write_parquet(handle)


def state_counts(table: pl.DataFrame) -> dict[str, int]:
    counts = dict(table.group_by("state").len().iter_rows())
    return {state: counts.get(state, 0) for state in STATES}


def _grid(table: pl.DataFrame) -> tuple[list[dt.date], list[str], np.ndarray]:
    """Days, markets and the state index of each (market, day) cell."""
    days = table["day"].unique(maintain_order=True).sort().to_list()
    markets = table["market"].unique(maintain_order=True).to_list()
    index = {name: i for i, name in enumerate(STATES)}
    grid = np.full((len(markets), len(days)), index["missing"], dtype=np.int8)
    day_at = {day: i for i, day in enumerate(days)}
    market_at = {market: i for i, market in enumerate(markets)}
    for day, market, state in table.iter_rows():
        grid[market_at[market], day_at[day]] = index[state]
    return days, markets, grid


def calendar_text(table: pl.DataFrame) -> str:
    """The calendar for a terminal: a block per month, one row per market, one character per
    day (the day of month above), then the legend with each state's count."""
    days, markets, grid = _grid(table)
    symbols = [symbol for _, symbol, _ in STATES.values()]
    width = max((len(m) for m in markets), default=0)
    lines = []
    months = sorted({(d.year, d.month) for d in days})
    for year, month in months:
        columns = [i for i, d in enumerate(days) if (d.year, d.month) == (year, month)]
        lines.append(f"{year}-{month:02d}".ljust(width) + "  " + "".join(
            str(days[i].day % 10) if days[i].day % 10 else str(days[i].day // 10)
            for i in columns
        ))  # fmt: skip
        for row, market in enumerate(markets):
            lines.append(
                market.ljust(width) + "  " + "".join(symbols[grid[row, i]] for i in columns)
            )
        lines.append("")
    counts = state_counts(table)
    lines.append("  ".join(f"{s} {label} ({counts[n]})" for n, (label, s, _) in STATES.items()))
    return "\n".join(lines)


def calendar_figure(table: pl.DataFrame) -> Figure:
    """Days across, markets down, each cell coloured by its state, with a legend above."""
    days, markets, grid = _grid(table)
    width, height = min(5.0 + 0.04 * len(days), 16.0), 1.6 + 0.3 * len(markets)
    fig, ax = new_figure(width, height)
    # margins in inches: the market names and the legend keep their room at any size
    fig.subplots_adjust(left=2.3 / width, right=1 - 0.2 / width, top=1 - 0.8 / height,
                        bottom=0.45 / height)  # fmt: skip
    start, end = mdates.date2num(days[0]) - 0.5, mdates.date2num(days[-1]) + 0.5
    ax.imshow(
        grid, cmap=ListedColormap([colour for _, _, colour in STATES.values()]), vmin=0,
        vmax=len(STATES) - 1, aspect="auto", interpolation="nearest",
        extent=(start, end, len(markets) - 0.5, -0.5),
    )  # fmt: skip
    ax.xaxis_date()
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    ax.tick_params(axis="x", labelsize=7)
    ax.set_yticks(range(len(markets)), markets, fontsize=8)
    ax.set_title(f"coverage {days[0]} .. {days[-1]}", fontsize=9, loc="left", pad=4)
    fig.legend(
        handles=[Patch(color=c, label=label) for label, _, c in STATES.values()],
        loc="upper center", ncols=3, fontsize=7, frameon=False,
    )  # fmt: skip
    return fig
