"""The live recorder of Binance golden samples: pure asyncio, no Dagster.

One combined-stream WebSocket connection (``<ws>?streams=btcusdt@trade/btcusdt@aggTrade/…``), so
messages keep the order in which they arrived. Every frame becomes one line, written by a writer
thread into rotating gzip files (``files.py``)::

    {"capture_ns":<time.time_ns() at receipt>,"stream":"btcusdt@trade","data":<raw data text>}

``data`` is the exact text of the frame's ``data`` member, spliced in (never parsed and dumped
again), so keys, order, number and string spellings stay the server's. Besides messages:

* REST depth snapshot, per symbol, after every (re)connect, once the first depth event of that
  symbol arrived on the new connection (so the snapshot is newer than the first buffered diff;
  fetched after ``snapshot_wait_s`` at the latest; skipped when no depth stream is recorded;
  non-200 answers are logged and retried with backoff while the connection lasts; a request in
  flight when the connection drops still completes and is recorded):
  ``{"capture_ns":…,"stream":"btcusdt@depthSnapshot","data":<raw REST body>}``.
* gap marker, one per interruption::

      {"capture_ns":<end_ns>,"stream":"rlx.gap","data":{"start_ns":…,"end_ns":…,"reason":"…","detail":"…"}}

  ``start_ns`` is the ``capture_ns`` of the last message received before the interruption and
  ``end_ns`` that of the first one after it (both lines are in the files; whatever the exchange
  sent strictly between them is missing). ``reason`` is ``disconnect`` (connection lost or
  failed), ``server_close`` (the server closed it, e.g. Binance's 24 h limit),
  ``max_connection_age`` (we reconnected before that limit) or ``queue_overflow`` (the disk could
  not keep up; then ``data`` also has ``"dropped": <lines dropped>``). If the recorder stops while
  disconnected or overflowing, ``end_ns`` is the stop time. The marker line is written just before
  the line at ``end_ns``; the snapshot fetched for the new connection follows it.
* malformed frame (not JSON, not an object with a string ``stream`` and an object ``data``, a
  duplicated ``stream``/``data`` key, or line breaks inside ``data``), kept whole::

      {"capture_ns":…,"stream":"rlx.malformed","malformed":true,"raw":"<frame text>","reason":"…"}

  (a binary frame that is not UTF-8 has ``"raw"`` in base64 and ``"raw_encoding":"base64"``).

Memory stays bounded: lines wait in a queue of at most ``queue_max_bytes``. When it is full the
receive loop stops reading for up to ``backpressure_s`` (the socket buffers), then drops lines
until the queue has drained to half, and records a ``queue_overflow`` gap; nothing is lost
silently. ``capture_ns`` is taken when websockets hands the frame over, so under back-pressure it
is late by at most ``backpressure_s``.

Reconnects use capped exponential backoff with jitter (``backoff_delay``), reset once a connection
lived ``backoff_reset_s``; a REST 429/418 ``Retry-After`` is honoured. Pings from the server are
answered by websockets itself (always on), and our own keepalive pings detect dead connections.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
import re
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from rlx_assets.capture.files import RotatingGzipWriter

logger = logging.getLogger("rlx_assets.capture")

GAP_STREAM = "rlx.gap"
MALFORMED_STREAM = "rlx.malformed"
SNAPSHOT_CHANNEL = "depthSnapshot"
DEFAULT_STREAMS = ("trade", "aggTrade", "depth@100ms", "bookTicker")
# Binance closes a connection after 24 h; reconnect on our terms a little before.
DEFAULT_MAX_CONNECTION_AGE_S = 23 * 3600 + 50 * 60


@dataclass(frozen=True)
class MarketEndpoints:
    ws_url: str
    rest_url: str
    snapshot_limit: int


MARKETS: dict[str, MarketEndpoints] = {
    "spot": MarketEndpoints(
        "wss://stream.binance.com:9443/stream", "https://api.binance.com/api/v3/depth", 5000
    ),
    "usdm": MarketEndpoints(
        "wss://fstream.binance.com/stream", "https://fapi.binance.com/fapi/v1/depth", 1000
    ),
}


# --------------------------------------------------------------------------------------------
# Lines


class MalformedFrame(ValueError):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
_FAST_PREFIX = '{"stream":"'


def split_frame(text: str) -> tuple[str, str]:
    """``(stream, raw data text)`` of a combined-stream frame; raises ``MalformedFrame``.

    The data text is the exact slice of ``text`` holding the ``data`` value, located with the
    json module's own decoder (``raw_decode``), so it is valid JSON that ends where the value ends.
    """
    stream_end = text.find('"', len(_FAST_PREFIX)) if text.startswith(_FAST_PREFIX) else -1
    if stream_end > 0 and text.startswith(',"data":', stream_end + 1):
        stream = text[len(_FAST_PREFIX) : stream_end]
        start = stream_end + 9
        try:
            data, end = _DECODER.raw_decode(text, start)
        except ValueError:
            data, end = None, -1
        if (
            isinstance(data, dict)
            and end == len(text) - 1
            and text[end] == "}"
            and "\\" not in stream
            and stream.isprintable()
        ):
            return stream, _single_line(text[start:end])
    return _split_general(text)


def _single_line(raw: str) -> str:
    # A line break inside data (JSON whitespace) would split the line: keep such a frame raw.
    if "\n" in raw or "\r" in raw:
        raise MalformedFrame("multiline")
    return raw


def _split_general(text: str) -> tuple[str, str]:
    try:
        obj = json.loads(text)
    except ValueError:
        raise MalformedFrame("not_json") from None
    if (
        not isinstance(obj, dict)
        or not isinstance(obj.get("stream"), str)
        or not isinstance(obj.get("data"), dict)
    ):
        raise MalformedFrame("no_stream_or_data")
    spans = _member_spans(text)
    start, end = spans["data"]
    return obj["stream"], _single_line(text[start:end])


def _member_spans(text: str) -> dict[str, tuple[int, int]]:
    """Spans of the top-level members' values of a JSON object already known to be valid."""
    spans: dict[str, tuple[int, int]] = {}
    i = _WS.match(text, 0).end() + 1  # past "{"
    i = _WS.match(text, i).end()
    if text[i] == "}":
        return spans
    while True:
        key, i = _DECODER.raw_decode(text, i)
        i = _WS.match(text, i).end() + 1  # past ":"
        i = _WS.match(text, i).end()
        _, end = _DECODER.raw_decode(text, i)
        if key in spans and key in ("stream", "data"):
            raise MalformedFrame("duplicate_key")
        spans[key] = (i, end)
        i = _WS.match(text, end).end()
        if text[i] == "}":
            return spans
        i = _WS.match(text, i + 1).end()  # past ","


