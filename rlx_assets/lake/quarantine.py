"""The quarantine zone: where a vendor file that must not be used is kept, with a report, and
the log of what entered and left it. Acquisition quarantines an object that arrived whole but
is unreadable; the gates (``validation.zones.quarantine``) one that failed them. Imports
``staging`` and ``lake.manifest`` only.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

from rlx_assets.lake.manifest import vendor_file_path
from rlx_assets.staging import (
    DataLayout,
    atomic_write,
    fetch,
    log_partition_event,
    write_json,
)


def quarantine_dir(layout: DataLayout, table: str, market: str, day: dt.date) -> Path:
    return layout.zone("quarantine") / vendor_file_path(table, market, day).parent


def quarantine_report(layout: DataLayout, table: str, market: str, day: dt.date) -> dict | None:
    """The report of the file held in quarantine for this table day, None if nothing is."""
    path = quarantine_dir(layout, table, market, day) / "report.json"
    return json.loads(path.read_text()) if fetch(path) else None


def quarantined_version(
    layout: DataLayout, table: str, market: str, day: dt.date, version: str
) -> dict | None:
    """The quarantine report when the vendor object `version` is the one held in quarantine
    (its `source_version`: set only when the bytes held are that object's), else None."""
    report = quarantine_report(layout, table, market, day)
    return report if report is not None and report.get("source_version") == version else None


def log_quarantine_event(
    layout: DataLayout, event: str, table: str, market: str, day: dt.date, **fields: object
) -> None:
    log_partition_event(layout, "quarantine", event, table, market, day, **fields)


def quarantine_unreadable_object(
    layout: DataLayout, table: str, market: str, day: dt.date, received: Path, report: dict
) -> Path:
    """Keep a vendor object that arrived whole and verified but is not a readable Crypto Lake
    file in quarantine (never in raw) with a report saying what is wrong."""
    target = quarantine_dir(layout, table, market, day)
    name = vendor_file_path(table, market, day).name
    with atomic_write(target / name) as handle, open(received, "rb") as source:
        shutil.copyfileobj(source, handle)
    write_json(target / "report.json", {"table": table, "market": market, **report})
    log_quarantine_event(
        layout, "quarantined", table, market, day,
        reason="unreadable vendor object", uri=report.get("source_uri"),
        error=report.get("error"),
    )  # fmt: skip
    return target
