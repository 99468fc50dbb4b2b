"""A real CalDAV server for tests: Radicale (from PyPI) in a subprocess on 127.0.0.1.

:class:`Radicale` writes a config into a temp folder (file-system storage there,
htpasswd authentication with a plain-text users file, owner-only rights), starts
``python -m radicale`` on a free port, waits until it answers HTTP, and stops it
(:meth:`stop`, also usable mid-test to play "the server is down"; :meth:`start` brings
it back on the same port with the same data).

:class:`DavProxy` forwards every request to a server, except what a test scripts:
``refuse_freebusy`` answers ``free-busy-query`` REPORTs the way a server without them
does (501), and ``fail_next(n, status, retry_after)`` answers the next ``n`` requests
with an error. It shows that the provider's fallbacks and retries work over real HTTP.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

USER = "erika@example.com"
PASSWORD = "app-password-1234"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Radicale:
    """One Radicale server with users ``{name: password}`` (default: :data:`USER`)."""

    def __init__(self, folder: Path, users: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.users = users or {USER: PASSWORD}
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        htpasswd = folder / "users"
        htpasswd.write_text("".join(f"{u}:{p}\n" for u, p in self.users.items()))
        self.config = folder / "config"
        self.config.write_text(
            "[server]\n"
            f"hosts = 127.0.0.1:{self.port}\n"
            "[auth]\n"
            "type = htpasswd\n"
            f"htpasswd_filename = {htpasswd}\n"
            "htpasswd_encryption = plain\n"
            "delay = 0\n"
            "[rights]\n"
            "type = owner_only\n"
            "[storage]\n"
            f"filesystem_folder = {folder / 'collections'}\n"
            "[web]\n"
            "type = none\n"
            "[logging]\n"
            "level = warning\n")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 20.0) -> Radicale:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "radicale", "--config", str(self.config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"radicale exited: {err[-2000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.request("OPTIONS", "/")
                conn.getresponse().read()
                conn.close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("radicale did not answer in time")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()

    def __enter__(self) -> Radicale:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class DavProxy:
    """A forwarding HTTP proxy (as a server in front of ``target``) with scripted faults."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.refuse_freebusy = False
        self.requests: list[tuple[str, str, bytes]] = []
        self._faults: list[tuple[int, str | None]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    proxy.requests.append((self.command, self.path, body))
                    fault = proxy._faults.pop(0) if proxy._faults else None
                if fault is not None:
                    status, retry_after = fault
                    headers = {"Retry-After": retry_after} if retry_after else {}
                    return self._reply(status, b"", headers)
                if proxy.refuse_freebusy and self.command == "REPORT" \
                        and b"free-busy-query" in body:
                    return self._reply(501, b"free-busy-query is not supported", {})
                conn = http.client.HTTPConnection(*proxy.target, timeout=30)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "connection", "content-length")}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                out = {k: v for k, v in resp.getheaders()
                       if k.lower() not in ("connection", "content-length",
                                            "transfer-encoding")}
                conn.close()
                self._reply(resp.status, data, out)

            def _reply(self, status: int, data: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_DELETE = do_PROPFIND = do_REPORT = do_OPTIONS = _any
            do_PROPPATCH = do_MKCALENDAR = do_MKCOL = do_POST = do_HEAD = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def fail_next(self, count: int, status: int = 503, retry_after: str | None = None) -> None:
        with self._lock:
            self._faults.extend([(status, retry_after)] * count)

    def __enter__(self) -> DavProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
