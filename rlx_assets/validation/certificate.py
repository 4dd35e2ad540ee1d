"""The readiness certificate: the evidence that a partition may be used downstream.

Written as JSON under `$RLX_DATA_DIR/certificates/{market}/{date}.json`. Consumers call
`certified_inputs` (or `verified_certificate`), which refuse the certificate unless all of
these hold:

* it names the partition it is read for (`market`, `date`, and every table's ready path): a
  certificate copied to another date or market path is refused;
* every certified SHA-256 equals the ready file's, the manifest's latest entry for the raw
  file (`logs/manifest/raw/...`) and the gate report's (`staging/validating/...`), and every
  recorded gate passed: editing a checksum in the certificate to match a tampered file is
  refused, naming the manifest and gate report it disagrees with;
* it is signed, when `RLX_CERTIFICATE_KEY` is set: certificates are then signed on write with
  HMAC-SHA256 over their canonical JSON (sorted keys, no whitespace, without the `signature`
  field) and unsigned, edited or forged ones are refused. Without the key a certificate says
  `"signed": false`; a signed certificate read without the key is refused (it cannot be
  verified). The key is read from the environment only (never a Dagster resource field, which
  the UI would show) and never written to a certificate, log, metadata or error.

Each table entry names the version it certifies: its SHA-256, the vendor's source version
(S3 ETag, or size:mtime of a local lake file) and the manifest entry it was acquired under,
which says how the bytes were bound to the vendor's object (`verified_by`); `transfer` sums
that up: `verified`, `size-only` (a local lake) or `unverified` (stored under
`RLX_ALLOW_UNVERIFIED_DOWNLOADS`: nothing the server published could check the bytes).
A replaced certificate is kept under `staging/versions/certificates/...` and logged in
`logs/certificates.jsonl`; a reconstruction records the SHA-256 of the certificate file it
was built from (`certificate_fingerprint`), so one built from a replaced certificate is stale.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from rlx_assets.config import PROJECT_ROOT, load_settings
from rlx_assets.lake.manifest import manifest_entry
from rlx_assets.staging import (
    DataLayout,
    append_json_line,
    fetch,
    keep_version,
    sha256_file,
    sha256_of,
    utc_now_iso,
)
from rlx_assets.validation.zones import (
    REQUIRED_TABLES,
    CertificateError,
    gate_report_path,
    read_json,
    ready_path,
    write_json,
)

CERTIFICATE_VERSION = 2
SIGNATURE_ALGORITHM = "HMAC-SHA256"
KEY_VARIABLE = "RLX_CERTIFICATE_KEY"
# What of the manifest entry the certificate quotes: enough to find the acquisition again.
MANIFEST_FIELDS = (
    "time", "run_id", "action", "sha256", "size", "source_uri", "source_version", "verified_by",
)  # fmt: skip


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
        digest = sha256_of(layout, ready)
        if digest != report["sha256"]:
            problems.append(f"{table}: ready file differs from the gated file")
        acquired = manifest_entry(layout, table, market, day) or {}
        if acquired.get("sha256") != digest:
            problems.append(f"{table}: ready file is not the raw file's latest manifest entry")
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
            "source_version": acquired.get("source_version"),
            "manifest_entry": {k: acquired.get(k) for k in MANIFEST_FIELDS},
            "gate_report": {
                "path": str(report_file.relative_to(layout.root)),
                "run_id": report.get("run_id"),
                "checked_at": report.get("checked_at"),
            },
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
        "transfer": transfer_verdict(
            [t["manifest_entry"]["verified_by"] or "" for t in tables.values()]
        ),
        "code_version": code_version(),
        "issued_at": utc_now_iso(),
    }


def transfer_verdict(verified_by: list[str]) -> str:
    """The weakest of the tables' `verified_by`; an entry that does not say is unverified."""
    kinds = {v.split(" (")[0] if v else "unverified" for v in verified_by}
    return next((k for k in ("unverified", "size-only") if k in kinds), "verified")


def certificate_key() -> bytes | None:
    """The signing key from `RLX_CERTIFICATE_KEY`, or None when it is unset or empty."""
    secret = load_settings().certificate_key
    value = secret.get_secret_value() if secret is not None else ""
    return value.encode() if value else None


def _canonical_bytes(certificate: dict[str, Any]) -> bytes:
    unsigned = {k: v for k, v in certificate.items() if k != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), default=str).encode()


def _signature(certificate: dict[str, Any], key: bytes) -> str:
    return hmac.new(key, _canonical_bytes(certificate), hashlib.sha256).hexdigest()


