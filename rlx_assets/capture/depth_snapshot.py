"""The sync half of a connection: the REST depth snapshot per symbol, fetched once the
connection's first depth event arrived and retried with ``reconnect.Backoff`` (honouring
``Retry-After``) while the connection lasts. Imports the other modules of
``rlx_assets.capture`` only (and aiohttp).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import aiohttp

from rlx_assets.capture.line_format import (
    SnapshotError,
    message_line,
    snapshot_data_text,
    snapshot_stream,
)
from rlx_assets.capture.reconnect import Backoff, retry_after_s
from rlx_assets.capture.recorder_config import RecorderConfig, RecorderStats
from rlx_assets.capture.recorder_log import describe_error, log_event


async def fetch_depth_snapshot(
    session: aiohttp.ClientSession,
    cfg: RecorderConfig,
    symbol: str,
    first_depth: asyncio.Event,
    connection_ended: asyncio.Event,
    stats: RecorderStats,
    emit: Callable[[int, bytes], Awaitable[None]],
) -> None:
    """Fetch one symbol's depth snapshot for the current connection and ``emit`` its line,
    retrying until it succeeds or the connection ends (a request already in flight then still
    completes). Waits for the connection's first depth event of the symbol first (at most
    ``snapshot_wait_s``), so the snapshot is newer than the first buffered diff."""
    if not await wait_event(first_depth, cfg.snapshot_wait_s):
        log_event(
            logging.WARNING,
            "snapshot_early",
            f"{symbol}: no depth event within {cfg.snapshot_wait_s} s; fetching the snapshot",
            symbol=symbol,
        )
    endpoints = cfg.endpoints
    params = {"symbol": symbol.upper(), "limit": str(endpoints.snapshot_limit)}
    backoff = Backoff(cfg.backoff_base_s, cfg.backoff_cap_s)
    while not connection_ended.is_set():
        retry_after = 0.0
        try:
            async with session.get(endpoints.rest_url, params=params) as response:
                body = await response.read()
                status = response.status
                retry_after_header = response.headers.get("Retry-After")
            if status != 200:
                retry_after = retry_after_s(retry_after_header)
                raise SnapshotError(f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}")
            data_raw = snapshot_data_text(body)
        except (aiohttp.ClientError, TimeoutError, SnapshotError) as exc:
            stats.snapshot_failures += 1
            attempt = backoff.failures
            delay = backoff.next_delay(retry_after)
            log_event(
                logging.WARNING,
                "snapshot_failed",
                f"{symbol}: depth snapshot failed ({describe_error(exc)}); "
                f"retrying in {delay:.2f} s",
                symbol=symbol,
                error=describe_error(exc),
                retry_in_s=round(delay, 3),
                attempt=attempt,
            )
            await wait_event(connection_ended, delay)
            continue
        # Stamped here, with no await before it is queued: lines stay in capture_ns order.
        capture_ns = time.time_ns()
        line = message_line(capture_ns, snapshot_stream(symbol), data_raw)
        await emit(capture_ns, line)
        stats.snapshots += 1
        log_event(
            logging.INFO,
            "snapshot",
            f"{symbol}: depth snapshot recorded ({len(body)} bytes)",
            symbol=symbol,
            bytes=len(body),
        )
        return


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds; whether it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
    return event.is_set()
