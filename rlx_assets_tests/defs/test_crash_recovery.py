"""A run killed with kill -9 never blocks later runs nor leaves files behind: once its lease is
stale the next run (or the daemon's sensor) marks it FAILURE, frees its pool slots, removes what
it was writing and names it in its log; a live run is never touched, whatever its pid looks
like from here; a recovery error fails the run or the sensor tick."""

from __future__ import annotations

import datetime as dt
import json
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
from dagster._core.storage.event_log.base import EventLogStorage
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage

from rlx_assets.defs.recovery import (
    crash_recovering_executor,
    data_root_key,
    dead_run_sensor,
    read_leases,
    recover_dead_runs,
    write_lease,
)
from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets.runs import RunLease
from rlx_assets.staging import atomic_write, lake_relative_path
from rlx_assets_tests.conftest import dagster_test_instance
from rlx_assets_tests.servers.s3 import SlowBody

REPO_ROOT = Path(__file__).resolve().parents[2]
POOL = "crypto_lake_download"
PARTITION = "2024-08-08|BINANCE.BTC-USDT"
RAW_ASSETS = "raw_trades,raw_book,raw_book_delta_v2"
# A pid no process has here (above the kernel's pid_max): how a run worker in another
# container's PID namespace looks from this one.
INVISIBLE_PID = 4_194_305
LEASE_S = 10


# -- unit level: which runs are dead, what recovery removes -------------------------------------


def started_run(instance: dg.DagsterInstance, lease: RunLease | None) -> DagsterRun:
    run = instance.add_run(DagsterRun(job_name="daily_chain", status=DagsterRunStatus.STARTED))
    if lease is not None:
        write_lease(instance, run.run_id, lease)
    return run


def lease_of(renewed_at: float, stale_after_s: float = 60.0) -> RunLease:
    return RunLease(renewed_at, stale_after_s, f"pid {INVISIBLE_PID} on {os.uname().nodename}")


def test_a_live_run_whose_pid_is_not_visible_here_keeps_its_slot_until_its_lease_is_stale(
    tmp_path,
):
    with dagster_test_instance() as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots(POOL, 1)
        t0 = time.time()
        run = started_run(instance, lease_of(t0))
        storage.claim_concurrency_slot(POOL, run.run_id, "raw_trades")
        messages: list[str] = []

        # 50 s later the lease (60 s) is fresh: the run lives, though its pid exists nowhere here.
        assert recover_dead_runs(instance, log=messages.append, now=t0 + 50) == []
        info = storage.get_concurrency_info(POOL)
        assert [(s.run_id, s.step_key) for s in info.claimed_slots] == [(run.run_id, "raw_trades")]
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED
        assert dead_run_sensor(dg.build_sensor_context(instance=instance)).skip_message == (
            "no dead runs"
        )
        assert messages == []

        # Not renewed for 10 minutes and no event since: dead.
        (recovered,) = recover_dead_runs(instance, log=messages.append, now=t0 + 600)
        assert recovered.run_id == run.run_id
        assert storage.get_concurrency_info(POOL).claimed_slots == []
        failed = instance.get_run_by_id(run.run_id)
        assert failed.status == DagsterRunStatus.FAILURE
        (message,) = messages
        assert run.run_id in message and f"1 slot of pool {POOL} (raw_trades)" in message
        assert f"pid {INVISIBLE_PID}" in message and "last renewed its lease 600 s ago" in message


