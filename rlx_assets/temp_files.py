"""Whose temporary files a process writes: every temporary file or folder of the project is
named by `temp_name`, so one left by a killed process says what it was and whose it is. In a
run's steps that is the run (set by the `rlx` resource), and crash recovery removes the files of
a dead run by that name (`rlx_assets.defs.recovery`); outside runs, the process id.
"""

from __future__ import annotations

import os

_temp_owner: str | None = None  # a run id, set by `own_temp_files`


def own_temp_files(run_id: str | None) -> None:
    """From now on the temporary files and folders this process creates carry `run_id` in their
    name (`temp_name`), so crash recovery can remove them once that run is dead; None: the
    process id instead."""
    global _temp_owner
    _temp_owner = run_id


def temp_name(stem: str) -> str:
    """The name (or prefix) of a temporary file or folder: hidden, saying what it is and whose
    it is: `.{stem}.run-{run id}.` in a run, `.{stem}.pid{pid}.` outside one."""
    owner = f"run-{_temp_owner}" if _temp_owner else f"pid{os.getpid()}"
    return f".{stem}.{owner}."
