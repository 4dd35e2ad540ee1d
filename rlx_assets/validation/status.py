"""`$RLX_DATA_DIR/acquisition_status.json`: partitions per state, for scripts and dashboards."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from rlx_assets.markets import market_key
from rlx_assets.staging import DataLayout, list_files, utc_now_iso
from rlx_assets.validation.zones import REQUIRED_TABLES, write_json

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


def compute_status(layout: DataLayout) -> dict[str, Any]:
    raw = _partitions_with_files(layout.zone("raw"), ".parquet")
    ready = _partitions_with_files(layout.zone("ready"), ".parquet")
    quarantined = _partitions_with_files(layout.zone("quarantine"), "report.json")
    certified = {(p.stem, p.parent.name) for p in list_files(layout.root / "certificates", ".json")}
    partitions: dict[str, dict[str, Any]] = {}
    for date, market in sorted(set(raw) | set(ready) | set(quarantined) | certified):
        if (date, market) in quarantined:
            state = "quarantined"
        elif (date, market) in certified:
            state = "certified"
        elif ready.get((date, market), set()) >= set(REQUIRED_TABLES):
            state = "ready"
        else:
            state = "raw"
        partitions[f"{date}|{market}"] = {
            "state": state,
            "raw_tables": sorted(raw.get((date, market), ())),
            "ready_tables": sorted(ready.get((date, market), ())),
            "quarantined_tables": sorted(quarantined.get((date, market), ())),
        }
    counts = {s: sum(1 for p in partitions.values() if p["state"] == s) for s in STATES}
    return {"updated_at": utc_now_iso(), "counts": counts, "partitions": partitions}


def refresh_status(layout: DataLayout) -> dict[str, Any]:
    status = compute_status(layout)
    write_json(layout.root / "acquisition_status.json", status)
    return status
