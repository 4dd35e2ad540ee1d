"""The sample days certified and reconstructed by the real chain (Dagster, in process), once
per test run (pytest-xdist workers share it): what `rlx_assets.read` and the hftbacktest export
read."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg

# Imported with the test module (at collection): the partitions are built from the environment
# before any test sets RLX_START_DATE or RLX_MARKETS.
from rlx_assets.definitions import defs
from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets_tests.conftest import built_once_per_run, dagster_test_instance

SPOT = "BINANCE.BTC-USDT"
SPOT_DAYS = ("2024-08-08", "2024-08-09")  # in date order: 08-09 starts from 08-08's end book
CHAIN = dg.AssetSelection.groups("acquisition", "validation", "reconstruction")


def certified_sample_data(sample_lake: Path, tmp_path_factory) -> Path:
    """A data root holding certificates and reconstructions of the two spot sample days, built
    by the project's own assets from a copy of the sample lake; tests read it, never change it
    (`copy_of` gives a private copy)."""
    root = built_once_per_run(
        tmp_path_factory, "certified_sample", lambda root: _build(sample_lake, root)
    )
    return root / "data"


def _build(sample_lake: Path, root: Path) -> None:
    lake = Path(shutil.copytree(sample_lake, root / "lake"))
    environment = RlxEnvironment(
        data_dir=str(root / "data"), lake_uri=str(lake), gate_profile="sample"
    )
    with dagster_test_instance() as instance:
        for day in SPOT_DAYS:
            assert run_chain(environment, day, instance), f"the sample chain failed for {day}"


def run_chain(rlx: RlxEnvironment, day: str, instance: dg.DagsterInstance, selection=CHAIN) -> bool:
    """The chain's assets and checks (``selection``) on one spot day, in process: succeeded?"""
    result = dg.materialize(
        [*defs.assets, *defs.asset_checks],
        selection=selection,
        partition_key=f"{day}|{SPOT}",
        instance=instance,
        resources={"rlx": rlx},
        raise_on_error=False,
    )
    return result.success


def copy_of(data: Path, target: Path) -> Path:
    """A private copy of a certified data root, for a test that changes it."""
    return Path(shutil.copytree(data, target, symlinks=True))
