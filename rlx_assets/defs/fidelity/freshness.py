"""Flags a fidelity report built from a certificate or reconstruction no longer in force."""

import datetime as dt

import dagster as dg

from rlx_assets.book.store import read_summary
from rlx_assets.defs.fidelity.assets import BUILT_FROM_NAME, fidelity_report, report_dir
from rlx_assets.defs.partitions import DATE_MARKET_PARTITIONS, partition_of
from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets.staging import DataLayout, fetch
from rlx_assets.validation.certificate import certificate_fingerprint, staleness
from rlx_assets.validation.zones import read_json


def fidelity_freshness_problem(layout: DataLayout, market: str, day: dt.date) -> str | None:
    path = report_dir(layout, market, day) / BUILT_FROM_NAME
    if not fetch(path):
        return f"{market} {day}: the fidelity report does not record what it was built from"
    built_from = read_json(path)
    stale = staleness(
        built_from.get("certificate_sha256"),
        certificate_fingerprint(layout, market, day),
        "fidelity report",
    )
    if stale:
        return stale
    current = (read_summary(layout, market, day) or {}).get("run_id")
    if built_from.get("reconstruction_run_id") != current:
        return (
            f"the fidelity report was built from reconstruction run "
            f"{built_from.get('reconstruction_run_id')}, the reconstruction on disk is from run "
            f"{current}: stale, to be built again"
        )
    return None


@dg.asset_check(
    asset=fidelity_report,
    name="built_from_current_certificate",
    blocking=False,
    pool="fidelity",
    partitions_def=DATE_MARKET_PARTITIONS,
    description=(
        "The report was built from the certificate in force and the reconstruction on disk "
        f"(its {BUILT_FROM_NAME}); a republished, re-certified day is stale until rebuilt."
    ),
)
def fidelity_built_from_current_certificate(
    context: dg.AssetCheckExecutionContext, rlx: RlxEnvironment
):
    day, _, _, market = partition_of(context)
    problem = fidelity_freshness_problem(rlx.layout(), market, day)
    return dg.AssetCheckResult(
        passed=problem is None,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "summary": dg.MetadataValue.text(problem or "built from what is in force"),
            "stale": dg.MetadataValue.bool(problem is not None),
        },
    )
