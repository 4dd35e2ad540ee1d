"""Blocking, partitioned integrity gates on the raw files, and the certificate's own check.

One bad day blocks only itself: the checks carry the same date x market partitions as the
assets, and a failed gate (severity ERROR) stops `validated_partition` for that partition.
"""

import datetime as dt
import functools
import logging
from typing import Any

import dagster as dg

from rlx_assets.defs.acquisition.assets import RAW_TABLES
from rlx_assets.defs.partitions import DATE_MARKET_PARTITIONS, log_partition_event, partition_of
from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets.defs.validation.assets import readiness_certificate
from rlx_assets.lake.manifest import manifest_entry
from rlx_assets.staging import DataLayout, fetch, sha256_of, utc_now_iso
from rlx_assets.validation.certificate import (
    certificate_path,
    certificate_problems,
    trailing_row_counts,
)
from rlx_assets.validation.gates import GATES, GateInput, GateResult, run_gates_safely
from rlx_assets.validation.profiles import GateThresholds, active_profile
from rlx_assets.validation.status import TABLE_STEP_ZONES, refresh_status
from rlx_assets.validation.zones import (
    gate_report_path,
    quarantine,
    raw_path,
    read_json,
    record_gate_report,
    release_from_quarantine,
    restore_last_good,
)

GATE_DESCRIPTIONS = {
    "file_integrity": "SHA-256 and size equal the manifest entry; the file is valid Parquet.",
    "schema": (
        "Exactly the vendor's columns, order and types (a drifted type names column, found and "
        "expected type; later gates skip that column); no critical column entirely null."
    ),
    "quality": (
        "No NaN/inf/negative prices or sizes; book not crossed; whole-row duplicates counted; "
        "no trade id (book_delta_v2: sequence, side, price) on rows that differ."
    ),
    "temporal": (
        "Every timestamp inside the UTC day; vendor order kept in every table (timestamp within "
        "tolerance, sequence_number never back); coverage and silences."
    ),
    "volume": "Row count within bounds and not far below the trailing median of the market.",
}


def gate_metadata(result: GateResult, profile: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "summary": dg.MetadataValue.text(result.summary),
        "profile": dg.MetadataValue.text(profile),
        "measured": dg.MetadataValue.json(result.measured),
        "thresholds": dg.MetadataValue.json(result.thresholds),
    }
    if result.examples:
        metadata["examples"] = dg.MetadataValue.json(result.examples)
    return metadata


def evaluate_gates(
    layout: DataLayout, table: str, market: str, day: dt.date, profile: str,
    thresholds: GateThresholds, run_id: str,
) -> tuple[list[GateResult], dict[str, Any]]:  # fmt: skip
    """Run every gate on the raw file, record the report, quarantine or release the file."""
    entry = manifest_entry(layout, table, market, day) or {}
    raw = raw_path(layout, table, market, day)
    fetch(raw)
    # The input is built inside, so even a failing look-up (trailing rows) yields a report.
    results = run_gates_safely(
        lambda: GateInput(
            table=table,
            path=raw,
            day=day,
            expected_sha256=entry.get("sha256"),
            expected_size=entry.get("size"),
            thresholds=thresholds,
            trailing_rows=trailing_row_counts(layout, market, table, day, thresholds.trailing_days),
            sha256_of=functools.partial(sha256_of, layout),
        )
    )
    integrity = results[0].measured
    report = {
        "table": table,
        "market": market,
        "date": day.isoformat(),
        "profile": profile,
        "thresholds": thresholds.model_dump(),
        "sha256": integrity.get("sha256"),
        "rows": integrity.get("parquet_rows"),
        "source_uri": entry.get("source_uri"),
        # The vendor's version of these bytes (when they are the manifest's): a version that
        # failed is quarantined and not downloaded again until the vendor replaces it.
        "source_version": entry.get("source_version")
        if entry.get("sha256") == integrity.get("sha256")
        else None,
        "run_id": run_id,
        "checked_at": utc_now_iso(),
        "gates": [r.to_json() for r in results],
    }
    record_gate_report(layout, table, market, day, report)
    if all(r.passed for r in results):
        release_from_quarantine(layout, table, market, day)
    else:
        quarantine(layout, table, market, day, report)
        # A bad republish must not displace what was certified: raw goes back to the last
        # good version, with a manifest entry saying so (the bad file stays in quarantine).
        restore_last_good(layout, table, market, day, run_id)
    refresh_status(layout, market, day, (table,), TABLE_STEP_ZONES)
    return results, report


def build_gate_checks(table: str) -> dg.AssetChecksDefinition:
    asset_key = dg.AssetKey(f"raw_{table}")
    specs = [
        dg.AssetCheckSpec(
            gate,
            asset=asset_key,
            blocking=True,
            partitions_def=DATE_MARKET_PARTITIONS,
            description=GATE_DESCRIPTIONS[gate],
        )
        for gate in GATES
    ]

    @dg.multi_asset_check(specs=specs, name=f"raw_{table}_gates", pool="validation")
    def raw_gates(context: dg.AssetCheckExecutionContext, rlx: RlxEnvironment):
        day, _, _, market = partition_of(context)
        profile, thresholds = active_profile(rlx.settings())
        results, report = evaluate_gates(
            rlx.layout(), table, market, day, profile, thresholds, context.run.run_id
        )
        passed = all(r.passed for r in results)
        log_partition_event(
            context, "gates.checked", level=logging.INFO if passed else logging.ERROR,
            table=table, profile=profile, passed=passed, gates_run=len(results),
            gates_passed=sum(r.passed for r in results),
            verdicts={r.gate: "passed" if r.passed else "failed" for r in results},
            failed={r.gate: r.summary for r in results if not r.passed}, rows=report["rows"],
            sha256=report["sha256"], report=str(gate_report_path(rlx.layout(), table, market, day)),
        )  # fmt: skip
        for result in results:
            if not result.passed:
                context.log.error(f"{table} {market} {day}: {result.gate} failed: {result.summary}")
            yield dg.AssetCheckResult(
                asset_key=asset_key,
                check_name=result.gate,
                passed=result.passed,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata=gate_metadata(result, profile),
            )

    return raw_gates


raw_trades_gates, raw_book_gates, raw_book_delta_v2_gates = (
    build_gate_checks(t) for t in RAW_TABLES
)


@dg.asset_check(
    asset=readiness_certificate,
    name="certificate_valid",
    blocking=True,
    pool="validation",
    partitions_def=DATE_MARKET_PARTITIONS,
    description=(
        "Re-verifies the certificate: it names this partition, its signature (when "
        "RLX_CERTIFICATE_KEY is set), and every checksum equals the ready file's, the "
        "manifest's latest entry and the gate report's; every gate passed."
    ),
)
def certificate_valid(context: dg.AssetCheckExecutionContext, rlx: RlxEnvironment):
    day, _, _, market = partition_of(context)
    result = certificate_check_result(rlx.layout(), market, day)
    log_partition_event(context, "certificate.checked", passed=result.passed,
                        problems=result.metadata["problems"].value)  # fmt: skip
    return result


def certificate_check_result(layout: DataLayout, market: str, day: dt.date) -> dg.AssetCheckResult:
    path = certificate_path(layout, market, day)
    if not fetch(path):
        problems = [f"no certificate at {path}"]
    else:
        problems = certificate_problems(layout, read_json(path), market, day)
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "certificate": dg.MetadataValue.path(str(path)),
            "problems": dg.MetadataValue.json(problems),
            "summary": dg.MetadataValue.text(
                "; ".join(problems)
                or "every certified file matches its checksum, the manifest and its gate report"
            ),
        },
    )
