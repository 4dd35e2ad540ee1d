"""`rlx bench backfill`: runs partitions on an S3 data root and splits each run's requests."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rlx_assets.cli import main


@pytest.mark.slow
def test_the_backfill_benchmark_times_each_runs_control_plane(tmp_path):
    done = CliRunner().invoke(
        main, ["bench", "backfill", "--partitions", "2", "--json", "--workdir", str(tmp_path)]
    )
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert [r["partition"] for r in result["runs"]] == [
        "2024-01-01|BINANCE.BTC-USDT",
        "2024-01-02|BINANCE.BTC-USDT",
    ]
    for run in result["runs"]:
        # Each run downloads its three vendor files and promotes them: Parquet objects (data);
        # manifest, gate reports, status, certificate and logs are the control plane.
        assert run["data_requests"] >= 6 and run["control_requests"] > run["data_requests"]
        assert 0 < run["control_s"] < run["wall_s"]
        kinds = run["control_by_kind"].values()
        assert sum(k["requests"] for k in kinds) == run["control_requests"]
    # LISTs a run once the status file exists: 22 by the status updates (a partition's first
    # update lists its 9 directories, then each step only those it may have changed), 24 by
    # manifest reads, 3 by releases from quarantine; 99 when every update listed all 9.
    assert result["runs"][1]["control_by_kind"]["list"]["requests"] == 49
    assert result["window"] == 1 and result["first_control_s"] == result["runs"][0]["control_s"]
    for end in ("first", "last"):
        assert all(result["server_ms"][end][kind] > 0 for kind in ("list", "read", "write"))
    net = result["last_over_first"] / result["server_growth"]
    assert result["last_over_first_net_of_server"] == pytest.approx(net, abs=0.002)
    assert not any(tmp_path.iterdir())  # its files removed
