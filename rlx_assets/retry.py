"""The one retry policy of every request to object storage (the vendor's lake and an ``s3://``
data root): a transient failure (5xx, throttling, timeout, reset, checksum) is retried with
exponential backoff and full jitter, a bounded number of times (``RLX_DOWNLOAD_ATTEMPTS``,
``RLX_DOWNLOAD_BACKOFF_*``); any other failure is raised at once. Imports tenacity only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    initial_s: float = 1.0
    max_s: float = 30.0


class TransientError(Exception):
    """A failure worth trying again (5xx, throttling, timeout, reset, corrupt transfer)."""


def with_retries(
    action: Callable[[], T],
    policy: RetryPolicy,
    on_retry: Callable[[int, BaseException, float], None] = lambda *_: None,
) -> T:
    """Run `action`, retrying a TransientError with exponential backoff and full jitter;
    `on_retry(attempt, error, sleep_s)` is told before each sleep."""
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.attempts),
        wait=tenacity.wait_random_exponential(multiplier=policy.initial_s, max=policy.max_s),
        retry=tenacity.retry_if_exception_type(TransientError),
        before_sleep=lambda state: on_retry(
            state.attempt_number, state.outcome.exception(), state.upcoming_sleep
        ),
        reraise=True,
    )
    return retrying(action)
