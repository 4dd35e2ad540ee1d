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

from rlx_assets.lake.sources import (
    LakeAccessError,
    LakeObject,
    NoDataError,
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
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
    "Throttling",
}
_NETWORK_ERRORS = (
    botocore.exceptions.HTTPClientError,
    botocore.exceptions.ConnectionError,
    botocore.exceptions.ResponseStreamingError,
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


def classify_client_error(error: Exception, what: str) -> Exception:
    """Map a boto/urllib3 failure to a retryable or a permanent LakeError."""
    if isinstance(error, botocore.exceptions.NoCredentialsError):
        return LakeAccessError(f"no AWS credentials found for {what}: {_SET_CREDENTIALS}")
    if isinstance(error, botocore.exceptions.ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _ACCESS_DENIED_CODES or status == 403:
            return LakeAccessError(
                f"Crypto Lake refused access to {what} ({code}): {_SET_CREDENTIALS}"
            )
        if code in _TRANSIENT_CODES or status >= 500:
            return TransientLakeError(f"{what}: server error {status} {code}")
        return LakeAccessError(f"{what}: {code or status} {error}")
    if isinstance(error, _NETWORK_ERRORS):
        return TransientLakeError(f"{what}: network error {type(error).__name__}: {error}")
    return error


class CryptoLakeSource:
    """`s3://BUCKET/PREFIX` read with the standard AWS credential chain; `AWS_ENDPOINT_URL`
    points it at an S3-compatible server."""

    def __init__(self, bucket: str, prefix: str, cache_dir: Path, timeout_s: float = 60.0):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.cache_dir = cache_dir
        self.description = f"s3://{bucket}/{self.prefix}"
        region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "eu-west-1"
        self._session = boto3.Session(region_name=region)
        # Our own retry loop logs every attempt, so botocore must not retry silently underneath.
        self._client = self._session.client(
            "s3",
            config=botocore.config.Config(
                retries={"total_max_attempts": 1},
                connect_timeout=timeout_s,
                read_timeout=timeout_s,
            ),
        )

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
            raise classify_client_error(error, self.description) from None

    def locate(self, table: str, exchange: str, symbol: str, day: dt.date) -> LakeObject:
        lakeapi = import_lakeapi(self.cache_dir)
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
            raise NoDataError(
                no_data_message(table, exchange, symbol, day, self.description)
            ) from None
        except Exception as error:  # noqa: BLE001 - classified, re-raised
            raise classify_client_error(error, f"listing {table} in {self.description}") from None
        found = [f for f in found if f["dt"] == day.isoformat()]
        if not found:
            raise NoDataError(no_data_message(table, exchange, symbol, day, self.description))
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
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=key)
        except Exception as error:  # noqa: BLE001 - classified, re-raised
            if isinstance(error, botocore.exceptions.ClientError) and error.response.get(
                "Error", {}
            ).get("Code") in ("404", "NoSuchKey"):
                raise NoDataError(
                    no_data_message(table, exchange, symbol, day, self.description)
                ) from None
            raise classify_client_error(error, f"s3://{self.bucket}/{key}") from None
        return LakeObject(
            table,
            exchange,
            symbol,
            day,
            f"s3://{self.bucket}/{key}",
            size=int(head["ContentLength"]),
            version=str(head.get("ETag", "")).strip('"'),
        )

    def copy_to(self, obj: LakeObject, handle: BinaryIO) -> int:
        key = obj.uri.removeprefix(f"s3://{self.bucket}/")
        try:
            body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
            return copy_stream(body, handle)
        except Exception as error:  # noqa: BLE001 - classified, re-raised
            raise classify_client_error(error, obj.uri) from None
