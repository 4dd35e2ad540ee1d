"""Golden-sample capture files: rotating gzip JSON-lines files, finalized with a sha256 sidecar.

Naming scheme (all times UTC, periods aligned to multiples of the rotation period since the epoch)::

    <out>/<market>_<symbols>_<period start>.jsonl.gz          the finished file
    <out>/<market>_<symbols>_<period start>.jsonl.gz.sha256   "<hex>  <file name>\\n" (sha256sum -c)
    <out>/<market>_<symbols>_<period start>.jsonl.gz.partial  the file being written

* ``market``: ``spot`` or ``usdm``.
* ``symbols``: the lower-case symbol set, sorted, joined with ``-`` (``btcusdt-ethusdt``). A set
  whose joined name would exceed 64 characters is written ``<n>symbols-<8 hex of sha1>``.
* ``period start``: ``%Y%m%dT%H`` when the period is a whole number of hours (the default, one
  hour: ``spot_btcusdt-ethusdt_20240808T23.jsonl.gz``), ``%Y%m%dT%H%M`` for whole minutes,
  ``%Y%m%dT%H%M%S`` otherwise.
* If a file of that name (finished, partial or sidecar) already exists, e.g. after a restart within
  the same period, ``.1``, ``.2``, … is inserted before ``.jsonl.gz``; nothing is overwritten.
  Order files by their ``capture_ns`` content, not by name.

A line goes to the file of the period holding its ``capture_ns``, except that no period is ever
reopened: a line stamped before the open (or last finished) period, after a clock step or a long
queue delay, goes into the open (or next) file. A file is finished when a line of a later period
arrives, when the wall clock is past the period's end by a grace (``rotate_if_due``: 2 s, or a
quarter period if shorter, so lines still queued at the boundary land in their file), or on
``close()``: the gzip stream is closed and fsynced, the sidecar is written, then ``.partial`` is
renamed away. So a finished file always has its sidecar, and a crash
leaves at most one ``.partial`` file, readable up to its last ``flush()`` (a gzip stream without
its trailer). The writer is synchronous: the recorder runs it on its own thread.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import os
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from rlx_assets.staging import sha256_file

SUFFIX = ".jsonl.gz"
PARTIAL_SUFFIX = ".partial"
SIDECAR_SUFFIX = ".sha256"
_MAX_SYMBOLS_NAME = 64
_NS = 1_000_000_000


def symbols_label(symbols: Iterable[str]) -> str:
    """The symbol-set part of a file name: sorted, lower case, ``-``-joined (hashed when long)."""
    names = sorted({s.strip().lower() for s in symbols if s.strip()})
    if not names:
        raise ValueError("a capture file needs at least one symbol")
    joined = "-".join(names)
    if len(joined) <= _MAX_SYMBOLS_NAME:
        return joined
    digest = hashlib.sha1(joined.encode()).hexdigest()[:8]
    return f"{len(names)}symbols-{digest}"


def period_stamp(period_start_ns: int, period_s: int) -> str:
    start = dt.datetime.fromtimestamp(period_start_ns // _NS, tz=dt.UTC)
    if period_s % 3600 == 0:
        return start.strftime("%Y%m%dT%H")
    if period_s % 60 == 0:
        return start.strftime("%Y%m%dT%H%M")
    return start.strftime("%Y%m%dT%H%M%S")


def capture_file_stem(
    market: str, symbols: Iterable[str], period_start_ns: int, period_s: int
) -> str:
    """``spot_btcusdt-ethusdt_20240808T23`` (without ``.jsonl.gz``)."""
    return f"{market}_{symbols_label(symbols)}_{period_stamp(period_start_ns, period_s)}"


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL_SUFFIX)


def verify_sidecar(path: Path) -> bool:
    """True when ``path``'s ``.sha256`` sidecar names this file and matches its content."""
    path = Path(path)
    try:
        text = sidecar_path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    hexdigest, sep, name = text.rstrip("\n").partition("  ")
    return bool(sep) and name == path.name and hexdigest == sha256_file(path)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _HashingFile:
    """A write-only file that hashes what goes through it, so finishing needs no re-read."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


class RotatingGzipWriter:
    """Write capture lines into period files (see the module docstring); not thread-safe.

    ``on_finalized(path, sha256_hex, lines)`` is called after each file is finished.
    """

    def __init__(
        self,
        out_dir: Path | str,
        market: str,
        symbols: Iterable[str],
        period_s: int = 3600,
        *,
        compresslevel: int = 6,
        on_finalized: Callable[[Path, str, int], None] | None = None,
    ):
        if period_s <= 0:
            raise ValueError("the rotation period must be a positive number of seconds")
        self.out_dir = Path(out_dir)
        self.market = market
        self.symbols = tuple(symbols)
        self.period_s = int(period_s)
        self._period_ns = self.period_s * _NS
        self._compresslevel = compresslevel
        self._on_finalized = on_finalized
        self._grace_ns = min(2 * _NS, self._period_ns // 4)
        self._period: int | None = None
        self._next_period = 0  # periods before this one are finished: never reopened
        self._final: Path | None = None
        self._hashing: _HashingFile | None = None
        self._gz: gzip.GzipFile | None = None
        self._lines = 0
        self._dirty = False
        self.files_written: list[Path] = []

    @property
    def current_partial(self) -> Path | None:
        return partial_path(self._final) if self._final is not None else None

    def write(self, capture_ns: int, line: bytes) -> None:
        period = max(capture_ns // self._period_ns, self._next_period)
        if self._gz is None:
            self._open(period)
        elif period > self._period:  # type: ignore[operator]
            self._finalize()
            self._open(period)
        self._gz.write(line)  # type: ignore[union-attr]
        self._lines += 1
        self._dirty = True

    def rotate_if_due(self, now_ns: int) -> None:
        """Finish the open file once the wall clock has left its period (plus the grace), even
        when no new line arrives."""
        if self._gz is not None and (now_ns - self._grace_ns) // self._period_ns > self._period:  # type: ignore[operator]
            self._finalize()

    def flush(self) -> None:
        """Push everything written so far to the OS as a complete deflate block (crash safety)."""
        if self._gz is not None and self._dirty:
            self._gz.flush(zlib.Z_SYNC_FLUSH)
            self._dirty = False

    def close(self) -> None:
        """Finish the open file, if any."""
        if self._gz is not None:
            self._finalize()

    def abort(self) -> None:
        """Close without finishing: the ``.partial`` file stays, marked as incomplete."""
        gz, hashing = self._gz, self._hashing
        self._gz = self._hashing = self._final = None
        self._period = None
        if gz is None or hashing is None:
            return
        # Keep what can be kept readable; the disk may be the reason we abort.
        with contextlib.suppress(OSError, ValueError):
            gz.flush(zlib.Z_SYNC_FLUSH)
        with contextlib.suppress(OSError):
            hashing.raw.close()

    def _open(self, period: int) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        start_ns = period * self._period_ns
        stem = capture_file_stem(self.market, self.symbols, start_ns, self.period_s)
        n = 0
        while True:
            name = f"{stem}{SUFFIX}" if n == 0 else f"{stem}.{n}{SUFFIX}"
            final = self.out_dir / name
            if not any(p.exists() for p in (final, partial_path(final), sidecar_path(final))):
                try:
                    raw = open(partial_path(final), "xb")  # noqa: SIM115 - closed in _finalize
                    break
                except FileExistsError:  # another recorder took it in between
                    pass
            n += 1
        self._hashing = _HashingFile(raw)
        self._gz = gzip.GzipFile(
            filename="",
            mode="wb",
            fileobj=self._hashing,  # type: ignore[arg-type]
            compresslevel=self._compresslevel,
            mtime=start_ns // _NS,
        )
        self._period, self._final, self._lines, self._dirty = period, final, 0, False

    def _finalize(self) -> None:
        gz, hashing, final, lines = self._gz, self._hashing, self._final, self._lines
        assert gz is not None and hashing is not None and final is not None
        self._next_period = self._period + 1  # type: ignore[operator]
        self._gz = self._hashing = self._final = None
        self._period = None
        gz.close()  # writes the gzip trailer through the hashing file; leaves the raw file open
        hashing.raw.flush()
        os.fsync(hashing.raw.fileno())
        hashing.raw.close()
        hexdigest = hashing.sha256.hexdigest()
        # Sidecar first, then the rename: a finished name without its sidecar never exists.
        sidecar = sidecar_path(final)
        tmp = sidecar.with_name(sidecar.name + PARTIAL_SUFFIX)
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(f"{hexdigest}  {final.name}\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, sidecar)
        os.replace(partial_path(final), final)
        _fsync_dir(self.out_dir)
        self.files_written.append(final)
        if self._on_finalized is not None:
            self._on_finalized(final, hexdigest, lines)
