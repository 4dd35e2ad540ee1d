"""The sensor that refreshes the coverage calendar when partitions change."""

import dagster as dg

from rlx_assets.defs.status.assets import coverage_calendar

# Enabled by default: Dagster's own automation sensor starts STOPPED.
coverage_calendar_sensor = dg.AutomationConditionSensorDefinition(
    "coverage_calendar_sensor",
    target=dg.AssetSelection.assets(coverage_calendar),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Requests coverage_calendar after partitions were acquired, certified or "
    "reconstructed, once their runs ended.",
)
