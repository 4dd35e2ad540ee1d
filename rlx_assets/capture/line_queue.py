"""Between the receive loop and the writer thread: a FIFO of lines bounded in bytes
(``LineQueue``), what the writer thread writes into (``CaptureSink``) and how its failure is
reported (``CaptureWriteError``). Imports nothing of the project.
"""

from __future__ import annotations

import threading
from collections import deque
from pathlib import Path
from typing import Protocol


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
