"""A run killed with kill -9 never blocks later runs: the next run marks it FAILURE, frees its
pool slots and names it in its log; the killed download's partial file is removed; a live run's
slots are never touched."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

from rlx_assets.defs.recovery import (
    WORKER_HOST_TAG,
    WORKER_PID_TAG,
    WORKER_START_TAG,
    dead_run_sensor,
    recover_dead_runs,
)
from rlx_assets.runs import RunWorker, judge_run_worker, process_start_identity, this_host
from rlx_assets.staging import lake_relative_path
from rlx_assets_tests.servers.s3 import SlowBody

REPO_ROOT = Path(__file__).resolve().parents[2]
POOL = "crypto_lake_download"
PARTITION = "2024-08-08|BINANCE.BTC-USDT"
RAW_ASSETS = "raw_trades,raw_book,raw_book_delta_v2"


# -- unit level: which runs are dead ------------------------------------------------------------


def started_run(instance: dg.DagsterInstance, worker: RunWorker) -> DagsterRun:
    tags = {WORKER_HOST_TAG: worker.host, WORKER_PID_TAG: str(worker.pid),
            WORKER_START_TAG: worker.start}  # fmt: skip
    return instance.add_run(
        DagsterRun(job_name="daily_chain", status=DagsterRunStatus.STARTED, tags=tags)
    )


def worker_of(process: subprocess.Popen) -> RunWorker:
    return RunWorker(this_host(), process.pid, process_start_identity(process.pid) or "")


def test_a_live_runs_slots_are_never_freed_and_a_dead_runs_are(tmp_path):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots(POOL, 1)
        worker_process = subprocess.Popen(["sleep", "60"])
        try:
            run = started_run(instance, worker_of(worker_process))
            storage.claim_concurrency_slot(POOL, run.run_id, "raw_trades")
            messages: list[str] = []

            assert recover_dead_runs(instance, log=messages.append) == []
            info = storage.get_concurrency_info(POOL)
            assert [(s.run_id, s.step_key) for s in info.claimed_slots] == [
                (run.run_id, "raw_trades")
            ]
            assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED
            assert messages == []

            worker_process.kill()  # the same run once its worker is gone
            worker_process.wait()
            (recovered,) = recover_dead_runs(instance, log=messages.append)
        finally:
            worker_process.kill()
            worker_process.wait()
        assert recovered.run_id == run.run_id
        assert storage.get_concurrency_info(POOL).claimed_slots == []
        failed = instance.get_run_by_id(run.run_id)
        assert failed.status == DagsterRunStatus.FAILURE
        (message,) = messages
        assert run.run_id in message and f"1 slot of pool {POOL} (raw_trades)" in message
        assert f"pid {worker_process.pid}" in message and "no longer exists" in message


def dead_worker() -> RunWorker:
    process = subprocess.Popen(["sleep", "60"])
    worker = worker_of(process)
    process.kill()
    process.wait()
    return worker


def test_the_daemon_sensor_frees_a_dead_run_even_when_no_new_run_starts(tmp_path):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots(POOL, 1)
        dead = started_run(instance, dead_worker())
        storage.claim_concurrency_slot(POOL, dead.run_id, "raw_book")
        storage.claim_concurrency_slot(POOL, dead.run_id, "raw_trades")  # waits: limit 1
        # A run the code server already marked failed, still holding a slot of another pool.
        ended = started_run(instance, dead_worker())
        storage.set_concurrency_slots("reconstruction", 2)
        storage.claim_concurrency_slot("reconstruction", ended.run_id, "reconstructed_stream")
        instance.report_run_failed(ended)

        skip = dead_run_sensor(dg.build_sensor_context(instance=instance))

        assert f"Dead run {dead.run_id}" in skip.skip_message
        assert f"1 slot of pool {POOL} (raw_book); 1 waiting step in pool {POOL}" in (
            skip.skip_message
        )
        assert f"Dead run {ended.run_id} (FAILURE;" in skip.skip_message
        for pool in (POOL, "reconstruction"):
            info = storage.get_concurrency_info(pool)
            assert (info.claimed_slots, info.pending_steps) == ([], [])
        assert instance.get_run_by_id(dead.run_id).status == DagsterRunStatus.FAILURE
        again = dead_run_sensor(dg.build_sensor_context(instance=instance))
        assert again.skip_message == "no dead runs"


def test_a_reused_pid_does_not_keep_a_dead_run_alive():
    me = RunWorker(this_host(), os.getpid(), process_start_identity(os.getpid()) or "")
    assert not judge_run_worker(me, 0, host=this_host()).dead
    reused = RunWorker(me.host, me.pid, me.start + "0")  # same pid, another process
    assert judge_run_worker(reused, 0, host=this_host()).dead


def test_a_run_on_another_host_is_freed_only_after_a_long_silence():
    remote = RunWorker("another-host", 1, "")
    assert not judge_run_worker(remote, 3600, host=this_host(), foreign_silence_s=86400).dead
    assert judge_run_worker(remote, 90000, host=this_host(), foreign_silence_s=86400).dead
    assert not judge_run_worker(None, 3600, host=this_host(), foreign_silence_s=86400).dead


# -- end to end: dagster asset materialize killed twice mid-download ----------------------------


def cli_env(home: Path, lake_uri: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RLX_", "DAGSTER_"))},
        "DAGSTER_HOME": str(home),
        "RLX_DATA_DIR": str(home / "data"),
        "RLX_LAKE_URI": lake_uri,
        "RLX_GATE_PROFILE": "sample",
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONUNBUFFERED": "1",
    }


def materialize_command(*options: str) -> list[str]:
    return [sys.executable, "-m", "dagster", "asset", "materialize", "-m",
            "rlx_assets.definitions", "--select", RAW_ASSETS, "--partition", PARTITION,
            *options]  # fmt: skip


# The same executor and pool, all steps in the run's own process: the killed runs already showed
# the default case (steps forked from the run worker's forkserver, all in its process group).
IN_ONE_PROCESS = ("--config-json", '{"execution": {"config": {"in_process": {}}}}')


def kill_mid_download(home: Path, env: dict, server, log: Path) -> None:
    """Start the materialisation in its own process group; kill -9 the whole group once it is
    receiving a vendor file (GET sent, partial file open)."""
    incoming = home / "data" / "staging" / ".incoming"
    seen = len(server.app.requests)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            materialize_command(), cwd=home, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            downloading = any(
                method == "GET" and ".parquet" in path
                for method, path in server.app.requests[seen:]
            )
            if downloading and list(incoming.glob(".*.part")):
                break
            assert process.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        else:
            raise AssertionError(f"no download started in 180 s:\n{log.read_text()[-3000:]}")
        time.sleep(1)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def only_new_run(instance: dg.DagsterInstance, known: set[str]) -> DagsterRun:
    (run,) = [r for r in instance.get_runs() if r.run_id not in known]
    return run


@pytest.mark.slow
def test_runs_killed_mid_download_never_block_the_next_run(
    s3_server, s3_lake, tmp_path, monkeypatch
):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = cli_env(home, s3_lake["uri"])
    incoming = home / "data" / "staging" / ".incoming"
    monkeypatch.chdir(home)  # dagster.yaml's relative storage paths
    instance = dg.DagsterInstance.from_config(str(home))
    slow = SlowBody("GET", ".parquet", delay_s=2.0)
    s3_server.app.slow_bodies.append(slow)
    try:
        instance.event_log_storage.set_concurrency_slots(POOL, 1)

        kill_mid_download(home, env, s3_server, tmp_path / "run1.log")
        first = only_new_run(instance, set())
        assert first.status == DagsterRunStatus.STARTED  # nothing ended it
        assert instance.get_run_by_id(first.run_id).tags[WORKER_HOST_TAG] == this_host()
        held = instance.event_log_storage.get_concurrency_info(POOL)
        assert [s.run_id for s in held.claimed_slots] == [first.run_id]  # the only slot
        orphans = sorted(p.name for p in incoming.glob(".*.part"))
        assert len(orphans) == 1 and ".BINANCE.BTC-USDT.2024-08-08.pid" in orphans[0]

        kill_mid_download(home, env, s3_server, tmp_path / "run2.log")
        second = only_new_run(instance, {first.run_id})
        second_log = (tmp_path / "run2.log").read_text()
        assert f"Dead run {first.run_id}" in second_log
        assert f"1 slot of pool {POOL}" in second_log
        assert instance.get_run_by_id(first.run_id).status == DagsterRunStatus.FAILURE

        s3_server.app.slow_bodies.remove(slow)
        third = subprocess.run(
            materialize_command(*IN_ONE_PROCESS),
            cwd=home,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        output = third.stdout + third.stderr
        assert third.returncode == 0, output[-5000:]
        assert f"Dead run {second.run_id}" in output and f"1 slot of pool {POOL}" in output
        assert "no longer exists" in output

        runs = {r.run_id: r for r in instance.get_runs()}
        assert len(runs) == 3
        assert runs[second.run_id].status == DagsterRunStatus.FAILURE
        (last,) = [r for r in runs.values() if r.run_id not in (first.run_id, second.run_id)]
        assert last.status == DagsterRunStatus.SUCCESS
        for table in ("trades", "book", "book_delta_v2"):
            raw = lake_relative_path(table, "BINANCE", "BTC-USDT", dt.date(2024, 8, 8))
            assert (home / "data" / "staging" / "raw" / raw).is_file()
        assert list(incoming.glob("*.part")) == []

        info = instance.event_log_storage.get_concurrency_info(POOL)
        assert (info.claimed_slots, info.pending_steps) == ([], [])
        reported = subprocess.run(
            [sys.executable, "-m", "dagster", "instance", "concurrency", "get", "--all"],
            cwd=home, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert reported.returncode == 0, reported.stderr[-3000:]
        assert f'"{POOL}": 0 / 1 slots occupied' in reported.stdout
    finally:
        if slow in s3_server.app.slow_bodies:
            s3_server.app.slow_bodies.remove(slow)
        instance.dispose()
