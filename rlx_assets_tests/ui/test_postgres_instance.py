"""The PostgreSQL instance variant, followed as the README tells users: a real server on
127.0.0.1, DAGSTER_HOME holding dagster_postgres.yaml as dagster.yaml, the RLX_PG_* variables,
then one sample partition through the chain with the `dagster` CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import dagster as dg
import pytest

from rlx_assets_tests.servers.postgres import LocalPostgres
from rlx_assets_tests.ui import REPO_ROOT, require_system_deps

PARTITION = "2024-08-08|BINANCE.BTC-USDT"

pytestmark = pytest.mark.slow


@pytest.fixture
def postgres():
    require_system_deps()
    server = LocalPostgres().start()
    try:
        yield server
    finally:
        server.stop()


def test_sample_partition_runs_with_the_postgres_instance(
    postgres, sample_lake, tmp_path, monkeypatch
):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster_postgres.yaml", home / "dagster.yaml")
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RLX_", "DAGSTER_"))},
        **postgres.env,
        "DAGSTER_HOME": str(home),
        "RLX_LAKE_URI": str(sample_lake),
        "RLX_DATA_DIR": str(workdir / "data"),
        "RLX_GATE_PROFILE": "sample",
    }
    started = time.monotonic()
    # The README's command (`dagster ...`), run by this interpreter.
    command = [
        sys.executable,
        "-m",
        "dagster",
        "asset",
        "materialize",
        "-m",
        "rlx_assets.definitions",
    ]
    command += ["--select", "*readiness_certificate", "--partition", PARTITION]
    result = subprocess.run(
        command,
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    print(f"dagster asset materialize took {time.monotonic() - started:.1f} s")

    # Read straight from PostgreSQL: the run and its check evaluations are rows there.
    runs = postgres.psql(postgres.database, "SELECT run_id, status FROM runs")
    assert len(runs) == 1, runs
    run_id, status = runs[0]
    assert status == "SUCCESS"
    rows = postgres.psql(
        postgres.database,
        "SELECT asset_key, check_name, partition, execution_status FROM asset_check_executions "
        f"WHERE run_id = '{run_id}' ORDER BY asset_key, check_name",
    )
    checks = {(asset, check): rest for asset, check, *rest in rows}
    for table in ("trades", "book", "book_delta_v2"):
        for gate in ("file_integrity", "schema", "quality", "temporal", "volume"):
            key = (json.dumps([f"raw_{table}"]), gate)
            assert checks.get(key) == [PARTITION, "SUCCEEDED"], (key, checks)
    assert checks[(json.dumps(["readiness_certificate"]), "certificate_valid")] == [
        PARTITION,
        "SUCCEEDED",
    ]
    # No SQLite storage appeared beside the config: everything went to PostgreSQL.
    assert not list(home.rglob("*.db")) and not list(workdir.rglob("*.db"))

    # The same through Dagster's own API, as the web UI and the daemon will read it.
    for name, value in postgres.env.items():  # the config reads them when the instance loads
        monkeypatch.setenv(name, value)
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["dagster/partition"] == PARTITION
        check_key = dg.AssetCheckKey(dg.AssetKey("raw_trades"), "quality")
        history = instance.event_log_storage.get_asset_check_execution_history(check_key, limit=5)
        assert [(r.run_id, r.partition, r.status.value) for r in history] == [
            (run_id, PARTITION, "SUCCEEDED")
        ]
        evaluation = history[0].event.dagster_event.asset_check_evaluation_data
        assert evaluation.passed and evaluation.partition == PARTITION
        materialization = instance.get_latest_materialization_event(
            dg.AssetKey("readiness_certificate")
        )
        assert materialization is not None and materialization.run_id == run_id
    finally:
        instance.dispose()
