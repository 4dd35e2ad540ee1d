"""The recorder's logger and its structured events: a message plus an event name and fields,
which ``structured_log.JsonLogFormatter`` turns into one JSON object per line. Imports nothing
of the project.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("rlx_assets.capture")


def log_event(level: int, event: str, message: str, **fields: Any) -> None:
    logger.log(level, message, extra={"event": event, "fields": fields})


def describe_error(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
