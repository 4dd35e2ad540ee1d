"""A real S3-compatible server on 127.0.0.1 (moto) with injectable faults, for the lakeapi path."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import WSGIRequestHandler, make_server


@dataclass
class Fault:
    """Answer `status` to the next `times` requests whose method and path match."""

    method: str
    path_contains: str
    status: int
    times: int
    code: str = "InternalError"
    hits: int = field(default=0)


@dataclass
class SlowBody:
    """Send the body of matching responses `chunk` bytes at a time, `delay_s` apart."""

    method: str
    path_contains: str
    delay_s: float
    chunk: int = 16 * 1024


class FaultInjectingApp:
    def __init__(self, app):
        self.app = app
        self.faults: list[Fault] = []
        self.slow_bodies: list[SlowBody] = []
        self.requests: list[tuple[str, str]] = []
        self.copies: list[tuple[str, str]] = []  # (path, source) of each server-side copy
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING", "")
        with self._lock:
            self.requests.append((method, f"{path}?{query}" if query else path))
            if "HTTP_X_AMZ_COPY_SOURCE" in environ:
                self.copies.append((path, environ["HTTP_X_AMZ_COPY_SOURCE"]))
            fault = next(
                (
                    f
                    for f in self.faults
                    if f.times > 0 and f.method == method and f.path_contains in f"{path}?{query}"
                ),
                None,
            )
            if fault is not None:
                fault.times -= 1
                fault.hits += 1
        slow = next(
            (b for b in self.slow_bodies if b.method == method and b.path_contains in path), None
        )
        if fault is None and slow is not None:
            return _trickle(self.app(environ, start_response), slow)
        if fault is None:
            return self.app(environ, start_response)
        body = f"<Error><Code>{fault.code}</Code><Message>injected</Message></Error>".encode()
        start_response(
            f"{fault.status} Injected",
            [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))],
        )
        return [body]


def _trickle(body, slow: SlowBody):
    for block in body:
        for start in range(0, len(block), slow.chunk):
            time.sleep(slow.delay_s)
            yield block[start : start + slow.chunk]


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:  # keep test output readable
        pass


class LocalS3Server:
    """moto's S3 behind a werkzeug server on a free loopback port, stopped by `stop()`."""

    def __init__(self):
        self.app = FaultInjectingApp(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            "127.0.0.1", 0, self.app, threaded=True, request_handler=_QuietHandler
        )
        self.endpoint_url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> LocalS3Server:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def inject(self, fault: Fault) -> Fault:
        self.app.faults.append(fault)
        return fault
