"""The reconstructed order book and unified event stream, one certified partition at a time."""

import datetime as dt

import dagster as dg

from rlx_assets.book.reconstruct import reconstruct_partition
from rlx_assets.book.store import (
    building_dir,
    previous_end_book,
    reconstruction_dir,
    result_as_dict,
    write_summary,
)
from rlx_assets.defs.partitions import DATE_MARKET_PARTITIONS, partition_of
from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets.defs.validation.assets import readiness_certificate
from rlx_assets.staging import publish_tree, utc_now_iso
from rlx_assets.validation.certificate import verified_certificate
from rlx_assets.validation.zones import CertificateError

RECONSTRUCTED_STREAM = dg.AssetKey("reconstructed_stream")
CERTIFICATE = readiness_certificate.key

# The same market's previous date: its end-of-day book seeds this day's book.
PREVIOUS_DAY = dg.MultiPartitionMapping(
    {
        "date": dg.DimensionPartitionMapping(
            "date",
            dg.TimeWindowPartitionMapping(
                start_offset=-1, end_offset=-1, allow_nonexistent_upstream_partitions=True
            ),
        ),
        "market": dg.DimensionPartitionMapping("market", dg.IdentityPartitionMapping()),
    }
)


def reconstruct_when_certified() -> dg.AutomationCondition:
    """Request a partition once its certificate materialised and passed its blocking check.

    Unlike `eager()`, it considers every date (backfilled old days too), picks up certificates
    that existed before the sensor's first tick (`missing()` as a trigger), never runs for a
    missing or failed certificate, and runs at most once per new certificate. A day whose
    previous day is certified but not yet reconstructed waits for it, so it does not start cold;
    when a day is reconstructed again, the next day follows (its starting book changed).
    """
    A = dg.AutomationCondition
    certificate = dg.AssetSelection.assets(CERTIFICATE)
    itself = dg.AssetSelection.assets(RECONSTRUCTED_STREAM)
    previous_day_pending = A.any_deps_match(
        A.missing()
        & A.any_deps_match(~A.missing()).allow(certificate)
        & A.all_deps_blocking_checks_passed().allow(certificate)
    ).allow(itself)
    return (
        (A.any_deps_updated() | (A.missing() & ~A.execution_failed())).since_last_handled()
        & ~A.any_deps_missing().ignore(itself)
        & A.all_deps_blocking_checks_passed().ignore(itself)
        & ~A.any_deps_in_progress()
        & ~A.in_progress()
        & ~previous_day_pending
    ).with_label("reconstruct once certified")


@dg.asset(
    key=RECONSTRUCTED_STREAM,
    group_name="reconstruction",
    partitions_def=DATE_MARKET_PARTITIONS,
    deps=[CERTIFICATE, dg.AssetDep(RECONSTRUCTED_STREAM, partition_mapping=PREVIOUS_DAY)],
    automation_condition=reconstruct_when_certified(),
    pool="reconstruction",
    kinds={"parquet", "numba"},
    description=(
        "Trades and book deltas merged by exchange time, each row with the book after it; "
        "top-20 snapshots at every vendor book row and every second; the end-of-day book "
        "that seeds the next day. Reads only the certificate's files, verified."
    ),
)
def reconstructed_stream(
    context: dg.AssetExecutionContext, rlx: RlxEnvironment
) -> dg.MaterializeResult:
    day, _, _, market = partition_of(context)
    layout = rlx.layout()
    try:
        certified = verified_certificate(layout, market, day)
    except CertificateError as error:
        raise dg.Failure(str(error)) from None
    inputs = certified.inputs
    seed = previous_end_book(layout, market, day)
    building = building_dir(layout, market, day, context.run.run_id)
    result = reconstruct_partition(
        inputs["trades"], inputs["book_delta_v2"], inputs["book"], building, seed
    )
    summary = {
        "market": market,
        "date": day.isoformat(),
        "run_id": context.run.run_id,
        "reconstructed_at": utc_now_iso(),
        "certificate_issued_at": certified.certificate["issued_at"],
        # What it was built from: a different certificate in force later makes it stale.
        "certificate_sha256": certified.sha256,
        "seed_book": str(seed.relative_to(layout.root)) if seed else None,
        **result_as_dict(result),
    }
    write_summary(building, summary)
    final = reconstruction_dir(layout, market, day)
    publish_tree(building, final)
    if result.started_cold:
        context.log.warning(
            f"{market} {day}: no reconstructed previous day; started cold from the vendor's first "
            "book row (levels deeper than 20 are unknown until touched)"
        )
    return dg.MaterializeResult(metadata=stream_metadata(summary, final, layout.root))


def stream_metadata(summary: dict, final, root) -> dict[str, dg.MetadataValue]:
    compared = summary["vendor_book_rows_compared"]
    return {
        "path": dg.MetadataValue.path(str(final.relative_to(root))),
        "events": dg.MetadataValue.int(summary["events"]),
        "trades": dg.MetadataValue.int(summary["trades"]),
        "book_updates": dg.MetadataValue.int(summary["book_updates"]),
        "started_cold": dg.MetadataValue.bool(summary["started_cold"]),
        "seeded_from": dg.MetadataValue.text(summary["seeded_from"]),
        "price_scale": dg.MetadataValue.int(summary["price_scale"]),
        "size_scale": dg.MetadataValue.int(summary["size_scale"]),
        "anomalies": dg.MetadataValue.json(summary["anomalies"]),
        "vendor_book_agreement": dg.MetadataValue.float(
            summary["vendor_book_rows_equal"] / compared if compared else float("nan")
        ),
        "first_event": dg.MetadataValue.text(_iso(summary["first_event_ns"])),
        "last_event": dg.MetadataValue.text(_iso(summary["last_event_ns"])),
    }


def _iso(ns: int | None) -> str:
    if ns is None:
        return "-"
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="milliseconds")
