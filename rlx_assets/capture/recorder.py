"""The live recorder of Binance golden samples: pure asyncio, no Dagster.

One combined-stream WebSocket connection (``<ws>?streams=btcusdt@trade/btcusdt@aggTrade/…``), so
messages keep the order in which they arrived. Every frame becomes one line
(``rlx_assets.capture.line_format``), written by a writer thread into rotating gzip files
(``files.py``). After every (re)connect, a REST depth snapshot per symbol, once the first depth
event of that symbol arrived on the new connection (so the snapshot is newer than the first
buffered diff; fetched after ``snapshot_wait_s`` at the latest; skipped when no depth stream is
recorded; non-200 answers are logged and retried with backoff while the connection lasts; a
request in flight when the connection drops still completes and is recorded). Every interruption
gets one gap marker.

Memory stays bounded: lines wait in a queue of at most ``queue_max_bytes``
(``line_queue.py``). When it is full the receive loop stops reading for up to
``backpressure_s`` (the socket buffers), then drops lines until the queue has drained to half,
and records a ``queue_overflow`` gap; nothing is lost silently. ``capture_ns`` is taken when
websockets hands the frame over, so under back-pressure it is late by at most ``backpressure_s``.

Reconnects and snapshot retries wait as ``reconnect.Backoff`` says (capped exponential with
jitter, reset once a connection lived ``backoff_reset_s``; a 429/418 ``Retry-After`` is
honoured). Pings from the server are answered by websockets itself (always on), and our own
keepalive pings detect dead connections.

Imports the other modules of ``rlx_assets.capture`` only (and aiohttp, websockets).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from rlx_assets.capture.depth_snapshot import fetch_depth_snapshot
from rlx_assets.capture.files import RotatingGzipWriter
from rlx_assets.capture.line_format import (
    MALFORMED_STREAM,
    MalformedFrame,
    gap_line,
    malformed_line,
    message_line,
    split_frame,
)
from rlx_assets.capture.line_queue import CaptureSink, CaptureWriteError, LineQueue
from rlx_assets.capture.reconnect import Backoff, retry_after_s
from rlx_assets.capture.recorder_config import RecorderConfig, RecorderStats
from rlx_assets.capture.recorder_log import describe_error, log_event


@dataclass
class _PendingGap:
    start_ns: int
    reason: str
    detail: str


@dataclass
class _Overflow:
    start_ns: int
    dropped: int = 0


class Recorder:
    """Record until ``request_stop()``; ``run()`` then finishes the current file and returns.

    ``sink`` replaces the ``RotatingGzipWriter`` (tests use a deliberately slow one).
    """

    def __init__(self, config: RecorderConfig, *, sink: CaptureSink | None = None):
        self.config = config
        self.stats = RecorderStats()
        self.sink: CaptureSink = sink or RotatingGzipWriter(
            config.out_dir,
            config.market,
            config.symbols,
            config.rotate_seconds,
            on_finalized=self._on_file_finalized,
        )
        self._queue = LineQueue(config.queue_max_bytes)
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer_error: BaseException | None = None
        self._emit_lock: asyncio.Lock | None = None
        self._last_message_ns: int | None = None  # last frame received
        self._last_written_ns: int | None = None  # last line accepted by the queue
        self._pending_gap: _PendingGap | None = None
        self._overflow: _Overflow | None = None
        self._connected = False
        self._age_expired = False
        self._snapshot_tasks: set[asyncio.Task[None]] = set()

    # -- control ---------------------------------------------------------------------------

    def request_stop(self, why: str = "stop requested") -> None:
        """Ask ``run()`` to finish; callable from the loop's thread (signal handlers) only."""
        if self._stop is not None and not self._stop.is_set():
            log_event(logging.INFO, "stopping", f"stopping: {why}", why=why)
            self._stop.set()

    @property
    def files_written(self) -> list[Path]:
        return list(self.sink.files_written)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._emit_lock = asyncio.Lock()
        cfg = self.config
        writer = threading.Thread(target=self._writer_main, name="rlx-capture-writer", daemon=True)
        writer.start()
        log_event(
            logging.INFO,
            "started",
            f"recording {cfg.stream_url} into {cfg.out_dir}",
            url=cfg.stream_url,
            rest_url=cfg.endpoints.rest_url,
            out_dir=str(cfg.out_dir),
            rotate_seconds=cfg.rotate_seconds,
        )
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=cfg.rest_timeout_s), trust_env=True
        )
        connection = asyncio.create_task(self._connection_loop(session), name="rlx-capture-ws")
        status = asyncio.create_task(self._status_loop(), name="rlx-capture-status")
        stop = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({connection, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            tasks = (connection, status, stop, *self._snapshot_tasks)
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            self._close_open_gaps(time.time_ns())
            self._queue.close()
            await asyncio.to_thread(writer.join)
            await session.close()
            log_event(
                logging.INFO, "stopped", "stopped: " + self.status_line(), **self._status_fields()
            )
        if self._writer_error is not None:
            raise CaptureWriteError(f"writing capture files failed: {self._writer_error!r}") from (
                self._writer_error
            )
        failure = results[0]
        if isinstance(failure, BaseException) and not isinstance(failure, asyncio.CancelledError):
            raise failure

    # -- connection ------------------------------------------------------------------------

    async def _connection_loop(self, session: aiohttp.ClientSession) -> None:
        cfg = self.config
        backoff = Backoff(cfg.backoff_base_s, cfg.backoff_cap_s)
        while True:
            try:
                ws = await websockets.connect(
                    cfg.stream_url,
                    open_timeout=cfg.open_timeout_s,
                    close_timeout=cfg.close_timeout_s,
                    ping_interval=cfg.ping_interval_s,
                    ping_timeout=cfg.ping_timeout_s,
                    max_size=cfg.max_frame_bytes,
                )
            except InvalidURI:
                raise
            except (OSError, TimeoutError, WebSocketException) as exc:
                self.stats.connect_failures += 1
                retry_after = 0.0
                if isinstance(exc, InvalidStatus):
                    retry_after = retry_after_s(exc.response.headers.get("Retry-After"))
                attempt = backoff.failures
                delay = backoff.next_delay(retry_after)
                log_event(
                    logging.WARNING,
                    "connect_failed",
                    f"connecting failed ({describe_error(exc)}); retrying in {delay:.2f} s",
                    error=describe_error(exc),
                    retry_in_s=round(delay, 3),
                    attempt=attempt,
                )
                await asyncio.sleep(delay)
                continue

            opened = time.monotonic()
            self.stats.connections += 1
            self._connected = True
            self._age_expired = False
            log_event(
                logging.INFO,
                "connected",
                f"connected (connection {self.stats.connections})",
                connection=self.stats.connections,
            )
            try:
                reason, detail = await self._receive(ws, session)
            finally:
                self._connected = False
                await ws.close()
            lived = time.monotonic() - opened
            if self._last_message_ns is not None and self._pending_gap is None:
                self._pending_gap = _PendingGap(self._last_message_ns, reason, detail)
            if reason == "max_connection_age":
                delay = 0.0
                backoff.reset()
            else:
                if lived >= cfg.backoff_reset_s:
                    backoff.reset()
                delay = backoff.next_delay()
            log_event(
                logging.WARNING,
                "disconnected",
                f"disconnected: {reason} ({detail}) after {lived:.1f} s; "
                f"reconnecting in {delay:.2f} s",
                reason=reason,
                detail=detail,
                lived_s=round(lived, 3),
                retry_in_s=round(delay, 3),
            )
            await asyncio.sleep(delay)

    async def _receive(
        self, ws: websockets.ClientConnection, session: aiohttp.ClientSession
    ) -> tuple[str, str]:
        """Read frames until the connection ends; return the gap reason and its detail."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        first_depth = {symbol: asyncio.Event() for symbol in cfg.symbols}
        depth_waiting = dict(first_depth) if cfg.records_depth else {}  # emptied as events come
        ended = asyncio.Event()
        if cfg.records_depth:
            for symbol in cfg.symbols:
                task = asyncio.create_task(
                    fetch_depth_snapshot(
                        session, cfg, symbol, first_depth[symbol], ended, self.stats, self._emit
                    )
                )
                self._snapshot_tasks.add(task)
                task.add_done_callback(self._snapshot_tasks.discard)
        age_timer = loop.call_later(cfg.max_connection_age_s, self._expire_connection, ws)
        try:
            while True:
                try:
                    frame = await ws.recv()
                except ConnectionClosed as exc:
                    return self._classify_close(exc)
                capture_ns = time.time_ns()
                stream = await self._on_frame(capture_ns, frame)
                if depth_waiting:
                    symbol, _, channel = stream.partition("@")
                    if channel.startswith("depth") and symbol in depth_waiting:
                        depth_waiting.pop(symbol).set()
        finally:
            age_timer.cancel()
            ended.set()  # snapshot requests in flight finish; none is started or retried
            for event in first_depth.values():
                event.set()

    def _expire_connection(self, ws: websockets.ClientConnection) -> None:
        self._age_expired = True
        log_event(
            logging.INFO, "max_connection_age", "connection reached its maximum age; renewing"
        )
        asyncio.ensure_future(ws.close(1000, "max connection age"))

    def _classify_close(self, exc: ConnectionClosed) -> tuple[str, str]:
        detail = describe_error(exc)
        if self._age_expired:
            return "max_connection_age", detail
        if exc.rcvd is not None and (exc.sent is None or exc.rcvd_then_sent):
            return "server_close", detail
        return "disconnect", detail

    async def _on_frame(self, capture_ns: int, frame: str | bytes) -> str:
        if isinstance(frame, bytes):
            with contextlib.suppress(UnicodeDecodeError):
                frame = frame.decode("utf-8")
        try:
            if isinstance(frame, bytes):
                raise MalformedFrame("binary_not_utf8")
            stream, data_raw = split_frame(frame)
            line = message_line(capture_ns, stream, data_raw)
        except MalformedFrame as exc:
            stream = MALFORMED_STREAM
            line = malformed_line(capture_ns, frame, exc.reason)
            self.stats.malformed += 1
            log_event(
                logging.WARNING,
                "malformed",
                f"malformed frame kept raw ({exc.reason}): {frame[:80]!r}",
                reason=exc.reason,
                length=len(frame),
            )
        if self._pending_gap is not None:
            gap, self._pending_gap = self._pending_gap, None
            self._write_gap(gap.start_ns, capture_ns, gap.reason, gap.detail)
        await self._emit(capture_ns, line)
        self._last_message_ns = capture_ns
        self.stats.messages += 1
        self.stats.by_stream[stream] += 1
        return stream

    # -- output ----------------------------------------------------------------------------

    async def _emit(self, capture_ns: int, line: bytes) -> None:
        """Queue a line; under a full queue apply back-pressure, then drop with a gap marker."""
        assert self._emit_lock is not None
        if (
            self._overflow is None
            and not self._emit_lock.locked()
            and self._queue.try_put(capture_ns, line)
        ):
            self._last_written_ns = capture_ns
            return
        async with self._emit_lock:
            if self._overflow is None:
                deadline = time.monotonic() + self.config.backpressure_s
                while not self._queue.try_put(capture_ns, line):
                    if time.monotonic() >= deadline:
                        start = (
                            self._last_written_ns
                            if self._last_written_ns is not None
                            else capture_ns
                        )
                        self._overflow = _Overflow(start)
                        log_event(
                            logging.WARNING,
                            "queue_overflow",
                            "the writer cannot keep up: dropping lines until the queue drains",
                            queue_bytes=self._queue.nbytes,
                        )
                        break
                    try:
                        await asyncio.sleep(0.005)
                    except asyncio.CancelledError:  # stopping: this line was received, keep it
                        self._queue.put(capture_ns, line)
                        self._last_written_ns = capture_ns
                        raise
                else:
                    self._last_written_ns = capture_ns
                    return
            if self._queue.nbytes <= self._queue.max_bytes // 2:
                overflow, self._overflow = self._overflow, None
                self._write_gap(
                    overflow.start_ns, capture_ns, "queue_overflow", "", dropped=overflow.dropped
                )
                self._queue.put(capture_ns, line)
                self._last_written_ns = capture_ns
            else:
                self._overflow.dropped += 1
                self.stats.dropped += 1

    def _write_gap(
        self, start_ns: int, end_ns: int, reason: str, detail: str, dropped: int | None = None
    ) -> None:
        self._queue.put(end_ns, gap_line(start_ns, end_ns, reason, detail, dropped))
        self._last_written_ns = end_ns
        self.stats.gaps += 1
        log_event(
            logging.WARNING,
            "gap",
            f"gap of {(end_ns - start_ns) / 1e9:.3f} s recorded ({reason})",
            start_ns=start_ns,
            end_ns=end_ns,
            reason=reason,
            detail=detail,
            dropped=dropped,
        )

    def _close_open_gaps(self, now_ns: int) -> None:
        if self._overflow is not None:
            overflow, self._overflow = self._overflow, None
            self._write_gap(
                overflow.start_ns,
                now_ns,
                "queue_overflow",
                "recorder stopped while dropping",
                dropped=overflow.dropped,
            )
        if self._pending_gap is not None:
            gap, self._pending_gap = self._pending_gap, None
            detail = f"{gap.detail}; recorder stopped before the stream resumed".lstrip("; ")
            self._write_gap(gap.start_ns, now_ns, gap.reason, detail)

    def _writer_main(self) -> None:
        cfg = self.config
        last_flush = time.monotonic()
        try:
            while True:
                batch, finished = self._queue.get_batch(cfg.flush_interval_s)
                for capture_ns, line in batch:
                    self.sink.write(capture_ns, line)
                if finished:
                    self.sink.close()
                    return
                now = time.monotonic()
                if not batch or now - last_flush >= cfg.flush_interval_s:
                    self.sink.rotate_if_due(time.time_ns())
                    self.sink.flush()
                    last_flush = now
        except BaseException as exc:  # noqa: BLE001 - reported to the loop, which stops
            self._writer_error = exc
            with contextlib.suppress(BaseException):
                self.sink.abort()
            log_event(logging.ERROR, "writer_failed", f"writing failed: {exc!r}", error=repr(exc))
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self.request_stop, "writer failed")

    def _on_file_finalized(self, path: Path, sha256: str, lines: int) -> None:
        log_event(
            logging.INFO,
            "file_finalized",
            f"finished {path.name} ({lines} lines)",
            path=str(path),
            sha256=sha256,
            lines=lines,
        )

    # -- status ----------------------------------------------------------------------------

    async def _status_loop(self) -> None:
        interval = self.config.status_interval_s
        previous = Counter(self.stats.by_stream)
        last = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            current = Counter(self.stats.by_stream)
            rates = {k: (current[k] - previous[k]) / (now - last) for k in sorted(current)}
            previous, last = current, now
            log_event(logging.INFO, "status", self.status_line(rates), **self._status_fields(rates))

    def _status_fields(self, rates: dict[str, float] | None = None) -> dict[str, Any]:
        s = self.stats
        fields: dict[str, Any] = {
            "messages": s.messages,
            "snapshots": s.snapshots,
            "files_written": len(self.sink.files_written),
            "gaps": s.gaps,
            "reconnects": s.reconnects,
            "malformed": s.malformed,
            "dropped": s.dropped,
            "queue_bytes": self._queue.nbytes,
            "connected": self._connected,
        }
        if rates is not None:
            fields["rates"] = {k: round(v, 2) for k, v in rates.items()}
        return fields

    def status_line(self, rates: dict[str, float] | None = None) -> str:
        s = self.stats
        parts = []
        if rates is not None:
            per_stream = ", ".join(f"{k} {v:.1f}" for k, v in rates.items())
            parts.append(f"{sum(rates.values()):.1f} msg/s [{per_stream}]")
        parts += [
            f"{s.messages} messages",
            f"{s.snapshots} snapshots",
            f"{len(self.sink.files_written)} files",
            f"{s.gaps} gaps",
            f"{s.reconnects} reconnects",
            f"{s.malformed} malformed",
            f"{s.dropped} dropped",
            f"queue {self._queue.nbytes / 2**20:.1f} MiB",
            "connected" if self._connected else "disconnected",
        ]
        return " | ".join(parts)