def test_with_json_logs_a_recovery_is_one_event_naming_the_dead_run_and_what_it_freed(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("RLX_LOG_FORMAT", "json")
    root = tmp_path / "data"
    with dagster_test_instance() as instance:
        instance.event_log_storage.set_concurrency_slots(POOL, 1)
        t0 = time.time()
        dead = instance.add_run(
            DagsterRun(job_name="daily_chain", status=DagsterRunStatus.STARTED,
                       tags={"dagster/partition": PARTITION})
        )  # fmt: skip
        write_lease(instance, dead.run_id, lease_of(t0))
        instance.event_log_storage.claim_concurrency_slot(POOL, dead.run_id, "raw_trades")
        instance.daemon_cursor_storage.set_cursor_values({data_root_key(dead.run_id): str(root)})
        left = leftovers_of(root, dead.run_id, "2024-08-08")

        (recovered,) = recover_dead_runs(instance, [POOL], current_run_id="r-now", now=t0 + 600)

    (line,) = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
    assert (line["event"], line["level"]) == ("recovery.dead_run", "WARNING")
    assert (line["run_id"], line["dead_run_id"]) == ("r-now", dead.run_id)
    assert line["dead_run_partition"] == PARTITION and line["status"] == "STARTED"
    assert line["marked_failed"] is True and line["slots"] == {POOL: ["raw_trades"]}
    assert "last renewed its lease 600 s ago" in line["reason"]
    assert not any(p.exists() for p in left)  # removed, and each under a path the line names
    assert all(any(str(p).startswith(r) for r in line["removed"]) for p in left)
    assert line["message"] == recovered.message()


def test_a_stale_lease_with_a_recent_event_is_not_death(tmp_path):
    with dagster_test_instance() as instance:
        t0 = time.time()
        run = started_run(instance, lease_of(t0 - 600))  # the run was added just now
        assert recover_dead_runs(instance, now=t0 + 30) == []
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED


def test_a_run_without_a_lease_is_taken_for_dead_only_after_a_day_of_silence(tmp_path):
    with dagster_test_instance() as instance:
        t0 = time.time()
        run = started_run(instance, None)  # e.g. started before leases existed
        assert recover_dead_runs(instance, now=t0 + 23 * 3600) == []
        (recovered,) = recover_dead_runs(instance, now=t0 + 25 * 3600)
        assert recovered.run_id == run.run_id and "no run lease recorded" in recovered.reason


def test_the_daemon_sensor_frees_a_dead_run_even_when_no_new_run_starts(tmp_path):
    with dagster_test_instance() as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots(POOL, 1)
        stale = lease_of(time.time() - 600, stale_after_s=0.5)
        dead = started_run(instance, stale)
        storage.claim_concurrency_slot(POOL, dead.run_id, "raw_book")
        storage.claim_concurrency_slot(POOL, dead.run_id, "raw_trades")  # waits: limit 1
        # A run someone else already marked failed, still holding a slot of another pool.
        ended = started_run(instance, stale)
        storage.set_concurrency_slots("reconstruction", 2)
        storage.claim_concurrency_slot("reconstruction", ended.run_id, "reconstructed_stream")
        instance.report_run_failed(ended)
        time.sleep(1)  # the runs' last events (just logged) older than their leases' 0.5 s

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


def leftovers_of(root: Path, run_id: str, day: str) -> list[Path]:
    """What a run writing a reconstruction, a download and a golden conversion leaves when
    killed: named as `building_dir`, `atomic_write` and the converter name them in a run."""
    paths = [
        root / "reconstruction" / "BINANCE.BTC-USDT" / f".{day}.building-{run_id}"
        / f".stream.parquet.run-{run_id}.k2j4.part",
        root / "staging" / ".incoming" / f".trades.BINANCE.BTC-USDT.{day}.run-{run_id}.x1.part",
        root / "golden" / f".building-{run_id}" / f".spill.run-{run_id}.q9" / "book.arrow",
        root / "logs" / f".download.jsonl.run-{run_id}.z8.part",
    ]  # fmt: skip
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half written")
    return paths


def test_a_dead_runs_files_are_removed_and_a_live_runs_never(tmp_path):
    root = tmp_path / "data"
    with dagster_test_instance() as instance:
        t0 = time.time()
        live = started_run(instance, lease_of(t0 + 590))
        killed = started_run(instance, lease_of(t0))
        # A run its code server marked failed after its worker died: files left all the same.
        ended = started_run(instance, lease_of(t0))
        instance.report_run_failed(ended)
        for run in (live, killed, ended):
            instance.daemon_cursor_storage.set_cursor_values({data_root_key(run.run_id): str(root)})
        live_files = leftovers_of(root, live.run_id, "2024-08-09")
        dead_files = leftovers_of(root, killed.run_id, "2024-08-08")
        dead_files += leftovers_of(root, ended.run_id, "2024-08-07")
        published = root / "reconstruction" / "BINANCE.BTC-USDT" / "2024-08-08" / "stream.parquet"
        published.parent.mkdir(parents=True)
        published.write_bytes(b"a good file")
        messages: list[str] = []

        recovered = recover_dead_runs(instance, log=messages.append, now=t0 + 600)

        assert sorted(r.run_id for r in recovered) == sorted([killed.run_id, ended.run_id])
        assert [p for p in dead_files if p.exists()] == []
        assert not any(killed.run_id in p.name or ended.run_id in p.name for p in root.rglob("*"))
        assert all(p.is_file() for p in live_files)
        assert published.read_bytes() == b"a good file"
        assert instance.get_run_by_id(live.run_id).status == DagsterRunStatus.STARTED
        (killed_message,) = [m for m in messages if killed.run_id in m]
        assert f".2024-08-08.building-{killed.run_id}" in killed_message
        leases = read_leases(instance, [killed.run_id, ended.run_id, live.run_id])
        assert [leases[r.run_id].state for r in (killed, ended, live)] == [
            "cleaned", "cleaned", "running"
        ]  # fmt: skip
        assert recover_dead_runs(instance, now=t0 + 600) == []  # nothing left to do


@dg.asset(pool="leftover_probe")
def writes_a_file(context, rlx: RlxEnvironment) -> dict:
    dest = rlx.layout().root / "out" / "file.bin"
    with atomic_write(dest) as handle:
        handle.write(b"x")
        partial = [p.name for p in dest.parent.glob(".*.part")]
    return {"run_id": context.run.run_id, "partial": partial}


def test_a_steps_temporary_files_carry_its_run_id_and_the_run_records_its_data_root(tmp_path):
    root = tmp_path / "data"
    with dagster_test_instance() as instance:
        result = dg.materialize(
            [writes_a_file],
            instance=instance,
            resources={"rlx": RlxEnvironment(data_dir=str(root))},
        )
        seen = result.output_for_node("writes_a_file")
        recorded = instance.daemon_cursor_storage.get_cursor_values({data_root_key(seen["run_id"])})
    (partial,) = seen["partial"]
    assert partial.startswith(f".file.bin.run-{seen['run_id']}.") and partial.endswith(".part")
    assert recorded == {data_root_key(seen["run_id"]): str(root)}
    with atomic_write(tmp_path / "outside" / "f") as handle:  # after the run: the pid again
        handle.write(b"y")
        (outside,) = (tmp_path / "outside").glob(".*.part")
    assert outside.name.startswith(f".f.pid{os.getpid()}.")


@dg.op(pool="probe_pool")
def a_step() -> None:
    pass


@dg.job(executor_def=crash_recovering_executor)
def a_job():
    a_step()


IN_PROCESS = {"execution": {"config": {"in_process": {}}}}


def test_a_recovery_broken_by_a_dagster_change_fails_the_run_and_the_sensor_tick(
    tmp_path, monkeypatch
):
    with dagster_test_instance() as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots("probe_pool", 2)
        dead = started_run(instance, lease_of(time.time() - 600, stale_after_s=0.5))
        storage.claim_concurrency_slot("probe_pool", dead.run_id, "a_step")
        time.sleep(1)  # the dead run's last event older than its lease's 0.5 s
        # What an upgrade renaming the storage call that frees slots would do.
        for cls in (SqlEventLogStorage, EventLogStorage):
            monkeypatch.delattr(cls, "free_concurrency_slots_for_run")

        with pytest.raises(AttributeError, match="free_concurrency_slots_for_run"):
            dead_run_sensor(dg.build_sensor_context(instance=instance))
        with dg.execute_job(
            dg.reconstructable(a_job), instance, run_config=IN_PROCESS, raise_on_error=False
        ) as result:
            run_id = result.run_id
        assert instance.get_run_by_id(run_id).status == DagsterRunStatus.FAILURE
        events = {e.dagster_event.event_type: e.dagster_event for e in instance.all_logs(run_id)
                  if e.dagster_event is not None}  # fmt: skip
        error = events[dg.DagsterEventType.RUN_FAILURE].event_specific_data.error
        assert "free_concurrency_slots_for_run" in error.message
        assert dg.DagsterEventType.STEP_START not in events  # failed before any step started


# -- end to end: dagster asset materialize killed twice mid-download ----------------------------


def cli_env(home: Path, lake_uri: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RLX_", "DAGSTER_"))},
        "DAGSTER_HOME": str(home),
        "RLX_DATA_DIR": str(home / "data"),
        "RLX_LAKE_URI": lake_uri,
        "RLX_GATE_PROFILE": "sample",
        # A killed run is dead 10 s after its last lease renewal (every 1.7 s) instead of 120 s.
        "RLX_RUN_LEASE_S": str(LEASE_S),
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONUNBUFFERED": "1",
    }


def materialize_args(select: str = RAW_ASSETS, *options: str) -> list[str]:
    return ["asset", "materialize", "-m", "rlx_assets.definitions", "--select", select,
            "--partition", PARTITION, *options]  # fmt: skip


def materialize_command(*options: str) -> list[str]:
    return [sys.executable, "-m", "dagster", *materialize_args(RAW_ASSETS, *options)]


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
        held = instance.event_log_storage.get_concurrency_info(POOL)
        assert [s.run_id for s in held.claimed_slots] == [first.run_id]  # the only slot
        orphans = sorted(p.name for p in incoming.glob(".*.part"))
        assert len(orphans) == 1 and f".2024-08-08.run-{first.run_id}." in orphans[0]

        kill_mid_download(home, env, s3_server, tmp_path / "run2.log")
        second = only_new_run(instance, {first.run_id})
        second_log = (tmp_path / "run2.log").read_text()
        assert f"Dead run {first.run_id}" in second_log  # once its lease was stale
        assert f"1 slot of pool {POOL}" in second_log
        assert instance.get_run_by_id(first.run_id).status == DagsterRunStatus.FAILURE
        assert [p.name for p in incoming.glob(f"*{first.run_id}*")] == []

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
        assert "last renewed its lease" in output

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


# -- end to end: a reconstruction in another PID namespace, live, then killed mid-write ---------

# The run worker of a container that shares this host name but not its PID namespace:
# `unshare` gives it a PID namespace (and /proc) of its own, in which it is pid 1.
FOREIGN_PID_NAMESPACE = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc"]
# Runs `dagster` with every Parquet write of the process hanging after it wrote (HANG_MARKER
# then exists): a reconstruction held mid-write, its output files open in `.building-<run id>`.
HANGING_DAGSTER = """
import os, sys, time
from pathlib import Path
import pyarrow.parquet as pq

def hang_after(write):
    def written(self, *args, **kwargs):
        write(self, *args, **kwargs)
        Path(os.environ["HANG_MARKER"]).touch()
        while True:
            time.sleep(60)
    return written

pq.ParquetWriter.write_table = hang_after(pq.ParquetWriter.write_table)
pq.ParquetWriter.write_batch = hang_after(pq.ParquetWriter.write_batch)
from dagster._cli import main
sys.argv[0] = "dagster"
sys.exit(main())
"""


def certify_partition(instance: dg.DagsterInstance, data: Path, lake: Path) -> None:
    from rlx_assets.definitions import defs

    result = dg.materialize(
        [*defs.assets, *defs.asset_checks],
        selection=dg.AssetSelection.groups("acquisition", "validation"),
        partition_key=PARTITION,
        instance=instance,
        resources={"rlx": RlxEnvironment(data_dir=str(data), lake_uri=str(lake),
                                         gate_profile="sample")},
    )  # fmt: skip
    assert result.success


def left_in(data: Path) -> list[str]:
    """Every temporary file or folder below the data root."""
    return sorted(
        str(p.relative_to(data)) for p in data.rglob(".*")
        if ".building-" in p.name or p.name.endswith(".part") or p.name.startswith(".spill")
    )  # fmt: skip


@pytest.mark.slow
def test_a_live_run_in_another_pid_namespace_is_left_alone_and_once_killed_leaves_nothing(
    sample_lake, tmp_path, monkeypatch
):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    data, marker, log = home / "data", tmp_path / "writing", tmp_path / "run.log"
    env = {**cli_env(home, str(sample_lake)), "HANG_MARKER": str(marker)}
    monkeypatch.chdir(home)  # dagster.yaml's relative storage paths
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        certify_partition(instance, data, sample_lake)
        instance.event_log_storage.set_concurrency_slots("reconstruction", 1)
        known = {r.run_id for r in instance.get_runs()}
        command = [*FOREIGN_PID_NAMESPACE, sys.executable, "-c", HANGING_DAGSTER,
                   *materialize_args("reconstructed_stream", *IN_ONE_PROCESS)]  # fmt: skip
        with open(log, "wb") as out:
            process = subprocess.Popen(
                command, cwd=home, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 180
            while not marker.exists():
                assert process.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
            run = only_new_run(instance, known)
            (lease,) = read_leases(instance, [run.run_id]).values()
            assert lease.worker.startswith("pid 1 on ")  # this host's init, seen from here
            writing = left_in(data)
            assert f"reconstruction/BINANCE.BTC-USDT/.2024-08-08.building-{run.run_id}" in writing
            assert any(p.endswith(".part") and run.run_id in p for p in writing)

            # Live: the daemon's sensor leaves it, its slot and its files alone.
            skip = dead_run_sensor(dg.build_sensor_context(instance=instance))
            assert skip.skip_message == "no dead runs"
            assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED
            assert left_in(data) == writing
            held = instance.event_log_storage.get_concurrency_info("reconstruction")
            assert [s.run_id for s in held.claimed_slots] == [run.run_id]
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

        # Killed mid-write: once its lease is stale the sensor recovers it.
        deadline = time.monotonic() + 120
        while not (
            skip := dead_run_sensor(dg.build_sensor_context(instance=instance))
        ).skip_message.startswith("Dead run"):
            assert time.monotonic() < deadline, skip.skip_message
            time.sleep(1)
        assert f"Dead run {run.run_id} (STARTED;" in skip.skip_message
        assert f".2024-08-08.building-{run.run_id}" in skip.skip_message
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
        assert left_in(data) == []
        assert [p for p in data.rglob(".*") if run.run_id in p.name] == []
        info = instance.event_log_storage.get_concurrency_info("reconstruction")
        assert (info.claimed_slots, info.pending_steps) == ([], [])
    finally:
        instance.dispose()
