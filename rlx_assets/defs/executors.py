"""Where a run's steps execute, chosen by `RLX_EXECUTOR`: in subprocesses of the run (the
default) or on Celery workers (`celery`, `defs.celery_executor`)."""

from __future__ import annotations

import dagster as dg

from rlx_assets.config import RlxSettings
from rlx_assets.defs.recovery import crash_recovering_executor


def build_executor(settings: RlxSettings) -> dg.ExecutorDefinition:
    """The executor `RLX_EXECUTOR` names, configured from the `RLX_CELERY_*` variables."""
    if settings.executor == "celery":
        # Celery and dagster-celery load only when chosen: every step process of the default
        # executor imports these definitions (about 0.5 s saved in each).
        from rlx_assets.defs.celery_executor import (
            celery_settings,
            crash_recovering_celery_executor,
        )

        return crash_recovering_celery_executor.configured(celery_settings(settings), name="celery")
    return crash_recovering_executor
