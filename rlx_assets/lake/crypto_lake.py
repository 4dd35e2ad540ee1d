"""Crypto Lake on S3: `lakeapi` lists and locates the day's objects, its boto3 session fetches
the bytes untouched (`lakeapi.load_data` re-encodes through pandas, so it cannot give a
byte-exact copy)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
from pathlib import Path
from types import ModuleType
from typing import BinaryIO

import boto3
import botocore.config
import botocore.exceptions
import urllib3.exceptions

from rlx_assets.lake.digest import multipart_count
from rlx_assets.lake.sources import (
    CorruptTransferError,
    LakeAccessError,
    LakeObject,
    NoDataError,
    ObjectChangedError,
    TransientLakeError,
    copy_stream,
    no_data_message,
)

_ACCESS_DENIED_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "AllAccessDisabled",
    "403",
}
_TRANSIENT_CODES = {
    "SlowDown",
    "TooManyRequests",
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
    "Throttling",
}
_THROTTLING_CODES = {"SlowDown", "TooManyRequests", "Throttling"}
_TIMEOUT_ERRORS = (
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectTimeoutError,
    urllib3.exceptions.TimeoutError,
    TimeoutError,
)
_NETWORK_ERRORS = (
    botocore.exceptions.HTTPClientError,
    botocore.exceptions.ConnectionError,
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.IncompleteReadError,  # the connection closed before the whole body
    urllib3.exceptions.HTTPError,
    ConnectionError,
    TimeoutError,
)
_SET_CREDENTIALS = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) to your Crypto Lake keys"
)

_lakeapi_lock = threading.Lock()


def import_lakeapi(cache_dir: Path) -> ModuleType:
    """Import lakeapi with its `./.lake_cache` under `cache_dir`, not the caller's directory.

    lakeapi fixes its cache paths relative to the working directory at import time; its file
    listings are cached for 8 h and not keyed by endpoint, so they are cleared before each use.
    """
    with _lakeapi_lock:
        cache_dir.mkdir(parents=True, exist_ok=True)
        previous = Path.cwd()
        os.chdir(cache_dir)
        try:
            import lakeapi
            import lakeapi.main
        finally:
            os.chdir(previous)
        lakeapi.main.cache.clear()
        lakeapi.main.contents_cache.clear()
        return lakeapi


def _status_and_code(error: botocore.exceptions.ClientError) -> tuple[int, str]:
    code = str(error.response.get("Error", {}).get("Code", ""))
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0), code


def classify_client_error(error: Exception, what: str, endpoint: str = "") -> Exception:
    """Map a boto/urllib3 failure to a retryable or a permanent LakeError.

    `endpoint` (which server, and where that came from) is added to network errors, so an
    unreachable or hung endpoint names `AWS_ENDPOINT_URL`.
    """
    if isinstance(error, botocore.exceptions.FlexibleChecksumError):
        return CorruptTransferError(f"{what}: corrupt transfer, the server's checksum {error}")
    if isinstance(error, botocore.exceptions.NoCredentialsError):
        return LakeAccessError(f"no AWS credentials found for {what}: {_SET_CREDENTIALS}")
    if isinstance(error, botocore.exceptions.ClientError):
        status, code = _status_and_code(error)
        if code == "PreconditionFailed" or status == 412:
            return ObjectChangedError(f"{what} changed since it was listed (ETag differs)")
        if code in _ACCESS_DENIED_CODES or status == 403:
            return LakeAccessError(
                f"Crypto Lake refused access to {what} ({code}): {_SET_CREDENTIALS}"
            )
        if code in _TRANSIENT_CODES or status == 429 or status >= 500:
            return TransientLakeError(
                f"{what}: server error {status} {code}", _server_error_kind(status, code)
            )
        return LakeAccessError(f"{what}: {code or status} {error}")
    if isinstance(error, _NETWORK_ERRORS):
        suffix = f" ({endpoint})" if endpoint else ""
        kind = "timeout" if isinstance(error, _TIMEOUT_ERRORS) else "connection"
        return TransientLakeError(
            f"{what}: network error {type(error).__name__}: {error}{suffix}", kind
        )
    return error


def _server_error_kind(status: int, code: str) -> str:
    if code in _THROTTLING_CODES or status == 429:
        return "throttled"
    if code == "RequestTimeout":
        return "timeout"
    return "http_5xx"


def _failure_summary(error: Exception) -> str:
    if isinstance(error, botocore.exceptions.ClientError):
        status, code = _status_and_code(error)
        return f"HTTP {status}" + (f" {code}" if code and code != str(status) else "")
    return f"{type(error).__name__}: {error}"


def endpoint_description(endpoint_url: str) -> str:
    """The S3 endpoint in use and where it came from (the URL is not a secret)."""
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        if os.environ.get(name):
            return f"endpoint {endpoint_url} from {name}={os.environ[name]}"
    return (
        f"endpoint {endpoint_url}; AWS_ENDPOINT_URL is unset (set it for an S3-compatible server)"
    )


def _head_checksums(head: dict) -> tuple[tuple[str, str], ...]:
    prefix = "Checksum"
    return tuple(
        sorted(
            (k.removeprefix(prefix).lower(), str(v))
            for k, v in head.items()
            if k.startswith(prefix) and k != "ChecksumType" and v
        )
    )


def _etag_is_digest(head: dict) -> bool:
    # An SSE-KMS or SSE-C object's ETag is not an MD5 of its bytes.
    return head.get("ServerSideEncryption") != "aws:kms" and not head.get("SSECustomerAlgorithm")


class CryptoLakeSource:
    """`s3://BUCKET/PREFIX` read with the standard AWS credential chain; `AWS_ENDPOINT_URL`
    points it at an S3-compatible server."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        cache_dir: Path,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 10.0,
    ):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.cache_dir = cache_dir
        self.description = f"s3://{bucket}/{self.prefix}"
        region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "eu-west-1"
        self._session = boto3.Session(region_name=region)
        # Our own retry loop logs every attempt, so botocore must not retry silently underneath
        # (lakeapi's listing client included: it gets this config too, see `locate`).
        self._config = botocore.config.Config(
            retries={"total_max_attempts": 1},
            connect_timeout=connect_timeout_s,
            read_timeout=timeout_s,
        )
        self._client = self._session.client("s3", config=self._config)
        self.endpoint = endpoint_description(self._client.meta.endpoint_url)

    def _classify(self, error: Exception, what: str) -> Exception:
        return classify_client_error(error, what, self.endpoint)

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def check_access(self) -> None:
        if self._session.get_credentials() is None:
            raise LakeAccessError(
                f"no AWS credentials found for {self.description}: {_SET_CREDENTIALS}"
            )
        try:
            self._client.list_objects_v2(Bucket=self.bucket, Prefix=self._key(""), MaxKeys=1)
        except Exception as error:  # noqa: BLE001 - classified, re-raised
            raise self._classify(error, self.description) from None

    def locate(self, table: str, exchange: str, symbol: str, day: dt.date) -> LakeObject:
        lakeapi = import_lakeapi(self.cache_dir)
        lakeapi._config.config.botocore_config = self._config
        start = dt.datetime.combine(day, dt.time())
        try:
            with contextlib.redirect_stdout(None):  # lakeapi prints listing warnings
                found = lakeapi.main.list_data(
                    table,
                    start=start,
                    end=start + dt.timedelta(days=1),
                    symbols=[symbol],
                    exchanges=[exchange],
                    bucket=f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket,
                    boto3_session=self._session,
                )
        except lakeapi.exceptions.NoFilesFound:
            # lakeapi's listing cache (botocache) swallows a failed request and may answer "no
            # files": a transient fault must not become "no data", so the HEAD of the day's
            # usual key below gives the verdict (404: no data), under our retry policy.
            found = []
        except Exception as error:  # noqa: BLE001 - classified, re-raised
            raise self._classify(error, f"listing {table} in {self.description}") from None
        found = [f for f in found if f["dt"] == day.isoformat()] or [
            {"filename": "1.snappy.parquet"}
        ]
        if len(found) > 1:
            names = ", ".join(sorted(f["filename"] for f in found))
            raise LakeAccessError(
                f"{table} for {exchange}.{symbol} on {day} has several files ({names}); "
                "expected one 1.snappy.parquet per day"
            )
        key = self._key(
            table,
            f"exchange={exchange}",
            f"symbol={symbol}",
            f"dt={day.isoformat()}",
            found[0]["filename"],
        )
        uri = f"s3://{self.bucket}/{key}"
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except Exception as error:  # noqa: BLE001 - classified, re-raised
            if isinstance(error, botocore.exceptions.ClientError) and error.response.get(
                "Error", {}
            ).get("Code") in ("404", "NoSuchKey"):
                raise NoDataError(
                    no_data_message(table, exchange, symbol, day, self.description)
                ) from None
            raise self._classify(error, uri) from None
        etag = str(head.get("ETag", "")).strip('"')
        part_size, unknown_why = self._part_size(key, etag) if "-" in etag else (None, "")
        return LakeObject(
            table,
            exchange,
            symbol,
            day,
            uri,
            size=int(head["ContentLength"]),
            version=etag,
            checksums=_head_checksums(head),
            etag=etag if _etag_is_digest(head) else None,
            part_size=part_size,
            no_checksum_reason="server gave no checksum" + unknown_why,
        )

    def _part_size(self, key: str, etag: str) -> tuple[int | None, str]:
        """The first part's size of a multipart object, to recompute its ETag, or None and why
        the server did not say (the ETag is then checked against whole-MiB part sizes).

        A transient failure of this HEAD is raised, so `locate` is retried under the retry
        policy like every request: a part size lost to a 5xx, 429 or timeout would leave the
        bytes unverifiable."""
        # No IfMatch here: servers differ on which ETag a part HEAD answers (the object's or
        # the part's); the GET pins the version, and the parts count must agree with the ETag.
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=key, PartNumber=1)
        except Exception as error:  # noqa: BLE001 - classified; transient ones re-raised
            classified = self._classify(error, f"s3://{self.bucket}/{key}")
            if isinstance(classified, TransientLakeError):
                raise classified from None
            return None, f"; the part-size HEAD failed ({_failure_summary(error)})"
        parts, told = multipart_count(etag), head.get("PartsCount")
        if told != parts:
            return None, f"; the part-size HEAD gave {told} parts, the ETag says {parts}"
        return int(head["ContentLength"]), ""

    def copy_to(self, obj: LakeObject, handle: BinaryIO, start: int = 0) -> int:
        key = obj.uri.removeprefix(f"s3://{self.bucket}/")
        # IfMatch: the bytes are of the version listed and HEADed, or 412 (located again), so
        # a resumed copy never joins two versions. botocore checks the server's checksum of a
        # whole object; a range has none (the caller's digest of the whole file decides).
        request = {"IfMatch": f'"{obj.version}"'} if obj.version else {}
        request |= {"Range": f"bytes={start}-"} if start else {"ChecksumMode": "ENABLED"}
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key, **request)
            answered = response.get("ContentRange") or "the whole object"
            if start and not answered.startswith(f"bytes {start}-"):
                raise CorruptTransferError(
                    f"{obj.uri}: asked for the bytes from {start} on, the server sent {answered}"
                )
            return copy_stream(response["Body"], handle)
        except CorruptTransferError:
            raise
        except Exception as error:  # noqa: BLE001 - classified, re-raised
            raise self._classify(error, obj.uri) from None
