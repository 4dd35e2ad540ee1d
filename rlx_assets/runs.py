"""Which run worker a run had, and whether it still exists: the facts crash recovery decides on.

A run worker is named by host, pid and the process's start identity (boot id + start time in
clock ticks, from /proc), so a pid reused by another process after a crash is not mistaken for
the worker. Pure code: no Dagster here.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

# A run whose worker cannot be checked from here (another host, or no worker recorded) is only
# taken for dead after this long without any event in its log: generous, a live remote run logs
# at every step start and end, and while it waits for a pool slot.
FOREIGN_RUN_SILENCE_S = 24 * 3600


@dataclass(frozen=True)
class RunWorker:
    host: str
    pid: int
    start: str  # "<boot id>:<start ticks>", or "" where /proc does not tell

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def this_host() -> str:
    return socket.gethostname()


def process_start_identity(pid: int) -> str | None:
    """The start identity ("<boot id>:<start ticks>") of a live process; None if there is no
    such live process (gone, or a zombie: killed, not yet reaped); "" without /proc."""
    stat = Path(f"/proc/{pid}/stat")
    if not Path("/proc/self/stat").exists():
        return "" if _signalable(pid) else None
    try:
        # Fields after the command name, which is in parentheses and may hold spaces.
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    state, start_ticks = fields[0], fields[19]
    if state in ("Z", "X"):
        return None
    boot_id = ""
    with contextlib.suppress(OSError):
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return f"{boot_id}:{start_ticks}"


def _signalable(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def current_worker() -> RunWorker:
    pid = os.getpid()
    return RunWorker(this_host(), pid, process_start_identity(pid) or "")


def worker_is_alive(worker: RunWorker) -> bool:
    """The recorded process still runs on this host (same pid AND same start identity)."""
    identity = process_start_identity(worker.pid)
    if identity is None:
        return False
    return not worker.start or not identity or identity == worker.start


@dataclass(frozen=True)
class Verdict:
    dead: bool
    reason: str


def judge_run_worker(
    worker: RunWorker | None,
    seconds_since_last_event: float,
    *,
    host: str,
    foreign_silence_s: float = FOREIGN_RUN_SILENCE_S,
) -> Verdict:
    """Is the run that recorded `worker` dead? Only a worker on `host` can be checked; any
    other run is dead only after `foreign_silence_s` without an event."""
    if worker is not None and worker.host == host:
        if worker_is_alive(worker):
            return Verdict(False, f"its run worker ({worker.describe()}) is alive")
        return Verdict(True, f"its run worker ({worker.describe()}) no longer exists")
    where = worker.describe() if worker is not None else "no run worker recorded"
    silence_h = seconds_since_last_event / 3600
    if seconds_since_last_event > foreign_silence_s:
        return Verdict(True, f"{where}, and no event for {silence_h:.1f} h")
    return Verdict(
        False, f"{where}, cannot be checked from {host}; last event {silence_h:.1f} h ago"
    )
