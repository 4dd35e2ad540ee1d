"""`$RLX_DATA_DIR/acquisition_status.json`: partitions per state, for scripts and dashboards."""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from rlx_assets.lake.manifest import manifest_entry
from rlx_assets.lake.quarantine import quarantine_report
from rlx_assets.markets import market_key
from rlx_assets.staging import DataLayout, fetch, list_files, utc_now_iso
from rlx_assets.validation.certificate import certificate_path
from rlx_assets.validation.zones import REQUIRED_TABLES, read_json, write_json

STATES = ("raw", "ready", "quarantined", "certified")
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


def compute_status(layout: DataLayout) -> dict[str, Any]:
    raw = _partitions_with_files(layout.zone("raw"), ".parquet")
    ready = _partitions_with_files(layout.zone("ready"), ".parquet")
    quarantined = _partitions_with_files(layout.zone("quarantine"), "report.json")
    certified = {(p.stem, p.parent.name) for p in list_files(layout.root / "certificates", ".json")}
    partitions: dict[str, dict[str, Any]] = {}
    for date, market in sorted(set(raw) | set(ready) | set(quarantined) | certified):
        held = quarantined.get((date, market), set())
        held_under_certificate: list[str] = []
        if held and (date, market) in certified:
            day = dt.date.fromisoformat(date)
            held_under_certificate = quarantined_under_certificate(layout, market, day, held)
        if held and not held_under_certificate:
            state = "quarantined"
        elif (date, market) in certified:
            state = "certified"
        elif ready.get((date, market), set()) >= set(REQUIRED_TABLES):
            state = "ready"
        else:
            state = "raw"
        summary = state
        if held_under_certificate:
            tables = ", ".join(held_under_certificate)
            summary = f"certified (vendor's current file quarantined: {tables})"
        partitions[f"{date}|{market}"] = {
            "state": state,
            "summary": summary,
            "raw_tables": sorted(raw.get((date, market), ())),
            "ready_tables": sorted(ready.get((date, market), ())),
            "quarantined_tables": sorted(held),
            "vendor_file_quarantined": held_under_certificate,
        }
    counts = {s: sum(1 for p in partitions.values() if p["state"] == s) for s in STATES}
    return {"updated_at": utc_now_iso(), "counts": counts, "partitions": partitions}


def refresh_status(layout: DataLayout) -> dict[str, Any]:
    status = compute_status(layout)
    write_json(layout.root / "acquisition_status.json", status)
    return status
