"""Crash recovery: a run killed with `kill -9` never blocks later runs, nor leaves files behind.

Dagster keeps the pool slots of a run that died without ending (its claimed slots and its
queued steps) and keeps the run STARTED, so later runs wait "blocked by limit for pool" for
ever. Dagster's run monitoring cannot see such a run under the `DefaultRunLauncher`: the
launcher does not implement `check_run_worker_health`, and the daemon only frees the slots of
runs that already ended (`free_slots_after_run_end_seconds`). So every run worker renews a
lease in the instance's storage while its run executes (`RunLeaseKeeper`; `rlx_assets.runs`
judges it): a run whose lease went stale, with no event either, is dead, whatever host, PID
namespace or container it ran in. Before any step of a run claims a slot, and again at every
renewal while it runs, it recovers the dead runs holding slots of its pools; `dead_run_sensor`
does the same from the daemon for every pool. Recovering a dead run marks it FAILURE, frees its
slots and removes what it was writing: its temporary files and folders carry its run id
(`temp_files.temp_name`, `.building-<run id>`) and its steps record which data root they write.
Recovery errors are never swallowed: they fail the run, or the sensor's tick.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.executor.base import Executor
from dagster._core.storage.dagster_run import ACTIVE_RUN_STATUSES, FINISHED_STATUSES

from rlx_assets.config import load_settings
from rlx_assets.runs import LeaseState, RunLease, Verdict, judge_run, new_lease
from rlx_assets.staging import remove_run_leftovers
from rlx_assets.structured_log import log_event
from rlx_assets.temp_files import own_temp_files

# Runs that ended (failed or canceled) this recently are looked at for files left behind: one
# killed and then marked failed by someone else (its code server, run monitoring) still has them.
ENDED_RUNS_LOOKBACK = dt.timedelta(days=7)
ENDED_STATUSES = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


# -- what the instance's key-value storage holds per run --------------------------------------


def lease_key(run_id: str) -> str:
    return f"rlx/run_lease/{run_id}"


def data_root_key(run_id: str) -> str:
    return f"rlx/run_data_root/{run_id}"


def write_lease(instance: dg.DagsterInstance, run_id: str, lease: RunLease) -> None:
    instance.daemon_cursor_storage.set_cursor_values({lease_key(run_id): lease.to_json()})


def read_leases(instance: dg.DagsterInstance, run_ids: Iterable[str]) -> dict[str, RunLease]:
    keys = {lease_key(run_id): run_id for run_id in run_ids}
    values = instance.daemon_cursor_storage.get_cursor_values(set(keys)) if keys else {}
    return {keys[key]: RunLease.from_json(value) for key, value in values.items()}


def write_for_run(instance: dg.DagsterInstance, run_id: str, data_root: Path) -> None:
    """Called in every step process: this process's temporary files carry `run_id` from now
    on, and the run records the data root it writes, where recovery looks for them."""
    own_temp_files(run_id)
    instance.daemon_cursor_storage.set_cursor_values({data_root_key(run_id): str(data_root)})


def data_roots(instance: dg.DagsterInstance, run_ids: Iterable[str]) -> dict[str, Path]:
    keys = {data_root_key(run_id): run_id for run_id in run_ids}
    values = instance.daemon_cursor_storage.get_cursor_values(set(keys)) if keys else {}
    return {keys[key]: Path(value) for key, value in values.items()}


# -- which runs are dead, and what they hold ----------------------------------------------------


@dataclass
class Holding:
    """What one run holds in the pools: claimed slots and queued (waiting) steps per pool."""

    slots: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    waiting: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def describe(self) -> str:
        parts = [
            f"{len(steps)} slot{'s' if len(steps) != 1 else ''} of pool {pool} "
            f"({', '.join(sorted(steps))})"
            for pool, steps in sorted(self.slots.items())
        ]
        parts += [
            f"{len(steps)} waiting step{'s' if len(steps) != 1 else ''} in pool {pool}"
            for pool, steps in sorted(self.waiting.items())
        ]
        return "; ".join(parts) or "no pool slots"

    def __bool__(self) -> bool:
        return bool(self.slots or self.waiting)


@dataclass(frozen=True)
class RecoveredRun:
    run_id: str
    status: str  # before recovery
    reason: str
    holding: Holding
    marked_failed: bool
    removed: tuple[Path, ...] = ()

    def message(self) -> str:
        done = ["marked it FAILURE"] if self.marked_failed else []
        if self.holding or self.marked_failed:
            done.append(f"freed {self.holding.describe()}")
        if self.removed:
            done.append(f"removed what it was writing: {names(self.removed)}")
        return f"Dead run {self.run_id} ({self.status}; {self.reason}): {'; '.join(done)}."


def names(paths: Sequence[Path], at_most: int = 5) -> str:
    more = f" and {len(paths) - at_most} more" if len(paths) > at_most else ""
    return ", ".join(p.name for p in paths[:at_most]) + more


def runs_holding_pools(instance: dg.DagsterInstance, pools: Iterable[str]) -> dict[str, Holding]:
    storage = instance.event_log_storage
    holdings: dict[str, Holding] = defaultdict(Holding)
    for pool, info in storage.get_concurrency_infos(sorted(set(pools))).items():
        for slot in info.claimed_slots:
            holdings[slot.run_id].slots[pool].append(slot.step_key)
        for step in info.pending_steps:
            claimed = any(s.run_id == step.run_id and s.step_key == step.step_key
                          for s in info.claimed_slots)  # fmt: skip
            if not claimed:
                holdings[step.run_id].waiting[pool].append(step.step_key)
    return holdings


def seconds_since_last_event(
    instance: dg.DagsterInstance, record: dg.RunRecord, now: float
) -> float:
    last = instance.event_log_storage.get_logs_for_run(
        record.dagster_run.run_id, limit=1, ascending=False
    )
    latest = last[0].timestamp if last else record.update_timestamp.timestamp()
    return now - latest


def candidate_runs(
    instance: dg.DagsterInstance, holding_run_ids: Iterable[str]
) -> dict[str, dg.RunRecord]:
    """Runs that may need recovery: active ones, those holding pool slots, recently ended."""
    ended_after = dt.datetime.now(dt.UTC) - ENDED_RUNS_LOOKBACK
    filters = [
        dg.RunsFilter(statuses=ACTIVE_RUN_STATUSES),
        dg.RunsFilter(statuses=ENDED_STATUSES, updated_after=ended_after),
    ]
    if holding_run_ids := list(holding_run_ids):
        filters.append(dg.RunsFilter(run_ids=holding_run_ids))
    return {r.dagster_run.run_id: r for f in filters for r in instance.get_run_records(f)}


@dataclass(frozen=True)
class _DeadRun:
    record: dg.RunRecord
    verdict: Verdict
    holding: Holding
    lease: RunLease | None

    @property
    def left_files(self) -> bool:
        """Its files were never removed: its run worker neither ended nor was cleaned up."""
        return self.lease is not None and self.lease.state == "running"


def find_dead_runs(
    instance: dg.DagsterInstance,
    holdings: Mapping[str, Holding],
    current_run_id: str | None,
    now: float,
) -> list[_DeadRun]:
    records = candidate_runs(instance, holdings)
    records.pop(current_run_id or "", None)
    leases = read_leases(instance, records)
    dead = []
    for run_id, record in sorted(records.items()):
        status, lease = record.dagster_run.status, leases.get(run_id)
        if status not in (*ACTIVE_RUN_STATUSES, *FINISHED_STATUSES):
            continue  # queued or suspended: no run worker yet
        holding = holdings.get(run_id, Holding())
        needs = status not in FINISHED_STATUSES or holding or (lease and lease.state == "running")
        if not needs:
            continue  # nothing to recover: spare the event-log query
        verdict = judge_run(lease, now, seconds_since_last_event(instance, record, now))
        if verdict.dead:
            dead.append(_DeadRun(record, verdict, holding, lease))
    return dead


def remove_run_files(instance: dg.DagsterInstance, run_ids: list[str]) -> dict[str, list[Path]]:
    """Remove the temporary files and folders of `run_ids` (runs none of whose steps runs any
    more) from the data roots their steps recorded. Returns the removed paths per run."""
    by_root: dict[Path, list[str]] = defaultdict(list)
    for run_id, root in data_roots(instance, run_ids).items():
        by_root[root].append(run_id)
    removed: dict[str, list[Path]] = defaultdict(list)
    for root, ids in by_root.items():
        for path in remove_run_leftovers(root, ids):
            removed[next(r for r in ids if r in path.name)].append(path)
    return removed


def remove_leftovers(instance: dg.DagsterInstance, runs: list[_DeadRun]) -> dict[str, list[Path]]:
    """`remove_run_files` of the dead `runs` that left files; their leases say "cleaned"."""
    leaving = [r for r in runs if r.left_files]
    removed = remove_run_files(instance, [r.record.dagster_run.run_id for r in leaving])
    for run in leaving:
        if run.lease is not None:
            cleaned = run.lease.renewed(run.lease.renewed_at, "cleaned")
            write_lease(instance, run.record.dagster_run.run_id, cleaned)
    return removed


def recover_dead_runs(
    instance: dg.DagsterInstance,
    pools: Iterable[str] | None = None,
    *,
    current_run_id: str | None = None,
    log: Callable[[str], None] = lambda _msg: None,
    now: float | None = None,
) -> list[RecoveredRun]:
    """Recover every dead run (`rlx_assets.runs.judge_run`): an active one is marked FAILURE,
    its slots in `pools` (default all) are freed and the files it was writing are removed.
    Ended runs are looked at too (slots still held, files left). `now`: the clock (seconds
    since the epoch) leases are judged by. Returns (and logs) what it did; errors are raised."""
    storage = instance.event_log_storage
    holdings: dict[str, Holding] = {}
    if storage.supports_global_concurrency_limits:
        pools = storage.get_concurrency_keys() if pools is None else set(pools)
        holdings = runs_holding_pools(instance, pools) if pools else {}
    dead = find_dead_runs(instance, holdings, current_run_id, time.time() if now is None else now)
    removed = remove_leftovers(instance, dead)
    recovered = []
    for run in dead:
        dagster_run = run.record.dagster_run
        run_id = dagster_run.run_id
        fail_it = dagster_run.status not in FINISHED_STATUSES
        done = RecoveredRun(run_id, dagster_run.status.value, run.verdict.reason, run.holding,
                            fail_it, tuple(removed.get(run_id, ())))  # fmt: skip
        if run.holding:
            storage.free_concurrency_slots_for_run(run_id)
        if fail_it:  # last: a run recovery failed for is still found dead next time
            instance.report_run_failed(
                dagster_run,
                f"Run worker died without ending the run (e.g. killed with kill -9): "
                f"{run.verdict.reason}. Marked FAILURE by crash recovery. {done.message()}",
            )
        if fail_it or run.holding or done.removed:
            log(done.message())
            log_event(
                "recovery.dead_run", done.message(), level=logging.WARNING,
                run_id=current_run_id, dead_run_id=run_id, status=done.status,
                reason=done.reason, marked_failed=fail_it, slots=dict(run.holding.slots),
                waiting=dict(run.holding.waiting), removed=[str(p) for p in done.removed],
                dead_run_partition=dagster_run.tags.get("dagster/partition"),
            )  # fmt: skip
            recovered.append(done)
    return recovered


# -- the run's own side: its lease, renewed while it executes ----------------------------------


class CrashRecoveryError(Exception):
    """Crash recovery failed while the run executed (e.g. a Dagster upgrade changed a name it
    uses): the run fails with it, so the breakage is seen at once."""


class RunLeaseKeeper:
    """Writes the run's lease now, then renews it from a thread of the run worker every
    `renew_every_s`; each renewal also recovers dead runs holding the run's `pools`, so a run
    waiting for a killed run's slot gets it without the daemon. An error in the thread is kept
    (and logged) and raised by `raise_kept_error`."""

    def __init__(self, instance: dg.DagsterInstance, run_id: str, pools: set[str],
                 stale_after_s: float, log: Callable[[str], None]):  # fmt: skip
        self.instance, self.run_id, self.pools, self.log = instance, run_id, pools, log
        self.lease = new_lease(time.time(), stale_after_s)
        write_lease(instance, run_id, self.lease)
        self.error: Exception | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="rlx-run-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.lease.renew_every_s):
            try:
                write_lease(self.instance, self.run_id, self.lease.renewed(time.time()))
                if self.pools:
                    recover_dead_runs(self.instance, self.pools, current_run_id=self.run_id,
                                      log=self.log)  # fmt: skip
            except Exception as error:  # noqa: BLE001 - kept, raised by raise_kept_error()
                if self.error is None:
                    self.error = error
                    with contextlib.suppress(Exception):  # the error itself is kept
                        self.log(f"Crash recovery failed, the run will fail: {describe(error)}")

    def close(self, ended: bool) -> None:
        """Stop renewing. `ended`: every step ended and nothing of the run is left to remove;
        otherwise the lease goes stale and recovery removes what the steps left."""
        self._stop.set()
        self._thread.join()
        state: LeaseState = "ended" if ended else "running"
        write_lease(self.instance, self.run_id, self.lease.renewed(time.time(), state))

    def raise_kept_error(self) -> None:
        if self.error is not None:
            raise CrashRecoveryError(describe(self.error)) from self.error


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def plan_pools(execution_plan: ExecutionPlan) -> set[str]:
    return {
        s.pool for s in execution_plan.get_all_steps_in_topo_order() if getattr(s, "pool", None)
    }


class CrashRecoveringExecutor(Executor):
    """Dagster's default executor, with the run's lease renewed by this process (the run
    worker) while it executes, and crash recovery before any step of the run claims a pool
    slot. An error of either fails the run. When the inner executor ends it removes what steps
    killed alone left; its lease says "ended" when it ended normally, else it goes stale and
    recovery looks again (as for a run worker that died)."""

    def __init__(self, inner: Executor):
        self._inner = inner

    @property
    def retries(self):
        return self._inner.retries

    @property
    def step_dependency_config(self):
        return self._inner.step_dependency_config

    def execute(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> Iterator[dg.DagsterEvent]:
        instance, run_id, log = plan_context.instance, plan_context.run_id, plan_context.log
        pools = plan_pools(execution_plan)
        keeper = RunLeaseKeeper(instance, run_id, pools, load_settings().run_lease_s, log.warning)
        ended = False
        try:
            recover_dead_runs(instance, pools, current_run_id=run_id, log=log.warning)
            yield from self._inner.execute(plan_context, execution_plan)
            ended = True
        finally:
            try:  # what a step killed alone (OOM, a lost Celery worker) left
                if left := remove_run_files(instance, [run_id]).get(run_id):
                    message = f"Removed what this run's killed steps left: {names(left)}."
                    log.warning(message)
                    log_event("recovery.steps_leftovers_removed", message, level=logging.WARNING,
                              run_id=run_id, removed=[str(p) for p in left])  # fmt: skip
            finally:
                keeper.close(ended)
        keeper.raise_kept_error()


DEFINITIONS_MODULE = "rlx_assets.definitions"
# Dagster loads these in every step process after the fork (loading the job imports
# `dagster._utils.test.definitions`, which pulls in sqlalchemy, alembic, the daemon; the IO
# manager uses upath): ~500 modules, about 2.5 s of a step's start when not preloaded.
STEP_IMPORTS = ("dagster._utils.test.definitions", "upath")


def step_preload(job_module: str | None, instance: dg.DagsterInstance) -> list[str]:
    """What the forkserver imports once for all steps: the job's module (the project's
    definitions when the job came from elsewhere), Dagster's step-time imports and the
    modules of the instance's storages (SQLite or PostgreSQL)."""
    storages = (instance.run_storage, instance.event_log_storage, instance.schedule_storage,
                instance.compute_log_manager)  # fmt: skip
    modules = [job_module or DEFINITIONS_MODULE, *STEP_IMPORTS]
    modules += [type(storage).__module__ for storage in storages if storage is not None]
    return list(dict.fromkeys(modules))


