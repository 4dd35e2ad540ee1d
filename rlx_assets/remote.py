"""The data root on object storage: ``RLX_DATA_DIR=s3://bucket/prefix``.

Every stage reads and writes a local working copy (``RLX_WORK_DIR``); the bucket holds the
truth, so any machine (another Dagster worker, a Kubernetes pod) sees the same data:

* a committed file is uploaded *before* it replaces the local copy, in one PUT (readers see the
  previous object or the new one, never a part), and a failed upload leaves both untouched;
* a reader fetches the bucket's current object before reading (the ETag last seen is kept
  under ``.rlx-remote-state`` so unchanged objects are not downloaded again);
* a directory is published as a new version below it (``<dir>/v-<run id>/...``, every file)
  and then switched to by one small pointer object (``<dir>/CURRENT``: the version and each
  file's ETag), written last and read first, so a reader sees the whole old or the whole new
  directory; the previous version is kept (a reader may still be fetching it), older ones go
  once the pointer moved. Directories published before versions (flat, ``summary.json``
  last) are still read;
* append-only logs become one object per record below ``<log>.d/`` (S3 cannot append).

Every request is retried under the project's one retry policy (``rlx_assets.retry``): only
404 (NoSuchKey) means "missing", and 412 (``IfMatch`` refused) "replaced meanwhile, read again";
a 5xx, throttling, timeout or reset is retried, then raised naming the object; a 403 is raised
at once (S3 also answers 403 for a missing key when listing is not allowed: never "missing").

A working copy is bound to its bucket by a marker file at its root, so every process writing
below it (a run's step subprocess, a test) mirrors to the same bucket.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

from rlx_assets.retry import RetryPolicy, TransientError, with_retries
from rlx_assets.temp_files import temp_name

MARKER = ".rlx-remote.json"
STATE_DIR = ".rlx-remote-state"
COMMIT_FILE = "summary.json"  # a flat (pre-version) directory is complete once this is there
POINTER_FILE = "CURRENT"  # a versioned directory: which version readers read
VERSION_PREFIX = "v-"
RECORDS_SUFFIX = ".d"
_S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(?:/(?P<prefix>.*))?$")
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
UPDATE_ATTEMPTS = 50  # conditional writes of one object redone before giving up
# A conditional request's object was replaced meanwhile (GET or PUT IfMatch / IfNoneMatch; S3
# answers 409 ConditionalRequestConflict to a conditional PUT racing another).
_CHANGED_CODES = {"412", "PreconditionFailed", "ConditionalRequestConflict"}
_TRANSIENT_CODES = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout"}
_FETCH_ATTEMPTS = 3
DEFAULT_POLICY = RetryPolicy()
DEFAULT_TIMEOUTS_S = (10.0, 60.0)  # to connect, to read a response
_log = logging.getLogger(__name__)


class RemoteDataError(Exception):
    """The data root on object storage cannot be used (no access, no bucket, network)."""


class TransientRemoteError(RemoteDataError, TransientError):
    """A 5xx, throttling, timeout or reset: retried, then raised."""


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # no leading or trailing slash; may be empty

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


def parse_s3_uri(uri: str) -> S3Location:
    match = _S3_URI.match(uri.strip())
    if not match:
        raise RemoteDataError(f"RLX_DATA_DIR={uri!r} is not of the form s3://BUCKET/PREFIX")
    return S3Location(match["bucket"], (match["prefix"] or "").strip("/"))


def is_remote_uri(value: str | os.PathLike) -> bool:
    return str(value).startswith("s3://")


class RemoteRoot:
    """One local working copy mirrored to one ``s3://bucket/prefix``."""

    def __init__(
        self,
        root: Path,
        uri: str,
        endpoint_url: str | None = None,
        profile: str | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        timeouts_s: tuple[float, float] = DEFAULT_TIMEOUTS_S,
    ):
        self.root = root
        self.location = parse_s3_uri(uri)
        self.endpoint_url = endpoint_url
        self.profile = profile
        self.policy = policy
        self.timeouts_s = tuple(timeouts_s)
        # SHA-256 and stat of each file downloaded by `fetch`, until the data root takes it.
        self.fetched: dict[Path, tuple[str, os.stat_result]] = {}

    @property
    def config(self) -> dict:
        """What the marker file keeps, so every process below the root reads the same way."""
        return {
            "uri": self.location.uri, "endpoint_url": self.endpoint_url, "profile": self.profile,
            "retry": asdict(self.policy), "timeouts_s": list(self.timeouts_s),
        }  # fmt: skip

    @classmethod
    def from_config(cls, root: Path, config: dict) -> RemoteRoot:
        return cls(
            root, config["uri"], config["endpoint_url"], config["profile"],
            RetryPolicy(**config.get("retry", {})), config.get("timeouts_s", DEFAULT_TIMEOUTS_S),
        )  # fmt: skip

    # --- the client ---------------------------------------------------------------------------
    @cached_property
    def client(self):
        import boto3
        import botocore.config

        session = boto3.Session(profile_name=self.profile) if self.profile else boto3.Session()
        config = botocore.config.Config(
            retries={"total_max_attempts": 1},  # `_call` retries, under the one policy
            connect_timeout=self.timeouts_s[0],
            read_timeout=self.timeouts_s[1],
        )
        return session.client("s3", endpoint_url=self.endpoint_url, config=config)

    def _call(self, what: str, key: str, call, *args, **kwargs):
        """One S3 request (``call``, which may read the response body too) under the retry
        policy. "Missing" (404) and "replaced meanwhile" (412) reach the caller as the
        ClientError; every other failure, once retried if transient, is a RemoteDataError
        naming the object, never a secret."""
        where = f"s3://{self.location.bucket}/{key}"

        def attempt():
            try:
                return call(*args, **kwargs)
            except Exception as error:
                failure = _request_failure(what, where, error)
                if failure is error:
                    raise
                raise failure from None

        def log_retry(attempt_number: int, error: BaseException, sleep_s: float) -> None:
            _log.warning(
                "retry %d/%d in %.1fs after: %s", attempt_number, self.policy.attempts, sleep_s,
                error,
            )  # fmt: skip

        return with_retries(attempt, self.policy, log_retry)

    # --- paths --------------------------------------------------------------------------------
    def relative(self, path: Path) -> str:
        return Path(os.path.abspath(path)).relative_to(self.root).as_posix()

    def key(self, path: Path) -> str:
        relative = self.relative(path)
        return f"{self.location.prefix}/{relative}" if self.location.prefix else relative

    def _local(self, key: str) -> Path:
        prefix = f"{self.location.prefix}/" if self.location.prefix else ""
        return self.root / key.removeprefix(prefix)

    def _state(self, path: Path) -> Path:
        return self.root / STATE_DIR / f"{self.relative(path)}.etag"

    def _remember(self, path: Path, etag: str | None) -> None:
        state = self._state(path)
        if etag is None:
            state.unlink(missing_ok=True)
            return
        write_local(state, etag.encode())

    def _remembered(self, path: Path) -> str | None:
        with contextlib.suppress(FileNotFoundError):
            return self._state(path).read_text()
        return None

    # --- single objects -----------------------------------------------------------------------
    def upload(self, source: Path, dest: Path) -> None:
        """Put ``source``'s bytes at ``dest``'s key (one atomic object write)."""
        self._remember(dest, self._put(source, self.key(dest)))

    def _put(self, source: Path, key: str) -> str:
        """Upload ``source`` to ``key``; its ETag once the bucket holds every byte."""
        bucket = self.location.bucket
        self._call("upload to", key, self.client.upload_file, str(source), bucket, key)
        head = self._head(key)
        if head is None or head["ContentLength"] != source.stat().st_size:
            raise RemoteDataError(f"upload to s3://{bucket}/{key}: not stored whole")
        return head["ETag"]

    def copy(self, source: Path, dest: Path) -> None:
        """Copy ``source``'s object to ``dest``'s key inside the bucket (CopyObject: no byte
        passes through this machine), only if it is still the version of the working copy: a
        source replaced meanwhile is refused (412) rather than copied unseen."""
        bucket, key = self.location.bucket, self.key(dest)
        condition = {"CopySourceIfMatch": etag} if (etag := self._remembered(source)) else {}
        response = self._call(
            "copy to", key, self.client.copy_object, Bucket=bucket, Key=key,
            CopySource={"Bucket": bucket, "Key": self.key(source)}, **condition,
        )  # fmt: skip
        self._remember(dest, response["CopyObjectResult"]["ETag"])

    def update(self, path: Path, change: Callable[[bytes | None], bytes]) -> bytes:
        """Read-modify-write of one object that several workers update, none losing another's
        change: the write is conditional on the version read (IfMatch, or IfNoneMatch for a new
        object) and redone from a fresh read when another writer came first. ``change`` gets
        the current bytes (None: no object yet) and may be called more than once."""
        import botocore.exceptions

        key, bucket = self.key(path), self.location.bucket
        for _ in range(UPDATE_ATTEMPTS):
            try:
                response = self._call(
                    "read", key, lambda: _body_and_etag(self.client.get_object(Bucket=bucket,
                                                                               Key=key))
                )  # fmt: skip
            except botocore.exceptions.ClientError:  # only "missing" reaches here
                response = (None, None)
            current, etag = response
            data = change(current)
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            try:
                written = self._call(
                    "write", key, self.client.put_object, Bucket=bucket, Key=key, Body=data,
                    **condition,
                )  # fmt: skip
            except botocore.exceptions.ClientError:  # another writer came first: read again
                continue
            write_local(path, data)
            self._remember(path, written["ETag"])
            return data
        raise RemoteDataError(
            f"update s3://{bucket}/{key}: replaced by other writers {UPDATE_ATTEMPTS} times"
        )

    def _head(self, key: str) -> dict | None:
        import botocore.exceptions

        try:
            return self._call(
                "read", key, self.client.head_object, Bucket=self.location.bucket, Key=key
            )
        except botocore.exceptions.ClientError as error:
            if _is_missing(error):
                return None
            raise

    def fetch(self, path: Path) -> bool:
        """Make the local copy of ``path`` the bucket's current object; False if there is none
        (a stale local copy is then removed: the bucket is the truth)."""
        import botocore.exceptions

        key = self.key(path)
        for _ in range(_FETCH_ATTEMPTS):
            head = self._head(key)
            if head is None and path.name != POINTER_FILE:
                pointer = self._pointer(path.parent)
                if pointer is not None and path.name in pointer["files"]:
                    if self._fetch_version_file(path.parent, pointer, path.name):
                        return True
                    continue  # that version went meanwhile: read the pointer again
            if head is None:
                if path.is_file():
                    path.unlink()
                self._remember(path, None)
                return False
            if path.is_file() and self._remembered(path) == head["ETag"]:
                return True
            try:
                # Hashed as it arrived: the data root remembers it (`staging.fetch`).
                self.fetched[path] = self._download(key, path, head)
                return True
            except botocore.exceptions.ClientError:  # replaced (412) or deleted (404) meanwhile
                continue
        raise RemoteDataError(f"s3://{self.location.bucket}/{key} kept changing while read")

    def _download(self, key: str, path: Path, head: dict) -> tuple[str, os.stat_result]:
        """Download the pinned object to ``path``; its SHA-256, hashed as it arrived, and the
        stat of the file written."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{temp_name(path.name)}{uuid.uuid4().hex}.part")

        digest = hashlib.sha256()

        def get_pinned() -> int:  # the whole body, in each attempt: a cut stream is retried
            nonlocal digest
            response = self.client.get_object(
                Bucket=self.location.bucket, Key=key, IfMatch=head["ETag"]
            )
            digest = hashlib.sha256()
            with open(tmp, "wb") as handle:
                while block := response["Body"].read(1 << 20):
                    digest.update(block)
                    handle.write(block)
                return handle.tell()

        try:
            received = self._call("read", key, get_pinned)
            if received != head["ContentLength"]:
                raise RemoteDataError(
                    f"read s3://{self.location.bucket}/{key}: "
                    f"{received} of {head['ContentLength']} bytes"
                )
            written = tmp.stat()
            os.replace(tmp, path)
            self._remember(path, head["ETag"])
            return digest.hexdigest(), written
        finally:
            tmp.unlink(missing_ok=True)

    # --- directories --------------------------------------------------------------------------
    def list(self, directory: Path) -> list[Path]:
        """Local paths of every object below ``directory`` (nothing downloaded)."""
        prefix = self.key(directory).rstrip("/") + "/"
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call(
            "list", prefix, lambda: list(paginator.paginate(Bucket=self.location.bucket,
                                                            Prefix=prefix))
        )  # fmt: skip
        return sorted(self._local(o["Key"]) for page in pages for o in page.get("Contents", []))

    # --- versioned directories ----------------------------------------------------------------
    def _pointer(self, directory: Path) -> dict | None:
        """The directory's ``CURRENT`` object (version and files), None if there is none."""
        import botocore.exceptions

        key = self.key(directory / POINTER_FILE)
        try:
            body = self._call("read", key, self._get_body, key)
        except botocore.exceptions.ClientError as error:
            if _is_missing(error):
                return None
            raise
        return json.loads(body)

    def _get_body(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.location.bucket, Key=key)["Body"].read()

    def _fetch_version_file(self, directory: Path, pointer: dict, relative: str) -> bool:
        """Bring ``directory/relative`` to the pointer's version of it; False when that version
        is no longer in the bucket (replaced twice while read)."""
        import botocore.exceptions

        path, meta = directory / relative, pointer["files"][relative]
        if path.is_file() and self._remembered(path) == meta["etag"]:
            return True
        key = f"{self.key(directory)}/{pointer['version']}/{relative}"
        try:
            self._download(key, path, {"ETag": meta["etag"], "ContentLength": meta["size"]})
        except botocore.exceptions.ClientError:  # that version deleted (404) or replaced (412)
            return False
        return True

    def fetch_tree(self, directory: Path) -> bool:
        """The directory's published files, all of one version: the pointer is read first and
        names every file and its ETag (a version replaced twice while read is read again from
        the new pointer); local files the version does not have are removed. False if nothing
        is published there."""
        for _ in range(_FETCH_ATTEMPTS):
            pointer = self._pointer(directory)
            if pointer is None:
                return self._fetch_flat_tree(directory)
            if all(self._fetch_version_file(directory, pointer, r) for r in pointer["files"]):
                wanted = {directory / r for r in pointer["files"]}
                self._remove_local_except(directory, wanted)
                return bool(wanted)
        raise RemoteDataError(f"{self.key(directory)} kept being republished while read")

    @staticmethod
    def _remove_local_except(directory: Path, wanted: set[Path]) -> None:
        if directory.is_dir():
            for local in directory.rglob("*"):
                if local.is_file() and local not in wanted:
                    local.unlink()

    def _fetch_flat_tree(self, directory: Path) -> bool:
        """A directory published before versions: consistent with its ``summary.json``."""
        for _ in range(_FETCH_ATTEMPTS):
            remote = [
                p for p in self.list(directory)
                if RECORDS_SUFFIX + "/" not in str(p) and not _is_versioned(directory, p)
            ]  # fmt: skip
            commit = directory / COMMIT_FILE
            commit_etag = None
            if commit in remote:
                self.fetch(commit)
                commit_etag = self._remembered(commit)
            for path in remote:
                if path != commit:
                    self.fetch(path)
            self._remove_local_except(directory, set(remote))
            head = self._head(self.key(commit)) if commit_etag else None
            if commit_etag is None or (head is not None and head["ETag"] == commit_etag):
                return bool(remote)
        raise RemoteDataError(f"{self.key(directory)} kept being republished while read")

    def publish_tree(
        self, building: Path, final: Path, before_commit: Callable[[], None] | None = None
    ) -> str:
        """Upload ``building``'s files as a new version of ``final``, run ``before_commit``,
        point ``final/CURRENT`` at the version (one PUT: readers switch at once), then delete
        what no pointer can lead to any more: versions before the previous one and objects of
        a flat (pre-version) publication. Returns the version."""
        previous = self._pointer(final)
        version = VERSION_PREFIX + building.name.split(".building-", 1)[-1]
        if previous is not None and previous["version"] == version:  # same run publishing again
            version += f"-{uuid.uuid4().hex[:8]}"
        files = {}
        for path in sorted(p for p in building.rglob("*") if p.is_file()):
            relative = path.relative_to(building).as_posix()
            etag = self._put(path, f"{self.key(final)}/{version}/{relative}")
            files[relative] = {"etag": etag, "size": path.stat().st_size}
        if before_commit is not None:
            before_commit()
        pointer = {
            "version": version,
            "previous": previous["version"] if previous else None,
            "files": files,
        }
        key = self.key(final / POINTER_FILE)
        self._call(
            "publish", key, self.client.put_object, Bucket=self.location.bucket, Key=key,
            Body=json.dumps(pointer, indent=2).encode(), ContentType="application/json",
        )  # fmt: skip
        keep = {version, pointer["previous"], POINTER_FILE}
        stale = [p for p in self.list(final) if p.relative_to(final).parts[0] not in keep]
        self._delete(stale)
        for relative, meta in files.items():  # the working copy becomes this version
            self._remember(final / relative, meta["etag"])
        return version

    def delete_tree(self, directory: Path) -> int:
        objects = self.list(directory)
        self._delete(objects)
        shutil.rmtree(directory, ignore_errors=True)
        return len(objects)

    def _delete(self, paths: list[Path]) -> None:
        for start in range(0, len(paths), 1000):
            chunk = paths[start : start + 1000]
            keys = [{"Key": self.key(p)} for p in chunk]
            self._call(
                "delete", keys[0]["Key"], self.client.delete_objects,
                Bucket=self.location.bucket, Delete={"Objects": keys, "Quiet": True},
            )  # fmt: skip
            for path in chunk:
                self._remember(path, None)

    # --- append-only logs ---------------------------------------------------------------------
    def append_record(self, log: Path, line: bytes) -> None:
        """One new object per record; its name orders records by time."""
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.json"
        key = f"{self.key(log)}{RECORDS_SUFFIX}/{name}"
        self._call(
            "append to", key, self.client.put_object,
            Bucket=self.location.bucket, Key=key, Body=line,
        )  # fmt: skip

    def records(self, log: Path) -> list[bytes]:
        """Every record of the log in time order (records never change, so each is read once
        and kept under the state directory)."""
        directory = log.with_name(log.name + RECORDS_SUFFIX)
        cache = self.root / STATE_DIR / "records" / self.relative(directory)
        lines = []
        for path in self.list(directory):
            cached = cache / path.name
            if not cached.is_file():
                key = self.key(path)
                write_local(cached, self._call("read", key, self._get_body, key))
            lines.append(cached.read_bytes())
        return lines


