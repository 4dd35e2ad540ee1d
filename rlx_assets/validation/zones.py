"""Moving one partition through the zones: gate reports (validating), quarantine, ready.

A partition is one UTC day of one market; its three vendor tables move independently until
the readiness certificate binds them together.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

from rlx_assets.lake.acquire import MANIFEST_NAME
from rlx_assets.lake.markets import parse_market_key
from rlx_assets.staging import (
    DataLayout,
    append_json_line,
    atomic_write,
    atomic_write_bytes,
    fetch,
    lake_relative_path,
    read_json_lines,
    remove_tree,
    sha256_file,
    utc_now_iso,
)

REQUIRED_TABLES = ("trades", "book", "book_delta_v2")


class CertificateError(Exception):
    """A certified input is missing or changed since certification: refuse to read it."""


def relative_file(table: str, market: str, day: dt.date) -> Path:
    exchange, symbol = parse_market_key(market)
    return lake_relative_path(table, exchange, symbol, day)


def raw_path(layout: DataLayout, table: str, market: str, day: dt.date) -> Path:
    return layout.zone("raw") / relative_file(table, market, day)


def ready_path(layout: DataLayout, table: str, market: str, day: dt.date) -> Path:
    return layout.zone("ready") / relative_file(table, market, day)


def gate_report_path(layout: DataLayout, table: str, market: str, day: dt.date) -> Path:
    return layout.zone("validating") / market / day.isoformat() / f"{table}.gates.json"


def quarantine_dir(layout: DataLayout, table: str, market: str, day: dt.date) -> Path:
    return layout.zone("quarantine") / relative_file(table, market, day).parent


def manifest_entry(layout: DataLayout, table: str, market: str, day: dt.date) -> dict | None:
    """The latest manifest entry of the raw file: the checksum the gates hold it to."""
    relative = str(Path("staging", "raw", relative_file(table, market, day)))
    entries = [
        e for e in read_json_lines(layout.manifest_dir / MANIFEST_NAME) if e["path"] == relative
    ]
    return entries[-1] if entries else None


def write_json(path: Path, payload: dict[str, Any]) -> None:
    atomic_write_bytes(
        path, (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode()
    )


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def record_gate_report(
    layout: DataLayout, table: str, market: str, day: dt.date, report: dict
) -> Path:
    path = gate_report_path(layout, table, market, day)
    write_json(path, report)
    return path


def log_quarantine_event(
    layout: DataLayout, event: str, table: str, market: str, day: dt.date, **fields: object
) -> None:
    record = {"time": utc_now_iso(), "event": event, "table": table, "market": market}
    append_json_line(
        layout.root / "logs" / "quarantine.jsonl", {**record, "date": day.isoformat(), **fields}
    )


def quarantine(layout: DataLayout, table: str, market: str, day: dt.date, report: dict) -> Path:
    """Copy the failing raw file and its gate report into quarantine; ready stays untouched."""
    target = quarantine_dir(layout, table, market, day)
    source = raw_path(layout, table, market, day)
    if fetch(source):
        with atomic_write(target / source.name) as handle, open(source, "rb") as raw:
            shutil.copyfileobj(raw, handle)
    write_json(target / "report.json", report)
    failed = [g["gate"] for g in report["gates"] if not g["passed"]]
    log_quarantine_event(layout, "quarantined", table, market, day, failed=failed)
    return target


def quarantine_unreadable_object(
    layout: DataLayout, table: str, market: str, day: dt.date, received: Path, report: dict
) -> Path:
    """Keep a vendor object that arrived whole and verified but is not a readable Crypto Lake
    file in quarantine (never in raw) with a report saying what is wrong."""
    target = quarantine_dir(layout, table, market, day)
    name = relative_file(table, market, day).name
    with atomic_write(target / name) as handle, open(received, "rb") as source:
        shutil.copyfileobj(source, handle)
    write_json(target / "report.json", {"table": table, "market": market, **report})
    log_quarantine_event(
        layout, "quarantined", table, market, day,
        reason="unreadable vendor object", uri=report.get("source_uri"),
        error=report.get("error"),
    )  # fmt: skip
    return target


def release_from_quarantine(layout: DataLayout, table: str, market: str, day: dt.date) -> bool:
    """A re-fetched file that passed every gate leaves quarantine (the log keeps the history)."""
    if not remove_tree(quarantine_dir(layout, table, market, day)):
        return False
    log_quarantine_event(layout, "released", table, market, day)
    return True


def promote_to_ready(
    layout: DataLayout, table: str, market: str, day: dt.date, sha256: str
) -> Path:
    """Copy the gated raw file into the ready zone atomically, verifying it is the gated one."""
    source = raw_path(layout, table, market, day)
    dest = ready_path(layout, table, market, day)
    if not fetch(source):
        raise CertificateError(f"{source} is missing; materialise raw_{table} again")

    def same_as_gated(candidate: Path) -> None:
        if sha256_file(candidate) != sha256:
            raise CertificateError(
                f"{source} changed after its gates passed (SHA-256 differs); not promoted"
            )

    with atomic_write(dest, before_commit=same_as_gated) as handle, open(source, "rb") as raw:
        shutil.copyfileobj(raw, handle)
    return dest
