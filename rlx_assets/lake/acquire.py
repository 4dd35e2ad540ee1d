"""Fetch one vendor file into the raw zone: verified, atomic, retried, logged, never twice."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import pyarrow.compute as pc
import pyarrow.parquet as pq
import tenacity

from rlx_assets.lake.sources import (
    CorruptObjectError,
    LakeObject,
    LakeSource,
    TransientLakeError,
    redact,
)
from rlx_assets.staging import (
    DataLayout,
    append_json_line,
    atomic_write,
    fetch,
    lake_relative_path,
    read_json_lines,
    remove_orphan_partials,
    sha256_file,
    utc_now_iso,
)

T = TypeVar("T")
MANIFEST_NAME = "raw.jsonl"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    initial_s: float = 1.0
    max_s: float = 30.0


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
    return ParquetFacts(parquet.metadata.num_rows, first, last)


class DownloadAudit:
    """Structured JSON lines under `logs/download/`, one file per UTC day of activity."""

    def __init__(self, layout: DataLayout, run_id: str, obj_label: dict[str, str]):
        self.layout = layout
        self.run_id = run_id
        self.label = obj_label

    def write(self, event: str, **fields: object) -> None:
        now = dt.datetime.now(dt.UTC)
        record = {"time": utc_now_iso(), "event": event, "run_id": self.run_id, **self.label}
        record.update({k: redact(v) if isinstance(v, str) else v for k, v in fields.items()})
        append_json_line(self.layout.download_log_dir / f"{now.date().isoformat()}.jsonl", record)


def with_retries(
    action: Callable[[], T],
    policy: RetryPolicy,
    on_retry: Callable[[int, BaseException, float], None],
) -> T:
    """Run `action`, retrying TransientLakeError with exponential backoff and full jitter."""
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.attempts),
        wait=tenacity.wait_random_exponential(multiplier=policy.initial_s, max=policy.max_s),
        retry=tenacity.retry_if_exception_type(TransientLakeError),
        before_sleep=lambda state: on_retry(
            state.attempt_number, state.outcome.exception(), state.upcoming_sleep
        ),
        reraise=True,
    )
    return retrying(action)


def latest_manifest_entry(layout: DataLayout, relative_path: str) -> dict | None:
    entries = [
        e
        for e in read_json_lines(layout.manifest_dir / MANIFEST_NAME)
        if e["path"] == relative_path
    ]
    return entries[-1] if entries else None


def stored_copy_is_current(layout: DataLayout, dest: Path, relative: str, obj: LakeObject) -> bool:
    """The raw file is the one the manifest recorded for this exact source version."""
    entry = latest_manifest_entry(layout, relative)
    return (
        fetch(dest)
        and entry is not None
        and entry["source_version"] == obj.version
        and entry["size"] == dest.stat().st_size
        and entry["sha256"] == sha256_file(dest)
    )


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
    log: Callable[[str], None] = lambda _msg: None,
) -> RawFile:
    """Store the vendor's file for (table, market, day) byte-for-byte in the raw zone.

    The access gate runs first and nothing under the data root is touched before it passed.
    A stored copy that still matches the source is reused without downloading. A new download
    lands in `staging/.incoming/` and replaces the stored file only after it verified.
    """
    market = f"{exchange}.{symbol}"
    audit_label = {"table": table, "market": market, "date": day.isoformat()}
    source.check_access()
    layout.ensure_zones()
    audit = DownloadAudit(layout, run_id, audit_label)

    def on_retry(attempt: int, error: BaseException, sleep_s: float) -> None:
        audit.write("retry", attempt=attempt, error=str(error), sleep_s=round(sleep_s, 3))
        log(f"retry {attempt}/{policy.attempts} in {sleep_s:.1f}s after: {error}")

    obj = with_retries(lambda: source.locate(table, exchange, symbol, day), policy, on_retry)
    relative = lake_relative_path(table, exchange, symbol, day)
    dest = layout.zone("raw") / relative
    relative_str = str(Path("staging", "raw", relative))

    if stored_copy_is_current(layout, dest, relative_str, obj):
        audit.write("reuse", uri=obj.uri, bytes=obj.size)
        log(f"{relative_str} already verified against {obj.uri}: not downloaded again")
        return _record(layout, dest, relative_str, obj, run_id, "reused")

    def verify(candidate: Path) -> None:
        size = candidate.stat().st_size
        if size != obj.size:
            raise TransientLakeError(f"{obj.uri}: received {size} bytes, expected {obj.size}")
        read_parquet_facts(candidate, obj.uri)

    partial_label = f"{table}.{market}.{day.isoformat()}"  # names a killed download's file
    remove_orphan_partials(layout.incoming, partial_label)

    def download_once() -> int:
        with atomic_write(
            dest, tmp_dir=layout.incoming, before_commit=verify, label=partial_label
        ) as handle:
            return source.copy_to(obj, handle)

    audit.write("start", uri=obj.uri, expected_bytes=obj.size)
    started = time.monotonic()
    try:
        received = with_retries(download_once, policy, on_retry)
    except Exception as error:
        audit.write(
            "fail", uri=obj.uri, error=str(error), seconds=round(time.monotonic() - started, 3)
        )
        raise
    seconds = time.monotonic() - started
    audit.write("finish", uri=obj.uri, bytes=received, seconds=round(seconds, 3))
    log(f"downloaded {obj.uri} ({received} bytes in {seconds:.2f}s)")
    return _record(layout, dest, relative_str, obj, run_id, "downloaded")


def _record(
    layout: DataLayout, dest: Path, relative: str, obj: LakeObject, run_id: str, action: str
) -> RawFile:
    facts = read_parquet_facts(dest, relative)
    raw = RawFile(
        table=obj.table,
        market=f"{obj.exchange}.{obj.symbol}",
        date=obj.day.isoformat(),
        path=relative,
        sha256=sha256_file(dest),
        size=dest.stat().st_size,
        rows=facts.rows,
        first_timestamp=facts.first_timestamp,
        last_timestamp=facts.last_timestamp,
        source_uri=obj.uri,
        source_version=obj.version,
        action=action,
    )
    append_json_line(
        layout.manifest_dir / MANIFEST_NAME,
        {"time": utc_now_iso(), "run_id": run_id, **asdict(raw)},
    )
    return raw
