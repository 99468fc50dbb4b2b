"""A tiny threaded HTTP(S) server for fakes, with scripted faults and a request log."""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body or b"null")

    @property
    def form(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.body.decode()).items()}


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> tuple[bytes, str]:
        if self.body is None:
            return b"", "application/json"
        if isinstance(self.body, bytes):
            return self.body, self.headers.get("Content-Type", "application/octet-stream")
        if isinstance(self.body, str):
            return self.body.encode(), self.headers.get("Content-Type", "text/plain")
        return json.dumps(self.body).encode(), "application/json"


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    response: Response | None
    times: int
    delay: float = 0.0


class FakeServer:
    """Subclasses implement :meth:`route`. Start with ``with Fake() as fake:``."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.requests: list[Request] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._ssl = ssl_context
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------

    def start(self) -> FakeServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(self.command, parts.path,
                                  {k: v[-1] for k, v in parse_qs(parts.query).items()},
                                  {k.lower(): v for k, v in self.headers.items()}, body)
                response = fake._dispatch(request)
                payload, content_type = response.encode()
                try:
                    self.send_response(response.status)
                    headers = {"Content-Type": content_type, **response.headers}
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        if self._ssl is not None:
            server.socket = self._ssl.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(5)
            self._server = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    # --- faults and the log ---------------------------------------------------------

    def fail(self, method: str, path: str, status: int = 500, *, times: int = 1,
             body: Any = None, headers: dict[str, str] | None = None,
             delay: float = 0.0) -> None:
        """The next ``times`` requests matching ``method`` and the ``path`` regex answer
        ``status`` (after ``delay`` seconds; ``status=0`` with a delay: just slow)."""
        response = Response(status, body if body is not None else
                            {"error": {"code": status, "message": "injected fault"}},
                            headers or {}) if status else None
        with self._lock:
            self._faults.append(Fault(method.upper(), re.compile(path), response, times, delay))

    def calls(self, method: str, path: str) -> list[Request]:
        pattern = re.compile(path)
        return [r for r in self.requests if r.method == method.upper()
                and pattern.search(r.path)]

    def _dispatch(self, request: Request) -> Response:
        with self._lock:
            self.requests.append(request)
            fault = next((f for f in self._faults if f.method == request.method and
                          f.path.search(request.path) and f.times > 0), None)
            if fault is not None:
                fault.times -= 1
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.response is not None:
                return fault.response
        try:
            return self.route(request)
        except Exception as exc:  # a fake bug should be visible, not a hang
            return Response(500, {"error": {"message": f"fake crashed: {exc!r}"}})

    def route(self, request: Request) -> Response:
        raise NotImplementedError
