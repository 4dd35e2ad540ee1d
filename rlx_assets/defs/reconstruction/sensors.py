"""The automation sensor that requests reconstruction once a certificate passed."""

import dagster as dg

from rlx_assets.defs.reconstruction.assets import reconstructed_stream

# Enabled by default: Dagster's own automation sensor starts STOPPED.
reconstruction_sensor = dg.AutomationConditionSensorDefinition(
    "reconstruction_sensor",
    target=dg.AssetSelection.assets(reconstructed_stream),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=15,
    description="Requests reconstructed_stream for every partition whose certificate passed.",
)