def message_line(capture_ns: int, stream: str, data_raw: str) -> bytes:
    return (
        f'{{"capture_ns":{capture_ns},"stream":{json.dumps(stream)},"data":{data_raw}}}\n'.encode()
    )


def malformed_line(capture_ns: int, frame: str | bytes, reason: str) -> bytes:
    record: dict[str, Any] = {
        "capture_ns": capture_ns,
        "stream": MALFORMED_STREAM,
        "malformed": True,
    }
    if isinstance(frame, bytes):
        record["raw"] = base64.b64encode(frame).decode("ascii")
        record["raw_encoding"] = "base64"
    else:
        record["raw"] = frame
    record["reason"] = reason
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()


def gap_line(
    start_ns: int, end_ns: int, reason: str, detail: str = "", dropped: int | None = None
) -> bytes:
    data: dict[str, Any] = {"start_ns": start_ns, "end_ns": end_ns, "reason": reason}
    data["detail"] = detail
    if dropped is not None:
        data["dropped"] = dropped
    record = {"capture_ns": end_ns, "stream": GAP_STREAM, "data": data}
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()


def snapshot_stream(symbol: str) -> str:
    return f"{symbol.lower()}@{SNAPSHOT_CHANNEL}"


def combined_stream_url(ws_url: str, symbols: Sequence[str], streams: Sequence[str]) -> str:
    names = "/".join(f"{symbol}@{stream}" for symbol in symbols for stream in streams)
    return f"{ws_url}{'&' if '?' in ws_url else '?'}streams={names}"


