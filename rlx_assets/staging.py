"""The data root's zones, atomic file writes, checksums and the append-only JSON-lines logs.

When `RLX_DATA_DIR` is an `s3://` URI the data root is a local working copy bound to the
bucket (`rlx_assets.remote`): `atomic_write` uploads before it commits, the logs become one
object per record, and readers call `fetch` / `fetch_tree` before reading. With a local data
root these are plain filesystem operations.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from rlx_assets.config import load_settings
from rlx_assets.remote import bind, is_remote_uri, remote_of, write_local
from rlx_assets.temp_files import temp_name

if TYPE_CHECKING:
    from rlx_assets.config import RlxSettings

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
    def versions(self) -> Path:
        """Every replaced raw or ready file, content-addressed, so nothing certified is lost."""
        return self.staging / "versions"

    @property
    def manifest_dir(self) -> Path:
        return self.root / "logs" / "manifest"

    @property
    def download_log_dir(self) -> Path:
        return self.root / "logs" / "download"

    @property
    def lakeapi_cache(self) -> Path:
        return self.root / "cache" / "lakeapi"

    @property
    def sha256_cache(self) -> Path:
        """The SHA-256 of data files as last hashed, per inode (`sha256_of`): local only."""
        return self.root / "cache" / "sha256"

    def ensure_zones(self) -> None:
        for name in ZONES:
            self.zone(name).mkdir(parents=True, exist_ok=True)
        self.incoming.mkdir(parents=True, exist_ok=True)


def open_layout(settings: RlxSettings) -> DataLayout:
    """The data root of the settings; an `s3://` one is bound to its working copy first."""
    root = settings.data_root
    if is_remote_uri(settings.data_dir):
        bind(
            root, settings.data_dir, settings.data_s3_endpoint_url, settings.data_s3_profile,
            settings.retry_policy(),
            (settings.download_connect_timeout_s, settings.download_timeout_s),
        )  # fmt: skip
    return DataLayout(root)


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


class FileChangedError(Exception):
    """A file no longer has the content it was checked to have."""


# The SHA-256 of a data file is remembered for its inode with the file's size, mtime and ctime
# when hashed, and trusted again only while all of them are unchanged. Any write changes the
# ctime, and no one can set a ctime back short of setting the clock back (utime and chmod move
# it too), so an edited file is hashed again even when its mtime was put back. Our own links
# and renames also move it: the entry then follows the file it was taken for (same inode, size
# and mtime, checked just before: `remember_sha256`). No code writes a data file in place
# (every writer replaces the path: `atomic_write`, `share_file`), so a file only changes under
# a path by someone editing it. The entries are in the local working copy only (inode numbers mean
# nothing elsewhere; on S3 a replaced object comes down as a new file, a new inode). With
# RLX_CERTIFICATE_KEY set an entry is signed, so whoever can edit the data but not read the key
# cannot make an edited file pass for the certified one by writing an entry for it.
def _fingerprint(stat: os.stat_result) -> list[int]:
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def _entry_path(layout: DataLayout, stat: os.stat_result) -> Path:
    return layout.sha256_cache / f"{stat.st_dev}-{stat.st_ino}.json"


def _entry_mac(entry: dict[str, Any]) -> str | None:
    secret = load_settings().certificate_key
    key = secret.get_secret_value().encode() if secret is not None else b""
    canonical = json.dumps(entry, sort_keys=True).encode()
    return hmac.new(key, canonical, hashlib.sha256).hexdigest() if key else None


def _remembered_sha256(layout: DataLayout, stat: os.stat_result) -> str | None:
    try:
        stored = json.loads(_entry_path(layout, stat).read_bytes())
        entry = {"fingerprint": stored["fingerprint"], "sha256": stored["sha256"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if entry["fingerprint"] != _fingerprint(stat) or stored.get("mac") != _entry_mac(entry):
        return None
    return entry["sha256"]


def remember_sha256(layout: DataLayout, path: Path, sha256: str, hashed: os.stat_result) -> None:
    """Remember the SHA-256 of bytes read from `path` when it had the stat `hashed`, if it is
    still that file (inode, size, mtime): only our own link or rename since then moved its
    ctime, and the entry takes the ctime it has now."""
    now = path.stat()
    same = (now.st_dev, now.st_ino, now.st_size, now.st_mtime_ns) == (
        hashed.st_dev, hashed.st_ino, hashed.st_size, hashed.st_mtime_ns,
    )  # fmt: skip
    if same:
        entry = {"fingerprint": _fingerprint(now), "sha256": sha256}
        write_local(_entry_path(layout, now), json_bytes({**entry, "mac": _entry_mac(entry)}))


def sha256_and_stat(layout: DataLayout, path: Path) -> tuple[str, os.stat_result]:
    """The SHA-256 of a data file, remembered or hashed (then remembered if the file did not
    change while read), with the stat it holds for."""
    before = path.stat()
    if (known := _remembered_sha256(layout, before)) is not None:
        return known, before
    digest = sha256_file(path)
    if _fingerprint(path.stat()) == _fingerprint(before):
        remember_sha256(layout, path, digest, before)
    return digest, before


def sha256_of(layout: DataLayout, path: Path) -> str:
    """The SHA-256 of a data file; read only when it changed since it was last hashed."""
    return sha256_and_stat(layout, path)[0]


def share_file(layout: DataLayout, source: Path, dest: Path, sha256: str) -> None:
    """Make `dest` hold `source`'s content, which must have this SHA-256, without copying it:
    a hard link (a copy when the filesystem refuses one), and on object storage a copy made
    by the server. Sound because no data file is written in place (see `_fingerprint`): a
    shared inode never changes under a path that keeps it. Raises FileChangedError, `dest`
    untouched, when `source` does not have this SHA-256."""
    digest, checked = sha256_and_stat(layout, source)
    if digest != sha256:
        raise FileChangedError(f"{source} has SHA-256 {digest}, not {sha256}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{temp_name(dest.name)}{uuid.uuid4().hex}.part")
    try:
        try:
            os.link(source, tmp)
        except OSError:  # another filesystem, or no hard links there
            shutil.copyfile(source, tmp)
            if sha256_file(tmp) != sha256:
                raise FileChangedError(f"{source} changed while copied to {dest}") from None
        remote = remote_of(dest)
        if remote is not None:
            remote.copy(source, dest)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    remember_sha256(layout, dest, sha256, checked)


@contextlib.contextmanager
def atomic_write(
    dest: Path,
    tmp_dir: Path | None = None,
    before_commit: Callable[[Path], None] | None = None,
    label: str | None = None,
) -> Iterator[IO[bytes]]:
    """Yield a temp file; on success fsync, run `before_commit(tmp)` and rename it onto `dest`.

    On any error (including one raised by `before_commit`) the temp file is removed and `dest`
    keeps its previous content, so readers never see a partial or unverified file. The temp
    file is named `temp_name(label or dest.name)` + random + `.part`, so a file left by a killed
    process says what it was and whose (a run's: crash recovery removes it).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    directory = tmp_dir or dest.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=temp_name(label or dest.name), suffix=".part", dir=directory
    )
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; published files are readable by all
        if before_commit is not None:
            before_commit(tmp)
        commit_file(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def remove_run_leftovers(root: Path, run_ids: Collection[str]) -> list[Path]:
    """Delete every hidden file or folder below `root` whose name holds one of `run_ids`: the
    temporary files (`temp_name`) and `.building-<run id>` folders of those runs, which must
    be dead (nothing may write them any more). Returns what was removed."""
    removed: list[Path] = []
    if not run_ids or not root.is_dir():
        return removed
    for directory, folders, files in os.walk(root):
        for name in [*folders, *files]:
            if name.startswith(".") and any(run_id in name for run_id in run_ids):
                path = Path(directory, name)
                if name in folders:
                    shutil.rmtree(path, ignore_errors=True)
                    folders.remove(name)  # not walked into
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
    return sorted(removed)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def remove_orphan_partials(directory: Path, label: str) -> list[Path]:
    """Delete `atomic_write` temp files of `label` written outside a run (named by pid) whose
    process no longer exists (killed mid-write); a live writer's file is left alone. A run's
    files are named by its run id and removed by crash recovery. Returns what was removed."""
    removed = []
    if not directory.is_dir():
        return removed
    for path in sorted(directory.glob(f".{label}.pid*.part")):
        pid_part = path.name[len(label) + 2 :].split(".", 1)[0]
        if pid_part.startswith("pid") and pid_part[3:].isdigit():
            pid = int(pid_part[3:])
            if _pid_alive(pid):
                continue
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def keep_version(layout: DataLayout, path: Path) -> Path | None:
    """Keep a data-root file as `staging/versions/<its path>/<sha256><suffix>` before it is
    replaced (`share_file`: no copy; content-addressed: keeping the same bytes twice is a
    no-op). Returns the kept version, or None when there is no file to keep."""
    if not fetch(path):
        return None
    digest = sha256_of(layout, path)
    kept = layout.versions / path.relative_to(layout.root) / f"{digest}{path.suffix}"
    if not fetch(kept):
        share_file(layout, path, kept, digest)
    return kept


def commit_file(source: Path, dest: Path) -> None:
    """Rename a finished file onto `dest`; on object storage it is uploaded first, so a failed
    upload leaves the bucket and the working copy as they were."""
    remote = remote_of(dest)
    if remote is not None:
        remote.upload(source, dest)
    os.replace(source, dest)


def fetch(path: Path) -> bool:
    """Whether the data-root file exists, after bringing the working copy up to date."""
    remote = remote_of(path)
    if remote is None:
        return path.is_file()
    found = remote.fetch(path)
    if (downloaded := remote.fetched.pop(path, None)) is not None:
        remember_sha256(DataLayout(remote.root), path, *downloaded)
    return found


def fetch_tree(directory: Path) -> bool:
    """Whether a published directory exists, after bringing the working copy up to date."""
    remote = remote_of(directory)
    if remote is not None:
        return remote.fetch_tree(directory)
    return directory.is_dir() and any(directory.iterdir())


def publish_tree(
    building: Path, final: Path, before_commit: Callable[[], None] | None = None
) -> None:
    """Replace the directory `final` by the finished `building`; readers never see a mix.

    Locally a rename; on object storage a new version below `final` and a pointer to it
    written last (`rlx_assets.remote`). `before_commit` runs once the new files are stored and
    before readers are switched to them (a test pauses a publication there)."""
    remote = remote_of(final)
    if remote is not None:
        remote.publish_tree(building, final, before_commit)
    elif before_commit is not None:
        before_commit()
    retired = final.with_name(f".{final.name}.retired-{building.name.rsplit('-', 1)[-1]}")
    if final.exists():
        os.rename(final, retired)
    os.rename(building, final)
    shutil.rmtree(retired, ignore_errors=True)


def remove_tree(directory: Path) -> bool:
    """Delete a data-root directory (and its objects); whether there was anything."""
    remote = remote_of(directory)
    if remote is not None:
        return remote.delete_tree(directory) > 0
    existed = directory.exists()
    shutil.rmtree(directory, ignore_errors=True)
    return existed


def list_files(directory: Path, suffix: str) -> list[Path]:
    """Files below a data-root directory whose name ends with `suffix` (nothing downloaded)."""
    remote = remote_of(directory)
    if remote is not None:
        return [p for p in remote.list(directory) if p.name.endswith(suffix)]
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.rglob(f"*{suffix}") if p.is_file())


