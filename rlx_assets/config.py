"""Settings read from the environment: one place for every `RLX_*` variable and its default."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from rlx_assets.markets import binance_instrument, parse_market_key
from rlx_assets.remote import is_remote_uri
from rlx_assets.retry import RetryPolicy

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CAPTURES_DIR = PROJECT_ROOT / "data" / "sample" / "captures"
SAMPLE_LAKE_DIR = PROJECT_ROOT / "data" / "sample" / "lake"

# The markets of the bundled sample captures; RLX_MARKETS overrides the list.
DEFAULT_MARKETS = ("BINANCE.BTC-USDT", "BINANCE_FUTURES.BTC-USDT-PERP")
REAL_CRYPTO_LAKE_URI = "s3://qnt.data/market-data/cryptofeed"


class RlxSettings(BaseSettings):
    """`RLX_DATA_DIR`, `RLX_LAKE_URI`, `RLX_MARKETS`, `RLX_START_DATE` and download tuning."""

    model_config = SettingsConfigDict(env_prefix="RLX_", extra="ignore")

    # A directory, or s3://bucket/prefix: then the stages work in a local copy (RLX_WORK_DIR)
    # and every file lives in the bucket (rlx_assets/remote.py).
    data_dir: str = "data"
    work_dir: Path | None = None
    data_s3_endpoint_url: str | None = None  # unset: AWS, or AWS_ENDPOINT_URL_S3
    data_s3_profile: str | None = None  # unset: the default AWS credential chain
    # Unset: the bundled sample lake; a path: a local lake; s3://bucket/prefix: Crypto Lake.
    lake_uri: str | None = None
    markets: Annotated[tuple[str, ...], NoDecode] = DEFAULT_MARKETS
    start_date: dt.date = dt.date(2024, 1, 1)
    # Completed golden-sample capture files; unset: the bundled captures for the sample lake,
    # else $RLX_DATA_DIR/golden/raw (where `rlx capture --out` should write).
    capture_dir: Path | None = None
    max_gap_ratio: float = Field(0.0001, ge=0, le=1)
    # Gate thresholds profile (`sample` | `production`); unset: chosen from the lake.
    gate_profile: str | None = None
    download_attempts: int = 5
    download_backoff_initial_s: float = 1.0
    download_backoff_max_s: float = 30.0
    download_timeout_s: float = 60.0  # read timeout of one request to Crypto Lake
    # Short: an unreachable endpoint should fail (after the retries) in seconds, not minutes.
    download_connect_timeout_s: float = 10.0
    # A downloaded file nothing the server published can verify (no checksum, a multipart
    # ETag of unknown part size) fails the download; true stores it, and its manifest entry,
    # metadata and certificate say "unverified".
    allow_unverified_downloads: bool = False
    # HMAC-SHA256 key signing readiness certificates (unset: certificates say "signed": false).
    # A SecretStr so that no repr, log or error ever shows it.
    certificate_key: SecretStr | None = None
    # Where a run's steps execute: `multiprocess` (subprocesses of the run, the default) or
    # `celery` (Celery workers fed through RLX_CELERY_BROKER; README "Scaling out").
    executor: Literal["multiprocess", "celery"] = "multiprocess"
    celery_broker: str | None = None  # redis://HOST:PORT/DB
    celery_backend: str | None = None  # unset: the broker
    # A step whose worker died is given to another worker this long after it started: keep it
    # above the longest step, or a step still running is started a second time.
    celery_visibility_timeout_s: int = Field(3600, gt=0)
    # A run whose run worker did not renew its lease (every sixth of this) for this long, and
    # that logged no event in that time, is dead: marked failed, its pool slots and files freed.
    run_lease_s: float = Field(120.0, ge=1)
    # `json`: the acquisition, gate, certificate and recovery events also as one JSON object
    # per line on stdout (rlx_assets/structured_log.py); `text`: Dagster's log only.
    log_format: Literal["text", "json"] = "text"

    @field_validator("markets", mode="before")
    @classmethod
    def _split_markets(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(m.strip() for m in value.split(",") if m.strip())
        if not value:
            raise ValueError("RLX_MARKETS is empty: name at least one market like BINANCE.BTC-USDT")
        for market in value if isinstance(value, tuple | list) else ():
            # Refused at load time, not at the first download: only Binance markets are served.
            binance_instrument(*parse_market_key(market))
        return value

    @field_validator("celery_broker", "celery_backend")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://")):
            raise ValueError("must be a Redis URL like redis://127.0.0.1:6379/0")
        return value

    @field_validator("lake_uri", mode="before")
    @classmethod
    def _blank_lake_uri_means_sample(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("data_dir", mode="before")
    @classmethod
    def _data_dir_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, Path) else value

    @property
    def data_root(self) -> Path:
        """The local data root: `RLX_DATA_DIR`, or the working copy of an `s3://` one."""
        if not is_remote_uri(self.data_dir):
            return Path(self.data_dir).expanduser().resolve()
        if self.work_dir is not None:
            return self.work_dir.expanduser().resolve()
        bucket_and_prefix = self.data_dir.removeprefix("s3://").strip("/")
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return (cache / "rlx-assets" / "work" / bucket_and_prefix).resolve()

    def retry_policy(self) -> RetryPolicy:
        """How every request to object storage is retried (the lake's and the data root's)."""
        return RetryPolicy(
            self.download_attempts, self.download_backoff_initial_s, self.download_backoff_max_s
        )

    @property
    def capture_root(self) -> Path:
        if self.capture_dir is not None:
            return self.capture_dir.expanduser().resolve()
        if self.lake_uri is None:
            return SAMPLE_CAPTURES_DIR
        return self.data_root / "golden" / "raw"


class SettingsError(ValueError):
    """A bad environment variable in one line: its name and value, what is wrong, an example."""


def settings_error(exc: ValidationError, settings_class: type[BaseSettings]) -> SettingsError:
    """One line per pydantic error of `settings_class`, each naming the variable and a valid
    value (the field's default), instead of pydantic's multi-line report."""
    prefix = settings_class.model_config.get("env_prefix", "")
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        variable = f"{prefix}{field}".upper()
        # Our validators' messages stand as written; pydantic's own ("Input should be ...")
        # continue the line in lower case.
        reason = error["msg"].removeprefix("Value error, ")
        if reason.startswith("Input "):
            reason = "i" + reason[1:]
        example = _example_value(settings_class, field)
        problems.append(
            f"{variable}={error['input']!r}: {reason}"
            + (f" (valid example: {variable}={example})" if example else "")
        )
    return SettingsError("; ".join(problems))


def _example_value(settings_class: type[BaseSettings], field: str) -> str | None:
    info = settings_class.model_fields.get(field)
    default = None if info is None else info.default
    if default is None or default is PydanticUndefined:
        return None
    if isinstance(default, tuple | list):
        return ",".join(map(str, default))
    return default.isoformat() if isinstance(default, dt.date) else str(default)


def load_settings() -> RlxSettings:
    """The `RLX_*` settings; a bad variable raises SettingsError (one line, with an example)."""
    try:
        return RlxSettings()
    except ValidationError as exc:
        raise settings_error(exc, RlxSettings) from None
