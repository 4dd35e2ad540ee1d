"""fidelity_report through Dagster on a real sample day, with and without golden samples."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from rlx_assets.definitions import defs as project_defs
from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets_tests.conftest import SAMPLE_CAPTURES, dagster_test_instance

PARTITION = "2024-08-09|BINANCE.BTC-USDT"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def env(sample_lake, tmp_path):
    lake = Path(shutil.copytree(sample_lake, tmp_path / "lake"))
    resource = RlxEnvironment(
        data_dir=str(tmp_path / "data"),
        lake_uri=str(lake),
        gate_profile="sample",
        capture_dir=str(SAMPLE_CAPTURES),
    )
    with dagster_test_instance() as instance:
        yield {"root": tmp_path / "data", "resources": {"rlx": resource}, "instance": instance}


def run(env, selection: dg.AssetSelection, partition: str = PARTITION):
    return dg.materialize(
        [*project_defs.assets, *project_defs.asset_checks],
        selection=selection,
        partition_key=partition,
        instance=env["instance"],
        resources=env["resources"],
        raise_on_error=False,
    )


def checks(result) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def with_golden_samples(env, golden_sample_data: Path) -> None:
    """The golden group's output for PARTITION in the test's (still empty) data root."""
    shutil.copytree(golden_sample_data, env["root"])


def test_report_with_golden_samples_meets_its_thresholds(env, golden_sample_data):
    with_golden_samples(env, golden_sample_data)
    result = run(
        env, dg.AssetSelection.groups("acquisition", "validation", "reconstruction", "fidelity")
    )
    assert result.success
    report_dir = env["root"] / "reports" / "BINANCE.BTC-USDT" / "2024-08-09"
    report = json.loads((report_dir / "fidelity.json").read_text())
    assert report["top_of_book_agreement"] >= 0.999 and report["book_agreement"] >= 0.999
    assert set(report["ks"]) == {
        "trade_size",
        "inter_trade_time",
        "quoted_spread",
        "mid_price_return",
    }
    pngs = sorted(report_dir.glob("*.png"))
    assert len(pngs) >= 6 and all(p.read_bytes().startswith(PNG_SIGNATURE) for p in pngs)
    outcome = checks(result)
    assert outcome["book_agreement"].passed and outcome["top_of_book_agreement"].passed
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "fidelity_report"
    ]
    metadata = event.materialization.metadata
    summary = metadata["summary"].value
    assert "data:image/png;base64," in summary and "PASS" in summary
    # one recording on both sides: the UI says which figures are identity checks
    assert "**Identity checks**" in summary
    identity = metadata["identity_checks"].value
    assert set(identity) == {"trade_agreement", "ks.trade_size", "ks.inter_trade_time",
                             "tail.difference", "discrepancies"}  # fmt: skip
    assert all("same capture files" in reason for reason in identity.values())
    assert "book_agreement" in metadata["evidence"].value
    integrity = outcome["stream_integrity"].metadata
    assert "trade_agreement" in integrity["identity_checks"].value
    assert "identity checks not counted: trade_agreement" in integrity["summary"].value


def test_without_golden_samples_it_says_what_it_could_not_compute(env, tmp_path):
    result = run(
        env, dg.AssetSelection.groups("acquisition", "validation", "reconstruction", "fidelity")
    )
    assert result.success  # nothing wrong was measured; the missing comparison is a warning
    outcome = checks(result)
    assert outcome["book_agreement"].passed
    top = outcome["top_of_book_agreement"]
    assert not top.passed and top.severity == dg.AssetCheckSeverity.WARN
    assert "no golden samples" in top.metadata["summary"].value


def test_report_is_written_for_a_partition_without_certificate_or_reconstruction(
    env, golden_sample_data
):
    """The report is the diagnosis: with the raw files acquired but no certificate and no
    reconstruction, it still compares the lake with the golden recording and is written;
    only "reconstruction certified" (and the checks that need the book) fall."""
    with_golden_samples(env, golden_sample_data)
    assert run(env, dg.AssetSelection.groups("acquisition")).success
    result = run(env, dg.AssetSelection.assets("fidelity_report"))
    assert result.success
    report_dir = env["root"] / "reports" / "BINANCE.BTC-USDT" / "2024-08-09"
    report = json.loads((report_dir / "fidelity.json").read_text())
    assert report["reconstruction_certified"] is False
    assert report["upstream_gates"]["passed"] is False
    assert "certificate" in report["upstream_gates"]["summary"]
    assert report["discrepancies"]["rows"] == 0 and (report_dir / "discrepancies.parquet").is_file()
    outcome = checks(result)
    assert not outcome["book_agreement"].passed
    assert outcome["book_agreement"].severity == dg.AssetCheckSeverity.WARN
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "fidelity_report"
    ]
    assert event.materialization.metadata["reconstruction_certified"].value is False
    assert "Reconstruction certified: **no**" in event.materialization.metadata["summary"].value


def test_a_report_run_alone_after_failed_reconstruction_anomalies_is_not_certified(env):
    """The reconstruction's blocking anomaly gate failed (here: its summary counts one refused
    sequence regression); the report built alone for that day is still written, but must not
    call the reconstruction certified."""
    chain = dg.AssetSelection.groups("acquisition", "validation", "reconstruction")
    assert run(env, chain, "2024-08-08|BINANCE.BTC-USDT").success
    assert run(env, chain).success
    summary_path = env["root"] / "reconstruction" / "BINANCE.BTC-USDT" / "2024-08-09"
    summary_path = summary_path / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["anomalies"]["sequence_regressions"] = 1
    summary_path.write_text(json.dumps(summary))

    run(env, dg.AssetSelection.assets("fidelity_report"))
    report = json.loads(
        (env["root"] / "reports" / "BINANCE.BTC-USDT" / "2024-08-09" / "fidelity.json").read_text()
    )
    assert report["reconstruction_certified"] is False
    assert "sequence_regressions 1 > 0" in json.dumps(report)
