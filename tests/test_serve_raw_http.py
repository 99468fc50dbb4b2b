"""Raw HTTP against a real `consultbook serve` (gunicorn): what a client can put in the
request itself never gets a 5xx, and cannot re-route it.

gunicorn maps the request headers ``SCRIPT_NAME`` and ``PATH_INFO`` into the WSGI
environment when the peer is one of ``forwarded_allow_ips`` (by default 127.0.0.1: a
proxy on the same machine, or any local client). A ``SCRIPT_NAME`` the path does not
start with was a ``500`` (gunicorn's ``ConfigurationProblem``), and ``PATH_INFO``
replaced the path the request line names. The app is never mounted under a prefix, so
the server takes neither from a request.

A request gunicorn refuses before the app sees it (a malformed request line or header,
limits, a bad chunk) is answered in the contract's error shape too, not with gunicorn's
HTML page.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.test_cli import SECRETS, run
from tests.test_serve_port import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A `consultbook serve --workers 2` on SQLite, for the whole module."""
    where = tmp_path_factory.mktemp("serve")
    url = f"sqlite:///{where}/cb.db"
    assert run(["migrate"], where, CONSULTBOOK_DATABASE_URL=url).returncode == 0
    number = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CONSULTBOOK_", "SHOPIFY_"))}
    log = (where / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "--port", str(number), "--workers", "2"],
        cwd=where, env={**base, **SECRETS, "CONSULTBOOK_DATABASE_URL": url},
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{number}/healthz", timeout=5).ok:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None, Path(where / "serve.log").read_text()
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.3)
        yield number
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def _raw(port: int, request: bytes) -> tuple[int, bytes]:
    status, _, body = _exchange(port, request)
    return status, body


def _exchange(port: int, request: bytes) -> tuple[int, bytes, bytes]:
    """(status, head, body) of the first answer on a new connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return int(head.split(b" ", 2)[1]), head, rest[:length]


def _get(path: str, *headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize("header", ["SCRIPT_NAME: /x", "SCRIPT_NAME: /healthz/deeper",
                                    "SCRIPT_NAME: /", "PATH_INFO: /readyz",
                                    "PATH_INFO: /admin"])
def test_a_client_cannot_set_the_script_name_or_the_path_info(port: int, header: str) -> None:
    status, body = _raw(port, _get("/healthz", header))
    assert status == 200, body
    assert json.loads(body) == {"status": "ok"}  # /healthz answered, not another route
    status, body = _raw(port, _get("/nothing-here", header))
    assert status == 404, body
    assert json.loads(body)["error"]["code"] == "not_found"


BAD_REQUESTS = {
    "request line": (b"GET /healthz HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400),
    "bytes in the path": (b"GET /proxy/holds/\xed\xa0\x80 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "HTTP version": (b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 400),
    "folded header": (b"GET /healthz HTTP/1.1\r\nHost: x\r\n folded: y\r\n\r\n", 400),
    "control in a header": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: a\x00b\r\n\r\n",
                            400),
    "two Content-Lengths": (b"POST /webhooks HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                            b"Content-Length: 2\r\n\r\nab", 400),
    "a coding not chunked": (b"POST /webhooks HTTP/1.1\r\nHost: x\r\n"
                             b"Transfer-Encoding: gzip\r\n\r\nx", 400),
    "contradicting schemes": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\n"
                              b"X-Forwarded-Ssl: off\r\n\r\n", 400),
    "odd expectation": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n", 417),
    "request line over the limit": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                                    414),
    "header over the limit": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000
                              + b"\r\n\r\n", 431),
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_what_the_http_server_refuses_is_a_json_error(port: int, name: str) -> None:
    request, want = BAD_REQUESTS[name]
    status, head, body = _exchange(port, request)
    assert status == want, (head, body)
    assert b"content-type: application/json" in head.lower(), head
    assert b"\r\nx-request-id: " in head.lower(), head
    doc = json.loads(body)
    assert set(doc) == {"error"} and set(doc["error"]) == {"code", "message"}, doc
    assert doc["error"]["code"].replace("_", "").isalpha() and doc["error"]["message"]
    # and the server keeps serving
    assert _raw(port, _get("/healthz"))[0] == 200
