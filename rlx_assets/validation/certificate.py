"""The readiness certificate: the evidence that a partition may be used downstream.

Written as JSON under `$RLX_DATA_DIR/certificates/{market}/{date}.json`. Consumers call
`certified_inputs`, which refuses any ready file whose checksum is not the certified one.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from rlx_assets.config import PROJECT_ROOT
from rlx_assets.staging import DataLayout, fetch, sha256_file, utc_now_iso
from rlx_assets.validation.zones import (
    REQUIRED_TABLES,
    CertificateError,
    gate_report_path,
    read_json,
    ready_path,
)

CERTIFICATE_VERSION = 1


def certificate_path(layout: DataLayout, market: str, day: dt.date) -> Path:
    return layout.root / "certificates" / market / f"{day.isoformat()}.json"


def code_version() -> str:
    """Package version plus the git commit when running from a checkout."""
    version = metadata.version("rlx-assets")
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return f"{version}+{commit}"


def build_certificate(layout: DataLayout, market: str, day: dt.date) -> dict[str, Any]:
    """Collect gate reports and ready-file checksums; raise if anything required is missing."""
    tables: dict[str, Any] = {}
    problems = []
    for table in REQUIRED_TABLES:
        report_file = gate_report_path(layout, table, market, day)
        ready = ready_path(layout, table, market, day)
        has_report, is_ready = fetch(report_file), fetch(ready)
        if not has_report or not is_ready:
            missing = "no gate report" if not has_report else "not in ready zone"
            problems.append(f"{table}: {missing}")
            continue
        report = read_json(report_file)
        failed = [g["gate"] for g in report["gates"] if not g["passed"]]
        if failed:
            problems.append(f"{table}: gates failed {failed}")
        digest = sha256_file(ready)
        if digest != report["sha256"]:
            problems.append(f"{table}: ready file differs from the gated file")
        temporal = next(g for g in report["gates"] if g["gate"] == "temporal")["measured"]
        tables[table] = {
            "path": str(ready.relative_to(layout.root)),
            "sha256": digest,
            "size_bytes": ready.stat().st_size,
            "rows": report["rows"],
            "coverage": temporal.get("coverage"),
            "first_timestamp": temporal.get("first_timestamp"),
            "last_timestamp": temporal.get("last_timestamp"),
            "longest_silence_s": temporal.get("longest_silence_s"),
            "source_uri": report["source_uri"],
            "profile": report["profile"],
            "gates": report["gates"],
        }
    if problems:
        raise CertificateError(f"{market} {day}: cannot certify: " + "; ".join(problems))
    return {
        "certificate_version": CERTIFICATE_VERSION,
        "market": market,
        "date": day.isoformat(),
        "required_tables": list(REQUIRED_TABLES),
        "tables": tables,
        "code_version": code_version(),
        "issued_at": utc_now_iso(),
    }


def certificate_problems(layout: DataLayout, certificate: dict[str, Any]) -> list[str]:
    """Everything that makes a certificate no longer true of the ready zone."""
    problems = []
    for table in certificate.get("required_tables", REQUIRED_TABLES):
        entry = certificate.get("tables", {}).get(table)
        if entry is None:
            problems.append(f"{table}: missing from the certificate")
            continue
        path = layout.root / entry["path"]
        if not fetch(path):
            problems.append(f"{table}: certified file {path} is missing")
        elif sha256_file(path) != entry["sha256"]:
            problems.append(f"{table}: {path} changed after certification (SHA-256 differs)")
        failed = [g["gate"] for g in entry["gates"] if not g["passed"]]
        if failed:
            problems.append(f"{table}: certificate records failed gates {failed}")
    return problems


def load_certificate(layout: DataLayout, market: str, day: dt.date) -> dict[str, Any]:
    path = certificate_path(layout, market, day)
    if not fetch(path):
        raise CertificateError(f"{market} {day}: no readiness certificate at {path}")
    return read_json(path)


def certified_inputs(layout: DataLayout, market: str, day: dt.date) -> dict[str, Path]:
    """The ready files named by the certificate, after verifying their checksums."""
    certificate = load_certificate(layout, market, day)
    problems = certificate_problems(layout, certificate)
    if problems:
        raise CertificateError(f"{market} {day}: refusing certified inputs: " + "; ".join(problems))
    return {t: layout.root / e["path"] for t, e in certificate["tables"].items()}


def trailing_row_counts(
    layout: DataLayout, market: str, table: str, day: dt.date, days: int
) -> tuple[int, ...]:
    """Rows of `table` on up to `days` earlier certified days of the market, latest first."""
    counts = []
    for back in range(1, days + 1):
        path = certificate_path(layout, market, day - dt.timedelta(days=back))
        if fetch(path):
            entry = read_json(path)["tables"].get(table)
            if entry:
                counts.append(int(entry["rows"]))
    return tuple(counts)
