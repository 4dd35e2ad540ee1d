"""A partition's validation figures from its gate reports in force: gates passed and run,
completeness, and what blocks it. Shared by `validated_partition`'s metadata and the status file.

completeness of a table = seconds_covered / 86 400 x min(1, rows / min_rows), where
seconds_covered (the temporal gate's) is the seconds of the UTC day outside every silence longer
than the profile's max_silence_s; a partition's is the least of its three tables'.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from rlx_assets.staging import DataLayout, fetch
from rlx_assets.validation.zones import REQUIRED_TABLES, gate_report_path, read_json

SECONDS_PER_DAY = 86_400


def gate_reports(layout: DataLayout, market: str, day: dt.date) -> dict[str, dict[str, Any]]:
    """The gate reports in force of the partition's tables, by table (absent ones left out)."""
    reports = {}
    for table in REQUIRED_TABLES:
        path = gate_report_path(layout, table, market, day)
        if fetch(path):
            reports[table] = read_json(path)
    return reports


def table_completeness(report: dict[str, Any]) -> float | None:
    """None when the temporal gate measured no coverage (no timestamps, or a report written
    before seconds_covered was measured)."""
    temporal = next((g for g in report["gates"] if g["gate"] == "temporal"), {})
    covered = temporal.get("measured", {}).get("seconds_covered")
    rows = report.get("rows")
    if covered is None or rows is None:
        return None
    min_rows = max(int(report["thresholds"]["min_rows"]), 1)
    return covered / SECONDS_PER_DAY * min(1.0, rows / min_rows)


def failed_gates(reports: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    return [
        {"table": table, "gate": gate["gate"], "summary": gate["summary"]}
        for table, report in sorted(reports.items())
        for gate in report["gates"]
        if not gate["passed"]
    ]


def gate_figures(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """gates_run, gates_passed, each table's completeness and the partition's (None unless all
    three tables have one)."""
    tables = {t: table_completeness(r) for t, r in sorted(reports.items())}
    known = [c for c in tables.values() if c is not None]
    return {
        "gates_run": sum(len(r["gates"]) for r in reports.values()),
        "gates_passed": sum(g["passed"] for r in reports.values() for g in r["gates"]),
        "completeness": min(known) if len(known) == len(REQUIRED_TABLES) else None,
        "table_completeness": tables,
    }
