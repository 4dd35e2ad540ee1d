"""The golden samples of the sample day the fidelity tests report on, written once per run."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from rlx_assets.definitions import defs as project_defs
from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets_tests.conftest import SAMPLE_CAPTURES, built_once_per_run, dagster_test_instance

GOLDEN_PARTITION = "2024-08-09|BINANCE.BTC-USDT"


@pytest.fixture(scope="session")
def golden_sample_data(tmp_path_factory) -> Path:
    """A data root holding what the `golden` group (golden_samples and its checks) wrote for
    GOLDEN_PARTITION from the bundled captures, materialised by Dagster once per test run
    (pytest-xdist workers share it): the golden samples take a full read and conversion of the
    captures. Tests copy it as their data root, never change it."""
    return built_once_per_run(tmp_path_factory, "golden_sample_data", _materialise_golden) / "data"


def _materialise_golden(root: Path) -> None:
    resource = RlxEnvironment(data_dir=str(root / "data"), capture_dir=str(SAMPLE_CAPTURES))
    with dagster_test_instance() as instance:
        result = dg.materialize(
            [*project_defs.assets, *project_defs.asset_checks],
            selection=dg.AssetSelection.groups("golden"),
            partition_key=GOLDEN_PARTITION,
            instance=instance,
            resources={"rlx": resource},
            raise_on_error=False,
        )
    assert result.success, "the golden group failed on the bundled captures"
