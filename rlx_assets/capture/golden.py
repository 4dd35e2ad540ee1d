"""Golden samples: one UTC day of our own Binance recording, verified and accounted for.

Pure code. Selects the completed capture files that can hold a day's messages, verifies their
checksums, walks the day's messages checking depth-sequence and trade-id continuity, accounts
for the recorder's gap markers, and measures the gap ratio: the share of the day's observed span
(first to last message of the day, by exchange time) that lies inside a gap.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlx_assets.capture.reader import (
    CaptureRecord,
    CaptureStats,
    merge_captures,
    stream_channel,
    stream_symbol,
)
from rlx_assets.staging import sha256_file

NS_PER_HOUR = 3_600 * 10**9
NS_PER_DAY = 24 * NS_PER_HOUR
# Files are chosen by the period in their name, with this margin: the recorder's clock and the
# exchange's differ, so a file of the hour before midnight can hold messages of the next day.
SELECTION_MARGIN_NS = 2 * NS_PER_HOUR

_GOLDEN_NAME = re.compile(
    r"^(?P<market>spot|usdm)_(?P<symbols>[a-z0-9-]+)_(?P<stamp>\d{8}T\d{2}(?:\d{2}){0,2})"
    r"(?:\.\d+)?\.jsonl\.gz$"
)
_SAMPLE_NAME = re.compile(r"^(?P<market>spot|usdm)_(?P<symbols>[a-z0-9]+)_(?P<stamp>\d{8})\.gz$")
_SUM_LINE = re.compile(r"^(?P<digest>[0-9a-f]{64})\s+\*?(?P<name>\S+)\s*$")


class GoldenError(Exception):
    """A capture file that cannot be trusted: the message names it and what is wrong."""


@dataclass(frozen=True)
class Gap:
    start_ns: int
    end_ns: int
    source: str  # "marker", "depth_sequence" or "trade_id"
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "start": _iso(self.start_ns),
            "end": _iso(self.end_ns),
            "seconds": (self.end_ns - self.start_ns) / 1e9,
            "source": self.source,
            "detail": self.detail,
        }


@dataclass
class GoldenDay:
    files: list[Path]
    messages_by_stream: Counter[str] = field(default_factory=Counter)
    first_event_ns: int | None = None
    last_event_ns: int | None = None
    gaps: list[Gap] = field(default_factory=list)
    gap_markers: int = 0
    malformed: int = 0

    @classmethod
    def from_report(cls, report: dict[str, Any]) -> GoldenDay:
        """The analysis ``golden_samples`` recorded in its report (``gaps_ns``: exact bounds)."""
        return cls(
            files=[Path(name) for name in report.get("files", {})],
            messages_by_stream=Counter(report["messages_by_stream"]),
            first_event_ns=report["first_event"],
            last_event_ns=report["last_event"],
            gaps=[Gap(*gap) for gap in report["gaps_ns"]],
            gap_markers=report["gap_markers"],
            malformed=report["malformed_lines"],
        )

    @property
    def span_ns(self) -> int:
        if self.first_event_ns is None or self.last_event_ns is None:
            return 0
        return self.last_event_ns - self.first_event_ns

    @property
    def gap_ns(self) -> int:
        return _union_length([(g.start_ns, g.end_ns) for g in self.gaps])

    @property
    def gap_ratio(self) -> float:
        return self.gap_ns / self.span_ns if self.span_ns else 0.0


def _period(match: re.Match, sample: bool) -> tuple[int, int]:
    stamp = match["stamp"]
    if sample:
        start = dt.datetime.strptime(stamp, "%Y%m%d").replace(tzinfo=dt.UTC)
        return int(start.timestamp()) * 10**9, NS_PER_DAY
    fmt, length = {11: ("%Y%m%dT%H", NS_PER_HOUR), 13: ("%Y%m%dT%H%M", 60 * 10**9)}.get(
        len(stamp), ("%Y%m%dT%H%M%S", 10**9)
    )
    start = dt.datetime.strptime(stamp, fmt).replace(tzinfo=dt.UTC)
    return int(start.timestamp()) * 10**9, length


def select_capture_files(capture_dir: Path, market: str, symbol: str, day: dt.date) -> list[Path]:
    """Completed capture files of `market` ("spot"/"usdm") naming `symbol` near `day`.

    Golden files `spot_btcusdt-ethusdt_20240808T23.jsonl.gz` (our recorder) and sample files
    `spot_btcusdt_20240808.gz` are recognised; `.partial` files are never read.
    """
    day_start = int(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp()) * 10**9
    lo, hi = day_start - SELECTION_MARGIN_NS, day_start + NS_PER_DAY + SELECTION_MARGIN_NS
    chosen = []
    for path in sorted(capture_dir.iterdir()) if capture_dir.is_dir() else ():
        match = _GOLDEN_NAME.match(path.name) or _SAMPLE_NAME.match(path.name)
        if not match or match["market"] != market:
            continue
        symbols = match["symbols"].split("-")
        if symbol not in symbols and not match["symbols"][0].isdigit():  # hashed long sets
            continue
        start, length = _period(match, sample=match.re is _SAMPLE_NAME)
        if start < hi and start + length > lo:
            chosen.append(path)
    return chosen


def published_checksums(directory: Path) -> dict[str, str]:
    """`<hex>  <name>` lines of SHA256SUMS / PROVENANCE.md files beside the captures."""
    sums = {}
    for listing in (directory / "SHA256SUMS", directory / "PROVENANCE.md"):
        if listing.is_file():
            for line in listing.read_text().splitlines():
                match = _SUM_LINE.match(line.strip())
                if match:
                    sums[match["name"]] = match["digest"]
    return sums


def verify_checksums(files: list[Path]) -> dict[str, str]:
    """Each file's SHA-256 must equal its `.sha256` sidecar (recorder) or a published sum."""
    verified = {}
    for path in files:
        sidecar = path.with_name(path.name + ".sha256")
        if sidecar.is_file():
            expected = sidecar.read_text().split()[0]
        else:
            expected = published_checksums(path.parent).get(path.name)
        if expected is None:
            raise GoldenError(f"{path}: no .sha256 sidecar or published checksum; incomplete file?")
        actual = sha256_file(path)
        if actual != expected:
            raise GoldenError(f"{path}: SHA-256 {actual} differs from the recorded {expected}")
        verified[path.name] = actual
    return verified


