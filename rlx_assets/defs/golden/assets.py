"""Golden samples: our own Binance recording of a day, in the Crypto Lake schema."""

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg

from rlx_assets.capture.golden import (
    DayAnalysis,
    GoldenDay,
    GoldenError,
    select_capture_files,
    verify_checksums,
)
from rlx_assets.defs.partitions import DATE_MARKET_PARTITIONS, missing_evidence, partition_of
from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets.lake.from_capture import TRADE_PARTS, convert_captures
from rlx_assets.markets import binance_instrument
from rlx_assets.staging import DataLayout, commit_file, fetch, lake_relative_path, utc_now_iso
from rlx_assets.validation.zones import read_json, write_json
from rlx_assets.vendor_schemas import LAKE_TABLES


def golden_lake_root(layout: DataLayout) -> Path:
    return layout.root / "golden" / "lake"


def golden_report_path(layout: DataLayout, market: str, day: dt.date) -> Path:
    return layout.root / "golden" / "reports" / market / f"{day.isoformat()}.json"


def golden_report(day_data: GoldenDay, market: str, day: dt.date, checksums: dict) -> dict:
    return {
        "market": market,
        "date": day.isoformat(),
        "files": checksums,
        "messages_by_stream": dict(day_data.messages_by_stream),
        "first_event": day_data.first_event_ns,
        "last_event": day_data.last_event_ns,
        "span_seconds": day_data.span_ns / 1e9,
        "gap_seconds": day_data.gap_ns / 1e9,
        "gap_ratio": day_data.gap_ratio,
        "gaps": [g.to_json() for g in day_data.gaps],
        "gaps_ns": [[g.start_ns, g.end_ns, g.source, g.detail] for g in day_data.gaps],
        "gap_markers": day_data.gap_markers,
        "malformed_lines": day_data.malformed,
        "written_at": utc_now_iso(),
    }


@dg.asset(
    group_name="golden",
    partitions_def=DATE_MARKET_PARTITIONS,
    pool="golden",
    kinds={"parquet"},
    description=(
        "One UTC day of our own Binance recording (RLX_CAPTURE_DIR): checksums verified, "
        "depth-sequence and trade-id continuity checked, gap markers accounted for, written in "
        "the Crypto Lake schema under `$RLX_DATA_DIR/golden/lake/`."
    ),
)
def golden_samples(context: dg.AssetExecutionContext, rlx: RlxEnvironment) -> dg.MaterializeResult:
    day, exchange, symbol, market = partition_of(context)
    settings = rlx.settings()
    layout = rlx.layout()
    binance_symbol, binance_market = binance_instrument(exchange, symbol)
    capture_dir = settings.capture_root
    files = select_capture_files(capture_dir, binance_market, binance_symbol, day)
    if not files:
        raise dg.Failure(f"no capture files for {market} around {day} in {capture_dir}")
    building = layout.root / "golden" / f".building-{context.run.run_id}"
    shutil.rmtree(building, ignore_errors=True)
    try:
        # One pass over the day's files: the continuity analysis and the conversion of this
        # symbol and day read each message once, in receive order, in bounded memory.
        analysis = DayAnalysis(files, binance_market, binance_symbol, day)
        try:
            checksums = verify_checksums(files)
            convert_captures(
                files, building, market=binance_market, symbols={binance_symbol}, days={day},
                checksums=checksums, observer=analysis, trade_parts=True, log=context.log.debug,
            )  # fmt: skip
        except (GoldenError, ValueError) as error:
            raise dg.Failure(str(error)) from None
        day_data = analysis.result
        if not day_data.messages_by_stream:
            raise dg.Failure(f"the capture files hold no {binance_symbol} message of {day}")
        written = {}
        for table in (*LAKE_TABLES, TRADE_PARTS):
            relative = lake_relative_path(table, exchange, symbol, day)
            if (building / relative).is_file():
                target = golden_lake_root(layout) / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                commit_file(building / relative, target)
                written[table] = str(target.relative_to(layout.root))
    finally:
        shutil.rmtree(building, ignore_errors=True)
    report = golden_report(day_data, market, day, checksums)
    report["lake_files"] = written
    write_json(golden_report_path(layout, market, day), report)
    return dg.MaterializeResult(
        metadata={
            "messages_by_stream": dg.MetadataValue.json(report["messages_by_stream"]),
            "files": dg.MetadataValue.json(sorted(checksums)),
            "span_seconds": dg.MetadataValue.float(report["span_seconds"]),
            "gaps": dg.MetadataValue.int(len(day_data.gaps)),
            "gap_seconds": dg.MetadataValue.float(report["gap_seconds"]),
            "gap_ratio": dg.MetadataValue.float(report["gap_ratio"]),
            "lake_files": dg.MetadataValue.json(written),
        }
    )


@dg.asset_check(
    asset=golden_samples,
    name="gap_ratio",
    blocking=True,
    partitions_def=DATE_MARKET_PARTITIONS,
    description="The day's recording has gaps on at most RLX_MAX_GAP_RATIO (0.01%) of its span.",
)
def golden_gap_ratio(context: dg.AssetCheckExecutionContext, rlx: RlxEnvironment):
    day, _, _, market = partition_of(context)
    threshold = rlx.settings().max_gap_ratio
    return gap_ratio_check_result(rlx.layout(), market, day, threshold)


def gap_ratio_check_result(layout: DataLayout, market: str, day: dt.date, threshold: float):
    path = golden_report_path(layout, market, day)
    if not fetch(path):
        return missing_evidence(f"no golden report at {path}")
    report = read_json(path)
    passed = report["gap_ratio"] <= threshold
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "summary": dg.MetadataValue.text(
                f"{len(report['gaps'])} gaps, {report['gap_seconds']:.3f}s of "
                f"{report['span_seconds']:.1f}s ({report['gap_ratio']:.5%}); "
                f"threshold {threshold:.4%}"
            ),
            "gap_ratio": dg.MetadataValue.float(report["gap_ratio"]),
            "threshold": dg.MetadataValue.float(threshold),
            "gaps": dg.MetadataValue.json(report["gaps"][:20]),
        },
    )
