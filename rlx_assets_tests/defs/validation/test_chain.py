"""Acquisition -> gates -> ready zone -> certificate, run through Dagster on the real sample."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
from pathlib import Path

import dagster as dg
import pytest

from rlx_assets.defs.acquisition.assets import raw_book, raw_book_delta_v2, raw_trades
from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets.defs.schedules import build_daily_schedule
from rlx_assets.defs.validation.assets import readiness_certificate, validated_partition
from rlx_assets.defs.validation.checks import (
    certificate_check_result,
    certificate_valid,
    raw_book_delta_v2_gates,
    raw_book_gates,
    raw_trades_gates,
)
from rlx_assets.staging import DataLayout, lake_relative_path, sha256_file
from rlx_assets.validation.certificate import (
    certificate_path,
    certificate_problems,
    certified_inputs,
    load_certificate,
)
from rlx_assets.validation.zones import (
    CertificateError,
    kept_version_path,
    quarantine_dir,
    raw_path,
    ready_path,
)
from rlx_assets_tests.conftest import dagster_test_instance
from rlx_assets_tests.damage import rewrite_parquet, set_value
from rlx_assets_tests.validation.test_gates import seconds_outside_long_silences

CHAIN = [
    raw_trades, raw_book, raw_book_delta_v2, validated_partition, readiness_certificate,
    raw_trades_gates, raw_book_gates, raw_book_delta_v2_gates, certificate_valid,
]  # fmt: skip
SPOT = "BINANCE.BTC-USDT"
DAY8, DAY9 = dt.date(2024, 8, 8), dt.date(2024, 8, 9)


@pytest.fixture
def lake(sample_lake, tmp_path) -> Path:
    """A private copy of the real sample lake that a test may damage."""
    return Path(shutil.copytree(sample_lake, tmp_path / "lake"))


def run_chain(data_dir: Path, lake: Path, day: dt.date, market: str = SPOT, **kwargs):
    return dg.materialize(
        CHAIN,
        partition_key=f"{day.isoformat()}|{market}",
        resources=_resources(data_dir, lake),
        raise_on_error=False,
        **kwargs,
    )


def _resources(data_dir: Path, lake: Path) -> dict:
    return {
        "rlx": RlxEnvironment(data_dir=str(data_dir), lake_uri=str(lake), gate_profile="sample")
    }


def put_nan_price(lake: Path, day: dt.date, row: int = 3) -> None:
    path = lake / lake_relative_path("trades", "BINANCE", "BTC-USDT", day)
    rewrite_parquet(path, path, set_value("price", row, float("nan")))


def check_outcomes(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_chain_certifies_a_sample_partition(lake, tmp_path):
    result = run_chain(tmp_path / "data", lake, DAY8)
    assert result.success
    assert check_outcomes(result) == dict.fromkeys(
        ["file_integrity", "schema", "quality", "temporal", "volume", "certificate_valid"], True
    )
    layout = DataLayout(tmp_path / "data")
    certificate = load_certificate(layout, SPOT, DAY8)
    assert set(certificate["tables"]) == {"trades", "book", "book_delta_v2"}
    for table, entry in certificate["tables"].items():
        original = lake / lake_relative_path(table, "BINANCE", "BTC-USDT", DAY8)
        assert (
            entry["sha256"]
            == sha256_file(original)
            == sha256_file(ready_path(layout, table, SPOT, DAY8))
        )
        assert entry["profile"] == "sample" and entry["rows"] > 0
        assert {g["gate"] for g in entry["gates"]} == {
            "file_integrity", "schema", "quality", "temporal", "volume"
        }  # fmt: skip
        assert all("thresholds" in g for g in entry["gates"])
    assert certificate["code_version"].startswith("0.1.0+")
    status = (layout.root / "acquisition_status.json").read_text()
    assert f'"2024-08-08|{SPOT}"' in status and '"certified": 1' in status
    # Plotted by partition: 15 gates of 15, and the minutes the sample holds, not a whole day,
    # although the sample profile tolerates any silence (silences over 300 s are not covered).
    (validated,) = result.asset_materializations_for_node("validated_partition")
    assert validated.metadata["gates_passed"] == validated.metadata["gates_run"]
    assert validated.metadata["gates_run"] == dg.MetadataValue.int(15)
    covered = {
        t: seconds_outside_long_silences(ready_path(layout, t, SPOT, DAY8), DAY8, 300.0) / 86_400
        for t in ("trades", "book", "book_delta_v2")
    }
    assert 0 < min(covered.values()) < 0.01  # about 5 minutes of the day
    for table in ("trades", "book", "book_delta_v2"):
        completeness = validated.metadata[f"{table}_completeness"].value
        assert completeness == pytest.approx(covered[table], abs=1e-9)
    assert validated.metadata["completeness"].value == pytest.approx(min(covered.values()))


def test_a_damaged_day_is_quarantined_and_blocks_only_itself(lake, sample_lake, tmp_path):
    put_nan_price(lake, DAY9)
    layout = DataLayout(tmp_path / "data")
    good = run_chain(layout.root, lake, DAY8)
    bad = run_chain(layout.root, lake, DAY9)
    assert good.success and not bad.success
    assert check_outcomes(bad)["quality"] is False
    held = quarantine_dir(layout, "trades", SPOT, DAY9)
    assert (held / "1.snappy.parquet").read_bytes() == (
        lake / lake_relative_path("trades", "BINANCE", "BTC-USDT", DAY9)
    ).read_bytes()
    report = (held / "report.json").read_text()
    assert '"gate": "quality"' in report and '"bad_price": 1' in report
    assert not ready_path(layout, "trades", SPOT, DAY9).exists()
    assert not certificate_path(layout, SPOT, DAY9).exists()
    assert certificate_path(layout, SPOT, DAY8).exists()
    materialized = {e.asset_key.to_user_string() for e in bad.get_asset_materialization_events()}
    assert "validated_partition" not in materialized and "readiness_certificate" not in materialized

    # The vendor fixes the file: re-fetch, re-validate, leave quarantine, get certified.
    trades_day9 = lake_relative_path("trades", "BINANCE", "BTC-USDT", DAY9)
    shutil.copy(sample_lake / trades_day9, lake / trades_day9)
    fixed = run_chain(layout.root, lake, DAY9)
    assert fixed.success
    assert not quarantine_dir(layout, "trades", SPOT, DAY9).exists()
    assert certificate_path(layout, SPOT, DAY9).exists()


def test_ready_zone_keeps_its_good_version_when_a_new_one_fails(lake, tmp_path):
    layout = DataLayout(tmp_path / "data")
    assert run_chain(layout.root, lake, DAY8).success
    ready = ready_path(layout, "trades", SPOT, DAY8)
    good_bytes = ready.read_bytes()
    put_nan_price(lake, DAY8)  # the vendor republishes a broken file
    assert not run_chain(layout.root, lake, DAY8).success
    assert ready.read_bytes() == good_bytes
    assert certificate_problems(layout, load_certificate(layout, SPOT, DAY8)) == []


def test_certificate_valid_refuses_a_ready_file_altered_after_certification(lake, tmp_path):
    layout = DataLayout(tmp_path / "data")
    assert run_chain(layout.root, lake, DAY8).success
    ready = ready_path(layout, "book", SPOT, DAY8)
    ready.write_bytes(ready.read_bytes() + b"tampered")
    with pytest.raises(CertificateError, match="changed after certification"):
        certified_inputs(layout, SPOT, DAY8)
    recheck = certificate_check_result(layout, SPOT, DAY8)
    assert not recheck.passed and recheck.severity == dg.AssetCheckSeverity.ERROR
    assert "book: " in recheck.metadata["summary"].value
    assert "changed after certification" in recheck.metadata["summary"].value


def test_the_schedule_targets_yesterday_for_every_market(monkeypatch):
    from rlx_assets.definitions import daily_chain, defs

    schedule = defs.resolve_schedule_def("daily_chain_schedule")
    assert schedule.cron_schedule == "0 6 * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED  # sample lake: no new days
    context = dg.build_schedule_context(
        instance=dg.DagsterInstance.ephemeral(),
        scheduled_execution_time=dt.datetime(2024, 8, 10, 6, tzinfo=dt.UTC),
    )
    requests = schedule.evaluate_tick(context).run_requests
    assert sorted(r.partition_key for r in requests) == [
        "2024-08-09|BINANCE.BTC-USDT",
        "2024-08-09|BINANCE_FUTURES.BTC-USDT-PERP",
    ]
    monkeypatch.setenv("RLX_LAKE_URI", "s3://qnt.data/market-data/cryptofeed")
    monkeypatch.setenv("RLX_SCHEDULE_HOUR", "9")
    real = dg.Definitions(
        jobs=[daily_chain],
        schedules=[build_daily_schedule(daily_chain)],
        assets=defs.assets,
        resources={"rlx": RlxEnvironment()},
    )
    real_schedule = real.resolve_schedule_def("daily_chain_schedule")
    assert real_schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert real_schedule.cron_schedule == "0 9 * * *"


def test_a_chain_hashes_each_file_at_most_once_beyond_the_download(lake, tmp_path, monkeypatch):
    """Issue 25: the download hashes the bytes in flight; after it, the whole chain (gates,
    promotion, certificate, its checks, reconstruction and fidelity, each verifying the
    certificate) may read each file at most once more only to hash it."""
    from rlx_assets import staging
    from rlx_assets.definitions import defs

    hashed: dict[str, int] = {}
    plain = staging.sha256_file

    def counted(path: Path) -> str:
        tables = [t for t in ("trades", "book_delta_v2", "book") if t in Path(path).parts]
        if path.suffix == ".parquet" and tables:
            hashed[tables[0]] = hashed.get(tables[0], 0) + path.stat().st_size
        return plain(path)

    for module in [m for name, m in sys.modules.items() if name.startswith("rlx_assets.")]:
        if getattr(module, "sha256_file", None) is plain:
            monkeypatch.setattr(module, "sha256_file", counted)
    with dagster_test_instance() as instance:
        result = dg.materialize(
            [*defs.assets, *defs.asset_checks],
            selection=dg.AssetSelection.groups(
                "acquisition", "validation", "reconstruction", "fidelity"
            ),
            partition_key=f"{DAY8.isoformat()}|{SPOT}",
            instance=instance,
            resources=_resources(tmp_path / "data", lake),
            raise_on_error=False,
        )
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {"validated_partition", "readiness_certificate", "reconstructed_stream"} <= materialized
    sizes = {
        t: (lake / lake_relative_path(t, "BINANCE", "BTC-USDT", DAY8)).stat().st_size
        for t in ("trades", "book", "book_delta_v2")
    }
    passes = {t: hashed.get(t, 0) / size for t, size in sizes.items()}
    assert all(p <= 1 for p in passes.values()), f"full hashing passes per file: {passes}"


def test_ready_and_versions_are_the_raw_file_and_a_new_raw_file_changes_neither(lake, tmp_path):
    """Issue 25: promotion keeps no copy (ready and the kept version are hard links of the
    gated raw file); a republished raw file replaces the path, never the shared bytes."""
    layout = DataLayout(tmp_path / "data")
    assert run_chain(layout.root, lake, DAY8).success
    certified = load_certificate(layout, SPOT, DAY8)["tables"]
    for table, entry in certified.items():
        raw = raw_path(layout, table, SPOT, DAY8)
        kept = kept_version_path(layout, raw, entry["sha256"])
        ready = ready_path(layout, table, SPOT, DAY8)
        assert raw.stat().st_ino == ready.stat().st_ino == kept.stat().st_ino
    ready = ready_path(layout, "trades", SPOT, DAY8)
    good = ready.read_bytes()

    # The vendor republishes trades, the same rows written again: different bytes, all gates pass.
    vendor = lake / lake_relative_path("trades", "BINANCE", "BTC-USDT", DAY8)
    rewrite_parquet(vendor, vendor, lambda frame: frame.to_arrow())
    assert vendor.read_bytes() != good
    assert run_chain(layout.root, lake, DAY8).success
    assert ready.read_bytes() == vendor.read_bytes()
    old_kept = kept_version_path(layout, ready, certified["trades"]["sha256"])
    old_raw = kept_version_path(layout, raw_path(layout, "trades", SPOT, DAY8),
                                certified["trades"]["sha256"])  # fmt: skip
    assert old_kept.read_bytes() == old_raw.read_bytes() == good
    assert certificate_problems(layout, load_certificate(layout, SPOT, DAY8)) == []


def test_the_certificate_refuses_a_file_edited_in_place_with_its_mtime_put_back(lake, tmp_path):
    layout = DataLayout(tmp_path / "data")
    assert run_chain(layout.root, lake, DAY8).success
    ready = ready_path(layout, "book_delta_v2", SPOT, DAY8)
    before = ready.stat()
    with open(ready, "r+b") as handle:  # one byte inside the data pages, same size
        handle.seek(before.st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0x01]))
    os.utime(ready, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (ready.stat().st_size, ready.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    with pytest.raises(CertificateError, match="book_delta_v2: .* changed after certification"):
        certified_inputs(layout, SPOT, DAY8)
