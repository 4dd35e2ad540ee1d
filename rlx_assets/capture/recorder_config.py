"""What a recorder is told (``RecorderConfig``: markets, endpoints, timings) and what it counts
(``RecorderStats``). Imports nothing of the project.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

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


def combined_stream_url(ws_url: str, symbols: Sequence[str], streams: Sequence[str]) -> str:
    names = "/".join(f"{symbol}@{stream}" for symbol in symbols for stream in streams)
    return f"{ws_url}{'&' if '?' in ws_url else '?'}streams={names}"


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