def backoff_delay(
    attempt: int, base_s: float = 0.5, cap_s: float = 30.0, rng: random.Random | None = None
) -> float:
    """Delay before retry number ``attempt`` (0-based): exponential, capped, "equal jitter".

    The result lies in ``[c/2, c]`` with ``c = min(cap_s, base_s * 2**attempt)``: never above the
    cap, never near zero (Binance limits connection attempts), and spread so that many recorders
    that dropped together do not come back together.
    """
    ceiling = min(cap_s, base_s * 2.0 ** min(max(attempt, 0), 62))
    return ceiling / 2 + (rng or random).uniform(0.0, ceiling / 2)


# --------------------------------------------------------------------------------------------
# Queue and writer thread


class LineQueue:
    """A FIFO of ``(capture_ns, line)`` bounded in bytes, shared by the loop and the writer."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: deque[tuple[int, bytes]] = deque()
        self._bytes = 0
        self._closed = False
        self._cond = threading.Condition()

    @property
    def nbytes(self) -> int:
        return self._bytes

    def try_put(self, capture_ns: int, line: bytes) -> bool:
        """Append unless that would exceed the bound (an empty queue always takes one line)."""
        with self._cond:
            if self._items and self._bytes + len(line) > self.max_bytes:
                return False
            self._append(capture_ns, line)
            return True

    def put(self, capture_ns: int, line: bytes) -> None:
        """Append regardless of the bound: for the few lines that must not be dropped."""
        with self._cond:
            self._append(capture_ns, line)

    def _append(self, capture_ns: int, line: bytes) -> None:
        self._items.append((capture_ns, line))
        self._bytes += len(line)
        self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def get_batch(
        self, timeout: float, max_bytes: int = 1 << 20
    ) -> tuple[list[tuple[int, bytes]], bool]:
        """Up to ``max_bytes`` of lines (waiting up to ``timeout`` for the first), and whether the
        queue is closed and now empty."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            batch: list[tuple[int, bytes]] = []
            taken = 0
            while self._items and taken < max_bytes:
                item = self._items.popleft()
                taken += len(item[1])
                batch.append(item)
            self._bytes -= taken
            return batch, self._closed and not self._items


class CaptureSink(Protocol):
    """What the writer thread drives; ``RotatingGzipWriter`` is the real one."""

    files_written: list[Path]

    def write(self, capture_ns: int, line: bytes) -> None: ...
    def flush(self) -> None: ...
    def rotate_if_due(self, now_ns: int) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


class CaptureWriteError(RuntimeError):
    """The writer thread failed (disk full, permissions...): the current file stays ``.partial``."""


# --------------------------------------------------------------------------------------------
# Recorder


