"""Where the vendor's daily files come from: the bundled sample lake, a local directory, or
Crypto Lake on S3. Every source answers the same three questions: may we read (access gate),
which object holds a table's day (locate), and its bytes (open). The choice by settings is
``configured_source.py``; this module imports ``config``, ``retry``, ``staging``,
``structured_log`` (``redact``) and (to build the sample lake) ``lake.from_capture`` only."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from rlx_assets.config import SAMPLE_CAPTURES_DIR, SAMPLE_LAKE_DIR
from rlx_assets.retry import TransientError
from rlx_assets.staging import lake_relative_path, sha256_file
from rlx_assets.structured_log import redact


class LakeError(Exception):
    """Base of every acquisition failure; messages are safe to show (no secrets)."""

    def __init__(self, message: str):
        super().__init__(redact(message))


class LakeAccessError(LakeError):
    """Credentials missing or rejected: permanent, names what to set."""


class NoDataError(LakeError):
    """The lake has no object for that table, market and day: permanent."""


class CorruptObjectError(LakeError):
    """The object arrived whole but is not a readable vendor file: permanent."""


class TransientLakeError(LakeError, TransientError):
    """A 5xx, timeout or reset: worth retrying with backoff. `kind` (one of RETRY_KINDS) says
    which, for the retries counted by error type."""

    kind = "other"

    def __init__(self, message: str, kind: str | None = None):
        super().__init__(message)
        if kind is not None:
            self.kind = kind


# The error types retries are counted by (`retries_<kind>` in the raw assets' metadata).
RETRY_KINDS = (
    "http_5xx", "throttled", "timeout", "connection", "corrupt_transfer", "object_changed", "other",
)  # fmt: skip


def retry_kind(error: BaseException) -> str:
    return error.kind if isinstance(error, TransientLakeError) else "other"


class CorruptTransferError(TransientLakeError):
    """The bytes received differ from what the server says the object is: retried."""

    kind = "corrupt_transfer"


class UnverifiedTransferError(LakeError):
    """The bytes arrived but nothing the server published can bind them to its object (no
    checksum, no usable ETag): permanent, nothing is stored unless the user opted in."""


class ObjectChangedError(TransientLakeError):
    """The object was replaced between listing/HEAD and GET (`IfMatch` failed): locate again."""

    kind = "object_changed"


class QuarantinedObjectError(CorruptObjectError):
    """The vendor's object arrived whole and verified but is unreadable; it was quarantined."""

    def __init__(self, message: str, quarantine_path: Path):
        super().__init__(message)
        self.quarantine_path = quarantine_path


@dataclass(frozen=True)
class LakeObject:
    table: str
    exchange: str
    symbol: str
    day: dt.date
    uri: str
    size: int
    # Changes whenever the object's bytes change (S3 ETag, or size+mtime of a local file).
    version: str
    # What the server says the bytes are, to check a transfer against (rlx_assets.lake.digest):
    # full-object checksums by algorithm (base64, as S3 sends them), the ETag when it is a
    # digest of the bytes (MD5 or multipart md5-of-md5s; not for SSE-KMS/SSE-C objects), and
    # the multipart part size when the server told it.
    checksums: tuple[tuple[str, str], ...] = ()
    etag: str | None = None
    part_size: int | None = None
    no_checksum_reason: str = "server gave no checksum"
    # A source that publishes digests of its objects (S3): bytes none of them binds are
    # unverified. A local lake publishes none: its files are copied, checked by size.
    needs_digest: bool = True


class LakeSource(Protocol):
    description: str

    def check_access(self) -> None: ...

    def locate(self, table: str, exchange: str, symbol: str, day: dt.date) -> LakeObject: ...

    def copy_to(self, obj: LakeObject, handle: BinaryIO, start: int = 0) -> int:
        """Write the object's bytes from offset `start` on into `handle`; return the byte
        count. A resumed copy (`start` > 0) is of the same version or raises
        ObjectChangedError."""
        ...


