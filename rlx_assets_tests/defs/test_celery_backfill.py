"""Issue 16: `daily_chain` out across machines on Dagster's Celery executor, as the README's
"Scaling out" section sets it up. The instance lives in PostgreSQL, the data root in a bucket of
a local S3 server (and the vendor lake in another), Redis is the broker; the daemon (run queue,
backfill, run workers) and two Celery workers are separate processes, each with its own working
copy and directory, sharing no local disk. A backfill of every sample partition gives the same
bytes as a single-process run; a worker killed mid-step has its step re-run on the other one."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import dagster as dg
import pytest
import yaml

from rlx_assets.config import SettingsError, load_settings
from rlx_assets.definitions import defs as project_defs
from rlx_assets.defs.celery_executor import celery_worker_app
from rlx_assets.defs.executors import build_executor
from rlx_assets.defs.recovery import crash_recovering_executor
from rlx_assets_tests.conftest import LAKE_PREFIX, REPO_ROOT, TEST_SECRET, dagster_test_instance
from rlx_assets_tests.servers import free_port, wait_until_listening
from rlx_assets_tests.servers.dagster_ui import (
    CODE_SERVER_WORKSPACE,
    code_server_command,
    code_server_env,
)
from rlx_assets_tests.servers.postgres import LocalPostgres
from rlx_assets_tests.servers.redis import LocalRedis
from rlx_assets_tests.ui.test_cli_backfill import (
    documented_pool_limits,
    most_at_once,
    step_intervals_by_pool,
)

pytestmark = pytest.mark.slow

# In the order a single process runs them: a market's days in date order (day 2 is seeded
# from day 1's end book).
PARTITIONS = [
    "2024-08-08|BINANCE.BTC-USDT",
    "2024-08-08|BINANCE_FUTURES.BTC-USDT-PERP",
    "2024-08-09|BINANCE.BTC-USDT",
]
REGION = "eu-west-1"
DATA_PREFIX = "rlx"
CODE = ["-m", "rlx_assets.definitions"]
HEAVY_STEP = "reconstructed_stream"
# Written anew by every run (its id, clock times) or derived from those: left out of the
# comparison. Everything else in certificates, summaries and reports must be equal.
VOLATILE_KEYS = {
    "run_id", "issued_at", "reconstructed_at", "certificate_issued_at", "certificate_sha256",
    "checked_at", "time", "generated_at",
}  # fmt: skip


# -- the vendor lake, and the single-process reference run -----------------------------------


def lake_environment(s3_server, bucket: str) -> dict[str, str]:
    return {
        "RLX_LAKE_URI": f"s3://{bucket}/{LAKE_PREFIX}",
        "AWS_ENDPOINT_URL": s3_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": "AKIARLXTESTKEY000001",
        "AWS_SECRET_ACCESS_KEY": TEST_SECRET,
        "AWS_DEFAULT_REGION": REGION,
        "RLX_GATE_PROFILE": "sample",
    }


def s3_client(s3_server):
    return boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint_url,
        region_name=REGION,
        aws_access_key_id="AKIARLXTESTKEY000001",
        aws_secret_access_key=TEST_SECRET,
    )


def new_bucket(s3_server, name: str) -> str:
    bucket = f"{name}-{uuid.uuid4().hex[:12]}"
    s3_client(s3_server).create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    return bucket


@pytest.fixture(scope="module")
def lake_bucket(s3_server, sample_lake) -> str:
    """The sample lake in a bucket, under the vendor's prefix: the Crypto Lake every machine
    downloads from."""
    bucket = new_bucket(s3_server, "rlx-lake")
    client = s3_client(s3_server)
    for path in sorted(sample_lake.rglob("*.parquet")):
        client.upload_file(str(path), bucket, f"{LAKE_PREFIX}/{path.relative_to(sample_lake)}")
    return bucket


@pytest.fixture(scope="module")
def single_process_run(s3_server, lake_bucket, tmp_path_factory) -> Path:
    """Every partition run by `daily_chain` in this one process, in order, into a local data
    root: the reference the distributed runs must equal."""
    base = tmp_path_factory.mktemp("single_process")
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(("RLX_", "AWS_")):
                patch.delenv(name)
        for name, value in {
            **lake_environment(s3_server, lake_bucket),
            "RLX_DATA_DIR": str(base / "data"),
            "AWS_SHARED_CREDENTIALS_FILE": str(base / "no-aws-credentials"),
            "AWS_CONFIG_FILE": str(base / "no-aws-config"),
        }.items():
            patch.setenv(name, value)
        patch.chdir(base)  # lakeapi's .lake_cache
        job = project_defs.resolve_job_def("daily_chain")
        with dagster_test_instance() as instance:
            for partition in PARTITIONS:
                result = job.execute_in_process(
                    partition_key=partition, instance=instance, raise_on_error=False
                )
                assert result.success, partition
    return base / "data"


# -- the distributed deployment ----------------------------------------------------------------


def dagster_yaml(target: Path) -> None:
    """dagster_postgres.yaml as it ships, plus a run queue rule that starts a market's days
    one after another, in date order (each day's book is seeded from the previous day's)."""
    config = yaml.safe_load((REPO_ROOT / "dagster_postgres.yaml").read_text())
    config["concurrency"]["runs"]["tag_concurrency_limits"] = [
        {"key": "dagster/partition/market", "value": {"applyLimitPerUniqueValue": True},
         "limit": 1},
    ]  # fmt: skip
    target.write_text(yaml.safe_dump(config))


class Deployment:
    """PostgreSQL instance, Redis broker, data bucket; `dagster-daemon run` and Celery workers
    as process groups of their own, each in its own directory with its own working copy."""

    def __init__(self, base: Path, postgres, redis_server, s3_server, lake_bucket: str,
                 visibility_timeout_s: int):  # fmt: skip
        self.base = base
        self.data_bucket = new_bucket(s3_server, "rlx-data")
        self.client = s3_client(s3_server)
        self.processes: dict[str, subprocess.Popen] = {}
        self.code_server_port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items()
               if not k.startswith(("RLX_", "AWS_", "DAGSTER_"))},
            **lake_environment(s3_server, lake_bucket),
            **postgres.env,
            "RLX_DATA_DIR": f"s3://{self.data_bucket}/{DATA_PREFIX}",
            "RLX_DATA_S3_ENDPOINT_URL": s3_server.endpoint_url,
            "RLX_EXECUTOR": "celery",
            "RLX_CELERY_BROKER": redis_server.url(0),
            "RLX_CELERY_BACKEND": redis_server.url(1),
            "RLX_CELERY_VISIBILITY_TIMEOUT_S": str(visibility_timeout_s),
            **code_server_env(self.code_server_port),
            # The daily schedule of a real lake would tick at this hour: not during the test.
            "RLX_SCHEDULE_HOUR": str((time.gmtime().tm_hour + 12) % 24),
            "PYTHONUNBUFFERED": "1",
        }  # fmt: skip

    def machine(self, name: str) -> tuple[Path, dict[str, str]]:
        """A directory of its own (DAGSTER_HOME, working directory, working copy)."""
        home = self.base / name
        home.mkdir(parents=True, exist_ok=True)
        dagster_yaml(home / "dagster.yaml")
        env = {
            **self.env,
            "DAGSTER_HOME": str(home),
            "RLX_WORK_DIR": str(home / "work"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
            "AWS_CONFIG_FILE": str(home / "no-aws-config"),
        }
        return home, env

    def work_dirs(self) -> tuple[str, ...]:
        return tuple(str(home / "work") for home in self.base.iterdir() if home.is_dir())

    def log(self, name: str, chars: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return (self.base / name / "process.log").read_text(errors="replace")[-chars:]
        return ""

    def run(self, name: str, *command: str) -> str:
        home, env = self.machine(name)
        done = subprocess.run(
            [sys.executable, *command], cwd=home, env=env, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-4000:]
        return done.stdout

    def spawn(self, name: str, *command: str) -> subprocess.Popen:
        home, env = self.machine(name)
        with open(home / "process.log", "ab") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, *command], cwd=home, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # a group of its own: kill -9 takes its pool process too
            )  # fmt: skip
        return self.processes[name]

    def start_worker(self, name: str) -> None:
        """The README's worker command: one step at a time, listening on dagster's queue."""
        self.spawn(
            name, "-m", "celery", "-A", "rlx_assets.defs.celery_worker", "worker",
            "-Q", "dagster", "--concurrency", "1", "-n", f"{name}@%h", "--loglevel", "INFO",
            "--without-mingle", "--without-gossip",
        )  # fmt: skip
        deadline = time.monotonic() + 180
        while f"{name}@" not in self.log(name) or " ready." not in self.log(name):
            assert self.processes[name].poll() is None, self.log(name)
            assert time.monotonic() < deadline, f"worker {name} not ready:\n{self.log(name)}"
            time.sleep(0.5)

    def kill(self, name: str) -> None:
        """`kill -9` of the worker and its pool process."""
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)

    def stop(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        for process in self.processes.values():  # leftovers of each group (run workers)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        self.processes.clear()

    # -- the bucket ----------------------------------------------------------------------------

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.data_bucket, Prefix=f"{DATA_PREFIX}/{prefix}"
        )
        return sorted(
            o["Key"].removeprefix(f"{DATA_PREFIX}/") for p in pages for o in p.get("Contents", [])
        )

    def read(self, key: str) -> bytes:
        body = self.client.get_object(Bucket=self.data_bucket, Key=f"{DATA_PREFIX}/{key}")
        return body["Body"].read()

    def published(self, directory: str) -> str:
        """The key prefix of the version a published directory's pointer names."""
        return f"{directory}/{json.loads(self.read(f'{directory}/CURRENT'))['version']}"


