"""The coverage_calendar asset and the sensor that refreshes it."""

from __future__ import annotations

import base64
import datetime as dt
import re
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from rlx_assets.definitions import defs as project_defs
from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets.defs.status.assets import coverage_calendar
from rlx_assets.defs.validation.assets import readiness_certificate
from rlx_assets.stats.plots import PNG_SIGNATURE
from rlx_assets_tests.conftest import dagster_test_instance
from rlx_assets_tests.export.sample_chain import SPOT, certified_sample_data, copy_of


@pytest.fixture(scope="module")
def certified(sample_lake, tmp_path_factory) -> Path:
    return certified_sample_data(sample_lake, tmp_path_factory)


def test_the_asset_writes_the_table_and_shows_the_picture(certified, tmp_path, monkeypatch):
    monkeypatch.setenv("RLX_START_DATE", "2024-08-01")
    data = copy_of(certified, tmp_path / "data")
    result = dg.materialize(
        [coverage_calendar], resources={"rlx": RlxEnvironment(data_dir=str(data))}
    )
    table = pl.read_parquet(data / "status" / "coverage.parquet")
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    days = (yesterday - dt.date(2024, 8, 1)).days + 1
    assert table.height == 2 * days  # every configured day of both default markets
    certified_days = table.filter(pl.col("state") == "certified_reconstructed")
    assert sorted(certified_days["day"].to_list()) == [dt.date(2024, 8, 8), dt.date(2024, 8, 9)]
    assert set(certified_days["market"]) == {SPOT}
    metadata = result.asset_materializations_for_node("coverage_calendar")[0].metadata
    assert metadata["certified_reconstructed"].value == 2
    assert metadata["missing"].value == 2 * days - 2
    image = re.fullmatch(r"!\[coverage calendar\]\(data:image/png;base64,(.+)\)",
                         metadata["calendar"].value)  # fmt: skip
    png = base64.b64decode(image.group(1))
    assert png.startswith(PNG_SIGNATURE)
    assert png == (data / "status" / "coverage.png").read_bytes()


class Ticks:
    """Automation evaluations carrying the cursor, as the daemon's sensor ticks do."""

    def __init__(self, instance: dg.DagsterInstance):
        self.instance, self.cursor = instance, None
        self.defs = dg.Definitions(
            assets=project_defs.assets,
            asset_checks=project_defs.asset_checks,
            resources={"rlx": RlxEnvironment()},
        )

    def calendar_requested(self) -> bool:
        result = dg.evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, cursor=self.cursor
        )
        self.cursor = result.cursor
        return result.get_num_requested(coverage_calendar.key) == 1


def test_the_sensor_requests_the_calendar_once_then_after_each_partition_change():
    with dagster_test_instance() as instance:
        ticks = Ticks(instance)
        assert ticks.calendar_requested()  # never drawn yet
        instance.report_runless_asset_event(dg.AssetMaterialization(coverage_calendar.key))
        assert not ticks.calendar_requested()
        instance.report_runless_asset_event(
            dg.AssetMaterialization(readiness_certificate.key, partition=f"2024-08-08|{SPOT}")
        )
        assert ticks.calendar_requested()
        instance.report_runless_asset_event(dg.AssetMaterialization(coverage_calendar.key))
        assert not ticks.calendar_requested()
