"""How long the recorder waits before it tries again (to connect, or to fetch a depth snapshot).

Capped exponential backoff with equal jitter, built from tenacity's wait strategies (the library
acquisition retries with, ``rlx_assets.retry.with_retries``); a ``Retry-After`` from the
server (REST 429/418, or a refused WebSocket handshake) is a floor. The recorder keeps its own
loop because its attempt count outlives one connection: it restarts only after a connection
lived ``backoff_reset_s``, and a connection renewed at its maximum age reconnects at once.
Imports tenacity only.
"""

from __future__ import annotations

import tenacity


class Backoff:
    """Delays for successive failures: failure n (0-based) waits ``c/2 + U(0, c/2)`` with
    ``c = min(cap_s, base_s * 2**n)``: never above the cap, never near zero (Binance limits
    connection attempts), and spread so that many recorders that dropped together do not come
    back together. ``reset()`` starts the count again."""

    def __init__(self, base_s: float, cap_s: float):
        half = {"multiplier": base_s / 2, "max": cap_s / 2}
        # tenacity's exponential wait gives the floor c/2, its random exponential wait U(0, c/2).
        self._wait = tenacity.wait_exponential(**half) + tenacity.wait_random_exponential(**half)
        self.failures = 0

    def next_delay(self, retry_after_s: float = 0.0) -> float:
        """Count one more failure and return the delay before the next attempt."""
        self.failures += 1
        state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})
        state.attempt_number = self.failures
        return max(retry_after_s, self._wait(state))

    def reset(self) -> None:
        self.failures = 0


def retry_after_s(header: str | None) -> float:
    """Seconds of a ``Retry-After`` header; 0 when absent or not a number of seconds."""
    try:
        return max(0.0, float(header)) if header else 0.0
    except ValueError:
        return 0.0