# Visibility timeout, s: a dead worker's step is redelivered after it; it must exceed the longest
# step even on a loaded CI machine (the sample's take 2-30 s), or a live step runs twice.
VISIBILITY_TIMEOUT_S = 90


@pytest.fixture
def deployment(tmp_path, s3_server, lake_bucket, monkeypatch):
    with LocalPostgres() as postgres, LocalRedis() as redis_server:
        cluster = Deployment(
            tmp_path, postgres, redis_server, s3_server, lake_bucket, VISIBILITY_TIMEOUT_S
        )
        try:
            cluster.run("daemon", "-m", "dagster", "instance", "migrate")
            for name, value in postgres.env.items():
                monkeypatch.setenv(name, value)
            home, _ = cluster.machine("daemon")
            monkeypatch.chdir(home)
            instance = dg.DagsterInstance.from_config(str(home))
            limits = documented_pool_limits()
            for pool, limit in limits.items():  # the README's `dagster instance concurrency set`
                instance.event_log_storage.set_concurrency_slots(pool, limit)
            cluster.instance, cluster.limits = instance, limits
            # The README's code server (a machine of its own here), which the daemon uses through
            # workspace_code_server.yaml; the run workers are its children.
            port = cluster.code_server_port
            _, *command = code_server_command(port)  # spawn() adds the interpreter
            code_server = cluster.spawn("code_server", *command)
            wait_until_listening(port, code_server, 180, lambda: cluster.log("code_server"))
            workspace = str(CODE_SERVER_WORKSPACE)
            cluster.spawn("daemon", "-m", "dagster._daemon", "run", "-w", workspace)
            yield cluster
        finally:
            cluster.stop()
            with contextlib.suppress(Exception):
                cluster.instance.dispose()


