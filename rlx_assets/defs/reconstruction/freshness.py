"""Flags a reconstruction built from a certificate other than the one in force.

A vendor republish that passes its gates replaces the certificate; until the sensor has
reconstructed the day again (`any_deps_updated` on the certificate), the stream on disk
belongs to the old files. This check says so, naming both certificates.
"""

import datetime as dt

import dagster as dg

from rlx_assets.book.store import read_summary
from rlx_assets.defs.partitions import DATE_MARKET_PARTITIONS, partition_of
from rlx_assets.defs.reconstruction.assets import reconstructed_stream
from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets.staging import DataLayout
from rlx_assets.validation.certificate import certificate_fingerprint, staleness


def reconstruction_freshness_result(
    layout: DataLayout, market: str, day: dt.date
) -> dg.AssetCheckResult:
    summary = read_summary(layout, market, day)
    built_from = summary.get("certificate_sha256") if summary else None
    in_force = certificate_fingerprint(layout, market, day)
    problem = (
        f"{market} {day}: no reconstruction"
        if summary is None
        else staleness(built_from, in_force, "reconstruction")
    )
    return dg.AssetCheckResult(
        passed=problem is None,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "summary": dg.MetadataValue.text(problem or "built from the certificate in force"),
            "built_from_certificate_sha256": dg.MetadataValue.text(str(built_from)),
            "certificate_in_force_sha256": dg.MetadataValue.text(str(in_force)),
            "stale": dg.MetadataValue.bool(problem is not None),
        },
    )


@dg.asset_check(
    asset=reconstructed_stream,
    name="built_from_current_certificate",
    blocking=True,
    pool="reconstruction",
    partitions_def=DATE_MARKET_PARTITIONS,
    description=(
        "The reconstruction was built from the certificate in force (its summary.json records "
        "the certificate's SHA-256); a republished, re-certified day is stale until rebuilt."
    ),
)
def built_from_current_certificate(context: dg.AssetCheckExecutionContext, rlx: RlxEnvironment):
    day, _, _, market = partition_of(context)
    return reconstruction_freshness_result(rlx.layout(), market, day)
