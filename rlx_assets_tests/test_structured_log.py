"""RLX_LOG_FORMAT=json: the acquisition, gate and certificate events of a run, one JSON object
per line on stdout, correlated by the Dagster run id and the partition, with figures an
independent count confirms, and never a credential."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from rlx_assets.staging import lake_relative_path
from rlx_assets.structured_log import log_event, partition_fields
from rlx_assets_tests.conftest import REPO_ROOT, TEST_SECRET
from rlx_assets_tests.servers.s3 import Fault

PARTITION = "2024-08-08|BINANCE.BTC-USDT"
DAY = dt.date(2024, 8, 8)
TABLES = ("trades", "book", "book_delta_v2")
CERTIFICATE_KEY = "rlxTestCertificateKey0123456789"


def json_lines(text: str) -> list[dict]:
    """Every line of `text` as a JSON object (a line that is not one fails the test)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_events_carry_their_fields_and_no_credential(monkeypatch, capsys):
    monkeypatch.setenv("RLX_LOG_FORMAT", "json")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIARLXTESTKEY000001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_SECRET)
    monkeypatch.setenv("RLX_CERTIFICATE_KEY", CERTIFICATE_KEY)
    error = f"denied for AKIARLXTESTKEY000001 with secret {TEST_SECRET}"
    log_event(
        "download.retry", f"retrying after: {error}", level=logging.WARNING, run_id="r1",
        **partition_fields("BINANCE.BTC-USDT", DAY), error=error,
        nested={"key": CERTIFICATE_KEY, "tries": [error, 3]},
    )  # fmt: skip
    out = capsys.readouterr().out
    (line,) = json_lines(out)
    assert line["event"] == "download.retry" and line["level"] == "WARNING"
    assert (line["run_id"], line["partition"]) == ("r1", PARTITION)
    assert (line["date"], line["market"]) == ("2024-08-08", "BINANCE.BTC-USDT")
    assert line["nested"]["tries"][1] == 3
    for secret in (TEST_SECRET, "AKIARLXTESTKEY000001", CERTIFICATE_KEY):
        assert secret not in out
    assert "<AWS_SECRET_ACCESS_KEY redacted>" in line["message"]
    assert "<AWS_SECRET_ACCESS_KEY redacted>" in line["error"]
    assert line["nested"]["key"] == "<RLX_CERTIFICATE_KEY redacted>"


def test_the_default_text_format_writes_no_event_line(capsys):
    log_event("download.start", run_id="r1", **partition_fields("BINANCE.BTC-USDT", DAY))
    assert capsys.readouterr().out == ""


def materialize(home: Path, select: str, lake_uri: str) -> subprocess.CompletedProcess:
    """`dagster asset materialize` as a user runs it (steps in forked processes), JSON logs on."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RLX_", "DAGSTER_"))},
        "DAGSTER_HOME": str(home),
        "RLX_DATA_DIR": str(home / "data"),
        "RLX_LAKE_URI": lake_uri,
        "RLX_GATE_PROFILE": "sample",
        "RLX_DOWNLOAD_BACKOFF_INITIAL_S": "0.01",
        "RLX_CERTIFICATE_KEY": CERTIFICATE_KEY,
        "RLX_LOG_FORMAT": "json",
        "PYTHONPATH": str(REPO_ROOT),
    }
    command = [
        sys.executable, "-m", "dagster", "asset", "materialize", "-m", "rlx_assets.definitions",
        "--select", select, "--partition", PARTITION,
    ]  # fmt: skip
    done = subprocess.run(command, cwd=home, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-5000:]
    return done


def by_event(lines: list[dict]) -> dict[str, list[dict]]:
    events = defaultdict(list)
    for line in lines:
        events[line["event"]].append(line)
    return events


def the_new_run_id(home: Path, known: set[str]) -> str:
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        (run,) = [r for r in instance.get_runs() if r.run_id not in known]
        assert run.status == dg.DagsterRunStatus.SUCCESS
        return run.run_id
    finally:
        instance.dispose()


@pytest.mark.slow
def test_a_run_logs_its_acquisition_gates_and_certificate_as_json_lines(
    s3_lake, s3_server, sample_lake, tmp_path, monkeypatch
):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.chdir(home)  # dagster.yaml's relative storage paths
    # The server answers the first GET of the trades file with an error naming the credential.
    fault = s3_server.inject(
        Fault("GET", "/trades/exchange=BINANCE/", 500, times=1, code=f"InternalError{TEST_SECRET}")
    )
    done = materialize(home, "*readiness_certificate", s3_lake["uri"])
    assert fault.hits == 1
    run_id = the_new_run_id(home, set())

    lines = json_lines(done.stdout)  # every line of stdout is one JSON object
    for line in lines:
        assert line["run_id"] == run_id and line["partition"] == PARTITION, line
        assert (line["date"], line["market"]) == ("2024-08-08", "BINANCE.BTC-USDT")
    events = by_event(lines)
    (retry,) = events["download.retry"]
    assert retry["table"] == "trades" and "server error 500" in retry["error"]
    assert "<AWS_SECRET_ACCESS_KEY redacted>" in retry["error"]
    for output in (done.stdout, done.stderr):
        assert TEST_SECRET not in output and os.environ["AWS_ACCESS_KEY_ID"] not in output
        assert CERTIFICATE_KEY not in output

    stored = {e["table"]: e for e in events["raw_file.stored"]}
    finished = {e["table"]: e for e in events["download.finish"]}
    gates = {e["table"]: e for e in events["gates.checked"]}
    assert set(stored) == set(finished) == set(gates) == set(TABLES)
    (certificate,) = events["certificate.issued"]
    for table in TABLES:
        relative = lake_relative_path(table, "BINANCE", "BTC-USDT", DAY)
        original = sample_lake / relative
        rows = pq.ParquetFile(original).metadata.num_rows
        size = original.stat().st_size
        sha256 = hashlib.sha256(original.read_bytes()).hexdigest()
        assert (stored[table]["action"], stored[table]["rows"]) == ("downloaded", rows)
        assert (stored[table]["bytes"], stored[table]["sha256"]) == (size, sha256)
        assert (home / "data" / stored[table]["path"]).read_bytes() == original.read_bytes()
        assert finished[table]["bytes"] == size and finished[table]["seconds"] >= 0
        assert gates[table]["passed"] is True and (gates[table]["gates_run"]) == 5
        assert gates[table]["gates_passed"] == 5 and gates[table]["failed"] == {}
        assert set(gates[table]["verdicts"].values()) == {"passed"}
        assert gates[table]["rows"] == rows and gates[table]["sha256"] == sha256
        ready = home / "data" / "staging" / "ready" / relative
        assert certificate["tables"][table]["rows"] == pq.ParquetFile(ready).metadata.num_rows
        assert certificate["tables"][table]["sha256"] == sha256
    assert Path(certificate["path"]).is_file() and certificate["signed"] is True
    (promoted,) = events["partition.promoted"]
    assert promoted["rows"] == {t: stored[t]["rows"] for t in TABLES}
    (checked,) = events["certificate.checked"]
    assert checked["passed"] is True and checked["problems"] == []

    # A second run reuses the stored file, under its own run id.
    again = materialize(home, "raw_trades", s3_lake["uri"])
    second_run_id = the_new_run_id(home, {run_id})
    events = by_event(json_lines(again.stdout))
    (reuse,) = events["download.reuse"]
    (stored_again,) = events["raw_file.stored"]
    assert reuse["run_id"] == stored_again["run_id"] == second_run_id != run_id
    assert reuse["bytes"] == stored["trades"]["bytes"] and stored_again["action"] == "reused"
