"""The project's executor forks each step from a server that imported the job's module once
(unless the run config chooses a start method), and a step killed with kill -9 still fails its
run rather than leaving it hanging.

The runs go through `execute_job` in a fresh Python (their run worker, as a daemon's run has
one), since a process has one forkserver and another test may have started it already."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from rlx_assets.defs.recovery import crash_recovering_executor, step_preload, with_forked_steps
from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets.staging import atomic_write

REPO_ROOT = Path(__file__).resolve().parents[2]
# The process that imported this module: a step forked from the preloaded server did not.
IMPORTED_BY = os.getpid()
SPAWN = {"execution": {"config": {"multiprocess": {"start_method": {"spawn": {}}}}}}


@dg.op
def where_am_i() -> dict:
    parent_command = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().replace(b"\0", b" ")
    return {
        "pid": os.getpid(),
        "parent": os.getppid(),
        "parent_command": parent_command.decode(errors="replace"),
        "module_imported_by": IMPORTED_BY,
    }


@dg.op
def killed() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@dg.op
def killed_mid_write(rlx: RlxEnvironment) -> None:
    with atomic_write(rlx.layout().root / "out" / "file.bin") as handle:
        handle.write(b"half a file")
        handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)


@dg.job(executor_def=crash_recovering_executor)
def probe_job():
    where_am_i()


@dg.job(executor_def=crash_recovering_executor)
def killed_step_job():
    killed()


# The data root comes from RLX_DATA_DIR, set by the `observed` fixture.
@dg.job(executor_def=crash_recovering_executor, resource_defs={"rlx": RlxEnvironment()})
def killed_mid_write_job():
    killed_mid_write()


# name: (job, run config); run one after another by the same run worker.
RUNS = {
    "default": ("probe_job", None),
    "spawn": ("probe_job", SPAWN),
    "killed": ("killed_step_job", None),
    "killed_mid_write": ("killed_mid_write_job", None),
}
WORKER_SCRIPT = """
import json, os, sys
from pathlib import Path
import dagster as dg
from rlx_assets_tests.defs import test_recovery_executor as probe
observed = {}
with dg.instance_for_test(temp_dir=sys.argv[1]) as instance:
    for name, (job_name, config) in probe.RUNS.items():
        job = dg.reconstructable(getattr(probe, job_name))
        with dg.execute_job(job, instance, run_config=config, raise_on_error=False) as result:
            observed[name] = {
                "success": result.success,
                "step": result.output_for_node("where_am_i") if result.success else None,
                "failed_steps": [e.step_key for e in result.all_events if e.is_step_failure],
                "engine_messages": [e.message for e in result.all_events if e.is_engine_event],
                "logged": [e.user_message for e in instance.all_logs(result.run_id)],
                "left": sorted(p.name for p in Path(os.environ["RLX_DATA_DIR"]).rglob(".*")),
            }
print(json.dumps({"run_worker": os.getpid(), "runs": observed}))
"""


@pytest.fixture(scope="module")
def observed(tmp_path_factory) -> dict:
    """The RUNS, executed with `execute_job` in a new Python: what each step observed."""
    home = tmp_path_factory.mktemp("instance")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "RLX_DATA_DIR": str(home / "data")}
    done = subprocess.run(
        [sys.executable, "-c", WORKER_SCRIPT, str(home)],
        cwd=home, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-5000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_steps_fork_from_a_preloaded_server_when_no_start_method_is_chosen(observed):
    run = observed["runs"]["default"]

    assert run["success"]
    step = run["step"]
    # Not a child of the run worker but of the forkserver it started, which had imported the
    # job's module before forking the step.
    assert step["parent"] != observed["run_worker"]
    assert "multiprocessing.forkserver" in step["parent_command"]
    assert step["module_imported_by"] != step["pid"]


def test_a_chosen_spawn_start_method_is_honoured(observed):
    run = observed["runs"]["spawn"]

    assert run["success"]
    step = run["step"]
    assert step["parent"] == observed["run_worker"]
    assert step["module_imported_by"] == step["pid"]  # a fresh Python imported it


def test_a_step_killed_in_a_forked_process_fails_its_run(observed):
    run = observed["runs"]["killed"]

    assert not run["success"]
    assert run["failed_steps"] == ["killed"]
    crash = "Multiprocess executor: child process for step killed was terminated by signal 9"
    assert any(message.startswith(crash) for message in run["engine_messages"])


def test_what_a_step_killed_mid_write_left_is_removed_when_its_run_ends(observed):
    run = observed["runs"]["killed_mid_write"]

    assert not run["success"] and run["failed_steps"] == ["killed_mid_write"]
    assert run["left"] == []  # its `.file.bin.run-<run id>.….part` is gone
    (removed,) = [m for m in run["logged"] if m.startswith("Removed what this run's killed")]
    assert ".file.bin.run-" in removed and ".part" in removed


def test_the_run_config_decides_the_start_method():
    preload = ["my.module", "upath"]
    forked = with_forked_steps({"multiprocess": {"max_concurrent": 2}}, preload)
    assert forked == {"multiprocess": {"max_concurrent": 2, "start_method": {
        "forkserver": {"preload_modules": preload}}}}  # fmt: skip
    chosen = {"multiprocess": {"start_method": {"spawn": {}}}}
    assert with_forked_steps(chosen, preload) == chosen
    assert with_forked_steps({"in_process": {}}, preload) == {"in_process": {}}


def test_the_forkserver_preloads_the_definitions_and_the_instances_storage(tmp_path):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        preload = step_preload(None, instance)
        assert step_preload("my.module", instance)[0] == "my.module"
    assert preload[0] == "rlx_assets.definitions"
    assert "dagster._utils.test.definitions" in preload
    assert type(instance.event_log_storage).__module__ in preload
    for module in preload:  # each one exists (the forkserver skips a failed import silently)
        importlib.import_module(module)
