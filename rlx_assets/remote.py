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

A working copy is bound to its bucket by a marker file at its root, so every process writing
below it (a run's step subprocess, a test) mirrors to the same bucket.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from rlx_assets.temp_files import temp_name

MARKER = ".rlx-remote.json"
STATE_DIR = ".rlx-remote-state"
COMMIT_FILE = "summary.json"  # a flat (pre-version) directory is complete once this is there
POINTER_FILE = "CURRENT"  # a versioned directory: which version readers read
VERSION_PREFIX = "v-"
RECORDS_SUFFIX = ".d"
_S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(?:/(?P<prefix>.*))?$")
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
_FETCH_ATTEMPTS = 3


class RemoteDataError(Exception):
    """The data root on object storage cannot be used (no access, no bucket, network)."""


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
        self, root: Path, uri: str, endpoint_url: str | None = None, profile: str | None = None
    ):
        self.root = root
        self.location = parse_s3_uri(uri)
        self.endpoint_url = endpoint_url
        self.profile = profile

    # --- the client ---------------------------------------------------------------------------
    @cached_property
    def client(self):
        import boto3
        import botocore.config

        session = boto3.Session(profile_name=self.profile) if self.profile else boto3.Session()
        config = botocore.config.Config(
            retries={"mode": "standard", "max_attempts": 5},
            connect_timeout=10,
            read_timeout=60,
        )
        return session.client("s3", endpoint_url=self.endpoint_url, config=config)

    def _call(self, what: str, key: str, call, *args, **kwargs):
        """One S3 call; failures become a RemoteDataError naming the object, never a secret."""
        import boto3.exceptions
        import botocore.exceptions

        try:
            return call(*args, **kwargs)
        except botocore.exceptions.NoCredentialsError:
            raise RemoteDataError(
                f"{what} s3://{self.location.bucket}/{key}: no credentials; set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or RLX_DATA_S3_PROFILE"
            ) from None
        except botocore.exceptions.ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_CODES:
                raise
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            raise RemoteDataError(
                f"{what} s3://{self.location.bucket}/{key} failed: {code or status} "
                f"({error.response.get('Error', {}).get('Message', 'no message')})"
            ) from None
        except (botocore.exceptions.BotoCoreError, boto3.exceptions.Boto3Error, OSError) as error:
            raise RemoteDataError(
                f"{what} s3://{self.location.bucket}/{key} failed: {type(error).__name__}: {error}"
            ) from None

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
        state.parent.mkdir(parents=True, exist_ok=True)
        tmp = state.with_name(f"{temp_name(state.name)}{uuid.uuid4().hex}")
        tmp.write_text(etag)
        os.replace(tmp, state)

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
        head = self._call("upload to", key, self.client.head_object, Bucket=bucket, Key=key)
        if head["ContentLength"] != source.stat().st_size:
            raise RemoteDataError(f"upload to s3://{bucket}/{key}: size differs after upload")
        return head["ETag"]

    def _head(self, key: str) -> dict | None:
        import botocore.exceptions

        try:
            return self._call(
                "read", key, self.client.head_object, Bucket=self.location.bucket, Key=key
            )
        except botocore.exceptions.ClientError:  # only "missing" reaches here
            return None

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
                self._download(key, path, head)
                return True
            except botocore.exceptions.ClientError:  # replaced (412) or deleted meanwhile
                continue
        raise RemoteDataError(f"s3://{self.location.bucket}/{key} kept changing while read")

    def _download(self, key: str, path: Path, head: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{temp_name(path.name)}{uuid.uuid4().hex}.part")
        try:
            response = self._call(
                "read",
                key,
                self.client.get_object,
                Bucket=self.location.bucket,
                Key=key,
                IfMatch=head["ETag"],
            )
            with open(tmp, "wb") as handle:
                shutil.copyfileobj(response["Body"], handle, 1 << 20)
            if tmp.stat().st_size != head["ContentLength"]:
                raise RemoteDataError(
                    f"read s3://{self.location.bucket}/{key}: "
                    f"{tmp.stat().st_size} of {head['ContentLength']} bytes"
                )
            os.replace(tmp, path)
            self._remember(path, head["ETag"])
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
            response = self._call(
                "read", key, self.client.get_object, Bucket=self.location.bucket, Key=key
            )
        except botocore.exceptions.ClientError:  # only "missing" reaches here
            return None
        return json.loads(response["Body"].read())

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
        except botocore.exceptions.ClientError:
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
                body = self._call(
                    "read", key, self.client.get_object, Bucket=self.location.bucket, Key=key
                )["Body"].read()
                cached.parent.mkdir(parents=True, exist_ok=True)
                tmp = cached.with_name(f".{cached.name}.{uuid.uuid4().hex}")
                tmp.write_bytes(body)
                os.replace(tmp, cached)
            lines.append(cached.read_bytes())
        return lines


def _is_versioned(directory: Path, path: Path) -> bool:
    """Whether ``path`` is a versioned directory's pointer or one of its versions' files."""
    first = path.relative_to(directory).parts[0]
    return first == POINTER_FILE or first.startswith(VERSION_PREFIX)


# --- binding working copies to buckets -----------------------------------------------------------
_BOUND: dict[Path, RemoteRoot] = {}


def bind(root: Path, uri: str, endpoint_url: str | None, profile: str | None) -> RemoteRoot:
    """Bind the working copy ``root`` to ``uri`` (idempotent) and check the bucket answers."""
    root = Path(os.path.abspath(root))
    remote = RemoteRoot(root, uri, endpoint_url, profile)
    config = {"uri": remote.location.uri, "endpoint_url": endpoint_url, "profile": profile}
    marker = root / MARKER
    if not marker.is_file() or json.loads(marker.read_text()) != config:
        root.mkdir(parents=True, exist_ok=True)
        tmp = marker.with_name(f".{marker.name}.{uuid.uuid4().hex}")
        tmp.write_text(json.dumps(config, sort_keys=True))
        os.replace(tmp, marker)
    if root not in _BOUND or _BOUND[root].location != remote.location:
        remote._call(
            "access", remote.location.prefix or "/", remote.client.head_bucket,
            Bucket=remote.location.bucket,
        )  # fmt: skip
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
            config = json.loads(marker.read_text())
            remote = RemoteRoot(parent, config["uri"], config["endpoint_url"], config["profile"])
            _BOUND[parent] = remote
            return remote
    return None