def seal_certificate(certificate: dict[str, Any], key: bytes | None) -> dict[str, Any]:
    """Mark the certificate signed or not and, with a key, sign it (HMAC-SHA256)."""
    sealed = {k: v for k, v in certificate.items() if k != "signature"}
    sealed["signed"] = key is not None
    if key is not None:
        sealed["signature"] = {"algorithm": SIGNATURE_ALGORITHM, "value": _signature(sealed, key)}
    return sealed


def signature_problems(certificate: dict[str, Any], key: bytes | None) -> list[str]:
    signature = certificate.get("signature")
    if key is None:
        if certificate.get("signed") or signature:
            return [f"the certificate is signed but {KEY_VARIABLE} is not set: cannot verify it"]
        return []
    if not certificate.get("signed") or not isinstance(signature, dict):
        return [
            f"unsigned certificate refused: {KEY_VARIABLE} is set, so certificates must be "
            "signed; certify the partition again"
        ]
    if signature.get("algorithm") != SIGNATURE_ALGORITHM or not hmac.compare_digest(
        str(signature.get("value", "")), _signature(certificate, key)
    ):
        return [
            "signature does not match the certificate's content (edited after signing, "
            f"or not signed with {KEY_VARIABLE}): refused"
        ]
    return []


def write_certificate(layout: DataLayout, certificate: dict[str, Any]) -> Path:
    """Write the certificate; the one it replaces is kept under `staging/versions/` and the
    replacement logged (old and new certificate SHA-256, every table's old and new file)."""
    day = dt.date.fromisoformat(certificate["date"])
    path = certificate_path(layout, certificate["market"], day)
    previous = read_json(path) if fetch(path) else None
    kept = keep_version(layout, path)
    previous_sha256 = sha256_file(path) if previous is not None else None
    write_json(path, certificate)
    changes = {
        table: {
            "old_sha256": (previous or {}).get("tables", {}).get(table, {}).get("sha256"),
            "new_sha256": entry["sha256"],
            "old_source_version": (previous or {})
            .get("tables", {})
            .get(table, {})
            .get("source_version"),
            "new_source_version": entry.get("source_version"),
        }
        for table, entry in certificate["tables"].items()
    }
    append_json_line(
        layout.root / "logs" / "certificates.jsonl",
        {
            "time": utc_now_iso(),
            "event": "replaced" if previous is not None else "issued",
            "market": certificate["market"],
            "date": certificate["date"],
            "old_certificate_sha256": previous_sha256,
            "new_certificate_sha256": sha256_file(path),
            "kept": str(kept.relative_to(layout.root)) if kept else None,
            "signed": certificate.get("signed"),
            "tables": changes,
        },
    )
    return path


def _short(sha256: object) -> str:
    return str(sha256)[:12] if sha256 else "none"


def partition_problems(
    layout: DataLayout, certificate: dict[str, Any], market: str, day: dt.date
) -> list[str]:
    """The certificate names this partition, and only this partition's ready files."""
    named = (certificate.get("market"), certificate.get("date"))
    problems = []
    if named != (market, day.isoformat()):
        problems.append(
            f"the certificate is for {named[0]} {named[1]}, not {market} {day.isoformat()}: "
            "a certificate is valid only for its own partition"
        )
    for table, entry in certificate.get("tables", {}).items():
        expected = str(ready_path(layout, table, market, day).relative_to(layout.root))
        if entry.get("path") != expected:
            problems.append(
                f"{table}: certifies {entry.get('path')}, not this partition's {expected}"
            )
    return problems


def evidence_problems(
    layout: DataLayout, table: str, entry: dict[str, Any], market: str, day: dt.date
) -> list[str]:
    """The certified checksum is the one the manifest and the gate report hold for the file."""
    problems = []
    certified = entry.get("sha256")
    acquired = manifest_entry(layout, table, market, day)
    if acquired is None:
        problems.append(f"{table}: no manifest entry for the raw file")
    elif acquired.get("sha256") != certified:
        problems.append(
            f"{table}: certified SHA-256 {_short(certified)} differs from the manifest's latest "
            f"entry {_short(acquired.get('sha256'))} ({acquired.get('action')} at "
            f"{acquired.get('time')})"
        )
    elif entry.get("source_version") and acquired.get("source_version") != entry["source_version"]:
        problems.append(
            f"{table}: certified source version {entry['source_version']} differs from the "
            f"manifest's {acquired.get('source_version')}"
        )
    report_file = gate_report_path(layout, table, market, day)
    if not fetch(report_file):
        problems.append(f"{table}: no gate report at {report_file}")
        return problems
    report = read_json(report_file)
    if report.get("sha256") != certified:
        problems.append(
            f"{table}: certified SHA-256 {_short(certified)} differs from the gate report's "
            f"{_short(report.get('sha256'))} ({report_file})"
        )
    elif failed := [g["gate"] for g in report.get("gates", []) if not g["passed"]]:
        problems.append(f"{table}: the gate report of the certified file records failed {failed}")
    return problems


