"""Whether a run is still alive, judged from the run itself: the lease its run worker renews.

While a run executes, its run worker renews a lease every `stale_after_s / RENEWALS_PER_LEASE`
seconds (in the instance's storage, so every process of every host sees it). A run whose lease
was not renewed for `stale_after_s`, and which logged no event in that time either, is dead.
No process id is looked at: a pid means nothing across PID namespaces (two containers sharing
a hostname see each other's pids as gone, or as someone else's process). Pure code: no Dagster.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from dataclasses import dataclass
from typing import Literal

# A run without a lease (started before leases existed, or whose run worker died before it
# wrote one) is only taken for dead after this long without any event in its log: generous, a
# live run logs at every step start and end, and while it waits for a pool slot.
UNLEASED_RUN_SILENCE_S = 24 * 3600
# Renewals within one lease period: a run worker may miss a few (a busy machine) and live on.
RENEWALS_PER_LEASE = 6

# running: the run worker renews it. ended: the run worker finished its steps and nothing of
# the run is left to remove. cleaned: crash recovery removed what the dead run was writing.
LeaseState = Literal["running", "ended", "cleaned"]


@dataclass(frozen=True)
class RunLease:
    renewed_at: float  # seconds since the epoch, by the run worker's clock
    stale_after_s: float
    worker: str  # who renews it, for messages only ("pid 12 on host-a")
    state: LeaseState = "running"

    @property
    def renew_every_s(self) -> float:
        return self.stale_after_s / RENEWALS_PER_LEASE

    def renewed(self, now: float, state: LeaseState = "running") -> RunLease:
        return dataclasses.replace(self, renewed_at=now, state=state)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunLease:
        return cls(**json.loads(text))


def new_lease(now: float, stale_after_s: float) -> RunLease:
    """The lease of this process, renewed now."""
    return RunLease(now, stale_after_s, f"pid {os.getpid()} on {socket.gethostname()}")


@dataclass(frozen=True)
class Verdict:
    dead: bool
    reason: str


def judge_run(
    lease: RunLease | None,
    now: float,
    seconds_since_last_event: float,
    *,
    unleased_silence_s: float = UNLEASED_RUN_SILENCE_S,
) -> Verdict:
    """Is the run holding `lease` dead? Its lease is not renewed for `stale_after_s` and no
    event came in that time (an event means the run worker lives even if its renewals were
    delayed). A run without a lease is dead after `unleased_silence_s` without an event."""
    last_event = f"last event {seconds_since_last_event:.0f} s ago"
    if lease is None:
        dead = seconds_since_last_event > unleased_silence_s
        return Verdict(dead, f"no run lease recorded, {last_event}")
    age = now - lease.renewed_at
    renewed = f"its run worker ({lease.worker}) last renewed its lease {age:.0f} s ago"
    if age <= lease.stale_after_s:
        return Verdict(False, renewed)
    if seconds_since_last_event <= lease.stale_after_s:
        return Verdict(False, f"{renewed}, but its {last_event}")
    return Verdict(True, f"{renewed} (stale after {lease.stale_after_s:.0f} s), {last_event}")
