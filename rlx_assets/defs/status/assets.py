"""The coverage calendar asset: every configured day x market coloured by its state."""

import base64

import dagster as dg

from rlx_assets.defs.acquisition.assets import raw_book, raw_book_delta_v2, raw_trades
from rlx_assets.defs.partitions import configured_days
from rlx_assets.defs.reconstruction.assets import reconstructed_stream
from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets.defs.validation.assets import readiness_certificate, validated_partition
from rlx_assets.staging import atomic_write_bytes
from rlx_assets.stats.plots import png_bytes
from rlx_assets.validation.coverage import (
    STATES,
    calendar_figure,
    coverage_table,
    state_counts,
    write_table,
)

# What changes a partition's state: acquisition (and its gates), promotion, certificate,
# reconstruction.
WATCHED = [
    raw_trades, raw_book, raw_book_delta_v2, validated_partition, readiness_certificate,
    reconstructed_stream,
]  # fmt: skip


def refresh_when_partitions_change() -> dg.AutomationCondition:
    """At the first tick while never drawn (not again after a failed run), then after any
    watched partition was materialised, once no run of those assets is still going (a raw
    asset's gates quarantine after it materialised)."""
    A = dg.AutomationCondition
    return (
        ((A.missing() & ~A.execution_failed()) | A.any_deps_updated().since_last_handled())
        & ~A.any_deps_in_progress()
        & ~A.in_progress()
    ).with_label("refresh when partitions change")


@dg.asset(
    group_name="status",
    deps=WATCHED,
    automation_condition=refresh_when_partitions_change(),
    kinds={"parquet", "png"},
    description=(
        "Every configured day x market by state (certified and reconstructed, certified, "
        "acquired, quarantined, failed gate, missing): `$RLX_DATA_DIR/status/coverage.parquet` "
        "and `coverage.png` (shown here); `rlx status` prints it."
    ),
)
def coverage_calendar(rlx: RlxEnvironment) -> dg.MaterializeResult:
    settings = rlx.settings()
    layout = rlx.layout()
    table = coverage_table(layout, configured_days(settings), list(settings.markets))
    directory = layout.root / "status"
    write_table(table, directory / "coverage.parquet")
    png = png_bytes(calendar_figure(table))
    atomic_write_bytes(directory / "coverage.png", png)
    encoded = base64.b64encode(png).decode()
    counts = state_counts(table)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(directory.relative_to(layout.root))),
            "calendar": dg.MetadataValue.md(
                f"![coverage calendar](data:image/png;base64,{encoded})"
            ),
            **{state: dg.MetadataValue.int(counts[state]) for state in STATES},
        }
    )
