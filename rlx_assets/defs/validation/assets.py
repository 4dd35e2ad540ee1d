"""Promotion of gated files to the ready zone, and the readiness certificate."""

import dagster as dg

from rlx_assets.defs.acquisition.assets import (
    RAW_TABLES,
    numeric_metadata,
    raw_book,
    raw_book_delta_v2,
    raw_trades,
)
from rlx_assets.defs.partitions import DATE_MARKET_PARTITIONS, log_partition_event, partition_of
from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets.staging import fetch
from rlx_assets.validation.certificate import (
    build_certificate,
    certificate_key,
    seal_certificate,
    write_certificate,
)
from rlx_assets.validation.figures import gate_figures
from rlx_assets.validation.status import refresh_status
from rlx_assets.validation.zones import (
    CertificateError,
    gate_report_path,
    promote_to_ready,
    read_json,
)


@dg.asset(
    group_name="validation",
    partitions_def=DATE_MARKET_PARTITIONS,
    deps=[raw_trades, raw_book, raw_book_delta_v2],
    pool="validation",
    kinds={"parquet"},
    description="The partition's three gated files, promoted atomically to `staging/ready/`.",
)
def validated_partition(
    context: dg.AssetExecutionContext, rlx: RlxEnvironment
) -> dg.MaterializeResult:
    day, _, _, market = partition_of(context)
    layout = rlx.layout()
    metadata: dict = {}
    reports = {}
    for table in RAW_TABLES:
        report_file = gate_report_path(layout, table, market, day)
        if not fetch(report_file):
            raise dg.Failure(
                f"{table} {market} {day}: no gate report; materialise raw_{table} first"
            )
        report = reports[table] = read_json(report_file)
        failed = [g["gate"] for g in report["gates"] if not g["passed"]]
        if failed:
            raise dg.Failure(f"{table} {market} {day}: gates failed {failed}; see the quarantine")
        try:
            ready = promote_to_ready(layout, table, market, day, report["sha256"])
        except CertificateError as error:
            raise dg.Failure(str(error)) from None
        metadata[f"{table}_rows"] = dg.MetadataValue.int(report["rows"])
        metadata[f"{table}_sha256"] = dg.MetadataValue.text(report["sha256"])
        metadata[f"{table}_path"] = dg.MetadataValue.path(str(ready.relative_to(layout.root)))
    refresh_status(layout, market, day, zones=("ready",))  # it changed the ready zone only
    rows = {t: metadata[f"{t}_rows"].value for t in RAW_TABLES}
    log_partition_event(context, "partition.promoted", rows=rows)
    return dg.MaterializeResult(metadata=metadata | validation_metadata(reports))


def validation_metadata(reports: dict[str, dict]) -> dict[str, dg.MetadataValue]:
    """gates_passed, gates_run and completeness (the partition's and each table's), plotted by
    partition on the asset page."""
    figures = gate_figures(reports)
    numbers = {
        "gates_passed": figures["gates_passed"],
        "gates_run": figures["gates_run"],
        "completeness": figures["completeness"],
        **{f"{t}_completeness": c for t, c in figures["table_completeness"].items()},
    }
    return numeric_metadata({k: v for k, v in numbers.items() if v is not None})


@dg.asset(
    group_name="validation",
    partitions_def=DATE_MARKET_PARTITIONS,
    deps=[validated_partition],
    pool="validation",
    kinds={"json"},
    description="JSON certificate: tables, coverage, volumes, checksums, gates, code version.",
)
def readiness_certificate(
    context: dg.AssetExecutionContext, rlx: RlxEnvironment
) -> dg.MaterializeResult:
    day, _, _, market = partition_of(context)
    layout = rlx.layout()
    try:
        certificate = seal_certificate(build_certificate(layout, market, day), certificate_key())
    except CertificateError as error:
        raise dg.Failure(str(error)) from None
    path = write_certificate(layout, certificate)  # the one it replaces is kept
    refresh_status(layout, market, day, tables=())  # the certificate alone changed
    tables = certificate["tables"]
    log_partition_event(
        context, "certificate.issued", path=str(path), signed=certificate["signed"],
        code_version=certificate["code_version"], transfer=certificate["transfer"],
        tables={t: {"rows": e["rows"], "coverage": e["coverage"], "sha256": e["sha256"]}
                for t, e in tables.items()},
    )  # fmt: skip
    return dg.MaterializeResult(
        metadata={
            "certificate": dg.MetadataValue.path(str(path)),
            "code_version": dg.MetadataValue.text(certificate["code_version"]),
            "profile": dg.MetadataValue.text(tables["trades"]["profile"]),
            "signed": dg.MetadataValue.bool(certificate["signed"]),
            "transfer": dg.MetadataValue.text(certificate["transfer"]),
            **{
                f"{t}_verified_by": dg.MetadataValue.text(str(e["manifest_entry"]["verified_by"]))
                for t, e in tables.items()
            },
            **{f"{t}_sha256": dg.MetadataValue.text(e["sha256"]) for t, e in tables.items()},
            **{
                f"{t}_source_version": dg.MetadataValue.text(str(e["source_version"]))
                for t, e in tables.items()
            },
            **{f"{t}_rows": dg.MetadataValue.int(e["rows"]) for t, e in tables.items()},
            **{f"{t}_coverage": dg.MetadataValue.float(e["coverage"]) for t, e in tables.items()},
        }
    )