def with_forked_steps(config: Mapping[str, object], preload: list[str]) -> dict:
    """The executor config, with steps forked from a forkserver that imported `preload` once
    when the config chooses the multiprocess executor without a `start_method`. Dagster would
    spawn a fresh Python per step, which spends seconds importing dagster and the definitions
    before the step starts. A `start_method` the user chose is kept."""
    multiprocess = config.get("multiprocess")
    if not isinstance(multiprocess, Mapping) or multiprocess.get("start_method"):
        return dict(config)
    start_method = {"forkserver": {"preload_modules": list(preload)}}
    return {**config, "multiprocess": {**multiprocess, "start_method": start_method}}


def _create_executor(init_context: dg.InitExecutorContext) -> Executor:
    creation = dg.multi_or_in_process_executor.executor_creation_fn
    assert creation is not None
    get_module = getattr(init_context.job, "get_module", lambda: None)
    preload = step_preload(get_module(), init_context.instance)
    forked = dg.InitExecutorContext(
        job=init_context.job,
        executor_def=init_context.executor_def,
        executor_config=with_forked_steps(init_context.executor_config, preload),
        instance=init_context.instance,
    )
    return CrashRecoveringExecutor(creation(forked))


# Same config as Dagster's default (`multiprocess` or `in_process`, max_concurrent, retries);
# without a `start_method`, steps fork from a preloaded forkserver (`with_forked_steps`).
crash_recovering_executor = dg.ExecutorDefinition(
    name="crash_recovering_multi_or_in_process",
    config_schema=dg.multi_or_in_process_executor.config_schema,
    requirements=dg.multi_or_in_process_executor.get_requirements,
    executor_creation_fn=_create_executor,
    description=(
        "Dagster's default executor, its steps forked from a server that imported the "
        "definitions once (unless a start_method is chosen). The run renews a lease while it "
        "runs; before any step claims a pool slot, and at every renewal, runs whose lease went "
        "stale are marked FAILURE, their slots freed and the files they were writing removed."
    ),
)


@dg.sensor(
    name="dead_run_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Marks runs whose run worker died (e.g. kill -9: no lease renewal) FAILURE, frees "
        "their pool slots and removes the files they were writing, so they stop blocking pools "
        "and the run queue even when no new run starts. A recovery error fails the tick."
    ),
)
def dead_run_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    recovered = recover_dead_runs(context.instance, log=context.log.warning)
    if not recovered:
        return dg.SkipReason("no dead runs")
    return dg.SkipReason(" ".join(r.message() for r in recovered))
