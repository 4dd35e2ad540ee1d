"""Steps on Celery workers (`RLX_EXECUTOR=celery`, fed through the Redis broker
`RLX_CELERY_BROKER`); imported only when chosen (`defs.executors.build_executor`).

The run itself (the orchestrator) stays where the run launcher starts it: it claims each step's
pool slot in the instance, submits the step as a Celery task and waits for its result, so pools
and the run queue hold across workers. The workers build the same Celery app from the same
variables (`rlx_assets.defs.celery_worker`), so broker and task settings cannot drift apart.

A worker killed mid-step (read in dagster-celery 0.29.27, `core_execution_loop.py`): a Dagster
`RetryPolicy` only acts on a step that raises inside a live worker; a dead worker reports
nothing. With Celery's defaults the task is acknowledged when a worker receives it, so after a
`kill -9` it is gone and the run waits for ever (or fails with `WorkerLostError` if only the
pool process died). Hence tasks are acknowledged once finished (`task_acks_late`), a task whose
pool process died is put back (`task_reject_on_worker_lost`), and Redis gives the unacknowledged
task of a dead worker to another worker after the visibility timeout. The task keeps its id, so
the waiting run receives the re-run step's result, and its pool slot stays claimed meanwhile.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from celery import Celery
from dagster._core.execution.retries import RetryMode
from dagster_celery.defaults import broker_transport_options
from dagster_celery.executor import CELERY_CONFIG, CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from rlx_assets.config import RlxSettings, SettingsError
from rlx_assets.defs.recovery import CrashRecoveringExecutor

BROKER_EXAMPLE = "redis://127.0.0.1:6379/0"


def celery_settings(settings: RlxSettings) -> dict[str, Any]:
    """The Celery executor's config (broker, backend, Celery settings) from `RLX_CELERY_*`."""
    if not settings.celery_broker:
        raise SettingsError(
            "RLX_EXECUTOR=celery needs RLX_CELERY_BROKER "
            f"(valid example: RLX_CELERY_BROKER={BROKER_EXAMPLE})"
        )
    return {
        "broker": settings.celery_broker,
        "backend": settings.celery_backend or settings.celery_broker,
        "config_source": {
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "broker_transport_options": {
                **broker_transport_options,
                "visibility_timeout": settings.celery_visibility_timeout_s,
                # Look for such tasks every 5 s (kombu's default: every 100 s).
                "unacked_restore_interval": 5,
                "unacked_restore_throttle": 1,
            },
            "broker_connection_retry_on_startup": True,
        },
    }


class CrashRecoveringCeleryExecutor(CeleryExecutor):
    """dagster-celery's executor, preceded (like the default one) by the project's crash
    recovery: runs whose run worker died are marked failed and give back their pool slots."""

    def execute(self, plan_context, execution_plan):
        # The wrapper needs only `execute`, `retries` and `step_dependency_config` of the inner
        # executor: the plain Celery loop, reached through super().
        return CrashRecoveringExecutor(super()).execute(plan_context, execution_plan)


@dg.executor(
    name="celery",
    config_schema=CELERY_CONFIG,
    requirements=dg.multiple_process_executor_requirements(),
)
def crash_recovering_celery_executor(init_context: dg.InitExecutorContext):
    config = init_context.executor_config
    return CrashRecoveringCeleryExecutor(
        broker=config.get("broker"),
        backend=config.get("backend"),
        config_source=config.get("config_source"),
        include=config.get("include"),
        retries=RetryMode.from_config(config["retries"]),
    )


def celery_worker_app(settings: RlxSettings) -> Celery:
    """The Celery app a worker runs: the executor's broker and settings, dagster's step task."""
    config = celery_settings(settings)
    app = make_app(CeleryExecutor.for_cli(**config).app_args())
    create_task(app)
    return app
