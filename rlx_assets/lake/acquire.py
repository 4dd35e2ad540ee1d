"""Fetch one vendor file into the raw zone: verified, atomic, retried, logged, never twice."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow.compute as pc
import pyarrow.parquet as pq

from rlx_assets.lake.digest import TransferDigest, digest_file, verify_digest
from rlx_assets.lake.manifest import append_manifest_entry, manifest_entry, manifest_path_of
from rlx_assets.lake.quarantine import (
    quarantine_dir,
    quarantine_unreadable_object,
    quarantined_version,
)
from rlx_assets.lake.sources import (
    CorruptObjectError,
    CorruptTransferError,
    LakeObject,
    LakeSource,
    ObjectChangedError,
    QuarantinedObjectError,
    UnverifiedTransferError,
)
from rlx_assets.lake.transfer_stats import TransferStats
from rlx_assets.retry import RetryPolicy, with_retries
from rlx_assets.staging import (
    DataLayout,
    append_json_line,
    atomic_write,
    fetch,
    keep_version,
    lake_relative_path,
    remember_sha256,
    remove_orphan_partials,
    sha256_of,
    utc_now_iso,
)
from rlx_assets.structured_log import log_event, partition_fields, redact


@dataclass(frozen=True)
class RawFile:
    """One stored vendor file and the evidence about it (also the manifest entry)."""

    table: str
    market: str
    date: str
    path: str
    sha256: str
    size: int
    rows: int
    first_timestamp: int | None
    last_timestamp: int | None
    source_uri: str
    source_version: str
    action: str  # "downloaded" or "reused"
    # How the bytes were bound to the vendor's object: "crc32-checksum", "crc64nvme-checksum",
    # ..., "md5-etag", "multipart-etag" (joined by "+"); "size-only (<why>)" for a local lake;
    # "unverified (<why>)" when nothing could bind them and the user opted in to keep them.
    verified_by: str = ""
    # Set when this download replaced a different stored version (vendor republished).
    previous_sha256: str | None = None
    previous_source_version: str | None = None


@dataclass(frozen=True)
class ParquetFacts:
    rows: int
    first_timestamp: int | None
    last_timestamp: int | None


def read_parquet_facts(path: Path, what: str) -> ParquetFacts:
    """Row count and timestamp range; raises CorruptObjectError if it is not readable Parquet."""
    try:
        parquet = pq.ParquetFile(path)
        if "timestamp" not in parquet.schema_arrow.names:
            raise CorruptObjectError(f"{what} has no 'timestamp' column: not a Crypto Lake file")
        timestamps = parquet.read(columns=["timestamp"]).column("timestamp")
    except CorruptObjectError:
        raise
    except Exception as error:  # noqa: BLE001 - pyarrow raises several types for bad files
        raise CorruptObjectError(f"{what} is not a readable Parquet file: {error}") from None
    bounds = pc.min_max(timestamps)
    first, last = bounds["min"].as_py(), bounds["max"].as_py()
    if not isinstance(first, int) or not isinstance(last, int):  # drifted dtype: the schema gate's
        first = last = None
    return ParquetFacts(parquet.metadata.num_rows, first, last)


class DownloadAudit:
    """Structured JSON lines under `logs/download/`, one file per UTC day of activity; each is
    also the event `download.<event>` of the structured log."""

    def __init__(self, layout: DataLayout, run_id: str, obj_label: dict[str, str]):
        self.layout = layout
        self.run_id = run_id
        self.label = obj_label

    def write(self, event: str, **fields: object) -> None:
        now = dt.datetime.now(dt.UTC)
        record = {"time": utc_now_iso(), "event": event, "run_id": self.run_id, **self.label}
        record.update({k: redact(v) if isinstance(v, str) else v for k, v in fields.items()})
        append_json_line(self.layout.download_log_dir / f"{now.date().isoformat()}.jsonl", record)
        partition = partition_fields(self.label["market"], self.label["date"])
        facts = {k: v for k, v in record.items() if k not in ("time", "event")}
        log_event(f"download.{event}", **{**partition, **facts})


@dataclass(frozen=True)
class StoredCopy:
    """What the raw zone holds for a partition, judged against the manifest and the source.

    state: "absent"; "current" (the recorded version, bytes re-verified: reusable);
    "republished" (the source's version differs from the recorded one, or nothing recorded);
    "damaged" (the recorded version, but the bytes no longer match).
    """

    state: str
    sha256: str | None = None
    source_version: str | None = None
    verified_by: str | None = None
    problem: str | None = None


def judge_stored_copy(
    layout: DataLayout,
    dest: Path,
    entry: dict | None,
    obj: LakeObject,
    allow_unverified: bool = False,
) -> StoredCopy:
    """A stored file is trusted only after its bytes are checked again, against the manifest's
    SHA-256 and against the server's own digests of the object (ETag/checksums)."""
    if not fetch(dest):
        return StoredCopy("absent")
    recorded = entry.get("source_version") if entry else None
    if entry is None or recorded != obj.version:
        return StoredCopy("republished", sha256_of(layout, dest), recorded)
    digest = digest_file(dest, obj)
    if digest.sha256_hex != entry["sha256"]:
        problem = f"SHA-256 {digest.sha256_hex} differs from the manifest's {entry['sha256']}"
        return StoredCopy("damaged", digest.sha256_hex, recorded, problem=problem)
    try:
        verified_by = verify_digest(obj, digest, allow_unverified)
    except (CorruptTransferError, UnverifiedTransferError) as error:
        return StoredCopy("damaged", digest.sha256_hex, recorded, problem=str(error))
    return StoredCopy("current", digest.sha256_hex, recorded, verified_by)


def partial_label(table: str, market: str, day: dt.date) -> str:
    """Names a download's partial file in `staging/.incoming/` (see `atomic_write`)."""
    return f"{table}.{market}.{day.isoformat()}"


def acquire_raw_file(
    source: LakeSource,
    layout: DataLayout,
    table: str,
    exchange: str,
    symbol: str,
    day: dt.date,
    *,
    run_id: str,
    policy: RetryPolicy,
    allow_unverified: bool = False,
    log: Callable[[str], None] = lambda _msg: None,
    stats: TransferStats | None = None,
) -> RawFile:
    """Store the vendor's file for (table, market, day) byte-for-byte in the raw zone.

    The access gate runs first and nothing under `staging/` is touched before it passed. Every
    request (access check, listing, HEAD, GET) is retried under `policy`. A stored copy is
    reused only after its bytes are verified again. The version held in quarantine is known
    bad: it is not downloaded again (QuarantinedObjectError). A new download lands in
    `staging/.incoming/`; a transfer cut short resumes from where it stopped (HTTP Range,
    pinned to the version). The whole file is verified against the server's checksum or ETag
    and replaces the stored file only then (the previous version is kept when the vendor
    republished); bytes nothing can verify are refused (UnverifiedTransferError) unless
    `allow_unverified`. A vendor object that arrives intact but is unreadable goes to
    quarantine, never to raw. `stats`, if given, counts the requests, retries and bytes.
    """
    stats = stats if stats is not None else TransferStats()
    market = f"{exchange}.{symbol}"
    audit_label = {"table": table, "market": market, "date": day.isoformat()}
    audit = DownloadAudit(layout, run_id, audit_label)

    def on_retry(attempt: int, error: BaseException, sleep_s: float) -> None:
        stats.retried(error)
        audit.write("retry", attempt=attempt, error=str(error), sleep_s=round(sleep_s, 3))
        log(f"retry {attempt}/{policy.attempts} in {sleep_s:.1f}s after: {error}")

    with_retries(stats.counted(source.check_access), policy, on_retry)
    layout.ensure_zones()
    label = partial_label(table, market, day)
    for orphan in remove_orphan_partials(layout.incoming, label):
        audit.write("orphan_removed", path=str(orphan.relative_to(layout.root)))
        log(f"removed {orphan.name}, left in {layout.incoming} by a process that died")

    def locate() -> LakeObject:
        return source.locate(table, exchange, symbol, day)

    obj = with_retries(stats.counted(locate), policy, on_retry)
    if held := quarantined_version(layout, table, market, day, obj.version):
        audit.write("skip_quarantined", uri=obj.uri, version=obj.version, sha256=held["sha256"])
        raise QuarantinedObjectError(
            f"{obj.uri} (version {obj.version}, SHA-256 {held['sha256']}) is the object already "
            "quarantined: not downloaded again until the vendor publishes another version",
            quarantine_dir(layout, table, market, day),
        )
    dest = layout.zone("raw") / lake_relative_path(table, exchange, symbol, day)
    relative_str = manifest_path_of(table, market, day)

    stored = judge_stored_copy(
        layout, dest, manifest_entry(layout, table, market, day), obj, allow_unverified
    )
    if stored.state == "current":
        audit.write("reuse", uri=obj.uri, bytes=obj.size, verified_by=stored.verified_by)
        log(f"{relative_str} re-verified against {obj.uri} ({stored.verified_by}): reused")
        return _record(
            layout, dest, relative_str, obj, run_id, "reused", stored.verified_by, stored.sha256
        )
    if stored.state == "damaged":
        audit.write("stored_copy_damaged", uri=obj.uri, problem=stored.problem)
        log(f"{relative_str} no longer matches what was downloaded ({stored.problem}): fetching")

    transfer = _Transfer(obj)

    def before_commit(candidate: Path) -> None:
        transfer.stat = candidate.stat()  # of the bytes hashed in flight
        try:
            transfer.facts = read_parquet_facts(candidate, transfer.obj.uri)
        except CorruptObjectError as error:
            raise _quarantine(layout, transfer, candidate, error, run_id) from None
        if stored.state == "republished":
            transfer.kept = keep_version(layout, dest)

    def download_once(handle: BinaryIO) -> int:
        """One request: the rest of a partial transfer of the same version, else the whole
        object; then the whole file's digest decides."""
        if transfer.stale:  # the object changed after it was located: pin the new version
            transfer.obj, transfer.stale, transfer.digest = locate(), False, None
        digest = transfer.digest
        if digest is None or digest.size == 0:
            handle.seek(0)
            handle.truncate()
            digest = transfer.digest = TransferDigest(transfer.obj, handle)
        else:
            audit.write("resume", uri=transfer.obj.uri, from_byte=digest.size)
            log(f"resuming {transfer.obj.uri} from byte {digest.size} of {transfer.obj.size}")
        try:
            if digest.size < transfer.obj.size:
                source.copy_to(transfer.obj, digest, start=digest.size)
            transfer.verified_by = verify_digest(transfer.obj, digest, allow_unverified)
        except ObjectChangedError:
            transfer.stale, transfer.digest = True, None
            raise
        except CorruptTransferError:  # bad bytes somewhere: never resume from them
            transfer.digest = None
            raise
        return digest.size

    audit.write("start", uri=obj.uri, expected_bytes=obj.size)
    started = time.monotonic()
    try:
        with atomic_write(
            dest, tmp_dir=layout.incoming, before_commit=before_commit, label=label
        ) as handle:
            received = with_retries(stats.counted(lambda: download_once(handle)), policy, on_retry)
    except Exception as error:
        audit.write(
            "fail", uri=obj.uri, error=str(error), seconds=round(time.monotonic() - started, 3)
        )
        raise
    seconds = time.monotonic() - started
    stats.bytes_downloaded, stats.download_seconds = received, seconds
    obj = transfer.obj
    # The bytes were hashed as they arrived: the gates and the certificate need not read them
    # again only to hash them.
    remember_sha256(layout, dest, transfer.digest.sha256_hex, transfer.stat)
    audit.write(
        "finish", uri=obj.uri, bytes=received, seconds=round(seconds, 3),
        verified_by=transfer.verified_by,
    )  # fmt: skip
    log(f"downloaded {obj.uri} ({received} bytes in {seconds:.2f}s, {transfer.verified_by})")
    previous = {}
    if stored.state == "republished":
        previous = {
            "previous_sha256": stored.sha256,
            "previous_source_version": stored.source_version,
        }
        audit.write(
            "replace", uri=obj.uri, old_sha256=stored.sha256, new_sha256=transfer.digest.sha256_hex,
            old_etag=stored.source_version, new_etag=obj.version,
            kept=str(transfer.kept.relative_to(layout.root)) if transfer.kept else None,
        )  # fmt: skip
        log(f"{relative_str}: the vendor republished it; previous version kept at {transfer.kept}")
    return _record(
        layout, dest, relative_str, obj, run_id, "downloaded", transfer.verified_by,
        transfer.digest.sha256_hex, transfer.facts, **previous,
    )  # fmt: skip


@dataclass
class _Transfer:
    """One download's state across its attempts."""

    obj: LakeObject
    # Of the bytes in the partial file so far (a cut transfer resumes from `digest.size`).
    digest: TransferDigest | None = None
    verified_by: str = ""
    stale: bool = False
    kept: Path | None = None
    facts: ParquetFacts | None = None  # of the verified bytes, read once before the commit
    stat: os.stat_result | None = None  # of the verified file, just before the commit


def _quarantine(
    layout: DataLayout, transfer: _Transfer, received: Path, error: Exception, run_id: str
) -> QuarantinedObjectError:
    obj = transfer.obj
    report = {
        "date": obj.day.isoformat(),
        "problem": "the vendor's object arrived whole and verified but is not a readable "
        "Crypto Lake Parquet file",
        "error": str(error),
        "source_uri": obj.uri,
        "source_version": obj.version,
        "size": transfer.digest.size,
        "sha256": transfer.digest.sha256_hex,
        "verified_by": transfer.verified_by,
        "run_id": run_id,
        "quarantined_at": utc_now_iso(),
    }
    market = f"{obj.exchange}.{obj.symbol}"
    where = quarantine_unreadable_object(layout, obj.table, market, obj.day, received, report)
    return QuarantinedObjectError(
        f"{error}; the object (version {obj.version}, {transfer.digest.size} bytes, "
        f"{transfer.verified_by}) is kept in quarantine at {where} with report.json, "
        "not stored in raw",
        where,
    )


def _record(
    layout: DataLayout,
    dest: Path,
    relative: str,
    obj: LakeObject,
    run_id: str,
    action: str,
    verified_by: str,
    sha256: str,
    facts: ParquetFacts | None = None,
    previous_sha256: str | None = None,
    previous_source_version: str | None = None,
) -> RawFile:
    """The manifest entry of the stored file; `sha256` (and `facts`, when known) were taken from
    the very bytes committed, so the file is not read again for them."""
    facts = facts or read_parquet_facts(dest, relative)
    raw = RawFile(
        table=obj.table,
        market=f"{obj.exchange}.{obj.symbol}",
        date=obj.day.isoformat(),
        path=relative,
        sha256=sha256,
        size=dest.stat().st_size,
        rows=facts.rows,
        first_timestamp=facts.first_timestamp,
        last_timestamp=facts.last_timestamp,
        source_uri=obj.uri,
        source_version=obj.version,
        action=action,
        verified_by=verified_by,
        previous_sha256=previous_sha256,
        previous_source_version=previous_source_version,
    )
    entry = {"time": utc_now_iso(), "run_id": run_id, **asdict(raw)}
    append_manifest_entry(layout, obj.table, raw.market, obj.day, entry)
    return raw
