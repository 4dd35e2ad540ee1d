"""The quarantine zone: where a vendor file that must not be used is kept, with a report, and
the log of what entered and left it. Acquisition quarantines an object that arrived whole but
is unreadable; the gates (``validation.zones.quarantine``) one that failed them. Imports
``staging`` and ``lake.manifest`` only.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from rlx_assets.lake.manifest import vendor_file_path
from rlx_assets.staging import (
    DataLayout,
    atomic_write,
    log_partition_event,
    write_json,
)


def quarantine_dir(layout: DataLayout, table: str, market: str, day: dt.date) -> Path:
    return layout.zone("quarantine") / vendor_file_path(table, market, day).parent


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
