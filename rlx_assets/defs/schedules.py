"""The daily schedule of the main job."""

import datetime as dt
import os

import dagster as dg

from rlx_assets.config import load_settings
from rlx_assets.defs.partitions import DATE_MARKET_PARTITIONS

# Crypto Lake publishes a day with some delay; the hour (UTC) is configurable.
SCHEDULE_HOUR_VARIABLE = "RLX_SCHEDULE_HOUR"
PARTITION_NAME_TAG = "dagster/partition"


def schedule_hour() -> int:
    """RLX_SCHEDULE_HOUR (default 6); anything but an hour 0-23 fails in one line."""
    text = os.environ.get(SCHEDULE_HOUR_VARIABLE, "6").strip()
    if not (text.isdigit() and 0 <= int(text) <= 23):
        raise ValueError(
            f"{SCHEDULE_HOUR_VARIABLE}={text!r}: expected an hour 0-23 (UTC) "
            f"(valid example: {SCHEDULE_HOUR_VARIABLE}=6)"
        )
    return int(text)


def build_daily_schedule(job, partitions: dg.MultiPartitionsDefinition = DATE_MARKET_PARTITIONS):
    """Yesterday's partition of every configured market, at RLX_SCHEDULE_HOUR (default 06 UTC).

    On by default for a real lake, off for the bundled sample lake (it has no new days).
    Written out rather than `build_schedule_from_partitioned_job`, which in Dagster 1.13 calls
    the deprecated `run_request_for_partition` for a multi-partitioned job.
    """
    real_lake = load_settings().lake_uri is not None
    first_day = dt.date.fromisoformat(
        partitions.get_partitions_def_for_dimension("date").get_first_partition_key()
    )
    markets = partitions.get_partitions_def_for_dimension("market").get_partition_keys()

    @dg.schedule(
        name=f"{job.name}_schedule",
        job=job,
        cron_schedule=f"0 {schedule_hour()} * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING
        if real_lake
        else dg.DefaultScheduleStatus.STOPPED,
    )
    def daily_schedule(context: dg.ScheduleEvaluationContext):
        yesterday = context.scheduled_execution_time.astimezone(dt.UTC).date() - dt.timedelta(1)
        if yesterday < first_day:
            return dg.SkipReason(f"{yesterday} is before the first partition {first_day}")
        keys = [f"{yesterday.isoformat()}|{market}" for market in markets]
        # The partition tag given here means Dagster does not add its per-dimension tags
        # (`dagster/partition/date`), deprecated as non-compliant keys since 1.13.
        return [
            dg.RunRequest(run_key=key, partition_key=key, tags={PARTITION_NAME_TAG: key})
            for key in keys
        ]

    return daily_schedule
