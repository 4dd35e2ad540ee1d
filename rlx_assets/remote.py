"""The data root on object storage: ``RLX_DATA_DIR=s3://bucket/prefix``.

Every stage reads and writes a local working copy (``RLX_WORK_DIR``); the bucket holds the
truth, so any machine (another Dagster worker, a Kubernetes pod) sees the same data:

* a committed file is uploaded *before* it replaces the local copy, in one PUT (readers see the
  previous object or the new one, never a part), and a failed upload leaves both untouched;
* a reader fetches the bucket's current object before reading (the ETag last seen is kept
  under ``.rlx-remote-state`` so unchanged objects are not downloaded again);
* a directory is published file by file with its ``summary.json`` last, and fetched summary
  first, again if the summary changed meanwhile, so a reader never mixes two publications;
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
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

MARKER = ".rlx-remote.json"
STATE_DIR = ".rlx-remote-state"
COMMIT_FILE = "summary.json"  # a published directory is complete once this object is there
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
        tmp = state.with_name(f".{state.name}.{uuid.uuid4().hex}")
        tmp.write_text(etag)
        os.replace(tmp, state)

    def _remembered(self, path: Path) -> str | None:
        with contextlib.suppress(FileNotFoundError):
            return self._state(path).read_text()
        return None

    # --- single objects -----------------------------------------------------------------------
    def upload(self, source: Path, dest: Path) -> None:
        """Put ``source``'s bytes at ``dest``'s key (one atomic object write)."""
        key = self.key(dest)
        bucket = self.location.bucket
        self._call("upload to", key, self.client.upload_file, str(source), bucket, key)
        head = self._call("upload to", key, self.client.head_object, Bucket=bucket, Key=key)
        if head["ContentLength"] != source.stat().st_size:
            raise RemoteDataError(f"upload to s3://{bucket}/{key}: size differs after upload")
        self._remember(dest, head["ETag"])

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
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
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

    def fetch_tree(self, directory: Path) -> bool:
        """The directory's published files, consistent with its ``summary.json``; local files
        the bucket no longer has are removed. False if nothing is published there."""
        for _ in range(_FETCH_ATTEMPTS):
            remote = [p for p in self.list(directory) if RECORDS_SUFFIX + "/" not in str(p)]
            commit = directory / COMMIT_FILE
            commit_etag = None
            if commit in remote:
                self.fetch(commit)
                commit_etag = self._remembered(commit)
            for path in remote:
                if path != commit:
                    self.fetch(path)
            if directory.is_dir():
                for local in directory.rglob("*"):
                    if local.is_file() and local not in remote:
                        local.unlink()
            head = self._head(self.key(commit)) if commit_etag else None
            if commit_etag is None or (head is not None and head["ETag"] == commit_etag):
                return bool(remote)
        raise RemoteDataError(f"{self.key(directory)} kept being republished while read")

    def publish_tree(self, building: Path, final: Path) -> None:
        """Upload ``building``'s files as ``final``'s, ``summary.json`` last, then delete the
        objects of the previous publication that the new one does not have."""
        files = sorted(p for p in building.rglob("*") if p.is_file())
        files.sort(key=lambda p: p.relative_to(building).as_posix() == COMMIT_FILE)
        old = set(self.list(final))
        for path in files:
            self.upload(path, final / path.relative_to(building))
        stale = old - {final / p.relative_to(building) for p in files}
        self._delete(sorted(stale))

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
