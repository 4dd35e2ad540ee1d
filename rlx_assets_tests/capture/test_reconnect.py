"""Reconnect and snapshot-retry delays: capped exponential backoff with jitter, a reset, and
``Retry-After`` as a floor."""

from __future__ import annotations

import pytest

from rlx_assets.capture.reconnect import Backoff, retry_after_s


def test_backoff_is_exponential_capped_and_jittered():
    for _ in range(50):
        backoff = Backoff(0.5, 30.0)
        for failure in range(40):
            ceiling = min(30.0, 0.5 * 2**failure)
            assert ceiling / 2 <= backoff.next_delay() <= ceiling <= 30.0
    fourth = set()
    for _ in range(100):
        backoff = Backoff(0.5, 30.0)
        for _ in range(3):
            backoff.next_delay()
        fourth.add(backoff.next_delay())
    assert len(fourth) == 100 and max(fourth) - min(fourth) > 1.0  # jitter spreads [2, 4]
    backoff = Backoff(0.5, 30.0)
    backoff.failures = 10_000
    assert 15.0 <= backoff.next_delay() <= 30.0


def test_backoff_starts_over_after_a_reset():
    backoff = Backoff(0.5, 30.0)
    for _ in range(10):
        backoff.next_delay()
    assert backoff.next_delay() >= 15.0
    backoff.reset()
    assert 0.25 <= backoff.next_delay() <= 0.5


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("7", 7.0), ("1.5", 1.5), ("0", 0.0), (None, 0.0), ("", 0.0), ("-3", 0.0),
     ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)  # fmt: skip
def test_retry_after_header_in_seconds(header, seconds):
    assert retry_after_s(header) == seconds


def test_retry_after_is_a_floor_above_the_backoff():
    backoff = Backoff(0.5, 30.0)
    assert backoff.next_delay(retry_after_s("7")) == 7.0  # the backoff alone: [0.25, 0.5]
    assert 0.5 <= backoff.next_delay(retry_after_s("0")) <= 1.0  # the count went on