def _body_and_etag(response: dict) -> tuple[bytes, str]:
    return response["Body"].read(), response["ETag"]


def write_local(path: Path, data: bytes) -> None:
    """A working-copy or state file written atomically: never a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{temp_name(path.name)}{uuid.uuid4().hex}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _error_code(error) -> tuple[str, int]:
    """A ClientError's S3 code and HTTP status (a HEAD's error has no body: the code is the
    status)."""
    code = str(error.response.get("Error", {}).get("Code", ""))
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return code, status


def _is_missing(error) -> bool:
    return _error_code(error)[0] in _MISSING_CODES


def _request_failure(what: str, where: str, error: Exception) -> Exception:
    """What a failed request raises: the ClientError itself for "missing" and "replaced
    meanwhile" (the caller decides), a TransientRemoteError (retried) for 5xx, throttling,
    timeouts, resets and corrupt transfers, else a RemoteDataError."""
    import boto3.exceptions
    import botocore.exceptions
    import urllib3.exceptions

    if isinstance(error, boto3.exceptions.S3UploadFailedError) and isinstance(
        error.__context__, botocore.exceptions.ClientError
    ):  # upload_file wraps the response's error
        error = error.__context__
    if isinstance(error, botocore.exceptions.NoCredentialsError):
        return RemoteDataError(
            f"{what} {where}: no credentials; set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or RLX_DATA_S3_PROFILE"
        )
    if isinstance(error, botocore.exceptions.ClientError):
        code, status = _error_code(error)
        if code in _MISSING_CODES | _CHANGED_CODES:
            return error
        answer = f"{status} {code}" if code and code != str(status) else code or str(status)
        message = (
            f"{what} {where} failed: {answer} "
            f"({error.response.get('Error', {}).get('Message', 'no message')})"
        )
        if code in _TRANSIENT_CODES or status >= 500:
            return TransientRemoteError(message)
        if status == 403:
            message += "; access denied: check the credentials' permissions on the bucket"
        return RemoteDataError(message)
    network = (
        botocore.exceptions.HTTPClientError,  # timeouts, resets, a cut response body
        botocore.exceptions.ConnectionError,
        botocore.exceptions.IncompleteReadError,
        botocore.exceptions.FlexibleChecksumError,  # the body differs from its checksum
        urllib3.exceptions.HTTPError,
        ConnectionError,
        TimeoutError,
    )
    failed = f"{what} {where} failed: {type(error).__name__}: {error}"
    if isinstance(error, network):
        return TransientRemoteError(failed)
    if isinstance(error, botocore.exceptions.BotoCoreError | boto3.exceptions.Boto3Error | OSError):
        return RemoteDataError(failed)
    return error


def _is_versioned(directory: Path, path: Path) -> bool:
    """Whether ``path`` is a versioned directory's pointer or one of its versions' files."""
    first = path.relative_to(directory).parts[0]
    return first == POINTER_FILE or first.startswith(VERSION_PREFIX)


# --- binding working copies to buckets -----------------------------------------------------------
_BOUND: dict[Path, RemoteRoot] = {}


def bind(
    root: Path,
    uri: str,
    endpoint_url: str | None,
    profile: str | None,
    policy: RetryPolicy = DEFAULT_POLICY,
    timeouts_s: tuple[float, float] = DEFAULT_TIMEOUTS_S,
) -> RemoteRoot:
    """Bind the working copy ``root`` to ``uri`` (idempotent) and check the bucket answers."""
    root = Path(os.path.abspath(root))
    remote = RemoteRoot(root, uri, endpoint_url, profile, policy, timeouts_s)
    marker = root / MARKER
    if not marker.is_file() or json.loads(marker.read_text()) != remote.config:
        write_local(marker, json.dumps(remote.config, sort_keys=True).encode())
    if root not in _BOUND or _BOUND[root].config != remote.config:
        import botocore.exceptions

        try:
            remote._call(
                "access", remote.location.prefix or "/", remote.client.head_bucket,
                Bucket=remote.location.bucket,
            )  # fmt: skip
        except botocore.exceptions.ClientError:  # 404
            raise RemoteDataError(f"RLX_DATA_DIR={uri}: no such bucket") from None
        _BOUND[root] = remote
    return _BOUND[root]


def remote_of(path: Path) -> RemoteRoot | None:
    """The bucket mirroring ``path``'s working copy, or None for a plain local data root."""
    path = Path(os.path.abspath(path))
    for root, remote in _BOUND.items():
        if path.is_relative_to(root):
            return remote
    for parent in path.parents:
        marker = parent / MARKER
        if marker.is_file():
            remote = RemoteRoot.from_config(parent, json.loads(marker.read_text()))
            _BOUND[parent] = remote
            return remote
    return None
