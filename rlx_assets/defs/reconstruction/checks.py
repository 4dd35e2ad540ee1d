"""Reconstruction gates: our top-20 against the vendor's `book` rows at the same sequence number,
and the anomalies the replay counted (sequence regressions, levels outside the dense window,
deltas before the seed, crossed books after a complete update) against the gate profile."""

import datetime as dt

import dagster as dg

from rlx_assets.book.store import read_summary, reconstruction_dir
from rlx_assets.defs.partitions import DATE_MARKET_PARTITIONS, missing_evidence, partition_of
from rlx_assets.defs.reconstruction.assets import reconstructed_stream
from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets.fidelity.metrics import vendor_book_agreement
from rlx_assets.fidelity.thresholds import FidelityThresholds, load_thresholds
from rlx_assets.staging import DataLayout, fetch_tree
from rlx_assets.validation.certificate import certified_inputs
from rlx_assets.validation.profiles import GateThresholds, active_profile
from rlx_assets.validation.zones import CertificateError


def vendor_book_check_result(
    layout: DataLayout, market: str, day: dt.date, thresholds: FidelityThresholds
) -> dg.AssetCheckResult:
    """The same book-agreement figures as the fidelity report, as a blocking gate.

    On a day started cold (seeded from a top-20 row) levels deeper than the seed's range are
    unknown until a delta touches them: vendor levels outside that range do not count against
    us, but every level we hold must be in the vendor's row with the same size.
    """
    directory = reconstruction_dir(layout, market, day)
    fetch_tree(directory)
    try:
        book = certified_inputs(layout, market, day)["book"]
        figures = vendor_book_agreement(directory, book, thresholds)
    except (CertificateError, FileNotFoundError, ValueError) as error:
        return missing_evidence(f"{market} {day}: {error}")
    compared, agreement = figures["rows_compared"], figures["agreement"] or 0.0
    verdict = "meets" if figures["passed"] else "is below"
    return dg.AssetCheckResult(
        passed=bool(figures["passed"]),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "summary": dg.MetadataValue.text(
                f"{figures['rows_consistent']}/{compared} vendor book rows agree "
                f"({agreement:.4%}; {figures['rows_equal']} equal at all 40 levels), "
                f"{verdict} the threshold {figures['threshold']:.2%}"
            ),
            "agreement": dg.MetadataValue.float(agreement),
            "exact_share": dg.MetadataValue.float(figures["exact_share"] or 0.0),
            "threshold": dg.MetadataValue.float(figures["threshold"]),
            "rows_compared": dg.MetadataValue.int(compared),
            "known_depth": dg.MetadataValue.json(figures["known_depth"]),
            "level_agreement": dg.MetadataValue.json(figures["level_agreement"]),
            "first_mismatches": dg.MetadataValue.json(figures["first_mismatches"]),
        },
    )


@dg.asset_check(
    asset=reconstructed_stream,
    name="vendor_book_agreement",
    blocking=True,
    pool="reconstruction",
    partitions_def=DATE_MARKET_PARTITIONS,
    description=(
        "Our top-20 agrees with the vendor's `book` row at the same sequence number for at "
        "least 99.9% of rows (RLX_FIDELITY_BOOK_AGREEMENT_MIN overrides)."
    ),
)
def vendor_book_agreement_check(context: dg.AssetCheckExecutionContext, rlx: RlxEnvironment):
    day, _, _, market = partition_of(context)
    return vendor_book_check_result(rlx.layout(), market, day, load_thresholds())


# anomaly counted by the replay -> the GateThresholds field that bounds it
GATED_ANOMALIES = {
    "sequence_regressions": "max_sequence_regressions",
    "out_of_range": "max_out_of_range_levels",
    "deltas_before_seed": "max_deltas_before_seed",
    "crossed_after_event": "max_crossed_after_update",
}


def _where(first: dict | None) -> str:
    if not first:
        return "-"
    time = dt.datetime.fromtimestamp(first["event_time_ns"] / 1e9, dt.UTC)
    where = f"{time.isoformat(timespec='milliseconds')} sequence {first['sequence_number']}"
    if "after_sequence_number" in first:
        where += f" (after {first['after_sequence_number']} was applied)"
    return where


def exceeded_anomalies(summary: dict, thresholds: GateThresholds) -> list[str]:
    """Every gated anomaly count of a reconstruction summary above the profile's threshold."""
    counts, firsts = summary.get("anomalies", {}), summary.get("anomaly_first", {})
    exceeded = []
    for name, field in GATED_ANOMALIES.items():
        count, limit = int(counts.get(name, 0)), int(getattr(thresholds, field))
        if count > limit:
            exceeded.append(f"{name} {count} > {limit} (first at {_where(firsts.get(name))})")
    return exceeded


def anomalies_check_result(
    summary: dict, thresholds: GateThresholds, profile: str
) -> dg.AssetCheckResult:
    """Each gated anomaly count of a reconstruction summary against the profile's threshold."""
    counts, firsts = summary.get("anomalies", {}), summary.get("anomaly_first", {})
    metadata: dict[str, dg.MetadataValue] = {"profile": dg.MetadataValue.text(profile)}
    for name, field in GATED_ANOMALIES.items():
        metadata[name] = dg.MetadataValue.int(int(counts.get(name, 0)))
        metadata[f"{name}_threshold"] = dg.MetadataValue.int(int(getattr(thresholds, field)))
        metadata[f"{name}_first"] = dg.MetadataValue.text(_where(firsts.get(name)))
    exceeded = exceeded_anomalies(summary, thresholds)
    where = f"{summary.get('market')} {summary.get('date')}"
    text = f"{where}: " + ("; ".join(exceeded) if exceeded else "every anomaly within threshold")
    metadata["summary"] = dg.MetadataValue.text(text)
    return dg.AssetCheckResult(
        passed=not exceeded, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata
    )


@dg.asset_check(
    asset=reconstructed_stream,
    name="reconstruction_anomalies",
    blocking=True,
    partitions_def=DATE_MARKET_PARTITIONS,
    description=(
        "Sequence regressions, levels outside the dense price window, deltas before the seed "
        "and crossed books after a complete update stay within the gate profile's thresholds "
        "(RLX_GATE_PROFILE; production tolerates no regression and no out-of-window level)."
    ),
)
def reconstruction_anomalies_check(context: dg.AssetCheckExecutionContext, rlx: RlxEnvironment):
    day, _, _, market = partition_of(context)
    summary = read_summary(rlx.layout(), market, day)
    if summary is None:
        return missing_evidence(f"{market} {day}: no reconstruction summary")
    name, thresholds = active_profile(rlx.settings())
    return anomalies_check_result(summary, thresholds, name)