@dataclass(frozen=True)
class RecorderConfig:
    symbols: tuple[str, ...]
    out_dir: Path
    market: str = "spot"
    streams: tuple[str, ...] = DEFAULT_STREAMS
    ws_url: str | None = None  # None: the market's Binance endpoint
    rest_url: str | None = None
    snapshot_limit: int | None = None  # None: 5000 spot, 1000 usdm
    rotate_seconds: int = 3600
    max_connection_age_s: float = DEFAULT_MAX_CONNECTION_AGE_S
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    backoff_reset_s: float = 60.0  # a connection that lived this long resets the backoff
    status_interval_s: float = 10.0
    queue_max_bytes: int = 64 << 20
    backpressure_s: float = 1.0
    flush_interval_s: float = 1.0
    snapshot_wait_s: float = 5.0
    open_timeout_s: float = 10.0
    close_timeout_s: float = 2.0
    rest_timeout_s: float = 30.0
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    max_frame_bytes: int = 16 << 20

    def __post_init__(self) -> None:
        if self.market not in MARKETS:
            raise ValueError(f"unknown market {self.market!r}; choose {' or '.join(MARKETS)}")
        symbols = tuple(s.strip().lower() for s in self.symbols if s.strip())
        if not symbols or any(not re.fullmatch(r"[a-z0-9]+", s) for s in symbols):
            raise ValueError(f"symbols must be like btcusdt, got {self.symbols!r}")
        streams = tuple(s.strip() for s in self.streams if s.strip())
        if not streams or any(not re.fullmatch(r"[A-Za-z0-9_@]+", s) for s in streams):
            raise ValueError(f"streams must be like trade or depth@100ms, got {self.streams!r}")
        if self.rotate_seconds <= 0:
            raise ValueError("rotate_seconds must be positive")
        object.__setattr__(self, "symbols", tuple(dict.fromkeys(symbols)))
        object.__setattr__(self, "streams", tuple(dict.fromkeys(streams)))
        object.__setattr__(self, "out_dir", Path(self.out_dir))

    @property
    def endpoints(self) -> MarketEndpoints:
        default = MARKETS[self.market]
        return MarketEndpoints(
            self.ws_url or default.ws_url,
            self.rest_url or default.rest_url,
            self.snapshot_limit or default.snapshot_limit,
        )

    @property
    def stream_url(self) -> str:
        return combined_stream_url(self.endpoints.ws_url, self.symbols, self.streams)

    @property
    def records_depth(self) -> bool:
        return any(s.startswith("depth") for s in self.streams)


@dataclass
class RecorderStats:
    messages: int = 0  # frames received (malformed included)
    by_stream: Counter[str] = field(default_factory=Counter)
    snapshots: int = 0
    malformed: int = 0
    gaps: int = 0
    dropped: int = 0  # lines dropped on queue overflow (each run covered by a gap marker)
    connections: int = 0
    connect_failures: int = 0
    snapshot_failures: int = 0

    @property
    def reconnects(self) -> int:
        return max(0, self.connections - 1)


@dataclass
class _PendingGap:
    start_ns: int
    reason: str
    detail: str


@dataclass
class _Overflow:
    start_ns: int
    dropped: int = 0


