"""Structured events and the one formatter of JSON log lines; credentials never leave in them.

With `RLX_LOG_FORMAT=json` the acquisition, gate, certificate and recovery events are written
as one JSON object per line on the stdout of the process running the steps (`dagster asset
materialize`, a run worker, a Celery worker): `{"ts", "level", "event", "message", "run_id",
"partition", "date", "market", ...figures}`. Dagster's own log stays text on stderr: a job's
loggers can only be chosen by each run's config, not once for every run. With the default
`text` nothing more is written: `context.log` says the same in words, as before.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from typing import Any

from rlx_assets.config import load_settings

# Credentials that may be in the environment: their values are removed from every message shown.
SECRET_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "RLX_CERTIFICATE_KEY",
)

events_logger = logging.getLogger("rlx_assets.events")


def redact(text: str) -> str:
    """Remove any credential value of the environment from a message before it is shown."""
    for name in SECRET_VARIABLES:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, f"<{name} redacted>")
    return text


def redacted(value: Any) -> Any:
    """`value` with `redact` applied to every string in it (dicts, lists and tuples too)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(k)): redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redacted(v) for v in value]
    return value


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record: ts, level, event, message, then the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "event": getattr(record, "event", "log"),
            "message": record.getMessage(),
        }
        for key, value in (getattr(record, "fields", None) or {}).items():
            payload.setdefault(key, value)
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(redacted(payload), default=lambda v: redact(str(v)))


class _StdoutHandler(logging.StreamHandler):
    """Writes to the `sys.stdout` of the moment (a step's redirected stream, a test's capture)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _json_events_logger() -> logging.Logger:
    if not events_logger.handlers:
        handler = _StdoutHandler()
        handler.setFormatter(JsonLogFormatter())
        events_logger.addHandler(handler)
        events_logger.setLevel(logging.DEBUG)
        events_logger.propagate = False  # the line is the record: no second, text copy
    return events_logger


def partition_fields(market: str, day: dt.date | str) -> dict[str, str]:
    """The correlation fields of a date x market partition (its Dagster key, date, market)."""
    date = day if isinstance(day, str) else day.isoformat()
    return {"partition": f"{date}|{market}", "date": date, "market": market}


def log_event(event: str, message: str = "", *, level: int = logging.INFO, **fields: Any) -> None:
    """One structured event (`fields`: `run_id`, `partition_fields`, figures): a JSON line on
    stdout when `RLX_LOG_FORMAT=json`, else nothing. Secrets in any value are redacted."""
    if load_settings().log_format != "json":
        return
    _json_events_logger().log(level, message, extra={"event": event, "fields": fields})
