"""The depth snapshot fetch against a local HTTP server: error answers are retried, and a
``Retry-After`` (429 too many requests, 418 banned) sets the wait."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from aiohttp import web

from rlx_assets.capture.depth_snapshot import fetch_depth_snapshot
from rlx_assets.capture.recorder_config import RecorderConfig, RecorderStats
from rlx_assets_tests.conftest import SAMPLE_CAPTURES
from rlx_assets_tests.servers.binance import load_capture


def test_retry_after_of_429_and_418_answers_is_waited_and_the_snapshot_recorded(tmp_path, caplog):
    snapshot = load_capture(SAMPLE_CAPTURES / "spot_btcusdt_20240808.gz", limit=10).snapshot
    answers = [
        web.Response(status=429, headers={"Retry-After": "0.3"}),
        web.Response(status=418, headers={"Retry-After": "0.2"}),
        web.Response(status=503),
        web.Response(text=snapshot, content_type="application/json"),
    ]
    queries: list[dict[str, str]] = []
    caplog.set_level(logging.INFO, logger="rlx_assets.capture")

    async def depth(request: web.Request) -> web.Response:
        queries.append(dict(request.query))
        return answers.pop(0)

    async def main() -> tuple[list[tuple[int, bytes]], RecorderStats]:
        app = web.Application()
        app.router.add_get("/api/v3/depth", depth)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        config = RecorderConfig(
            symbols=("btcusdt",),
            out_dir=tmp_path,
            rest_url=f"http://127.0.0.1:{port}/api/v3/depth",
            backoff_base_s=0.002,
            backoff_cap_s=0.004,
        )
        emitted: list[tuple[int, bytes]] = []

        async def emit(capture_ns: int, line: bytes) -> None:
            emitted.append((capture_ns, line))

        first_depth, ended, stats = asyncio.Event(), asyncio.Event(), RecorderStats()
        first_depth.set()
        try:
            async with aiohttp.ClientSession() as session:
                await asyncio.wait_for(
                    fetch_depth_snapshot(
                        session, config, "btcusdt", first_depth, ended, stats, emit
                    ),
                    20,
                )
        finally:
            await runner.cleanup()
        return emitted, stats

    emitted, stats = asyncio.run(main())
    assert queries == [{"symbol": "BTCUSDT", "limit": "5000"}] * 4
    assert stats.snapshot_failures == 3 and stats.snapshots == 1
    waits = [r.fields["retry_in_s"] for r in caplog.records if r.event == "snapshot_failed"]
    assert waits[:2] == [0.3, 0.2]  # the server's Retry-After, above the backoff's few ms
    assert 0.001 <= waits[2] <= 0.004  # no Retry-After: the backoff alone
    [(capture_ns, line)] = emitted
    assert (
        line
        == (
            f'{{"capture_ns":{capture_ns},"stream":"btcusdt@depthSnapshot","data":{snapshot}}}\n'
        ).encode()
    )
