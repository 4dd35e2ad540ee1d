"""The daily schedule of the main job."""

import os

import dagster as dg

from rlx_assets.config import load_settings

# Crypto Lake publishes a day with some delay; the hour (UTC) is configurable.
SCHEDULE_HOUR_VARIABLE = "RLX_SCHEDULE_HOUR"


def build_daily_schedule(job):
    """Yesterday's partition of every configured market, at RLX_SCHEDULE_HOUR (default 06 UTC).

    On by default for a real lake, off for the bundled sample lake (it has no new days).
    """
    hour = int(os.environ.get(SCHEDULE_HOUR_VARIABLE, "6"))
    if not 0 <= hour <= 23:
        raise ValueError(f"{SCHEDULE_HOUR_VARIABLE}={hour}: expected an hour 0-23 (UTC)")
    real_lake = load_settings().lake_uri is not None
    return dg.build_schedule_from_partitioned_job(
        job,
        name=f"{job.name}_schedule",
        hour_of_day=hour,
        minute_of_hour=0,
        default_status=dg.DefaultScheduleStatus.RUNNING
        if real_lake
        else dg.DefaultScheduleStatus.STOPPED,
    )
