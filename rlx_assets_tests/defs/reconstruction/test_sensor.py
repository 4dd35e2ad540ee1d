"""The reconstruction sensor: requested once a certificate passed, never otherwise, in order."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import pytest

from rlx_assets.definitions import defs as project_defs
from rlx_assets.defs.reconstruction.assets import reconstructed_stream
from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets.staging import lake_relative_path
from rlx_assets_tests.conftest import dagster_test_instance
from rlx_assets_tests.damage import rewrite_parquet, set_value

SPOT8 = "2024-08-08|BINANCE.BTC-USDT"
SPOT9 = "2024-08-09|BINANCE.BTC-USDT"
FUT8 = "2024-08-08|BINANCE_FUTURES.BTC-USDT-PERP"
CERTIFY = dg.AssetSelection.groups("acquisition", "validation")


class Ticks:
    """Automation evaluations carrying the cursor, as the daemon's sensor ticks do."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance):
        self.defs, self.instance, self.cursor = defs, instance, None

    def requested(self) -> list[str]:
        result = dg.evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, cursor=self.cursor
        )
        self.cursor = result.cursor
        return sorted(str(p) for p in result.get_requested_partitions(reconstructed_stream.key))


@pytest.fixture
def setup(sample_lake, tmp_path):
    lake = Path(shutil.copytree(sample_lake, tmp_path / "lake"))
    resource = RlxEnvironment(
        data_dir=str(tmp_path / "data"), lake_uri=str(lake), gate_profile="sample"
    )
    defs = dg.Definitions(
        assets=project_defs.assets,
        asset_checks=project_defs.asset_checks,
        resources={"rlx": resource},
    )
    with dagster_test_instance() as instance:
        yield defs, instance, lake


def certify(defs: dg.Definitions, instance: dg.DagsterInstance, partition: str) -> bool:
    result = dg.materialize(
        [*defs.assets, *defs.asset_checks],
        selection=CERTIFY,
        partition_key=partition,
        instance=instance,
        resources=defs.resources,
        raise_on_error=False,
    )
    return result.success


def reconstructed(instance: dg.DagsterInstance, partition: str) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key=reconstructed_stream.key, partition=partition)
    )


def test_nothing_is_requested_without_certificates(setup):
    defs, instance, _ = setup
    assert Ticks(defs, instance).requested() == []


def test_certificates_that_existed_before_the_first_tick_are_picked_up_once(setup):
    defs, instance, _ = setup
    assert certify(defs, instance, FUT8)
    ticks = Ticks(defs, instance)
    # The sensor's very first tick only records the state (Dagster resets on it); the next
    # tick, 15 s later under the daemon, requests what was already certified.
    assert ticks.requested() + ticks.requested() == [FUT8]
    assert ticks.requested() == []  # at most once per certificate


def test_an_old_backfilled_day_is_requested_once_it_passes(setup):
    defs, instance, _ = setup
    ticks = Ticks(defs, instance)
    assert ticks.requested() == []
    assert certify(defs, instance, FUT8)  # 2024: far outside the latest time window
    assert ticks.requested() == [FUT8]
    assert ticks.requested() == []
    assert certify(defs, instance, FUT8)  # a new certificate: reconstruct again
    assert ticks.requested() == [FUT8]


def test_a_failed_certificate_requests_nothing(setup):
    defs, instance, lake = setup
    trades = lake / lake_relative_path("trades", "BINANCE", "BTC-USDT", dt.date(2024, 8, 8))
    rewrite_parquet(trades, trades, set_value("price", 3, float("nan")))
    ticks = Ticks(defs, instance)
    assert not certify(defs, instance, SPOT8)
    assert ticks.requested() == []


def test_a_certificate_whose_check_failed_requests_nothing(setup):
    defs, instance, _ = setup
    ticks = Ticks(defs, instance)
    assert certify(defs, instance, FUT8)
    instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey("readiness_certificate"),
            check_name="certificate_valid",
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            partition=FUT8,
            blocking=True,
        )
    )
    assert ticks.requested() == []


def test_days_run_in_order_and_a_rerun_cascades(setup):
    defs, instance, _ = setup
    ticks = Ticks(defs, instance)
    assert ticks.requested() == []
    assert certify(defs, instance, SPOT9) and certify(defs, instance, SPOT8)
    # 08-09 waits for 08-08, so that it starts from 08-08's end-of-day book, not cold.
    assert ticks.requested() == [SPOT8]
    reconstructed(instance, SPOT8)
    assert ticks.requested() == [SPOT9]
    reconstructed(instance, SPOT9)
    assert ticks.requested() == []
    reconstructed(instance, SPOT8)  # 08-08 reconstructed again: 08-09's starting book changed
    assert ticks.requested() == [SPOT9]


def test_the_sensor_is_on_by_default():
    sensor = project_defs.resolve_sensor_def("reconstruction_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
