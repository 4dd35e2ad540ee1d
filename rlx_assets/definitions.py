"""The one place that wires every stage into a Dagster `Definitions` object."""

import warnings

import dagster as dg

warnings.filterwarnings("ignore", category=dg.PreviewWarning)
warnings.filterwarnings("ignore", category=dg.BetaWarning)

from rlx_assets.config import load_settings  # noqa: E402
from rlx_assets.defs.acquisition.assets import raw_book, raw_book_delta_v2, raw_trades  # noqa: E402
from rlx_assets.defs.executors import build_executor  # noqa: E402
from rlx_assets.defs.fidelity.assets import fidelity_report  # noqa: E402
from rlx_assets.defs.fidelity.freshness import fidelity_built_from_current_certificate  # noqa: E402
from rlx_assets.defs.fidelity.sensors import (  # noqa: E402
    build_fidelity_diagnosis_sensor,
    fidelity_job,
)
from rlx_assets.defs.golden.assets import golden_gap_ratio, golden_samples  # noqa: E402
from rlx_assets.defs.reconstruction.assets import reconstructed_stream  # noqa: E402
from rlx_assets.defs.reconstruction.checks import (  # noqa: E402
    reconstruction_anomalies_check,
    vendor_book_agreement_check,
)
from rlx_assets.defs.reconstruction.freshness import built_from_current_certificate  # noqa: E402
from rlx_assets.defs.reconstruction.sensors import reconstruction_sensor  # noqa: E402
from rlx_assets.defs.recovery import dead_run_sensor  # noqa: E402
from rlx_assets.defs.resources import RlxEnvironment  # noqa: E402
from rlx_assets.defs.schedules import build_daily_schedule  # noqa: E402
from rlx_assets.defs.status.assets import coverage_calendar  # noqa: E402
from rlx_assets.defs.status.sensors import coverage_calendar_sensor  # noqa: E402
from rlx_assets.defs.validation.assets import readiness_certificate, validated_partition  # noqa: E402
from rlx_assets.defs.validation.checks import (  # noqa: E402
    certificate_valid,
    raw_book_delta_v2_gates,
    raw_book_gates,
    raw_trades_gates,
)

# The main job: the whole chain for one date x market partition (grows with each stage).
daily_chain = dg.define_asset_job(
    "daily_chain",
    selection=dg.AssetSelection.groups("acquisition", "validation", "reconstruction", "fidelity"),
    description="Acquire, gate, promote, certify, reconstruct and report on one day of a market.",
)

# Golden samples exist only for days we recorded, so they have their own job.
golden_job = dg.define_asset_job(
    "golden_job",
    selection=dg.AssetSelection.groups("golden"),
    description="Verify and convert one day of our own Binance recording (RLX_CAPTURE_DIR).",
)

defs = dg.Definitions(
    assets=[
        raw_trades,
        raw_book,
        raw_book_delta_v2,
        validated_partition,
        readiness_certificate,
        reconstructed_stream,
        golden_samples,
        fidelity_report,
        coverage_calendar,
    ],
    asset_checks=[
        raw_trades_gates,
        raw_book_gates,
        raw_book_delta_v2_gates,
        certificate_valid,
        vendor_book_agreement_check,
        reconstruction_anomalies_check,
        golden_gap_ratio,
        built_from_current_certificate,
        fidelity_built_from_current_certificate,
    ],
    jobs=[daily_chain, golden_job, fidelity_job],
    schedules=[build_daily_schedule(daily_chain)],
    sensors=[
        reconstruction_sensor,
        coverage_calendar_sensor,
        dead_run_sensor,
        build_fidelity_diagnosis_sensor(daily_chain),
    ],
    resources={"rlx": RlxEnvironment()},
    # Dagster's default executor (or Celery workers: RLX_EXECUTOR), each first freeing the pool
    # slots of runs killed mid-run.
    executor=build_executor(load_settings()),
)
