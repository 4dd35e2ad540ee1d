"""A fault-injecting HTTP proxy on 127.0.0.1, put in front of the local S3 server.

Clients point `AWS_ENDPOINT_URL` at the proxy; it forwards every request to the upstream
server and, for requests matching a `ProxyFault`, damages the exchange the way networks and
servers do: flip one bit of a response body, strip the `x-amz-checksum-*` headers, answer an
error status, reset the connection, stall (never answer), serve the body slowly, cut it short
(send part of it and close the connection), ignore a `Range` header, or run a hook before
forwarding (e.g. replace the object in between HEAD and GET). Every request is recorded
(`requests`), and every response with its `Range` header and the body bytes it sends
(`responses`), for the assertions.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

FaultKind = Literal[
    "flip_bit", "strip_checksums", "status", "reset", "stall", "slow_body", "cut",
    "ignore_range", "hook",
]  # fmt: skip
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "server", "date"}


@dataclass
class ProxyFault:
    """Apply `kind` to the `nth` request matching `method` and `path_contains` (the unquoted
    path and query) and to the `times - 1` matching requests after it."""

    kind: FaultKind
    method: str = "GET"
    path_contains: str = ""
    nth: int = 1
    times: int = 1
    status: int = 500  # kind "status"
    code: str = "InternalError"  # kind "status"
    delay_s: float = (
        0.0  # kind "slow_body": pause per chunk; kind "stall": how long (0: until stop)
    )
    chunk: int = 16 * 1024  # kind "slow_body"
    fraction: float = 0.9  # kind "cut": the share of the body sent before the reset
    hook: Callable[[], None] | None = None  # kind "hook"
    seen: int = field(default=0)
    hits: int = field(default=0)

    def take(self, method: str, path: str) -> bool:
        if method != self.method or self.path_contains not in path:
            return False
        self.seen += 1
        if self.nth <= self.seen < self.nth + self.times:
            self.hits += 1
            return True
        return False


@dataclass(frozen=True)
class Response:
    """What the proxy sent for one request: `body_bytes` counts the body bytes it sends
    (recorded as it starts sending them)."""

    method: str
    path: str
    range: str | None
    status: int
    body_bytes: int


class FaultProxy:
    """`start()` listens on a free loopback port (`endpoint_url`) and forwards to `upstream`."""

    def __init__(self, upstream: str):
        parsed = urllib.parse.urlparse(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.faults: list[ProxyFault] = []
        self.requests: list[tuple[str, str]] = []
        self.responses: list[Response] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _ProxyHandler)
        self._server.daemon_threads = True
        self._server.proxy = self  # type: ignore[attr-defined]
        self.endpoint_url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()  # releases stalled requests
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def inject(self, fault: ProxyFault) -> ProxyFault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def record(self, response: Response) -> None:
        with self._lock:
            self.responses.append(response)

    def active_faults(self, method: str, path: str) -> dict[str, ProxyFault]:
        path = urllib.parse.unquote(path)  # match what a reader writes: "dt=2024-08-08/"
        with self._lock:
            self.requests.append((method, path))
            return {f.kind: f for f in self.faults if f.take(method, path)}


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as S3 clients expect

    def log_message(self, *args: object) -> None:  # keep test output readable
        pass

    def do_GET(self) -> None:
        self._forward()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    def _forward(self) -> None:
        proxy: FaultProxy = self.server.proxy  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        request_body = self.rfile.read(length) if length else None
        faults = proxy.active_faults(self.command, self.path)
        if "reset" in faults:
            return self._reset()
        if "stall" in faults:
            proxy.stopping.wait(faults["stall"].delay_s or None)
            return self._reset()
        if "status" in faults:
            return self._error(faults["status"])
        if "hook" in faults and faults["hook"].hook is not None:
            faults["hook"].hook()
        status, headers, body = self._upstream(proxy, request_body, "ignore_range" in faults)
        if "strip_checksums" in faults:
            headers = [(k, v) for k, v in headers if not k.lower().startswith("x-amz-checksum")]
        if "flip_bit" in faults and body and 200 <= status < 300:
            damaged = bytearray(body)
            damaged[len(damaged) // 2] ^= 0x10
            body = bytes(damaged)
        body = b"" if self.command == "HEAD" else self._body_to_send(body, faults)
        # Recorded before the body goes out: a client that has read it all may be checked at
        # once, before this thread would get to record it afterwards.
        proxy.record(Response(self.command, urllib.parse.unquote(self.path),
                              self.headers.get("Range"), status, len(body)))  # fmt: skip
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self._send_body(body, faults)
        if "cut" in faults:  # closed after what was sent: the client reads it, then a short body
            self.close_connection = True
        return None

    @staticmethod
    def _body_to_send(body: bytes, faults: dict[str, ProxyFault]) -> bytes:
        """The body, or only its first part for a cut."""
        if "cut" in faults:
            return body[: int(len(body) * faults["cut"].fraction)]
        return body

    def _send_body(self, body: bytes, faults: dict[str, ProxyFault]) -> None:
        """Write the body (slowly when the fault says so)."""
        slow = faults.get("slow_body")
        step = slow.chunk if slow else max(len(body), 1)
        for start in range(0, len(body), step):
            self.wfile.write(body[start : start + step])
            self.wfile.flush()
            if slow:
                time.sleep(slow.delay_s)

    def _upstream(
        self, proxy: FaultProxy, request_body: bytes | None, ignore_range: bool = False
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*proxy.upstream, timeout=30)
        headers = {k: v for k, v in self.headers.items() if not ignore_range or k != "Range"}
        try:
            connection.request(self.command, self.path, body=request_body, headers=headers)
            response = connection.getresponse()
            body = response.read()
            headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            if self.command != "HEAD":
                headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
                headers.append(("Content-Length", str(len(body))))
            return response.status, headers, body
        finally:
            connection.close()

    def _error(self, fault: ProxyFault) -> None:
        body = f"<Error><Code>{fault.code}</Code><Message>injected</Message></Error>".encode()
        self.send_response(fault.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _reset(self) -> None:
        """Close with a TCP RST (linger 0), as a dropped connection looks to the client."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
