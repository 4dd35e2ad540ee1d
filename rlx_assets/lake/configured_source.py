"""Which lake source ``RLX_LAKE_URI`` names: the bundled sample lake, a local directory or
Crypto Lake on S3. The one module that knows every kind of source (``sources`` and
``crypto_lake``) and the settings; imports those, ``config`` and ``staging`` only.
"""

from __future__ import annotations

import re
from pathlib import Path

from rlx_assets.config import SAMPLE_LAKE_DIR, RlxSettings
from rlx_assets.lake.sources import LakeAccessError, LakeSource, LocalLakeSource, ensure_sample_lake
from rlx_assets.staging import DataLayout

_S3_URI = re.compile(r"^s3://(?P<bucket>[^/]+)/?(?P<prefix>.*?)/?$")


def source_from_settings(settings: RlxSettings) -> LakeSource:
    """`RLX_LAKE_URI`: unset -> sample lake, `s3://...` -> Crypto Lake, else a local directory."""
    uri = settings.lake_uri
    if uri is None:
        return LocalLakeSource(
            ensure_sample_lake(), description=f"bundled sample lake {SAMPLE_LAKE_DIR}"
        )
    if uri.startswith("s3://"):
        match = _S3_URI.match(uri)
        if not match:
            raise LakeAccessError(f"RLX_LAKE_URI={uri!r} is not of the form s3://BUCKET/PREFIX")
        # Imported here so that boto3 is loaded only for a lake on S3.
        from rlx_assets.lake.crypto_lake import CryptoLakeSource

        return CryptoLakeSource(
            match["bucket"],
            match["prefix"],
            DataLayout(settings.data_root).lakeapi_cache,
            timeout_s=settings.download_timeout_s,
            connect_timeout_s=settings.download_connect_timeout_s,
        )
    if "://" in uri and not uri.startswith("file://"):
        raise LakeAccessError(
            f"RLX_LAKE_URI={uri!r}: only local paths and s3:// URIs are supported"
        )
    return LocalLakeSource(Path(uri.removeprefix("file://")).expanduser().resolve())