def exchange_time_ns(data: dict[str, Any], capture_ns: int) -> int:
    """Exchange event time (`E`, else trade time `T`), else the receive time (spot bookTicker)."""
    stamp = data.get("E") or data.get("T")
    return int(stamp) * 1_000_000 if stamp is not None else capture_ns


class DayAnalysis:
    """Continuity of one symbol's messages on one UTC day, fed one message at a time in receive
    order (``merge_captures``), so a day of any length is walked in constant memory."""

    def __init__(self, files: list[Path], market: str, symbol: str, day: dt.date):
        self.market, self.symbol = market, symbol
        self.day_start = int(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp()) * 10**9
        self.day_end = self.day_start + NS_PER_DAY
        self.result = GoldenDay(files=list(files))
        self.breaks: list[Gap] = []
        self.last: dict[str, tuple[int, int]] = {}  # channel -> (last id, capture ns)

    def feed(self, record: CaptureRecord) -> None:
        if stream_symbol(record.stream) != self.symbol:
            return
        channel = stream_channel(record.stream)
        data = record.data
        if channel == "depthSnapshot":
            # A new snapshot restarts the depth sequence (after a reconnect).
            self.last.pop("depth", None)
            return
        event_ns = exchange_time_ns(data, record.capture_ns)
        in_day = self.day_start <= event_ns < self.day_end
        result = self.result
        if in_day:
            result.messages_by_stream[record.stream] += 1
            result.first_event_ns = min(result.first_event_ns or event_ns, event_ns)
            result.last_event_ns = max(result.last_event_ns or event_ns, event_ns)
        previous = self.last.get(channel)
        found = _continuity_break(channel, data, self.market, previous)
        if found and in_day:
            self.breaks.append(Gap(previous[1], record.capture_ns, found[0], found[1]))
        ident = _last_id(channel, data)
        if ident is not None:
            self.last[channel] = (ident, record.capture_ns)

    def finish(self, stats: list[CaptureStats]) -> GoldenDay:
        """The day's result, with the gap markers and skipped lines the files' ``stats`` counted."""
        result = self.result
        markers = []
        for marker in (gap for file_stats in stats for gap in file_stats.gaps):
            start, end = int(marker.get("start_ns", 0)), int(marker.get("end_ns", 0))
            if end > self.day_start - NS_PER_HOUR and start < self.day_end + NS_PER_HOUR:
                markers.append(Gap(start, end, "marker", str(marker.get("reason", "unknown"))))
        result.gap_markers = sum(file_stats.gap_markers for file_stats in stats)
        result.malformed = sum(file_stats.malformed for file_stats in stats)
        # A sequence break around a marked interval is explained by it, not a second gap.
        unexplained = [b for b in self.breaks if not any(_covers(m, b) for m in markers)]
        result.gaps = sorted(markers + unexplained, key=lambda g: g.start_ns)
        return result


def analyse_day(files: list[Path], market: str, symbol: str, day: dt.date) -> GoldenDay:
    """Walk the day's messages of `symbol` in arrival order and account for every gap."""
    analysis = DayAnalysis(files, market, symbol, day)
    stats = [CaptureStats() for _ in files]
    for _index, record in merge_captures(files, stats):
        analysis.feed(record)
    return analysis.finish(stats)


def _last_id(channel: str, data: dict[str, Any]) -> int | None:
    if channel == "depth":
        return int(data["u"])
    if channel == "trade":
        return int(data["t"])
    if channel == "aggTrade":
        return int(data["a"])
    return None


def _continuity_break(
    channel: str, data: dict[str, Any], market: str, previous: tuple[int, int] | None
) -> tuple[str, str] | None:
    if previous is None:
        return None
    prev = previous[0]
    if channel == "depth":
        if market == "usdm":
            ok, got = int(data["pu"]) == prev, f"pu={data['pu']}"
        else:
            ok, got = int(data["U"]) == prev + 1, f"U={data['U']}"
        return None if ok else ("depth_sequence", f"after u={prev} came {got}")
    if channel in ("trade", "aggTrade"):
        key = "t" if channel == "trade" else "a"
        ident = int(data[key])
        if ident != prev + 1:
            return ("trade_id", f"{channel} id {ident} after {prev}: {ident - prev - 1} missing")
    return None


def _covers(marker: Gap, gap: Gap) -> bool:
    """The marked interval lies in the break: the lost messages are those the marker names."""
    return marker.start_ns < gap.end_ns and gap.start_ns < marker.end_ns


def _union_length(intervals: list[tuple[int, int]]) -> int:
    total, current_start, current_end = 0, None, None
    for start, end in sorted(intervals):
        if current_end is None or start > current_end:
            if current_end is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None:
        total += current_end - current_start
    return total


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="milliseconds")
