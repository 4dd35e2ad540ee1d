"""A vendor republish on the real sample: nothing certified is lost, stale outputs are flagged."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from rlx_assets.book.store import read_summary
from rlx_assets.definitions import defs as project_defs
from rlx_assets.defs.fidelity.freshness import fidelity_freshness_problem
from rlx_assets.defs.reconstruction.assets import reconstructed_stream
from rlx_assets.defs.reconstruction.freshness import (
    built_from_current_certificate,
    reconstruction_freshness_result,
)
from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets.lake.manifest import manifest_entries, manifest_entry
from rlx_assets.staging import DataLayout, lake_relative_path, read_json_lines, sha256_file
from rlx_assets.validation.certificate import (
    certificate_fingerprint,
    certificate_path,
    certificate_problems,
    certified_inputs,
    load_certificate,
)
from rlx_assets.validation.zones import (
    gate_report_path,
    quarantine_dir,
    raw_path,
    read_json,
    ready_path,
)
from rlx_assets_tests.conftest import LAKE_PREFIX, dagster_test_instance
from rlx_assets_tests.damage import rewrite_parquet, set_value
from rlx_assets_tests.defs.reconstruction.test_sensor import Ticks
from rlx_assets_tests.validation.test_status import status_as_written

SPOT = "BINANCE.BTC-USDT"
DAY8 = dt.date(2024, 8, 8)
PARTITION = f"{DAY8.isoformat()}|{SPOT}"
CERTIFY = dg.AssetSelection.groups("acquisition", "validation")
RECONSTRUCT = dg.AssetSelection.assets(reconstructed_stream)


@pytest.fixture
def env(sample_lake, tmp_path):
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
        yield {
            "lake": lake,
            "trades": lake / lake_relative_path("trades", "BINANCE", "BTC-USDT", DAY8),
            "layout": DataLayout(tmp_path / "data"),
            "defs": defs,
            "instance": instance,
        }


def run(env, selection: dg.AssetSelection) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*env["defs"].assets, *env["defs"].asset_checks],
        selection=selection,
        partition_key=PARTITION,
        instance=env["instance"],
        resources=env["defs"].resources,
        raise_on_error=False,
    )


def republish_without_last_trade(trades: Path) -> None:
    """A valid but different file: the vendor drops one trade row (new bytes, new version)."""
    rewrite_parquet(trades, trades, lambda frame: frame.head(frame.height - 1).to_arrow())


def test_a_valid_republish_keeps_the_old_version_recertifies_and_reconstructs_again(env):
    layout, trades = env["layout"], env["trades"]
    ticks = Ticks(env["defs"], env["instance"])
    assert ticks.requested() == []
    original = sha256_file(trades)
    assert run(env, CERTIFY).success
    old_certificate = certificate_path(layout, SPOT, DAY8).read_bytes()
    old_version = load_certificate(layout, SPOT, DAY8)["tables"]["trades"]["source_version"]
    assert ticks.requested() == [PARTITION]
    assert run(env, RECONSTRUCT).success
    assert ticks.requested() == []
    built_on = read_summary(layout, SPOT, DAY8)["certificate_sha256"]
    assert built_on == certificate_fingerprint(layout, SPOT, DAY8)
    assert reconstruction_freshness_result(layout, SPOT, DAY8).passed

    republish_without_last_trade(trades)
    republished = sha256_file(trades)
    assert republished != original
    assert run(env, CERTIFY).success

    # The previous raw, ready and certificate versions are kept, content-addressed.
    for zone_file in (raw_path, ready_path):
        kept = layout.versions / zone_file(layout, "trades", SPOT, DAY8).relative_to(layout.root)
        assert sha256_file(kept / f"{original}.parquet") == original
        assert zone_file(layout, "trades", SPOT, DAY8).read_bytes() == trades.read_bytes()
    kept_certificate = layout.versions / certificate_path(layout, SPOT, DAY8).relative_to(
        layout.root
    )
    assert [p.read_bytes() for p in kept_certificate.iterdir()].count(old_certificate) == 1
    # The audit logs name old and new bytes and source versions.
    replaced = [e for e in read_json_lines(layout.root / "logs" / "ready.jsonl")]
    assert replaced[-1]["event"] == "replaced" and replaced[-1]["table"] == "trades"
    assert (replaced[-1]["old_sha256"], replaced[-1]["new_sha256"]) == (original, republished)
    assert replaced[-1]["old_source_version"] == old_version
    assert replaced[-1]["new_source_version"] != old_version
    certificates_log = read_json_lines(layout.root / "logs" / "certificates.jsonl")
    assert certificates_log[-1]["event"] == "replaced"
    assert certificates_log[-1]["tables"]["trades"]["old_sha256"] == original
    assert certificates_log[-1]["tables"]["trades"]["new_sha256"] == republished
    # The new certificate names the version it certifies.
    certificate = load_certificate(layout, SPOT, DAY8)
    entry = certificate["tables"]["trades"]
    assert entry["sha256"] == republished
    assert entry["source_version"] == manifest_entry(layout, "trades", SPOT, DAY8)["source_version"]
    assert entry["source_version"] != old_version
    assert entry["manifest_entry"]["sha256"] == republished
    assert entry["rows"] == pq.ParquetFile(trades).metadata.num_rows

    # The reconstruction on disk belongs to the old certificate: flagged stale, requested again.
    stale = reconstruction_freshness_result(layout, SPOT, DAY8)
    assert not stale.passed and stale.severity == dg.AssetCheckSeverity.ERROR
    assert built_on[:12] in stale.metadata["summary"].value
    assert certificate_fingerprint(layout, SPOT, DAY8)[:12] in stale.metadata["summary"].value
    assert ticks.requested() == [PARTITION]
    rebuilt = run(env, RECONSTRUCT)
    assert rebuilt.success
    assert {e.check_name: e.passed for e in rebuilt.get_asset_check_evaluations()}[
        built_from_current_certificate.check_key.name
    ]
    assert reconstruction_freshness_result(layout, SPOT, DAY8).passed
    assert read_summary(layout, SPOT, DAY8)["certificate_sha256"] != built_on


def test_a_bad_republish_leaves_raw_ready_and_certificate_on_the_last_good_version(env):
    layout, trades = env["layout"], env["trades"]
    assert run(env, CERTIFY).success
    good = sha256_file(trades)
    certificate = certificate_path(layout, SPOT, DAY8).read_bytes()
    good_report = read_json(gate_report_path(layout, "trades", SPOT, DAY8))

    rewrite_parquet(trades, trades, set_value("price", 3, float("nan")))  # republished, broken
    bad = sha256_file(trades)
    result = run(env, CERTIFY)
    assert not result.success
    outcomes = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert outcomes["quality"] is False

    # The bad file is quarantined with its failing report ...
    held = quarantine_dir(layout, "trades", SPOT, DAY8)
    assert sha256_file(held / "1.snappy.parquet") == bad
    assert read_json(held / "report.json")["sha256"] == bad
    # ... and raw, manifest, gate report, ready and certificate agree on the last good version.
    assert sha256_file(raw_path(layout, "trades", SPOT, DAY8)) == good
    assert sha256_file(ready_path(layout, "trades", SPOT, DAY8)) == good
    assert certificate_path(layout, SPOT, DAY8).read_bytes() == certificate
    restored = manifest_entry(layout, "trades", SPOT, DAY8)
    assert restored["action"] == "restored" and restored["sha256"] == good
    assert restored["replaced_sha256"] == bad
    assert read_json(gate_report_path(layout, "trades", SPOT, DAY8)) == good_report
    assert certificate_problems(layout, load_certificate(layout, SPOT, DAY8), SPOT, DAY8) == []
    assert certified_inputs(layout, SPOT, DAY8)["trades"] == ready_path(
        layout, "trades", SPOT, DAY8
    )
    event = read_json_lines(layout.root / "logs" / "ready.jsonl")[-1]
    assert (event["event"], event["rejected_sha256"], event["restored_sha256"]) == (
        "restored",
        bad,
        good,
    )
    assert json.loads(certificate)["tables"]["trades"]["sha256"] == good


def test_a_fidelity_report_of_a_republished_day_is_flagged_stale_and_not_rebuilt_on_old_data(env):
    layout = env["layout"]
    everything = CERTIFY | RECONSTRUCT | dg.AssetSelection.assets("fidelity_report")
    first = run(env, everything)
    assert first.success
    assert fidelity_freshness_problem(layout, SPOT, DAY8) is None
    freshness = [
        (e.asset_key.to_user_string(), e.passed)
        for e in first.get_asset_check_evaluations()
        if e.check_name == "built_from_current_certificate"
    ]
    assert sorted(freshness) == [("fidelity_report", True), ("reconstructed_stream", True)]

    republish_without_last_trade(env["trades"])
    assert run(env, CERTIFY).success
    assert "stale" in fidelity_freshness_problem(layout, SPOT, DAY8)
    # A report is not built from a reconstruction of the replaced files.
    refused = run(env, dg.AssetSelection.assets("fidelity_report"))
    assert not refused.success
    (failure,) = [e for e in refused.all_events if e.is_step_failure]
    assert "reconstruction was built from certificate" in str(failure.event_specific_data.error)
    assert run(env, RECONSTRUCT).success
    assert "stale" in fidelity_freshness_problem(layout, SPOT, DAY8)  # until rebuilt
    assert run(env, dg.AssetSelection.assets("fidelity_report")).success
    assert fidelity_freshness_problem(layout, SPOT, DAY8) is None
    # Reconstructed again from the same certificate: the report describes a replaced stream.
    assert run(env, RECONSTRUCT).success
    assert "reconstruction run" in fidelity_freshness_problem(layout, SPOT, DAY8)


def status_of(layout: DataLayout) -> dict:
    return status_as_written(layout.root)["partitions"][PARTITION]


def test_a_quarantined_bad_republish_is_not_downloaded_again_while_the_certificate_stays(
    s3_lake, s3_server, tmp_path
):
    """The vendor's lake on S3: every GET of the day's trades object is counted."""
    layout = DataLayout(tmp_path / "data")
    resource = RlxEnvironment(
        data_dir=str(layout.root), lake_uri=s3_lake["uri"], gate_profile="sample"
    )
    defs = dg.Definitions(
        assets=project_defs.assets, asset_checks=project_defs.asset_checks,
        resources={"rlx": resource},
    )  # fmt: skip
    key = f"{LAKE_PREFIX}/{lake_relative_path('trades', 'BINANCE', 'BTC-USDT', DAY8).as_posix()}"
    original = tmp_path / "original.parquet"
    s3_lake["client"].download_file(s3_lake["bucket"], key, str(original))

    def republish(change) -> None:  # the original file, changed
        changed = Path(shutil.copy(original, tmp_path / "republished.parquet"))
        change(changed)
        s3_lake["client"].upload_file(str(changed), s3_lake["bucket"], key)

    def gets() -> int:
        return sum(1 for m, p in s3_server.app.requests if m == "GET" and p.endswith(key))

    def manifest() -> list[dict]:
        return manifest_entries(layout, "trades", SPOT, DAY8)

    with dagster_test_instance() as instance:
        env = {"defs": defs, "instance": instance}
        assert run(env, CERTIFY).success
        certificate = certificate_path(layout, SPOT, DAY8).read_bytes()
        good = sha256_file(ready_path(layout, "trades", SPOT, DAY8))

        republish(lambda f: rewrite_parquet(f, f, set_value("price", 3, float("nan"))))
        assert not run(env, CERTIFY).success  # downloaded once, failed quality, restored
        held = quarantine_dir(layout, "trades", SPOT, DAY8)
        bad = read_json(held / "report.json")["sha256"]
        in_force = "certified (vendor's current file quarantined: trades)"
        assert status_of(layout)["state"] == "certified"
        assert status_of(layout)["summary"] == in_force
        gets_before, manifest_before = gets(), manifest()

        again = run(env, CERTIFY)  # and every later run, until the vendor replaces the file
        assert not again.success
        assert gets() == gets_before  # the known-bad bytes are not downloaded again
        assert manifest() == manifest_before  # nothing stored, nothing restored again
        (failure,) = [e for e in again.all_events if e.is_step_failure]
        assert failure.step_key.startswith("raw_trades")
        assert "already quarantined" in failure.step_failure_data.error.message
        assert bad in failure.step_failure_data.error.message
        metadata = failure.step_failure_data.user_failure_data.metadata
        assert metadata["partition_status"].value == in_force  # shown in the UI
        assert certificate_path(layout, SPOT, DAY8).read_bytes() == certificate
        assert sha256_file(raw_path(layout, "trades", SPOT, DAY8)) == good
        assert status_of(layout)["summary"] == in_force
        assert certificate_problems(layout, load_certificate(layout, SPOT, DAY8), SPOT, DAY8) == []

        republish(republish_without_last_trade)  # a new, valid version: fetched and certified
        assert run(env, CERTIFY).success
        assert gets() == gets_before + 1
        assert not held.exists()  # released once a good file passed the gates
        assert status_of(layout)["summary"] == "certified"
        assert load_certificate(layout, SPOT, DAY8)["tables"]["trades"]["sha256"] not in (good, bad)
