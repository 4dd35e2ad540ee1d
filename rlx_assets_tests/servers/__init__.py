"""Local servers the tests start on 127.0.0.1: S3, Binance replay, PostgreSQL, Dagster UI."""

import socket


def free_port() -> int:
    """A port on 127.0.0.1 free right now (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
