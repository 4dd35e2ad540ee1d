"""The diagnosis of a failed day: `fidelity_report` alone, after a chain run a gate stopped.

Within one run Dagster skips every step downstream of a failed blocking check, so the chain
never writes the report for exactly the days that need it. The report can be built from the
raw files without certificate or reconstruction (only its "reconstruction certified" verdict
depends on the gates), so a second run of `fidelity_job` writes it; no gate is weakened.
"""

import dagster as dg

from rlx_assets.defs.fidelity.assets import fidelity_report
from rlx_assets.defs.schedules import PARTITION_NAME_TAG

# Only the report (and its own checks): what a user reads to see why a day failed.
fidelity_job = dg.define_asset_job(
    "fidelity_job",
    selection=dg.AssetSelection.assets(fidelity_report),
    description=(
        "The fidelity report of one partition alone: the diagnosis of a day whose gates failed "
        "(requested by fidelity_diagnosis_sensor after a failed daily_chain run)."
    ),
)

DIAGNOSED_RUN_TAG = "rlx/diagnosis_of_run"
REPORT_STEP = fidelity_report.key.to_python_identifier()


def failed_blocking_checks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """`asset:check` of every blocking check that failed in the run (what skipped the rest)."""
    events = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    evaluations = [e.dagster_event.event_specific_data for e in events if e.dagster_event]
    return sorted(
        f"{e.asset_key.to_user_string()}:{e.check_name}"
        for e in evaluations
        if e is not None and not e.passed and e.blocking
    )


def materialized_assets(instance: dg.DagsterInstance, run_id: str) -> set[dg.AssetKey]:
    events = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    return {e.dagster_event.asset_key for e in events if e.dagster_event}


def planned_steps(instance: dg.DagsterInstance, run: dg.DagsterRun) -> set[str]:
    """The steps the run was to execute (from its execution plan: a `--select` subset too)."""
    if run.execution_plan_snapshot_id is None:
        return set()
    plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    steps = {step.key for step in plan.steps}
    return steps if run.step_keys_to_execute is None else steps & set(run.step_keys_to_execute)


def diagnosis_request(
    instance: dg.DagsterInstance, run: dg.DagsterRun
) -> dg.RunRequest | dg.SkipReason:
    """A `fidelity_job` run for the partition of a failed run that was meant to write the report
    but was stopped before it by a failed blocking check; otherwise why nothing is requested."""
    partition = run.tags.get(PARTITION_NAME_TAG)
    if partition is None:
        return dg.SkipReason(f"run {run.run_id} has no partition")
    if REPORT_STEP not in planned_steps(instance, run):
        return dg.SkipReason(f"run {run.run_id} did not select fidelity_report")
    if fidelity_report.key in materialized_assets(instance, run.run_id):
        return dg.SkipReason(f"run {run.run_id} wrote the fidelity report of {partition}")
    failed = failed_blocking_checks(instance, run.run_id)
    if not failed:
        return dg.SkipReason(f"run {run.run_id} failed without a failed blocking check")
    return dg.RunRequest(
        run_key=f"diagnosis-{run.run_id}",
        partition_key=partition,
        # with the partition tag given, Dagster does not add its per-dimension tags
        # (`dagster/partition/date`), deprecated as non-compliant keys since 1.13
        tags={PARTITION_NAME_TAG: partition, DIAGNOSED_RUN_TAG: run.run_id},
    )


def build_fidelity_diagnosis_sensor(monitored_job) -> dg.SensorDefinition:
    """Requests `fidelity_job` for the partition of each failed `monitored_job` run in which a
    failed blocking check skipped the fidelity report. On by default (needs the daemon)."""

    @dg.run_failure_sensor(
        name="fidelity_diagnosis_sensor",
        monitored_jobs=[monitored_job],
        request_job=fidelity_job,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        description=(
            f"After a failed {monitored_job.name} run in which a blocking check skipped the "
            "fidelity report, runs fidelity_job for that partition: the report is the diagnosis."
        ),
    )
    def fidelity_diagnosis_sensor(context: dg.RunFailureSensorContext):
        run = context.dagster_run
        request = diagnosis_request(context.instance, run)
        if isinstance(request, dg.RunRequest):
            context.log.info(f"run {run.run_id} failed: diagnosing {request.partition_key}")
        return request

    return fidelity_diagnosis_sensor
