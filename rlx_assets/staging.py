"""The data root's zones, atomic file writes, checksums and the append-only JSON-lines logs."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ZONES = ("raw", "validating", "ready", "quarantine")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class DataLayout:
    """Where everything lives under `$RLX_DATA_DIR`."""

    root: Path

    @property
    def staging(self) -> Path:
        return self.root / "staging"

    def zone(self, name: str) -> Path:
        if name not in ZONES:
            raise ValueError(f"unknown staging zone {name!r}; zones are {', '.join(ZONES)}")
        return self.staging / name

    @property
    def incoming(self) -> Path:
        """Downloads in progress: beside the zones (same filesystem, so rename is atomic)."""
        return self.staging / ".incoming"

    @property
    def manifest_dir(self) -> Path:
        return self.root / "logs" / "manifest"

    @property
    def download_log_dir(self) -> Path:
        return self.root / "logs" / "download"

    @property
    def lakeapi_cache(self) -> Path:
        return self.root / "cache" / "lakeapi"

    def ensure_zones(self) -> None:
        for name in ZONES:
            self.zone(name).mkdir(parents=True, exist_ok=True)
        self.incoming.mkdir(parents=True, exist_ok=True)


def lake_relative_path(table: str, exchange: str, symbol: str, day: dt.date) -> Path:
    """The vendor's layout below the lake root, reused for every zone."""
    return Path(
        table,
        f"exchange={exchange}",
        f"symbol={symbol}",
        f"dt={day.isoformat()}",
        "1.snappy.parquet",
    )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_write(
    dest: Path,
    tmp_dir: Path | None = None,
    before_commit: Callable[[Path], None] | None = None,
) -> Iterator[IO[bytes]]:
    """Yield a temp file; on success fsync, run `before_commit(tmp)` and rename it onto `dest`.

    On any error (including one raised by `before_commit`) the temp file is removed and `dest`
    keeps its previous content, so readers never see a partial or unverified file.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    directory = tmp_dir or dest.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=directory)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; published files are readable by all
        if before_commit is not None:
            before_commit(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(dest: Path, data: bytes) -> None:
    with atomic_write(dest) as handle:
        handle.write(data)


def append_json_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON object as a line; O_APPEND keeps concurrent writers' lines whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