def backfill(cluster: Deployment, partitions: list[str]) -> None:
    cluster.run(
        "daemon", "-m", "dagster", "job", "backfill", *CODE, "-j", "daily_chain",
        "--partitions", ",".join(partitions), "--noprompt",
    )  # fmt: skip


def wait_for_backfill_runs(cluster: Deployment, count: int, timeout: float = 900) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [r for r in cluster.instance.get_runs() if "dagster/backfill" in r.tags]
        if len(runs) >= count and all(r.is_finished for r in runs):
            return runs
        assert cluster.processes["daemon"].poll() is None, cluster.log("daemon")
        time.sleep(1)
    raise TimeoutError(f"backfill runs not finished in {timeout} s:\n{cluster.log('daemon')}")


def print_run_times(cluster: Deployment, runs, since_monotonic: float) -> None:
    since = time.time() - (time.monotonic() - since_monotonic)
    for record in sorted(
        cluster.instance.get_run_records(dg.RunsFilter(run_ids=[r.run_id for r in runs])),
        key=lambda r: r.start_time or 0,
    ):
        run = record.dagster_run
        created = record.create_timestamp.timestamp() - since
        print(
            f"{run.tags.get('dagster/partition')}: created +{created:.0f} s, "
            f"started +{(record.start_time or since) - since:.0f} s, "
            f"ended +{(record.end_time or since) - since:.0f} s, {run.status.value}"
        )


