"""The one place that wires every stage into a Dagster `Definitions` object."""

from __future__ import annotations

import warnings

import dagster as dg

from rlx_assets.defs.acquisition.assets import raw_book, raw_book_delta_v2, raw_trades
from rlx_assets.defs.resources import RlxEnvironment

warnings.filterwarnings("ignore", category=dg.PreviewWarning)
warnings.filterwarnings("ignore", category=dg.BetaWarning)

# The main job: the whole chain for one date x market partition (grows with each stage).
daily_chain = dg.define_asset_job(
    "daily_chain",
    selection=dg.AssetSelection.groups("acquisition"),
    description="Acquire (and, as stages land, validate, reconstruct, report) one day of one market.",
)

defs = dg.Definitions(
    assets=[raw_trades, raw_book, raw_book_delta_v2],
    jobs=[daily_chain],
    resources={"rlx": RlxEnvironment()},
)