def copy_stream(source: BinaryIO, handle: BinaryIO, chunk: int = 1 << 20) -> int:
    copied = 0
    while block := source.read(chunk):
        handle.write(block)
        copied += len(block)
    return copied


def no_data_message(table: str, exchange: str, symbol: str, day: dt.date, where: str) -> str:
    return f"no {table} for {exchange}.{symbol} on {day.isoformat()} in the lake ({where})"


class LocalLakeSource:
    """A directory in the vendor's layout (the bundled sample lake is one)."""

    def __init__(self, root: Path, description: str | None = None):
        self.root = root
        self.description = description or f"local lake {root}"

    def check_access(self) -> None:
        if not self.root.is_dir():
            raise LakeAccessError(
                f"the lake directory {self.root} does not exist: set RLX_LAKE_URI to a directory "
                "in the Crypto Lake layout, to s3://BUCKET/PREFIX, or unset it for the sample lake"
            )

    def locate(self, table: str, exchange: str, symbol: str, day: dt.date) -> LakeObject:
        path = self.root / lake_relative_path(table, exchange, symbol, day)
        if not path.is_file():
            raise NoDataError(no_data_message(table, exchange, symbol, day, self.description))
        stat = path.stat()
        return LakeObject(
            table,
            exchange,
            symbol,
            day,
            path.as_uri(),
            stat.st_size,
            version=local_version(stat),
            no_checksum_reason="local directory: no vendor checksum",
            needs_digest=False,
        )

    def copy_to(self, obj: LakeObject, handle: BinaryIO, start: int = 0) -> int:
        path = Path(urllib.parse.unquote(urllib.parse.urlparse(obj.uri).path))
        with open(path, "rb") as source:
            source.seek(start)
            copied = copy_stream(source, handle)
        # A file rewritten while it was copied would give a mix of two versions.
        if local_version(path.stat()) != obj.version:
            raise ObjectChangedError(f"{obj.uri} changed while it was copied")
        return copied


def local_version(stat: os.stat_result) -> str:
    return f"{stat.st_size}:{stat.st_mtime_ns}"


_sample_lake_lock = threading.Lock()


def ensure_sample_lake(
    lake_dir: Path = SAMPLE_LAKE_DIR, captures_dir: Path = SAMPLE_CAPTURES_DIR
) -> Path:
    """Build the sample lake from the bundled real captures; rebuild it when the captures or
    the converter changed. Concurrent callers agree.

    Built beside its final place and renamed into it, so a half-built lake is never visible.
    """
    from rlx_assets.lake.from_capture import CONVERTER_VERSION, convert_captures

    captures = sorted(captures_dir.glob("*.gz"))
    if not captures:
        raise LakeAccessError(f"no sample captures in {captures_dir}: the checkout is incomplete")
    stamp = f"converter {CONVERTER_VERSION}\n" + "".join(
        f"{sha256_file(p)}  {p.name}\n" for p in captures
    )
    stamp_file = lake_dir / "BUILT"
    with _sample_lake_lock:
        if stamp_file.is_file() and stamp_file.read_text() == stamp:
            return lake_dir
        tag = f"{os.getpid()}-{threading.get_ident()}"
        staging = lake_dir.with_name(f".lake_build-{tag}")
        shutil.rmtree(staging, ignore_errors=True)
        convert_captures(captures, staging)
        (staging / "BUILT").write_text(stamp)
        if lake_dir.exists():  # a stale build: move it aside first
            stale = lake_dir.with_name(f".lake_stale-{tag}")
            with contextlib.suppress(FileNotFoundError):
                os.rename(lake_dir, stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(staging, lake_dir)
        except OSError:
            # Another process finished first: its lake is identical, keep it.
            shutil.rmtree(staging, ignore_errors=True)
            if not stamp_file.is_file():
                raise
        return lake_dir