def atomic_write_bytes(dest: Path, data: bytes) -> None:
    with atomic_write(dest) as handle:
        handle.write(data)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    atomic_write_bytes(path, json_bytes(payload))


def json_bytes(payload: dict[str, Any]) -> bytes:
    return (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode()


def update_json(
    path: Path, change: Callable[[dict[str, Any] | None], dict[str, Any]]
) -> dict[str, Any]:
    """Read-modify-write of a JSON file that concurrent runs update, each its own part, without
    losing another's: locally under an exclusive lock (``.<name>.lock`` beside it), on object
    storage by a write conditional on the version read. ``change`` gets the current content
    (None: no file yet) and may be called more than once."""
    remote = remote_of(path)
    if remote is not None:
        written = remote.update(path, lambda body: json_bytes(change(json.loads(body) if body
                                                                       else None)))  # fmt: skip
        return json.loads(written)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        payload = change(json.loads(path.read_bytes()) if path.exists() else None)
        atomic_write_bytes(path, json_bytes(payload))
    return payload


def append_json_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON object as a line; O_APPEND keeps concurrent writers' lines whole."""
    line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
    remote = remote_of(path)
    if remote is not None:
        remote.append_record(path, line)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    remote = remote_of(path)
    if remote is not None:
        return [json.loads(line) for line in remote.records(path)]
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def log_partition_event(
    layout: DataLayout,
    log_name: str,
    event: str,
    table: str,
    market: str,
    day: dt.date,
    **fields: object,
) -> None:
    """One line of ``logs/<log_name>.jsonl`` about one table of one partition."""
    record = {"time": utc_now_iso(), "event": event, "table": table, "market": market}
    append_json_line(
        layout.root / "logs" / f"{log_name}.jsonl", {**record, "date": day.isoformat(), **fields}
    )
