"""A real PostgreSQL server from Debian's binaries, in a temporary directory on 127.0.0.1.

PostgreSQL refuses to run as root, so as root the server runs as the Debian `postgres` user
(`runuser -u postgres --`) in a directory it owns. Stopped with `pg_ctl stop`, then by the
postmaster's process id if that did not work; the directory is removed afterwards.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from rlx_assets_tests.servers import free_port

SERVER_USER = "postgres"  # created by Debian's postgresql-common


def postgres_bin_dir() -> Path:
    """The newest /usr/lib/postgresql/<major>/bin holding initdb (install_system_deps.sh)."""
    found = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        raise RuntimeError(
            "no /usr/lib/postgresql/*/bin/initdb: run `bash scripts/install_system_deps.sh`"
        )
    return found[-1]


class LocalPostgres:
    """`start()` initialises a cluster, starts it and creates `database` owned by `user`."""

    def __init__(
        self, database: str = "rlx_dagster", user: str = "rlx", password: str = "rlx-test"
    ):
        self.database, self.user, self.password = database, user, password
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.bin = postgres_bin_dir()
        self._as_root = os.geteuid() == 0
        self.base: Path | None = None
        self._pid: int | None = None

    # -- helpers -------------------------------------------------------------------------------

    def _command(self, program: str, *args: str) -> list[str]:
        command = [str(self.bin / program), *args]
        return ["runuser", "-u", SERVER_USER, "--", *command] if self._as_root else command

    def _run(self, program: str, *args: str, timeout: float = 120) -> str:
        result = subprocess.run(
            self._command(program, *args),
            cwd=self.base,
            env={**os.environ, "PGPASSWORD": self.password, "LC_ALL": "C.UTF-8"},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}\n{self.server_log()}"
            )
        return result.stdout

    @property
    def data_dir(self) -> Path:
        assert self.base is not None
        return self.base / "data"

    @property
    def log_file(self) -> Path:
        assert self.base is not None
        return self.base / "server.log"

    def server_log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_file.read_text(errors="replace")[-4000:]
        return ""

    @property
    def env(self) -> dict[str, str]:
        """The connection, as the variables dagster_postgres.yaml reads."""
        return {
            "RLX_PG_HOST": self.host,
            "RLX_PG_PORT": str(self.port),
            "RLX_PG_USER": self.user,
            "RLX_PG_PASSWORD": self.password,
            "RLX_PG_DB": self.database,
        }

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    # -- life cycle ----------------------------------------------------------------------------

    def start(self, attempts: int = 3) -> LocalPostgres:
        # Not under pytest's tmp_path: /tmp/pytest-of-root is 0700, the server user can't enter.
        self.base = Path(tempfile.mkdtemp(prefix="rlx-postgres-"))
        if self._as_root:
            account = pwd.getpwnam(SERVER_USER)
            os.chown(self.base, account.pw_uid, account.pw_gid)
        password_file = self.base / "password"
        password_file.write_text(self.password + "\n")
        if self._as_root:
            os.chown(password_file, account.pw_uid, account.pw_gid)
        self._run(
            "initdb",
            "-D", str(self.data_dir),
            "-U", self.user,
            f"--pwfile={password_file}",
            "--auth-host=scram-sha-256",
            "--auth-local=peer" if not self._as_root else "--auth-local=scram-sha-256",
            "-E", "UTF8",
            "--no-instructions",
        )  # fmt: skip
        password_file.unlink()
        last_error: Exception | None = None
        for _ in range(attempts):  # a free port can be taken between choosing and binding it
            self.port = free_port()
            try:
                self._run(
                    "pg_ctl",
                    "-D", str(self.data_dir),
                    "-l", str(self.log_file),
                    "-w", "-t", "60",
                    "-o",
                    f"-h {self.host} -p {self.port} -k {self.base} "
                    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
                    "start",
                )  # fmt: skip
            except RuntimeError as error:
                last_error = error
                continue
            self._pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            break
        else:
            self.stop()
            raise RuntimeError(f"PostgreSQL did not start: {last_error}")
        self.psql("postgres", f'CREATE DATABASE "{self.database}" OWNER "{self.user}"')
        return self

    def psql(self, database: str, sql: str) -> list[list[str]]:
        """Run SQL over TCP as `user` with psql; the result rows, fields split at tabs."""
        output = self._run(
            "psql",
            "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
            "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", database,
            "-c", sql,
        )  # fmt: skip
        return [line.split("\t") for line in output.splitlines() if line]

    def stop(self, timeout: float = 30) -> None:
        """Stop the server (fast shutdown), by pid if pg_ctl fails, and remove its directory."""
        if self.base is None:
            return
        try:
            if self._pid is not None:
                with contextlib.suppress(Exception):
                    self._run(
                        "pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", str(timeout),
                        "stop",
                    )  # fmt: skip
                self._kill_pid(timeout)
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base, self._pid = None, None

    def _kill_pid(self, timeout: float) -> None:
        pid = self._pid
        assert pid is not None
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not _alive(pid):
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is gone for our purposes; the postmaster is not our child (pg_ctl forked it).
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True
