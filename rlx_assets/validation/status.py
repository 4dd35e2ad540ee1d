"""`$RLX_DATA_DIR/acquisition_status.json`: partitions per state, for scripts and dashboards."""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rlx_assets.config import load_settings
from rlx_assets.lake.manifest import manifest_entry, vendor_file_path
from rlx_assets.lake.quarantine import quarantine_report
from rlx_assets.markets import market_key
from rlx_assets.staging import DataLayout, fetch, list_files, update_json, utc_now_iso
from rlx_assets.validation.certificate import certificate_path
from rlx_assets.validation.figures import failed_gates, gate_figures, gate_reports
from rlx_assets.validation.gates import GATES
from rlx_assets.validation.zones import REQUIRED_TABLES, read_json

STATES = ("raw", "ready", "quarantined", "certified")
STATUS_FILE = "acquisition_status.json"
_LAYOUT = re.compile(
    r"(?P<table>[^/]+)/exchange=(?P<ex>[^/]+)/symbol=(?P<sym>[^/]+)/dt=(?P<dt>[^/]+)/"
)


def _partitions_with_files(zone: Path, suffix: str) -> dict[tuple[str, str], set[str]]:
    found: dict[tuple[str, str], set[str]] = defaultdict(set)
    for path in list_files(zone, suffix):
        match = _LAYOUT.match(path.relative_to(zone).as_posix())
        if match:
            found[(match["dt"], market_key(match["ex"], match["sym"]))].add(match["table"])
    return found


def quarantined_under_certificate(
    layout: DataLayout, market: str, day: dt.date, tables: set[str]
) -> list[str]:
    """Of a partition's quarantined tables, those whose certificate is still in force on the
    last good file (a bad republish: restored in raw, manifest and ready, the certificate
    untouched) while the vendor's current file waits in quarantine."""
    path = certificate_path(layout, market, day)
    if not fetch(path):
        return []
    certified = read_json(path).get("tables", {})
    held = []
    for table in sorted(tables):
        good = certified.get(table, {}).get("sha256")
        report = quarantine_report(layout, table, market, day) or {}
        entry = manifest_entry(layout, table, market, day) or {}
        if good is not None and report.get("sha256") != good and entry.get("sha256") == good:
            held.append(table)
    return held if len(held) == len(tables) else []


def partition_record(
    layout: DataLayout, market: str, date: str, raw: set[str], ready: set[str],
    held: set[str], certified: bool,
) -> dict[str, Any]:  # fmt: skip
    """One partition's entry from the tables found in each zone and its certificate."""
    held_under_certificate: list[str] = []
    if held and certified:
        day = dt.date.fromisoformat(date)
        held_under_certificate = quarantined_under_certificate(layout, market, day, held)
    if held and not held_under_certificate:
        state = "quarantined"
    elif certified:
        state = "certified"
    elif ready >= set(REQUIRED_TABLES):
        state = "ready"
    else:
        state = "raw"
    summary = state
    if held_under_certificate:
        tables = ", ".join(held_under_certificate)
        summary = f"certified (vendor's current file quarantined: {tables})"
    return {
        "state": state,
        "summary": summary,
        "raw_tables": sorted(raw),
        "ready_tables": sorted(ready),
        "quarantined_tables": sorted(held),
        "vendor_file_quarantined": held_under_certificate,
        **validation_record(layout, market, dt.date.fromisoformat(date), state, held),
    }


def validation_record(
    layout: DataLayout, market: str, day: dt.date, state: str, held: set[str]
) -> dict[str, Any]:
    """gates_run, gates_passed, completeness (see `figures.py`) and what blocks the partition:
    a failed gate in force, or a vendor object quarantined (e.g. unreadable) with no gate
    report saying why; nothing blocks a certified partition (its certificate stands)."""
    reports = gate_reports(layout, market, day)
    figures = gate_figures(reports)
    blocking: list[dict[str, str]] = []
    if state != "certified":
        blocking = [
            {"table": f["table"], "issue": f"{f['gate']} gate failed", "summary": f["summary"]}
            for f in failed_gates(reports)
        ]
        failed_tables = {b["table"] for b in blocking}
        for table in sorted(held - failed_tables):
            report = quarantine_report(layout, table, market, day) or {}
            blocking.append(
                {
                    "table": table,
                    "issue": "vendor object quarantined",
                    "summary": str(report.get("problem") or report.get("error") or ""),
                }
            )
    return {
        "gates_run": figures["gates_run"],
        "gates_passed": figures["gates_passed"],
        "completeness": figures["completeness"],
        "blocking": blocking,
    }


def configured_scope() -> tuple[list[dt.date], list[str]]:
    """The partitions' days (RLX_START_DATE to yesterday, UTC) and markets (RLX_MARKETS)."""
    settings = load_settings()
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    days = (yesterday - settings.start_date).days + 1
    return [settings.start_date + dt.timedelta(days=n) for n in range(max(days, 0))], list(
        settings.markets
    )


