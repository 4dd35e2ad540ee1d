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

from rlx_assets.lake.manifest import (
    append_manifest_entry,
    manifest_entry,
    manifest_entry_of,
    vendor_file_path,
)
from rlx_assets.lake.quarantine import log_quarantine_event, quarantine_dir
from rlx_assets.staging import (
    DataLayout,
    FileChangedError,
    atomic_write,
    fetch,
    keep_version,
    list_files,
    log_partition_event,
    remove_tree,
    sha256_of,
    share_file,
    utc_now_iso,
    write_json,
)

REQUIRED_TABLES = ("trades", "book", "book_delta_v2")


class CertificateError(Exception):
    """A certified input is missing or changed since certification: refuse to read it."""


def raw_path(layout: DataLayout, table: str, market: str, day: dt.date) -> Path:
    return layout.zone("raw") / vendor_file_path(table, market, day)


def ready_path(layout: DataLayout, table: str, market: str, day: dt.date) -> Path:
    return layout.zone("ready") / vendor_file_path(table, market, day)


def gate_report_path(layout: DataLayout, table: str, market: str, day: dt.date) -> Path:
    return layout.zone("validating") / market / day.isoformat() / f"{table}.gates.json"


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def record_gate_report(
    layout: DataLayout, table: str, market: str, day: dt.date, report: dict
) -> Path:
    path = gate_report_path(layout, table, market, day)
    keep_version(layout, path)  # the last good report is restored if a republish fails
    write_json(path, report)
    return path


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


def release_from_quarantine(layout: DataLayout, table: str, market: str, day: dt.date) -> bool:
    """A re-fetched file that passed every gate leaves quarantine (the log keeps the history)."""
    if not remove_tree(quarantine_dir(layout, table, market, day)):
        return False
    log_quarantine_event(layout, "released", table, market, day)
    return True


def log_ready_event(
    layout: DataLayout, event: str, table: str, market: str, day: dt.date, **fields: object
) -> None:
    """`logs/ready.jsonl`: every replacement and restoration of a gated file, old and new."""
    log_partition_event(layout, "ready", event, table, market, day, **fields)


def source_version_of(
    layout: DataLayout, table: str, market: str, day: dt.date, sha256: str | None
) -> str | None:
    entry = manifest_entry_of(layout, table, market, day, sha256) if sha256 else None
    return entry.get("source_version") if entry else None


def promote_to_ready(
    layout: DataLayout, table: str, market: str, day: dt.date, sha256: str
) -> Path:
    """Put the gated raw file into the ready zone atomically, verifying it is the gated one.

    Both the gated raw file and the ready file it replaces are kept under `staging/versions/`
    first, so a vendor republish never loses what was certified and a later bad republish can
    be rolled back to this version. Ready and versions share the raw file's bytes
    (`share_file`: a hard link, a server-side copy on S3), never a copy made here.
    """
    source = raw_path(layout, table, market, day)
    dest = ready_path(layout, table, market, day)
    if not fetch(source):
        raise CertificateError(f"{source} is missing; materialise raw_{table} again")
    keep_version(layout, source)
    previous = sha256_of(layout, dest) if fetch(dest) else None
    if previous is not None and previous != sha256:
        kept = keep_version(layout, dest)
        log_ready_event(
            layout, "replaced", table, market, day,
            old_sha256=previous, new_sha256=sha256,
            old_source_version=source_version_of(layout, table, market, day, previous),
            new_source_version=source_version_of(layout, table, market, day, sha256),
            kept=str(kept.relative_to(layout.root)) if kept else None,
        )  # fmt: skip
    try:
        share_file(layout, source, dest, sha256)
    except FileChangedError:
        raise CertificateError(
            f"{source} changed after its gates passed (SHA-256 differs); not promoted"
        ) from None
    return dest


def kept_version_path(layout: DataLayout, path: Path, sha256: str) -> Path:
    """Where `keep_version` stored the version of `path` whose content has this SHA-256."""
    return layout.versions / path.relative_to(layout.root) / f"{sha256}{path.suffix}"


def last_good_gate_report(
    layout: DataLayout, table: str, market: str, day: dt.date, sha256: str
) -> dict | None:
    """The latest kept gate report in which the file with this SHA-256 passed every gate."""
    kept_dir = layout.versions / gate_report_path(layout, table, market, day).relative_to(
        layout.root
    )
    candidates = []
    for path in list_files(kept_dir, ".json"):
        if fetch(path):
            report = read_json(path)
            if report.get("sha256") == sha256 and all(g["passed"] for g in report["gates"]):
                candidates.append(report)
    return max(candidates, key=lambda r: r.get("checked_at") or "", default=None)


def restore_last_good(
    layout: DataLayout, table: str, market: str, day: dt.date, run_id: str
) -> str | None:
    """After a republished file failed its gates (and was quarantined), put the last good
    version back: raw from `staging/versions/`, a manifest entry with action "restored", and
    the gate report in which it passed, so raw, manifest, gate report, ready and certificate
    agree again. Returns the restored SHA-256, or None when there was no good version."""
    ready = ready_path(layout, table, market, day)
    if not fetch(ready):
        return None  # never promoted: nothing good to go back to
    good = sha256_of(layout, ready)
    raw = raw_path(layout, table, market, day)
    bad = sha256_of(layout, raw) if fetch(raw) else None
    if bad == good:
        return None
    kept = kept_version_path(layout, raw, good)
    origin = kept if fetch(kept) else ready  # ready holds the same bytes, verified below
    try:
        share_file(layout, origin, raw, good)
    except FileChangedError:
        raise CertificateError(
            f"{origin} is not the last good {table} file; not restored"
        ) from None
    keep_version(layout, raw)
    rejected = manifest_entry(layout, table, market, day) or {}
    previous = manifest_entry_of(layout, table, market, day, good) or {
        "table": table, "market": market, "date": day.isoformat(), "sha256": good,
        "path": str(raw.relative_to(layout.root)), "size": raw.stat().st_size,
    }  # fmt: skip
    append_manifest_entry(
        layout,
        table,
        market,
        day,
        {
            **previous,
            "time": utc_now_iso(),
            "run_id": run_id,
            "action": "restored",
            "replaced_sha256": bad,
            "replaced_source_version": rejected.get("source_version"),
            "restored_from": str(origin.relative_to(layout.root)),
        },
    )
    good_report = last_good_gate_report(layout, table, market, day, good)
    if good_report is not None:
        record_gate_report(layout, table, market, day, good_report)
    log_ready_event(
        layout, "restored", table, market, day,
        rejected_sha256=bad, restored_sha256=good,
        restored_from=str(origin.relative_to(layout.root)),
        gate_report_restored=good_report is not None,
    )  # fmt: skip
    return good
