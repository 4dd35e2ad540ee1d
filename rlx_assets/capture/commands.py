"""``rlx capture``: record Binance golden samples until SIGINT/SIGTERM.

Logging: human-readable lines on stderr by default (``--log-format json`` turns them into one JSON
object per line); ``--log-json PATH`` also appends every event as a JSON line to PATH. A JSON
event is ``{"ts": <ISO-8601 UTC>, "level": "INFO", "event": "<name>", "message": "...", ...fields}``
with events ``started``, ``connected``, ``disconnected``, ``connect_failed``, ``snapshot``,
``snapshot_failed``, ``snapshot_early``, ``gap``, ``queue_overflow``, ``malformed``,
``file_finalized``, ``max_connection_age``, ``status`` (every ``--status-interval`` seconds:
messages/s per stream, files written, gaps, reconnects...), ``stopping``, ``stopped``,
``writer_failed``, ``failed``.

Also runnable as ``python -m rlx_assets.capture.commands``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Iterable
from pathlib import Path

import click

from rlx_assets.capture.line_queue import CaptureWriteError
from rlx_assets.capture.recorder import Recorder
from rlx_assets.capture.recorder_config import (
    DEFAULT_MAX_CONNECTION_AGE_S,
    DEFAULT_STREAMS,
    MARKETS,
    RecorderConfig,
)
from rlx_assets.capture.recorder_log import log_event
from rlx_assets.capture.recorder_log import logger as capture_logger
from rlx_assets.structured_log import JsonLogFormatter


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
        log_event(logging.ERROR, "failed", str(exc))
        return 1
    return 0


def configure_capture_logging(log_format: str, log_json: Path | None) -> None:
    """Route the recorder's logger to stderr (text or JSON) and optionally to a JSON-lines file."""
    capture_logger.handlers.clear()
    capture_logger.setLevel(logging.INFO)
    capture_logger.propagate = False
    stderr = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        stderr.setFormatter(JsonLogFormatter())
    else:
        stderr.setFormatter(
            logging.Formatter("%(asctime)s rlx capture %(levelname)s %(message)s", "%H:%M:%S")
        )
    capture_logger.addHandler(stderr)
    if log_json is not None:
        log_json.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(log_json, encoding="utf-8")
        to_file.setFormatter(JsonLogFormatter())
        capture_logger.addHandler(to_file)


def _split_list(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise click.BadParameter("give at least one name")
    return items


@click.command(
    "capture",
    epilog="Exit status: 0 after a clean stop (SIGINT/SIGTERM); 1 when the files could not be "
    "written; 2 usage error.",
)
@click.option(
    "--symbols",
    required=True,
    callback=_split_list,
    help="Comma-separated symbols, e.g. btcusdt,ethusdt.",
)
@click.option(
    "--market",
    type=click.Choice(sorted(MARKETS)),
    default="spot",
    show_default=True,
    help="Binance spot, or usdm (USD-M futures); picks the default endpoints.",
)
@click.option(
    "--streams",
    default=",".join(DEFAULT_STREAMS),
    show_default=True,
    callback=_split_list,
    help="Comma-separated stream types recorded for every symbol.",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory of the capture files (created when missing).",
)
@click.option(
    "--ws-url",
    default=None,
    help="Combined-stream base URL, ws:// or wss:// (default: the market's Binance endpoint).",
)
@click.option(
    "--rest-url",
    default=None,
    help="REST depth URL, http:// or https:// (default: the market's Binance endpoint).",
)
@click.option(
    "--snapshot-limit",
    type=click.IntRange(min=1),
    default=None,
    help="REST depth levels (default: 5000 spot, 1000 usdm).",
)
@click.option(
    "--rotate-seconds",
    type=click.IntRange(min=1),
    default=3600,
    show_default=True,
    help="File period, aligned to UTC multiples of it.",
)
@click.option(
    "--max-connection-age",
    "max_connection_age_s",
    type=click.FloatRange(min=1),
    default=DEFAULT_MAX_CONNECTION_AGE_S,
    show_default=True,
    help="Reconnect proactively after this many seconds (Binance drops at 24 h).",
)
@click.option(
    "--status-interval",
    "status_interval_s",
    type=click.FloatRange(min=0.05),
    default=10.0,
    show_default=True,
    help="Seconds between status lines on stderr.",
)
@click.option(
    "--queue-max-mib",
    type=click.FloatRange(min=0.01),
    default=64.0,
    show_default=True,
    help="Memory bound of lines waiting for the disk.",
)
@click.option(
    "--backoff-base",
    "backoff_base_s",
    type=click.FloatRange(min=0.0),
    default=0.5,
    show_default=True,
    help="Seconds before the first reconnect; doubles per failed attempt, with jitter.",
)
@click.option(
    "--backoff-cap",
    "backoff_cap_s",
    type=click.FloatRange(min=0.0),
    default=30.0,
    show_default=True,
    help="Longest wait in seconds between reconnects (at least --backoff-base).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Format of the log and status lines on stderr.",
)
@click.option(
    "--log-json",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also append every event as a JSON line to this file.",
)
def capture_command(
    symbols: tuple[str, ...],
    market: str,
    streams: tuple[str, ...],
    out_dir: Path,
    ws_url: str | None,
    rest_url: str | None,
    snapshot_limit: int | None,
    rotate_seconds: int,
    max_connection_age_s: float,
    status_interval_s: float,
    queue_max_mib: float,
    backoff_base_s: float,
    backoff_cap_s: float,
    log_format: str,
    log_json: Path | None,
) -> None:
    """Record Binance market data raw (one line per message, local receive time) until stopped.

    One combined-stream WebSocket connection for all symbols and streams; a REST depth snapshot
    per symbol after every (re)connect; gzip files rotated every --rotate-seconds and finished
    with a .sha256 sidecar; gap markers for every interruption. SIGINT/SIGTERM finish the
    current file and exit 0.

    Writes --out/{market}_{symbols}_{UTC period}.jsonl.gz (e.g. spot_btcusdt_20240808T23.jsonl.gz;
    `.partial` while being written) and its `.sha256`. Log and status lines go to stderr. Reads
    only the proxy variables (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) from the environment.
    """
    try:
        config = RecorderConfig(
            symbols=symbols,
            out_dir=out_dir,
            market=market,
            streams=streams,
            ws_url=ws_url,
            rest_url=rest_url,
            snapshot_limit=snapshot_limit,
            rotate_seconds=rotate_seconds,
            max_connection_age_s=max_connection_age_s,
            status_interval_s=status_interval_s,
            queue_max_bytes=int(queue_max_mib * 2**20),
            backoff_base_s=backoff_base_s,
            backoff_cap_s=max(backoff_cap_s, backoff_base_s),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    for url, name in (
        (config.endpoints.ws_url, "--ws-url"),
        (config.endpoints.rest_url, "--rest-url"),
    ):
        scheme = url.partition("://")[0]
        allowed = ("ws", "wss") if name == "--ws-url" else ("http", "https")
        if scheme not in allowed:
            raise click.BadParameter(f"{url!r} is not a {'/'.join(allowed)} URL", param_hint=name)
    configure_capture_logging(log_format, log_json)
    sys.exit(run_capture(config))


if __name__ == "__main__":
    capture_command()
