"""A real Redis server from Debian's `redis-server`, on 127.0.0.1 in a temporary directory: the
Celery broker and result backend of the Celery tests. Nothing is persisted (no RDB, no AOF);
`stop()` ends the process it started, by its id, and removes the directory."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from rlx_assets_tests.servers import free_port

REDIS_SERVER = Path("/usr/bin/redis-server")


class LocalRedis:
    """`start()` runs redis-server on a free loopback port and waits until it answers PING."""

    def __init__(self):
        if not REDIS_SERVER.exists():
            raise RuntimeError(f"no {REDIS_SERVER}: run `bash scripts/install_system_deps.sh`")
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.base: Path | None = None
        self._process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    @property
    def log_file(self) -> Path:
        assert self.base is not None
        return self.base / "redis.log"

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_file.read_text(errors="replace")[-chars:]
        return ""

    def start(self, attempts: int = 3, timeout: float = 30) -> LocalRedis:
        self.base = Path(tempfile.mkdtemp(prefix="rlx-redis-"))
        for _ in range(attempts):  # a free port can be taken between choosing and binding it
            self.port = free_port()
            self._process = subprocess.Popen(
                [
                    str(REDIS_SERVER),
                    "--bind", self.host, "--port", str(self.port),
                    "--dir", str(self.base), "--logfile", str(self.log_file),
                    "--save", "", "--appendonly", "no", "--daemonize", "no",
                    "--protected-mode", "yes",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            if self._wait_until_ready(timeout):
                return self
            self._end_process()
        self.stop()
        raise RuntimeError(f"redis-server did not start:\n{self.log_tail()}")

    def _wait_until_ready(self, timeout: float) -> bool:
        assert self._process is not None
        client = redis.Redis(host=self.host, port=self.port, socket_timeout=2)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and self._process.poll() is None:
                with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                    if client.ping():
                        return True
                time.sleep(0.1)
            return False
        finally:
            client.close()

    def _end_process(self, timeout: float = 10) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def stop(self) -> None:
        self._end_process()
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
