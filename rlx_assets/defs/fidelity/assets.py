"""The fidelity report: how faithful the reconstruction is, against the vendor and our recording."""

import base64
import datetime as dt
from pathlib import Path

import dagster as dg

from rlx_assets.book.store import read_summary, reconstruction_dir
from rlx_assets.capture.golden import GoldenDay
from rlx_assets.defs.golden.assets import golden_report_path, golden_samples
from rlx_assets.defs.partitions import DATE_MARKET_PARTITIONS, partition_of
from rlx_assets.defs.reconstruction.assets import reconstructed_stream
from rlx_assets.defs.reconstruction.checks import exceeded_anomalies
from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets.fidelity.report import build_fidelity_report
from rlx_assets.fidelity.thresholds import load_thresholds
from rlx_assets.lake.from_capture import TRADE_PARTS
from rlx_assets.staging import DataLayout, fetch, fetch_tree
from rlx_assets.validation.certificate import staleness, verified_certificate
from rlx_assets.validation.profiles import active_profile
from rlx_assets.validation.zones import CertificateError, raw_path, read_json, write_json

# Blocking: the stream must not be used. Warnings: distributional drift and integrity notes.
FIDELITY_CHECKS = {
    "book_agreement": ("Reconstructed top-20 equals the vendor's book rows.", True),
    "top_of_book_agreement": ("Best bid/ask equals our recording's bookTicker.", True),
    "distribution_drift": ("K-S tests and tail exponents: reconstruction vs golden.", False),
    "stream_integrity": ("Trade agreement, sequence gaps and origin-time validity.", False),
}


def report_dir(layout: DataLayout, market: str, day: dt.date) -> Path:
    return layout.root / "reports" / market / day.isoformat()


# What a report was built from (certificate and reconstruction): stale once either changed.
BUILT_FROM_NAME = "built_from.json"


def golden_inputs(layout: DataLayout, capture_root: Path, market: str, day: dt.date):
    """Golden lake files, capture files and golden report of the partition, if golden_samples
    ran for it (the report and the golden-only ``trade_parts`` spare parsing the captures)."""
    path = golden_report_path(layout, market, day)
    if not fetch(path):
        return None, None, None
    report = read_json(path)
    files = {table: layout.root / rel for table, rel in report.get("lake_files", {}).items()}
    files = {table: file for table, file in files.items() if fetch(file)}
    captures = [capture_root / name for name in report.get("files", {})]
    return files, [c for c in captures if c.is_file()], report


def uncertified_inputs(layout: DataLayout, market: str, day: dt.date) -> dict[str, Path]:
    """The raw vendor files of a partition without a valid certificate (what the gates saw)."""
    files = {t: raw_path(layout, t, market, day) for t in ("trades", "book", "book_delta_v2")}
    return {t: p for t, p in files.items() if fetch(p)}


def check_results(report: dict) -> list[dg.AssetCheckResult]:
    """Fold the report's per-metric verdicts into the four checks a user reads."""
    checks = report["checks"]
    not_computed = {n["metric"]: n["reason"] for n in report["not_computed"]}
    groups = {
        "book_agreement": ["book_agreement"],
        "top_of_book_agreement": ["top_of_book_agreement"],
        "distribution_drift": [k for k in checks if k.startswith(("ks.", "tail."))],
        "stream_integrity": [
            k for k in checks if k.startswith(("origin_time", "sequence_gaps", "trade", "aggtrade"))
        ],
    }
    results = []
    figures = report.get("figures") or {}
    for name, members in groups.items():
        _, blocking = FIDELITY_CHECKS[name]
        evaluated = {m: checks[m] for m in members if m in checks}
        # identity checks (both sides from one source) are shown but are not evidence
        identity = {m: figures[m]["independent_reason"] for m in evaluated
                    if not checks[m].get("independent", True)}  # fmt: skip
        evidence = {m: c for m, c in evaluated.items() if m not in identity}
        missing = {m: r for m, r in not_computed.items() if m in members or m.startswith(name)}
        failed = [m for m, c in evidence.items() if not c["passed"]]
        computable = bool(evidence)
        passed = computable and not failed
        # A blocking metric that cannot be computed is reported, not hidden: it fails as a
        # warning (nothing wrong was measured, but nothing was shown either).
        severity = (
            dg.AssetCheckSeverity.ERROR if blocking and computable else dg.AssetCheckSeverity.WARN
        )
        where = [f"{m} first bad minute {evidence[m]['first_bad_minute']}" for m in failed
                 if evidence[m].get("first_bad_minute")]  # fmt: skip
        summary = (
            f"failed: {', '.join(failed)}" + (f" ({'; '.join(where)})" if where else "")
            if failed
            else "all within thresholds"
            if computable
            else f"identity check only, not evidence: {'; '.join(sorted(set(identity.values())))}"
            if identity
            else f"not computed: {'; '.join(sorted(set(missing.values())))}"
        )
        if identity and computable:
            summary += f" (identity checks not counted: {', '.join(sorted(identity))})"
        results.append(
            dg.AssetCheckResult(
                check_name=name,
                passed=passed,
                severity=severity,
                metadata={
                    "summary": dg.MetadataValue.text(summary),
                    "metrics": dg.MetadataValue.json(evaluated),
                    "identity_checks": dg.MetadataValue.json(identity),
                    "not_computed": dg.MetadataValue.json(missing),
                },
            )
        )
    return results


