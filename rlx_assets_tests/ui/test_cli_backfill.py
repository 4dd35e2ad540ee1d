"""A backfill of several dates x markets launched from the CLI, run by the daemon in parallel."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rlx_assets_tests.servers.dagster_ui import DagsterUI

PARTITIONS = [
    "2024-08-08|BINANCE.BTC-USDT",
    "2024-08-09|BINANCE.BTC-USDT",
    "2024-08-08|BINANCE_FUTURES.BTC-USDT-PERP",
]


@pytest.mark.slow
def test_cli_backfill_across_dates_and_markets(sample_lake, tmp_path):
    with DagsterUI(tmp_path / "home", sample_lake) as ui:
        command = [
            sys.executable, "-m", "dagster", "job", "backfill",
            "-m", "rlx_assets.definitions", "-j", "daily_chain",
            "--partitions", ",".join(PARTITIONS), "--noprompt",
        ]  # fmt: skip
        done = subprocess.run(
            command, cwd=ui.home, env=ui.env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-3000:]
        runs = ui.wait_for_runs(
            lambda run: (
                run["tags"].get("dagster/job_name", "daily_chain") == "daily_chain"
                and "dagster/backfill" in run["tags"]
            ),
            count=len(PARTITIONS),
            timeout=600,
        )
    assert sorted(run["tags"]["dagster/partition"] for run in runs) == sorted(PARTITIONS)
    assert {run["status"] for run in runs} == {"SUCCESS"}
    certificates = sorted(
        p.relative_to(ui.data_dir).as_posix() for p in ui.data_dir.glob("certificates/*/*.json")
    )
    assert certificates == [
        "certificates/BINANCE.BTC-USDT/2024-08-08.json",
        "certificates/BINANCE.BTC-USDT/2024-08-09.json",
        "certificates/BINANCE_FUTURES.BTC-USDT-PERP/2024-08-08.json",
    ]