def celery_step_workers(instance, run_id: str) -> list[tuple[str, str]]:
    """(step, Celery worker) for every time a worker started executing a step, in order."""
    found = []
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        event = record.dagster_event
        metadata = event.engine_event_data.metadata if event.engine_event_data else {}
        worker = metadata.get("Celery worker")
        if worker is not None:
            found.append((event.step_key, worker.value.split("@")[0]))
    return found


# -- comparing with the single-process run -----------------------------------------------------


def deterministic(value, roots: tuple[str, ...]):
    """A JSON document without the keys that name a run or a clock time, and with local paths
    relative to the machine's own data root or working copy (in `roots`)."""
    if isinstance(value, dict):
        return {k: deterministic(v, roots) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [deterministic(v, roots) for v in value]
    if isinstance(value, str):
        for root in roots:
            if value.startswith(root + "/"):
                return "<data root>" + value.removeprefix(root)
    return value


def differences(ours, theirs, where: str = "") -> list[str]:
    """Where two JSON documents differ (paths such as `tables.book.gates[1].measured`)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return [
            found
            for key in sorted(set(ours) | set(theirs), key=str)
            for found in differences(ours.get(key), theirs.get(key), f"{where}.{key}")
        ]
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        return [
            found
            for i, (a, b) in enumerate(zip(ours, theirs, strict=True))
            for found in differences(a, b, f"{where}[{i}]")
        ]
    return [] if ours == theirs else [f"{where}: {ours!r} != {theirs!r}"]


def json_differences(cluster: Deployment, key: str, local: Path, stored_as: str = "") -> list[str]:
    """The first differences of a JSON file (at `stored_as` in the bucket, default `key`)."""
    found = differences(
        deterministic(json.loads(cluster.read(stored_as or key)), cluster.work_dirs()),
        deterministic(json.loads((local / key).read_text()), (str(local),)),
    )
    return [f"{key}{where}" for where in found[:10]]


def assert_same_outputs(cluster: Deployment, local: Path, partitions: list[str]) -> None:
    """Byte for byte where the bytes are deterministic, else the JSON but for run and clock."""
    problems = []
    for partition in partitions:
        day, market = partition.split("|")
        directory = f"reconstruction/{market}/{day}"
        version = cluster.published(directory)
        expected = sorted(p.name for p in (local / directory).iterdir())
        stored = [k.removeprefix(f"{version}/") for k in cluster.keys(f"{version}/")]
        assert stored == expected
        for name in expected:
            if name.endswith(".json"):
                problems += json_differences(
                    cluster, f"{directory}/{name}", local, stored_as=f"{version}/{name}"
                )
            elif cluster.read(f"{version}/{name}") != (local / directory / name).read_bytes():
                problems.append(f"{directory}/{name}: different bytes")
        problems += json_differences(cluster, f"certificates/{market}/{day}.json", local)
        problems += json_differences(cluster, f"reports/{market}/{day}/fidelity.json", local)
        discrepancies = f"reports/{market}/{day}/discrepancies.parquet"
        if cluster.read(discrepancies) != (local / discrepancies).read_bytes():
            problems.append(f"{discrepancies}: different bytes")
    assert not problems, "differs from the single-process run:\n" + "\n".join(problems)


def assert_pools_and_queue_held(cluster: Deployment, runs) -> None:
    """No pool ran more steps at once than its limit, no more runs than the queue allows, and
    no slot outlived its step."""
    instance = cluster.instance
    default = instance.get_concurrency_config().pool_config.default_pool_limit
    for pool, spans in step_intervals_by_pool(instance).items():
        limit = cluster.limits.get(pool, default)
        print(f"{pool}: {len(spans)} steps, at most {most_at_once(spans)} at once (<= {limit})")
        assert 1 <= most_at_once(spans) <= limit
        assert instance.event_log_storage.get_concurrency_info(pool).claimed_slots == []
    run_spans = [(r.start_time, r.end_time) for r in instance.get_run_records(
        dg.RunsFilter(run_ids=[run.run_id for run in runs]))]  # fmt: skip
    max_runs = instance.get_concurrency_config().run_queue_config.max_concurrent_runs
    assert most_at_once(run_spans) <= max_runs


# -- the tests ---------------------------------------------------------------------------------


def heavy_step_worker(cluster: Deployment, partition: str) -> str | None:
    """The Celery worker that started the heavy step of `partition`'s run, if one has."""
    for run in cluster.instance.get_runs():
        if run.tags.get("dagster/partition") == partition:
            for step, worker in celery_step_workers(cluster.instance, run.run_id):
                if step == HEAVY_STEP:
                    return worker
    return None


def kill_the_worker_of_the_heavy_step(cluster: Deployment, partition: str) -> tuple[str, float]:
    """As soon as a worker starts `partition`'s heavy step: kill -9 that worker (and its pool
    process). The worker's name and when it was killed."""
    deadline = time.monotonic() + 900
    while (victim := heavy_step_worker(cluster, partition)) is None:
        assert time.monotonic() < deadline, cluster.log("daemon")
        assert cluster.processes["daemon"].poll() is None, cluster.log("daemon")
        time.sleep(0.25)  # the heavy step takes seconds: killed mid-step
    cluster.kill(victim)
    print(f"killed {victim} while it ran {HEAVY_STEP} of {partition}")
    return victim, time.time()


# One deployment, one backfill (a deployment and a backfill cost minutes on two cores): both
# workers share the backfill, then the worker running the heavy step of the last day is killed.
# Proven apart below: what two workers produce, and what the kill leaves.
def test_a_backfill_on_two_celery_workers_equals_a_single_process_run_even_when_one_is_killed(
    deployment, single_process_run
):
    deployment.start_worker("worker1")
    deployment.start_worker("worker2")
    started = time.monotonic()
    backfill(deployment, PARTITIONS)
    # The market's second day starts after its first (the run queue rule): both workers have
    # taken steps by then.
    killed_day = PARTITIONS[-1]
    victim, killed_at = kill_the_worker_of_the_heavy_step(deployment, killed_day)
    survivor = ({"worker1", "worker2"} - {victim}).pop()
    runs = wait_for_backfill_runs(deployment, len(PARTITIONS))
    print_run_times(deployment, runs, started)
    print(
        f"backfill of {len(PARTITIONS)} partitions on 2 workers, one killed: "
        f"{time.monotonic() - started:.1f} s"
    )
    assert {r.tags["dagster/partition"]: r.status for r in runs} == {
        p: dg.DagsterRunStatus.SUCCESS for p in PARTITIONS
    }, deployment.log("daemon", 12000)

    # Two workers: every step ran on a Celery worker, and both workers took steps.
    placed = [w for r in runs for _, w in celery_step_workers(deployment.instance, r.run_id)]
    assert set(placed) == {"worker1", "worker2"}
    print({w: placed.count(w) for w in sorted(set(placed))})
    day2 = deployment.published("reconstruction/BINANCE.BTC-USDT/2024-08-09")
    summary = json.loads(deployment.read(f"{day2}/summary.json"))
    assert summary["seeded_from"] == "previous_day" and not summary["started_cold"]
    assert_same_outputs(deployment, single_process_run, PARTITIONS)
    assert_pools_and_queue_held(deployment, runs)

    # The kill: the killed worker's step re-ran on the other worker, once, after the kill.
    (run,) = [r for r in runs if r.tags["dagster/partition"] == killed_day]
    placed_steps = celery_step_workers(deployment.instance, run.run_id)
    assert [w for s, w in placed_steps if s == HEAVY_STEP] == [victim, survivor]
    records = deployment.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
    succeeded = [r.step_key for r in records]
    assert succeeded.count(HEAVY_STEP) == 1  # once, after the kill
    assert next(r.timestamp for r in records if r.step_key == HEAVY_STEP) > killed_at
    assert sorted(succeeded) == sorted(set(succeeded))  # no step succeeded twice
    print(f"{HEAVY_STEP} re-ran on {survivor}; run {run.status.value}")

    # Nothing lost or duplicated: one published version of each day, the raw files logged once
    # each (3 tables a day), and the same bytes as the single-process run (above).
    for partition in PARTITIONS:
        day, market = partition.split("|")
        directory = f"reconstruction/{market}/{day}/"
        versions = {k.removeprefix(directory).split("/")[0] for k in deployment.keys(directory)}
        assert len(versions - {"CURRENT"}) == 1, partition  # one published version
    assert len(deployment.keys("logs/manifest/raw/")) == 3 * len(PARTITIONS)


# -- the settings that choose and configure it -------------------------------------------------


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"RLX_EXECUTOR": "celery"}, "RLX_EXECUTOR=celery needs RLX_CELERY_BROKER (valid example:"),
        ({"RLX_EXECUTOR": "k8s"}, "RLX_EXECUTOR='k8s': input should be 'multiprocess' or 'celery'"),
        (
            {"RLX_EXECUTOR": "celery", "RLX_CELERY_BROKER": "amqp://guest@127.0.0.1//"},
            "RLX_CELERY_BROKER='amqp://guest@127.0.0.1//': must be a Redis URL",
        ),
    ],
)
def test_a_bad_executor_setting_is_refused_in_one_line(monkeypatch, variables, message):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as refused:
        build_executor(load_settings())
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


def test_the_executor_and_the_workers_share_one_celery_configuration(monkeypatch):
    assert build_executor(load_settings()) is crash_recovering_executor  # the default
    monkeypatch.setenv("RLX_EXECUTOR", "celery")
    monkeypatch.setenv("RLX_CELERY_BROKER", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("RLX_CELERY_VISIBILITY_TIMEOUT_S", "120")
    settings = load_settings()
    assert build_executor(settings).name == "celery"
    app = celery_worker_app(settings)
    worker = app.conf
    assert (worker.broker_url, worker.result_backend) == ("redis://127.0.0.1:6379/0",) * 2
    assert worker.task_acks_late and worker.task_reject_on_worker_lost
    assert worker.broker_transport_options["visibility_timeout"] == 120
    assert "execute_plan" in app.tasks
