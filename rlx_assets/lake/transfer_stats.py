"""What one acquisition asked of the lake and got back: requests, retries by error type, bytes
and time of the download; the raw assets' numeric metadata."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from rlx_assets.lake.sources import RETRY_KINDS, retry_kind

T = TypeVar("T")


@dataclass
class TransferStats:
    """`requests`: attempts of lake calls (access check; locate: listing and HEAD; download:
    one GET, from the last byte received on a resume), each attempt counted once; `requests_ok`
    the attempts that succeeded. A file reused without download has `bytes_downloaded` 0 and
    only the access check and locate as requests."""

    requests: int = 0
    requests_ok: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    bytes_downloaded: int = 0
    download_seconds: float = 0.0

    def counted(self, call: Callable[[], T]) -> Callable[[], T]:
        def attempt() -> T:
            self.requests += 1
            result = call()
            self.requests_ok += 1
            return result

        return attempt

    def retried(self, error: BaseException) -> None:
        self.retries[retry_kind(error)] += 1

    @property
    def download_mb_per_s(self) -> float | None:
        """10^6 bytes a second over the download's wall-clock time (retries and their backoff
        included); None when nothing was downloaded."""
        if not self.bytes_downloaded or self.download_seconds <= 0:
            return None
        return self.bytes_downloaded / 1e6 / self.download_seconds

    def figures(self) -> dict[str, int | float]:
        """Every figure, with a count for each retry kind (0 included, so plots line up)."""
        figures: dict[str, int | float] = {
            "bytes_downloaded": self.bytes_downloaded,
            "requests": self.requests,
            "requests_ok": self.requests_ok,
            **{f"retries_{kind}": self.retries[kind] for kind in RETRY_KINDS},
        }
        if (speed := self.download_mb_per_s) is not None:
            figures["download_mb_per_s"] = speed
        return figures