def overview(
    partitions: dict[str, dict[str, Any]], scope: tuple[list[dt.date], list[str]]
) -> dict[str, Any]:
    """Progress over the configured days x markets, the validation pass rate and completeness of
    the partitions gated there, and the blocking issues with their partitions."""
    days, markets = scope
    keys = [f"{day.isoformat()}|{market}" for market in markets for day in days]
    present = [partitions[k] for k in keys if k in partitions]
    certified = sum(p["state"] == "certified" for p in present)
    gated = [p for p in present if p.get("gates_run") == len(GATES) * len(REQUIRED_TABLES)]
    passed = sum(p["gates_passed"] == p["gates_run"] for p in gated)
    scores = [p["completeness"] for p in gated if p.get("completeness") is not None]
    issues: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        for block in partitions.get(key, {}).get("blocking", []):
            issues[f"{block['table']}: {block['issue']}"].append(key)
    return {
        "progress": {
            "start_date": days[0].isoformat() if days else None,
            "end_date": days[-1].isoformat() if days else None,
            "markets": markets,
            "partitions": len(keys),
            "acquired": len(present),
            "certified": certified,
            "fraction_certified": certified / len(keys) if keys else None,
        },
        "validation": {
            "partitions_gated": len(gated),
            "partitions_passed": passed,
            "pass_rate": passed / len(gated) if gated else None,
            "gates_run": sum(p.get("gates_run", 0) for p in present),
            "gates_passed": sum(p.get("gates_passed", 0) for p in present),
        },
        "completeness": {
            "partitions": len(scores),
            "mean": sum(scores) / len(scores) if scores else None,
            "min": min(scores) if scores else None,
        },
        "blocking_issues": [
            {"issue": issue, "partitions": where} for issue, where in sorted(issues.items())
        ],
    }


def with_counts(
    partitions: dict[str, dict[str, Any]], scope: tuple[list[dt.date], list[str]] | None = None
) -> dict[str, Any]:
    """The status file's content; `scope` (days, markets) defaults to the configured ones."""
    partitions = dict(sorted(partitions.items()))
    counts = {s: sum(1 for p in partitions.values() if p["state"] == s) for s in STATES}
    return {
        "updated_at": utc_now_iso(),
        "counts": counts,
        **overview(partitions, scope or configured_scope()),
        "partitions": partitions,
    }


def compute_status(layout: DataLayout) -> dict[str, Any]:
    """Every partition's entry, from a listing of every zone and certificate (the whole data
    root: for a rebuild or a calendar, not once per step)."""
    raw = _partitions_with_files(layout.zone("raw"), ".parquet")
    ready = _partitions_with_files(layout.zone("ready"), ".parquet")
    quarantined = _partitions_with_files(layout.zone("quarantine"), "report.json")
    certified = {(p.stem, p.parent.name) for p in list_files(layout.root / "certificates", ".json")}
    return with_counts(
        {
            f"{date}|{market}": partition_record(
                layout,
                market,
                date,
                raw.get((date, market), set()),
                ready.get((date, market), set()),
                quarantined.get((date, market), set()),
                (date, market) in certified,
            )  # fmt: skip
            for date, market in set(raw) | set(ready) | set(quarantined) | certified
        }
    )


# the zones a partition's entry is made from: zone -> (files that count, its entry's field)
ZONES = {
    "raw": (".parquet", "raw_tables"),
    "ready": (".parquet", "ready_tables"),
    "quarantine": ("report.json", "quarantined_tables"),
}

# What acquiring or gating one table's file may change: its raw file and its quarantine (ready is
# written by validation alone).
TABLE_STEP_ZONES = ("raw", "quarantine")


def partition_status(
    layout: DataLayout, market: str, day: dt.date, tables: Iterable[str] = REQUIRED_TABLES,
    zones: Iterable[str] = tuple(ZONES), known: dict[str, Any] | None = None,
) -> dict[str, Any] | None:  # fmt: skip
    """One partition's entry from listings of that partition's directories only (its cost does
    not grow with the history); None when the data root holds nothing of it. With ``known``
    (its entry so far), only the directories of ``tables`` in ``zones`` are listed (what a step
    changed), the others are as ``known`` has them."""
    listed = {(zone, table) for zone in zones for table in tables}
    if known is not None and any(field not in known for _, field in ZONES.values()):
        known = None  # an entry of an older layout: list everything
    found: dict[str, set[str]] = {}
    for zone, (suffix, field) in ZONES.items():
        found[zone] = set()
        for table in REQUIRED_TABLES:
            if known is not None and (zone, table) not in listed:
                present = table in known.get(field, ())
            else:
                directory = layout.zone(zone) / vendor_file_path(table, market, day).parent
                present = bool(list_files(directory, suffix))
            if present:
                found[zone].add(table)
    raw, ready, held = found["raw"], found["ready"], found["quarantine"]
    certified = fetch(certificate_path(layout, market, day))
    if not (raw or ready or held or certified):
        return None
    return partition_record(layout, market, day.isoformat(), raw, ready, held, certified)


def refresh_status(
    layout: DataLayout, market: str, day: dt.date, tables: Iterable[str] = REQUIRED_TABLES,
    zones: Iterable[str] = tuple(ZONES),
) -> dict[str, Any]:  # fmt: skip
    """Update the partition's entry of `acquisition_status.json` (the first update of a data
    root without one lists the whole root once); concurrent runs lose none of each other's.
    A step passes the ``tables`` and ``zones`` whose files it may have changed: only those
    directories are listed again (the partition's first entry lists all of them)."""
    key = f"{day.isoformat()}|{market}"
    tables, zones = tuple(tables), tuple(zones)

    def change(status: dict[str, Any] | None) -> dict[str, Any]:
        partitions = dict((status or compute_status(layout))["partitions"])
        record = partition_status(layout, market, day, tables, zones, partitions.get(key))
        if record is None:
            partitions.pop(key, None)
        else:
            partitions[key] = record
        return with_counts(partitions)

    return update_json(layout.root / STATUS_FILE, change)
