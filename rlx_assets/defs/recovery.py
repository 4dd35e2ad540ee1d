"""Crash recovery: a run killed with `kill -9` never blocks later runs.

Dagster keeps the pool slots of a run that died without ending (its claimed slots and its
queued steps) and keeps the run STARTED, so later runs wait "blocked by limit for pool" for
ever. Run monitoring cannot see such a run under the `DefaultRunLauncher`: the launcher does
not implement `check_run_worker_health`, and the daemon only frees the slots of runs that
already ended (`free_slots_after_run_end_seconds`). So every run records its run worker (host,
pid, process start) in its tags, and before any of its steps claims a slot it looks at the runs
holding slots of its pools: one whose worker process no longer exists on this host is marked
FAILURE and its slots are freed, with a warning naming run, pool and steps. The same check runs
from the daemon in `dead_run_sensor`, so dead runs also stop counting against the run queue.
A live run, or a run on another host that logged an event in the last 24 h, is never touched.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.executor.base import Executor
from dagster._core.storage.dagster_run import ACTIVE_RUN_STATUSES, FINISHED_STATUSES

from rlx_assets.runs import RunWorker, current_worker, judge_run_worker, this_host

WORKER_HOST_TAG = "rlx/run_worker_host"
WORKER_PID_TAG = "rlx/run_worker_pid"
WORKER_START_TAG = "rlx/run_worker_start"


def record_run_worker(instance: dg.DagsterInstance, run_id: str) -> RunWorker:
    """Tag the run with this process (the run worker) so a later run can tell if it died."""
    worker = current_worker()
    instance.add_run_tags(
        run_id,
        {
            WORKER_HOST_TAG: worker.host,
            WORKER_PID_TAG: str(worker.pid),
            WORKER_START_TAG: worker.start,
        },
    )
    return worker


def recorded_worker(tags: Mapping[str, str]) -> RunWorker | None:
    if WORKER_HOST_TAG not in tags or not tags.get(WORKER_PID_TAG, "").isdigit():
        return None
    return RunWorker(
        tags[WORKER_HOST_TAG], int(tags[WORKER_PID_TAG]), tags.get(WORKER_START_TAG, "")
    )


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


@dataclass(frozen=True)
class RecoveredRun:
    run_id: str
    status: str  # before recovery
    reason: str
    holding: Holding
    marked_failed: bool

    def message(self) -> str:
        done = "marked it FAILURE and freed" if self.marked_failed else "freed"
        return (
            f"Dead run {self.run_id} ({self.status}; {self.reason}): {done} "
            f"{self.holding.describe()}."
        )


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


def seconds_since_last_event(instance: dg.DagsterInstance, record: dg.RunRecord) -> float:
    last = instance.event_log_storage.get_logs_for_run(
        record.dagster_run.run_id, limit=1, ascending=False
    )
    latest = last[0].timestamp if last else record.update_timestamp.timestamp()
    return time.time() - latest


def recover_dead_runs(
    instance: dg.DagsterInstance,
    pools: Iterable[str] | None = None,
    *,
    current_run_id: str | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> list[RecoveredRun]:
    """Mark FAILURE every active run (starting, started, canceling) whose run worker is dead,
    and free the pool slots (in `pools`, default all) of every dead run holding some, ended
    runs included. Returns (and logs) what it did."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    pools = storage.get_concurrency_keys() if pools is None else set(pools)
    holdings = runs_holding_pools(instance, pools) if pools else {}
    active = instance.get_run_records(dg.RunsFilter(statuses=ACTIVE_RUN_STATUSES))
    candidates = {r.dagster_run.run_id: r for r in active}
    if holdings:
        candidates.update(
            (r.dagster_run.run_id, r)
            for r in instance.get_run_records(dg.RunsFilter(run_ids=list(holdings)))
        )
    candidates.pop(current_run_id, None)
    recovered = []
    host = this_host()
    for run_id, record in sorted(candidates.items()):
        run = record.dagster_run
        if run.status not in (*ACTIVE_RUN_STATUSES, *FINISHED_STATUSES):
            continue  # queued or suspended: no worker to check
        verdict = judge_run_worker(
            recorded_worker(run.tags), seconds_since_last_event(instance, record), host=host
        )
        if not verdict.dead:
            continue
        holding = holdings.get(run_id, Holding())
        fail_it = run.status not in FINISHED_STATUSES
        if fail_it:
            instance.report_run_failed(
                run,
                f"Run worker died without ending the run: {verdict.reason} (e.g. killed with "
                f"kill -9). Marked FAILURE by crash recovery; freed {holding.describe()}.",
            )
        if holding.slots or holding.waiting:
            storage.free_concurrency_slots_for_run(run_id)
        if fail_it or holding.slots or holding.waiting:
            done = RecoveredRun(run_id, run.status.value, verdict.reason, holding, fail_it)
            log(done.message())
            recovered.append(done)
    return recovered


def plan_pools(execution_plan: ExecutionPlan) -> set[str]:
    return {
        s.pool for s in execution_plan.get_all_steps_in_topo_order() if getattr(s, "pool", None)
    }


class CrashRecoveringExecutor(Executor):
    """Dagster's default executor, preceded by crash recovery in the orchestrating process:
    runs before any step of the run claims a pool slot. Recovery judges the run worker (this
    process); the forkserver and the steps forked from it are its descendants, so a killed run
    worker is seen whatever the start method."""

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
        instance = plan_context.instance
        if instance.event_log_storage.supports_global_concurrency_limits:
            try:
                record_run_worker(instance, plan_context.run_id)
                recover_dead_runs(
                    instance,
                    plan_pools(execution_plan),
                    current_run_id=plan_context.run_id,
                    log=plan_context.log.warning,
                )
            except Exception as error:  # noqa: BLE001 - recovery must never stop a good run
                plan_context.log.warning(f"Crash recovery skipped: {type(error).__name__}: {error}")
        yield from self._inner.execute(plan_context, execution_plan)


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
        "definitions once (unless a start_method is chosen); before any step claims a pool "
        "slot it marks runs whose run worker died FAILURE and frees their slots."
    ),
)


@dg.sensor(
    name="dead_run_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Marks runs whose run worker died (e.g. kill -9) FAILURE and frees their pool slots, "
        "so they stop blocking pools and the run queue even when no new run starts."
    ),
)
def dead_run_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    recovered = recover_dead_runs(context.instance, log=context.log.warning)
    if not recovered:
        return dg.SkipReason("no dead runs")
    return dg.SkipReason(" ".join(r.message() for r in recovered))
