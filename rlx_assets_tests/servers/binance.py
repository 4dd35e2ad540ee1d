"""A local Binance look-alike that replays a real capture: WebSocket combined stream + REST depth.

``BinanceReplayServer`` runs on its own thread and event loop, on free 127.0.0.1 ports, so the
recorder under test can run in the test's loop or in a subprocess. The WebSocket server sends the
capture's frames, exact original text, in original order, optionally paced by the original
receive times divided by ``speed``. Faults: ``drops`` ends the connection after a given frame
(abruptly or with a close frame) and continues on the next connection some frames later (the
frames in between are never sent: the missed interval); ``inject`` sends extra raw text before a
given frame; ``rest_failures`` answers the next REST calls with error statuses. Everything sent is
recorded (``sent``, ``ws_paths``, ``rest_queries``) for the assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from aiohttp import web
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


@dataclass(frozen=True)
class CaptureFrame:
    capture_ns: int  # the original recorder's receive time
    text: str  # the exact frame text


@dataclass(frozen=True)
class ReplayCapture:
    frames: tuple[CaptureFrame, ...]
    snapshot: str  # the REST depth snapshot body, exact text


def load_capture(path: Path, limit: int | None = None) -> ReplayCapture:
    """Frames (up to ``limit``) and the REST snapshot of a ``<ns> <raw JSON>`` capture file."""
    frames: list[CaptureFrame] = []
    snapshot: str | None = None
    with gzip.open(path, "rt", encoding="utf-8", newline="\n") as handle:
        for line in handle:
            stamp, _, text = line.rstrip("\n").partition(" ")
            if text.startswith('{"lastUpdateId"'):
                snapshot = snapshot or text
            elif limit is None or len(frames) < limit:
                frames.append(CaptureFrame(int(stamp), text))
            if snapshot is not None and limit is not None and len(frames) >= limit:
                break
    if snapshot is None:
        raise ValueError(f"{path} holds no REST depth snapshot")
    return ReplayCapture(tuple(frames), snapshot)


@dataclass(frozen=True)
class Drop:
    """After sending frames[:after], end the connection; the next one resumes at after + skip.

    The drop waits until this connection's client has been served a depth snapshot (at most
    10 s), so every connection of a test deterministically has its snapshot.
    """

    after: int
    skip: int = 0
    mode: Literal["abort", "close"] = "abort"  # abort: TCP gone, no close frame


@dataclass
class BinanceReplayServer:
    capture: ReplayCapture
    speed: float | None = None  # None: as fast as possible; 1.0: original timing
    drops: Sequence[Drop] = ()
    inject: Mapping[int, str] = field(
        default_factory=dict
    )  # frame index -> raw text sent before it
    rest_failures: Sequence[int] = ()  # HTTP statuses for the first REST calls

    def __post_init__(self) -> None:
        self.sent: list[int] = []  # frame indices, in sending order, across connections
        self.injected: list[str] = []
        self.ws_paths: list[str] = []
        self.rest_queries: list[dict[str, str]] = []
        self.snapshots_served = 0
        self.all_sent = threading.Event()
        self._cursor = 0
        self._pending_drops = {d.after: d for d in self.drops}
        self._pending_inject = dict(self.inject)
        self._pending_failures = list(self.rest_failures)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.ws_port = self.rest_port = 0

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/stream"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}/api/v3/depth"

    @property
    def rest_calls(self) -> int:
        return len(self.rest_queries)

    def start(self) -> BinanceReplayServer:
        self._thread = threading.Thread(
            target=self._thread_main, name="binance-replay", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise RuntimeError(f"replay server did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> BinanceReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- server side -----------------------------------------------------------------------

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - surfaced by start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._depth)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.rest_port = runner.addresses[0][1]
        # No server pings: the client must not have unread data in flight when we abort.
        async with serve(self._stream, "127.0.0.1", 0, ping_interval=None, max_size=None) as ws:
            self.ws_port = ws.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stopped.wait()
            ws.close()
        await runner.cleanup()

    async def _depth(self, request: web.Request) -> web.Response:
        self.rest_queries.append(dict(request.query))
        if self._pending_failures:
            status = self._pending_failures.pop(0)
            body = '{"code":-1003,"msg":"Too many requests; injected by the replay server."}'
            return web.Response(
                status=status,
                text=body,
                content_type="application/json",
                headers={"Retry-After": "0"},
            )
        self.snapshots_served += 1
        return web.Response(text=self.capture.snapshot, content_type="application/json")

    async def _stream(self, ws: ServerConnection) -> None:
        self.ws_paths.append(ws.request.path if ws.request else "")
        with contextlib.suppress(ConnectionClosed):
            await self._replay(ws)

    async def _replay(self, ws: ServerConnection) -> None:
        frames = self.capture.frames
        loop = asyncio.get_running_loop()
        first = self._cursor
        started = loop.time()
        served_before = self.snapshots_served
        while self._cursor < len(frames):
            i = self._cursor
            drop = self._pending_drops.pop(i, None)
            if drop is not None:
                self._cursor = i + drop.skip
                deadline = loop.time() + 10
                while self.snapshots_served == served_before and loop.time() < deadline:
                    await asyncio.sleep(0.005)
                await self._drop(ws, drop)
                return
            if self.speed is not None:
                due = started + (frames[i].capture_ns - frames[first].capture_ns) / 1e9 / self.speed
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
            if (extra := self._pending_inject.pop(i, None)) is not None:
                await ws.send(extra)
                self.injected.append(extra)
            await ws.send(frames[i].text)
            self.sent.append(i)
            self._cursor = i + 1
        self.all_sent.set()
        await ws.wait_closed()  # stay connected and quiet, as a market with no trades would

    async def _drop(self, ws: ServerConnection, drop: Drop) -> None:
        if drop.mode == "close":
            await ws.close(1001, "replay server going away")
            return
        # Let the frames already sent reach the client before the connection vanishes.
        while ws.transport.get_write_buffer_size():
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        ws.transport.abort()