def certificate_problems(
    layout: DataLayout,
    certificate: dict[str, Any],
    market: str | None = None,
    day: dt.date | None = None,
) -> list[str]:
    """Everything that makes a certificate no longer true of the ready zone, the manifest and
    the gate reports, or not a certificate of (market, day) (default: the one it names)."""
    market = market or certificate.get("market", "")
    day = day or dt.date.fromisoformat(certificate.get("date", "1970-01-01"))
    problems = signature_problems(certificate, certificate_key())
    problems += partition_problems(layout, certificate, market, day)
    # The tables to check come from the code, never from the file being checked; a table the
    # file lists besides them is checked too (verified_certificate hands out every listed one).
    if certificate.get("required_tables") != list(REQUIRED_TABLES):
        problems.append(
            f"required tables {certificate.get('required_tables')} differ from "
            f"{list(REQUIRED_TABLES)}"
        )
    listed = [t for t in certificate.get("tables", {}) if t not in REQUIRED_TABLES]
    for table in (*REQUIRED_TABLES, *listed):
        entry = certificate.get("tables", {}).get(table)
        if entry is None:
            problems.append(f"{table}: missing from the certificate")
            continue
        path = layout.root / entry["path"]
        if not fetch(path):
            problems.append(f"{table}: certified file {path} is missing")
        elif sha256_of(layout, path) != entry["sha256"]:
            problems.append(f"{table}: {path} changed after certification (SHA-256 differs)")
        failed = [g["gate"] for g in entry["gates"] if not g["passed"]]
        if failed:
            problems.append(f"{table}: certificate records failed gates {failed}")
        problems += evidence_problems(layout, table, entry, market, day)
    return problems


def load_certificate(layout: DataLayout, market: str, day: dt.date) -> dict[str, Any]:
    """The certificate file as written, unverified (use `verified_certificate` to rely on it)."""
    path = certificate_path(layout, market, day)
    if not fetch(path):
        raise CertificateError(f"{market} {day}: no readiness certificate at {path}")
    return read_json(path)


@dataclass(frozen=True)
class VerifiedCertificate:
    certificate: dict[str, Any]
    sha256: str  # of the certificate file: what a reconstruction records it was built from
    inputs: dict[str, Path]


def verified_certificate(layout: DataLayout, market: str, day: dt.date) -> VerifiedCertificate:
    """The certificate in force for (market, day), verified; raises CertificateError naming
    every problem. The file is read once, so the fingerprint is of what was verified."""
    path = certificate_path(layout, market, day)
    if not fetch(path):
        raise CertificateError(f"{market} {day}: no readiness certificate at {path}")
    content = path.read_bytes()
    try:
        certificate = json.loads(content)
    except ValueError as error:
        raise CertificateError(f"{market} {day}: {path} is not valid JSON: {error}") from None
    problems = certificate_problems(layout, certificate, market, day)
    if problems:
        raise CertificateError(f"{market} {day}: refusing certified inputs: " + "; ".join(problems))
    inputs = {t: layout.root / e["path"] for t, e in certificate["tables"].items()}
    return VerifiedCertificate(certificate, hashlib.sha256(content).hexdigest(), inputs)


def certified_inputs(layout: DataLayout, market: str, day: dt.date) -> dict[str, Path]:
    """The ready files named by the certificate, after verifying it (see the module doc)."""
    return verified_certificate(layout, market, day).inputs


def certificate_fingerprint(layout: DataLayout, market: str, day: dt.date) -> str | None:
    """SHA-256 of the certificate file in force, or None when there is none."""
    path = certificate_path(layout, market, day)
    return sha256_file(path) if fetch(path) else None


def staleness(built_from: str | None, in_force: str | None, what: str) -> str | None:
    """Why an output built from certificate `built_from` is stale, or None when it is not."""
    if in_force is None:
        return f"no certificate in force for the {what}'s partition"
    if built_from is None:
        return f"the {what} does not record the certificate it was built from"
    if built_from != in_force:
        return (
            f"the {what} was built from certificate {_short(built_from)}, the certificate in "
            f"force is {_short(in_force)}: stale, to be built again"
        )
    return None


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
