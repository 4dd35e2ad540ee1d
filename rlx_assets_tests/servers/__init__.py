"""Local servers the tests start on 127.0.0.1: S3, Binance replay, PostgreSQL, Dagster UI."""

import contextlib
import socket
import time


def free_port() -> int:
    """A port on 127.0.0.1 free right now (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_listening(port: int, process, timeout: float, log_tail) -> None:
    """Wait until `process` accepts connections on 127.0.0.1:`port`; fail with its log if it
    exits or does not listen within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode} before listening:\n{log_tail()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.2)
    raise TimeoutError(f"not listening on port {port} after {timeout} s:\n{log_tail()}")