def markdown_with_plots(directory: Path) -> str:
    """fidelity.md with its PNG links inlined, so the Dagster UI shows the plots."""
    text = (directory / "fidelity.md").read_text()
    for png in sorted(directory.glob("*.png")):
        encoded = base64.b64encode(png.read_bytes()).decode()
        text = text.replace(f"({png.name})", f"(data:image/png;base64,{encoded})")
    return text


@dg.asset(
    group_name="fidelity",
    partitions_def=DATE_MARKET_PARTITIONS,
    deps=[reconstructed_stream, golden_samples],
    pool="fidelity",
    kinds={"json", "markdown"},
    check_specs=[
        dg.AssetCheckSpec(name, asset="fidelity_report", blocking=blocking, description=text)
        for name, (text, blocking) in FIDELITY_CHECKS.items()
    ],
    description=(
        "How faithful the reconstruction is: book and top-of-book agreement, trade agreement, "
        "K-S tests, tail exponents, gaps — `$RLX_DATA_DIR/reports/{market}/{date}/`."
    ),
)
def fidelity_report(context: dg.AssetExecutionContext, rlx: RlxEnvironment) -> dg.MaterializeResult:
    day, _, _, market = partition_of(context)
    layout = rlx.layout()
    reconstruction = reconstruction_dir(layout, market, day)
    # The report is the diagnosis of a bad day too: a failed gate or a missing reconstruction
    # only costs the "reconstruction certified" verdict and the figures that need them.
    if not fetch_tree(reconstruction) or not (reconstruction / "summary.json").is_file():
        context.log.warning(f"{market} {day}: no reconstruction; lake vs golden only")
    try:
        certified = verified_certificate(layout, market, day)
    except CertificateError as error:
        certified = None
        vendor_files = uncertified_inputs(layout, market, day)
        if not vendor_files:
            raise dg.Failure(f"{error}; and no raw vendor file to diagnose") from None
        gates = {"passed": False, "summary": str(error)}
        context.log.warning(f"{error}: reporting on the raw files")
    else:
        vendor_files = certified.inputs
        gates = {"passed": True, "summary": "certificate verified"}
    summary = read_summary(layout, market, day) or {}
    # The reconstruction's own blocking gate, judged again: a report run alone after it failed
    # must not call the reconstruction certified.
    _, profile = active_profile(rlx.settings())
    if summary and gates["passed"] and (exceeded := exceeded_anomalies(summary, profile)):
        gates = {"passed": False, "summary": "reconstruction anomalies: " + "; ".join(exceeded)}
    # A reconstruction of an earlier certificate compared with today's files would locate
    # differences that are only the republish: rebuild it first.
    stale = certified is not None and staleness(
        summary.get("certificate_sha256"), certified.sha256, "reconstruction"
    )
    if summary and stale:
        raise dg.Failure(f"{market} {day}: {stale}; materialise reconstructed_stream first")
    golden_files, captures, golden = golden_inputs(layout, rlx.settings().capture_root, market, day)
    trade_parts = (golden_files or {}).pop(TRADE_PARTS, None)
    if golden_files is None:
        context.log.warning(f"{market} {day}: no golden samples; lake-internal metrics only")
    out = report_dir(layout, market, day)
    report = build_fidelity_report(
        market=market,
        day=day,
        reconstruction_dir=reconstruction,
        vendor_files=vendor_files,
        golden_files=golden_files,
        golden_captures=captures,
        golden_analysis=GoldenDay.from_report(golden) if golden and "gaps_ns" in golden else None,
        golden_trade_parts=trade_parts,
        out_dir=out,
        thresholds=load_thresholds(),
        upstream_gates=gates,
    )
    built_from = {
        "certificate_sha256": certified.sha256 if certified else None,
        "reconstruction_run_id": summary.get("run_id"),
    }
    write_json(out / BUILT_FROM_NAME, built_from)
    return dg.MaterializeResult(
        check_results=check_results(report),
        metadata={
            "report": dg.MetadataValue.path(str(out.relative_to(layout.root))),
            "summary": dg.MetadataValue.md(markdown_with_plots(out)),
            "book_agreement": _fraction(report["book_agreement"]),
            "top_of_book_agreement": _fraction(report["top_of_book_agreement"]),
            "trade_agreement": _fraction(report.get("trade_agreement")),
            "not_computed": dg.MetadataValue.json(report["not_computed"]),
            "reconstruction_certified": dg.MetadataValue.bool(report["reconstruction_certified"]),
            "discrepancies": dg.MetadataValue.json(
                {
                    k: (report.get(k) or {}).get("by_kind")
                    for k in ("discrepancies", "vendor_book_discrepancies")
                }  # fmt: skip
            ),
            "evidence": dg.MetadataValue.json(report.get("evidence", [])),
            "identity_checks": dg.MetadataValue.json(
                {n: report["figures"][n]["independent_reason"] for n in report["identity_checks"]}
            ),
        },
    )


def _fraction(value: float | None) -> dg.MetadataValue:
    return dg.MetadataValue.float(float("nan") if value is None else float(value))
