"""The diagnosis of a failed day: when a blocking gate stops `daily_chain`, the certificate and
reconstruction are not produced, and `fidelity_diagnosis_sensor` has `fidelity_job` write the
fidelity report (with its discrepancies) for that partition. Real sample lake, damaged copy."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from rlx_assets.book.store import reconstruction_dir
from rlx_assets.definitions import defs as project_defs
from rlx_assets.defs.fidelity.assets import report_dir as fidelity_report_dir
from rlx_assets.defs.fidelity.sensors import DIAGNOSED_RUN_TAG
from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets.staging import DataLayout, lake_relative_path
from rlx_assets.validation.certificate import certificate_path
from rlx_assets_tests.conftest import SAMPLE_CAPTURES, dagster_test_instance
from rlx_assets_tests.damage import rewrite_parquet, set_value

PARTITION = "2024-08-09|BINANCE.BTC-USDT"
MARKET, DAY = "BINANCE.BTC-USDT", dt.date(2024, 8, 9)
DAMAGED_ROW = 5000  # a trade in the middle of the day


@pytest.fixture
def env(sample_lake, tmp_path):
    lake = Path(shutil.copytree(sample_lake, tmp_path / "lake"))
    resource = RlxEnvironment(
        data_dir=str(tmp_path / "data"),
        lake_uri=str(lake),
        gate_profile="sample",
        capture_dir=str(SAMPLE_CAPTURES),
    )
    defs = dg.Definitions(
        assets=project_defs.assets,
        asset_checks=project_defs.asset_checks,
        jobs=project_defs.jobs,
        sensors=project_defs.sensors,
        resources={"rlx": resource},
    )
    with dagster_test_instance() as instance:
        yield {"defs": defs, "instance": instance, "lake": lake, "root": tmp_path / "data"}


class Ticks:
    """Evaluations of the diagnosis sensor carrying its cursor, as the daemon's ticks do."""

    def __init__(self, env):
        self.defs, self.instance, self.cursor = env["defs"], env["instance"], None
        self.sensor = self.defs.resolve_sensor_def("fidelity_diagnosis_sensor")

    def requests(self) -> list[dg.RunRequest]:
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, definitions=self.defs
        )
        result = self.sensor.evaluate_tick(context)
        self.cursor = result.cursor
        return list(result.run_requests or [])


def run_job(env, name: str, partition: str = PARTITION, tags=None) -> dg.ExecuteInProcessResult:
    return (
        env["defs"]
        .resolve_job_def(name)
        .execute_in_process(
            partition_key=partition, instance=env["instance"], tags=tags, raise_on_error=False
        )
    )


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def failed_checks(result: dg.ExecuteInProcessResult) -> set[str]:
    return {
        f"{e.asset_key.to_user_string()}:{e.check_name}"
        for e in result.get_asset_check_evaluations()
        if not e.passed
    }


def damage_one_trade_price(lake: Path) -> dict:
    """A NaN price in one real trade of the day (the quality gate refuses it); returns the
    trade as the lake had it."""
    path = lake / lake_relative_path("trades", "BINANCE", "BTC-USDT", DAY)
    trade = pl.read_parquet(path).row(DAMAGED_ROW, named=True)
    rewrite_parquet(path, path, set_value("price", DAMAGED_ROW, float("nan")))
    return trade


def minute_of(ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ns // 60_000_000_000 * 60, dt.UTC)


def test_a_failed_gate_still_gets_its_fidelity_report(env, golden_sample_data):
    shutil.copytree(golden_sample_data, env["root"])  # what golden_job wrote for PARTITION
    trade = damage_one_trade_price(env["lake"])
    ticks = Ticks(env)
    assert ticks.requests() == []  # the first tick only records where the sensor starts

    chain = run_job(env, "daily_chain")
    assert not chain.success
    assert failed_checks(chain) == {"raw_trades:quality"}
    # The gate blocked everything downstream: no certificate, no reconstruction, no report.
    assert materialized(chain).isdisjoint(
        {"validated_partition", "readiness_certificate", "reconstructed_stream", "fidelity_report"}
    )
    layout = DataLayout(env["root"])
    certificate = certificate_path(layout, MARKET, DAY)
    reconstruction = reconstruction_dir(layout, MARKET, DAY)
    report_dir = fidelity_report_dir(layout, MARKET, DAY)
    assert not certificate.exists() and not reconstruction.exists() and not report_dir.exists()

    (request,) = ticks.requests()
    assert request.partition_key == PARTITION and request.job_name in (None, "fidelity_job")
    assert request.tags[DIAGNOSED_RUN_TAG] == chain.run_id
    assert ticks.requests() == []  # once per failed run

    diagnosis = run_job(env, "fidelity_job", request.partition_key, request.tags)
    assert materialized(diagnosis) == {"fidelity_report"}
    # the report diagnoses the day without letting it through: still no certificate, no stream
    assert not certificate.exists() and not reconstruction.exists()
    report = json.loads((report_dir / "fidelity.json").read_text())
    assert report["reconstruction_certified"] is False
    assert report["upstream_gates"]["passed"] is False
    assert "Reconstruction certified: **no**" in (report_dir / "fidelity.md").read_text()
    # the diagnosis locates the damage the gate refused, and nothing else: that trade, at its
    # minute, the lake's NaN against the price our recording has
    found = pl.read_parquet(report_dir / "discrepancies.parquet")
    assert found.select("kind", "id").rows() == [("trade_mismatch", trade["id"])]
    assert found["time"].dt.truncate("1m").to_list() == [minute_of(trade["timestamp"])]
    assert "NaN" in found["lake"][0] and str(trade["price"]) in found["golden"][0]


def test_a_successful_run_requests_no_diagnosis(env):
    ticks = Ticks(env)
    assert ticks.requests() == []
    chain = run_job(env, "daily_chain", "2024-08-08|BINANCE_FUTURES.BTC-USDT-PERP")
    assert chain.success and "fidelity_report" in materialized(chain)
    assert ticks.requests() == []
    layout = DataLayout(env["root"])
    day, market = dt.date(2024, 8, 8), "BINANCE_FUTURES.BTC-USDT-PERP"
    # the same paths the failed-gate test finds empty are written by a good run
    assert certificate_path(layout, market, day).is_file()
    assert (reconstruction_dir(layout, market, day) / "summary.json").is_file()
    assert (fidelity_report_dir(layout, market, day) / "fidelity.json").is_file()


def test_a_run_that_failed_before_any_gate_requests_no_diagnosis(env):
    """No vendor file acquired, no gate evaluated: there is nothing to diagnose from."""
    (env["lake"] / lake_relative_path("trades", "BINANCE", "BTC-USDT", DAY)).unlink()
    ticks = Ticks(env)
    assert ticks.requests() == []
    chain = run_job(env, "daily_chain")
    assert not chain.success and failed_checks(chain) == set()
    assert ticks.requests() == []