def _log(level: int, event: str, message: str, **fields: Any) -> None:
    logger.log(level, message, extra={"event": event, "fields": fields})


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
            _log(logging.INFO, "stopping", f"stopping: {why}", why=why)
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
        _log(
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
            _log(logging.INFO, "stopped", "stopped: " + self.status_line(), **self._status_fields())
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
        attempt = 0
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
                delay = backoff_delay(attempt, cfg.backoff_base_s, cfg.backoff_cap_s)
                if isinstance(exc, InvalidStatus):
                    delay = max(delay, _retry_after(exc.response.headers.get("Retry-After")))
                _log(
                    logging.WARNING,
                    "connect_failed",
                    f"connecting failed ({_describe(exc)}); retrying in {delay:.2f} s",
                    error=_describe(exc),
                    retry_in_s=round(delay, 3),
                    attempt=attempt,
                )
                attempt += 1
                await asyncio.sleep(delay)
                continue

            opened = time.monotonic()
            self.stats.connections += 1
            self._connected = True
            self._age_expired = False
            _log(
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
                delay, attempt = 0.0, 0
            else:
                if lived >= cfg.backoff_reset_s:
                    attempt = 0
                delay = backoff_delay(attempt, cfg.backoff_base_s, cfg.backoff_cap_s)
                attempt += 1
            _log(
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
                    self._fetch_snapshot(session, symbol, first_depth[symbol], ended)
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
        _log(logging.INFO, "max_connection_age", "connection reached its maximum age; renewing")
        asyncio.ensure_future(ws.close(1000, "max connection age"))

    def _classify_close(self, exc: ConnectionClosed) -> tuple[str, str]:
        detail = _describe(exc)
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
            _log(
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

    # -- snapshots -------------------------------------------------------------------------

    async def _fetch_snapshot(
        self,
        session: aiohttp.ClientSession,
        symbol: str,
        first_depth: asyncio.Event,
        connection_ended: asyncio.Event,
    ) -> None:
        """Fetch one symbol's depth snapshot for the current connection, retrying until it
        succeeds or the connection ends (a request already in flight then still completes)."""
        cfg = self.config
        if not await _wait_event(first_depth, cfg.snapshot_wait_s):
            _log(
                logging.WARNING,
                "snapshot_early",
                f"{symbol}: no depth event within {cfg.snapshot_wait_s} s; fetching the snapshot",
                symbol=symbol,
            )
        endpoints = cfg.endpoints
        params = {"symbol": symbol.upper(), "limit": str(endpoints.snapshot_limit)}
        attempt = 0
        while not connection_ended.is_set():
            retry_after = 0.0
            try:
                async with session.get(endpoints.rest_url, params=params) as response:
                    body = await response.read()
                    status = response.status
                    retry_after_header = response.headers.get("Retry-After")
                if status != 200:
                    retry_after = _retry_after(retry_after_header)
                    raise _SnapshotError(f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}")
                data_raw = _snapshot_text(body)
            except (aiohttp.ClientError, TimeoutError, _SnapshotError) as exc:
                self.stats.snapshot_failures += 1
                delay = max(
                    retry_after, backoff_delay(attempt, cfg.backoff_base_s, cfg.backoff_cap_s)
                )
                _log(
                    logging.WARNING,
                    "snapshot_failed",
                    f"{symbol}: depth snapshot failed ({_describe(exc)}); "
                    f"retrying in {delay:.2f} s",
                    symbol=symbol,
                    error=_describe(exc),
                    retry_in_s=round(delay, 3),
                    attempt=attempt,
                )
                attempt += 1
                await _wait_event(connection_ended, delay)
                continue
            # Stamped here, with no await before it is queued: lines stay in capture_ns order.
            capture_ns = time.time_ns()
            line = message_line(capture_ns, snapshot_stream(symbol), data_raw)
            await self._emit(capture_ns, line)
            self.stats.snapshots += 1
            _log(
                logging.INFO,
                "snapshot",
                f"{symbol}: depth snapshot recorded ({len(body)} bytes)",
                symbol=symbol,
                bytes=len(body),
            )
            return

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
                        _log(
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
        _log(
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
            _log(logging.ERROR, "writer_failed", f"writing failed: {exc!r}", error=repr(exc))
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self.request_stop, "writer failed")

    def _on_file_finalized(self, path: Path, sha256: str, lines: int) -> None:
        _log(
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
            _log(logging.INFO, "status", self.status_line(rates), **self._status_fields(rates))

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


class _SnapshotError(Exception):
    pass


def _snapshot_text(body: bytes) -> str:
    """The REST body as text, checked to be a one-line depth snapshot object."""
    try:
        text = body.decode("utf-8").strip()
        obj = json.loads(text)
    except ValueError as exc:
        raise _SnapshotError(f"body is not JSON: {body[:80]!r}") from exc
    if not isinstance(obj, dict) or "lastUpdateId" not in obj:
        raise _SnapshotError(f"body is not a depth snapshot: {body[:80]!r}")
    if "\n" in text or "\r" in text:
        raise _SnapshotError("body spans several lines")
    return text


async def _wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds; whether it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
    return event.is_set()


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --------------------------------------------------------------------------------------------
# Entry point


async def record_until_signalled(
    config: RecorderConfig, signals: Iterable[signal.Signals] = (signal.SIGINT, signal.SIGTERM)
) -> Recorder:
    """Run a recorder until SIGINT/SIGTERM; a second signal gets the default (abrupt) action."""
    recorder = Recorder(config)
    loop = asyncio.get_running_loop()
    signals = tuple(signals)

    def on_signal(sig: signal.Signals) -> None:
        for s in signals:
            loop.remove_signal_handler(s)
        recorder.request_stop(f"received {sig.name}")

    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await recorder.run()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    return recorder


def run_capture(config: RecorderConfig) -> int:
    """Record until SIGINT/SIGTERM; 0 after a clean stop, 1 when the files could not be written."""
    try:
        asyncio.run(record_until_signalled(config))
    except CaptureWriteError as exc:
        _log(logging.ERROR, "failed", str(exc))
        return 1
    return 0
