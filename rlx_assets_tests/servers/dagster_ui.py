"""The Dagster web UI and daemon as real subprocesses on 127.0.0.1, for end-to-end tests.

As the README's production deployment runs them: one code server (`dagster code-server start`)
that the webserver and the daemon share through `workspace_code_server.yaml`. All run with
DAGSTER_HOME and the working directory set to one temporary directory that holds a copy of the
repository's dagster.yaml (so the instance, the data under RLX_DATA_DIR and lakeapi's
`.lake_cache` all land there). Each process leads its own process group: `stop()` sends SIGTERM
to the process id it started, SIGKILL after a timeout, then clears what that process left in its
group (the code server's user-code process and run workers), so nothing outlives the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from rlx_assets_tests.servers import free_port, wait_until_listening

REPO_ROOT = Path(__file__).resolve().parents[2]
CODE_MODULE = "rlx_assets.definitions"
CODE_SERVER_WORKSPACE = REPO_ROOT / "workspace_code_server.yaml"


CODE_SERVER_HOST = "127.0.0.1"


def code_server_command(port: int) -> list[str]:
    """The README's code server, which `CODE_SERVER_WORKSPACE` names for the webserver and the
    daemon when their environment holds `code_server_env(port)`."""
    return [
        sys.executable, "-m", "dagster", "code-server", "start", "-m", CODE_MODULE,
        "--location-name", CODE_MODULE, "-h", CODE_SERVER_HOST, "-p", str(port),
    ]  # fmt: skip


def code_server_env(port: int) -> dict[str, str]:
    """The variables `CODE_SERVER_WORKSPACE` reads to find the code server on `port`."""
    return {"RLX_CODE_SERVER_HOST": CODE_SERVER_HOST, "RLX_CODE_SERVER_PORT": str(port)}


class DagsterUI:
    """`dagster-webserver` and `dagster-daemon run` for `rlx_assets.definitions`."""

    def __init__(
        self,
        home: Path,
        lake_uri: str | Path,
        *,
        dagster_yaml: Path = REPO_ROOT / "dagster.yaml",
        extra_env: dict[str, str] | None = None,
        start_timeout: float = 180,
        webserver: bool = True,
    ):
        self.home = Path(home)
        # Without the webserver (a test that only drives the CLI and the daemon) runs are read
        # from the instance's storage instead of Dagster's GraphQL API.
        self.webserver = webserver
        self._instance = None  # opened by start(), to create its storage
        self.dagster_yaml = dagster_yaml
        self.start_timeout = start_timeout
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.processes: dict[str, subprocess.Popen] = {}
        self.code_server_port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RLX_", "DAGSTER_"))},
            "DAGSTER_HOME": str(self.home),
            "RLX_DATA_DIR": str(self.home / "data"),
            "RLX_LAKE_URI": str(lake_uri),
            "RLX_GATE_PROFILE": "sample",
            **code_server_env(self.code_server_port),
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return Path(self.env["RLX_DATA_DIR"])

    def log_path(self, name: str) -> Path:
        # Not $DAGSTER_HOME/logs: Dagster's telemetry uploader renames that folder to .logs_queue.
        return self.home / "process_logs" / f"{name}.log"

    def log_tail(self, name: str, chars: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path(name).read_text(errors="replace")[-chars:]
        return ""

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> DagsterUI:
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_path("any").parent.mkdir(exist_ok=True)
        shutil.copy(self.dagster_yaml, self.home / "dagster.yaml")
        # A returning user: no "join the community" dialog over the first page.
        (self.home / ".nux").mkdir(exist_ok=True)
        (self.home / ".nux" / "nux.yaml").write_text("seen: 1\n")
        try:
            # Create the instance's storage first (here, as `dagster instance migrate` would in
            # a process of its own): the webserver, the daemon and the code server each create
            # it on first use and trip over each other on a fresh SQLite ("Version table
            # 'alembic_version' has more than one head present").
            self.instance()
            # It listens once it has loaded the definitions: the daemon and the webserver find
            # them at once (a location that failed to load is retried by the daemon a minute on).
            self._spawn("code_server", code_server_command(self.code_server_port))
            wait_until_listening(
                self.code_server_port, self.processes["code_server"], self.start_timeout,
                lambda: self.log_tail("code_server"),
            )  # fmt: skip
            workspace = ["-w", str(CODE_SERVER_WORKSPACE)]
            self._spawn("daemon", [sys.executable, "-m", "dagster._daemon", "run", *workspace])
            if self.webserver:
                self.port = free_port()
                self._spawn(
                    "webserver",
                    [sys.executable, "-m", "dagster_webserver", *workspace,
                     "-h", self.host, "-p", str(self.port)],
                )  # fmt: skip
                self._wait_until_served()
                self._wait_until_code_loaded()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, command: list[str]) -> None:
        with open(self.log_path(name), "ab") as log:
            self.processes[name] = subprocess.Popen(
                command,
                cwd=self.home,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stop() finds its children
            )

    def _wait_until_served(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(
                        f"dagster {name} exited with {process.returncode}:\n{self.log_tail(name)}"
                    )
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(f"{self.url}/server_info", timeout=5) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.5)
        raise TimeoutError(
            f"{self.url}/server_info did not answer in {self.start_timeout} s:\n"
            f"{self.log_tail('webserver')}"
        )

    def _wait_until_code_loaded(self) -> None:
        """The webserver answers before its code server has loaded the definitions."""
        query = """{ workspaceOrError { ... on Workspace { locationEntries {
            name loadStatus
            locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
        deadline = time.monotonic() + self.start_timeout
        entries: list = []
        while time.monotonic() < deadline:
            entries = self.graphql(query)["workspaceOrError"]["locationEntries"]
            for entry in entries:
                loaded = entry["locationOrLoadError"] or {}
                if loaded.get("__typename") == "PythonError":
                    raise RuntimeError(f"{entry['name']} failed to load: {loaded['message']}")
            if entries and all(
                e["loadStatus"] == "LOADED"
                and (e["locationOrLoadError"] or {}).get("__typename") == "RepositoryLocation"
                for e in entries
            ):
                return
            self._check_alive()
            time.sleep(0.5)
        raise TimeoutError(f"code location not loaded in {self.start_timeout} s: {entries}")

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM each started process by id, SIGKILL after `timeout`, then its leftovers."""
        if self._instance is not None:
            self._instance.dispose()
            self._instance = None
        for name in ("daemon", "webserver", "code_server"):  # the code server last
            process = self.processes.pop(name, None)
            if process is not None:
                _stop_process(process, timeout)

    def __enter__(self) -> DagsterUI:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- GraphQL, for waiting and for triggers the UI makes brittle ------------------------------

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 60) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.load(response)
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def runs(self) -> list[dict]:
        """Every run: id, status, times (epoch seconds), tags (as a dict), newest first."""
        if not self.webserver:
            return self._runs_in_storage()
        data = self.graphql(
            """{ runsOrError(limit: 200) { ... on Runs { results {
                 runId status creationTime startTime endTime tags { key value } } } } }"""
        )
        return [
            {**run, "tags": {t["key"]: t["value"] for t in run["tags"]}}
            for run in data["runsOrError"]["results"]
        ]

    def instance(self):
        """The instance the servers use, opened here (its storage created on first use)."""
        import dagster as dg

        if self._instance is None:
            with contextlib.chdir(self.home):  # dagster.yaml's storage paths are relative
                self._instance = dg.DagsterInstance.from_config(str(self.home))
        return self._instance

    def _runs_in_storage(self) -> list[dict]:
        """`runs()` read from the instance, as the daemon sees it (dagster.yaml's storage paths
        are relative to the directory the servers run in)."""
        with contextlib.chdir(self.home):
            records = self.instance().get_run_records()
        return [
            {
                "runId": record.dagster_run.run_id,
                "status": record.dagster_run.status.value,
                "creationTime": record.create_timestamp.timestamp(),
                "startTime": record.start_time,
                "endTime": record.end_time,
                "tags": dict(record.dagster_run.tags),
            }
            for record in records
        ]

    def wait_for_runs(self, predicate, count: int, timeout: float = 240) -> list[dict]:
        """Wait until `count` runs matching `predicate(run)` have all reached a final status."""
        final = {"SUCCESS", "FAILURE", "CANCELED"}
        deadline = time.monotonic() + timeout
        matching: list[dict] = []
        while time.monotonic() < deadline:
            matching = [run for run in self.runs() if predicate(run)]
            if len(matching) >= count and all(run["status"] in final for run in matching):
                return matching
            self._check_alive()
            time.sleep(1)
        raise TimeoutError(
            f"runs not finished in {timeout} s: {[(r['runId'], r['status']) for r in matching]}\n"
            f"daemon log:\n{self.log_tail('daemon')}"
        )

    def wait_for_backfill(self, backfill_id: str, timeout: float = 240) -> str:
        """Wait until the backfill reached a final status; return it (e.g. COMPLETED_SUCCESS)."""
        query = """query ($id: String!) { partitionBackfillOrError(backfillId: $id) {
            ... on PartitionBackfill { id status } ... on PythonError { message } } }"""
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            backfill = self.graphql(query, {"id": backfill_id})["partitionBackfillOrError"]
            status = backfill.get("status")
            if status not in (None, "REQUESTED", "CANCELING", "FAILING"):
                return status
            self._check_alive()
            time.sleep(1)
        raise TimeoutError(
            f"backfill {backfill_id} still {status} after {timeout} s\n"
            f"daemon log:\n{self.log_tail('daemon')}"
        )

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(
                    f"dagster {name} exited with {process.returncode}:\n{self.log_tail(name)}"
                )


def _stop_process(process: subprocess.Popen, timeout: float) -> None:
    pid = process.pid
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        process.wait(10)
    # Its group (id = its pid, a session of its own) may still hold children: code servers, runs.
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout / 2
        while time.monotonic() < deadline:
            if not _group_alive(pid):
                return
            time.sleep(0.2)


def _group_alive(pgid: int) -> bool:
    """Any live (non-zombie) process left in process group `pgid`."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False
