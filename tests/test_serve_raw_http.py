"""Raw HTTP against a real `consultbook serve` (gunicorn): what a client can put in the
request itself never gets a 5xx, and cannot re-route it.

gunicorn maps the request headers ``SCRIPT_NAME`` and ``PATH_INFO`` into the WSGI
environment when the peer is one of ``forwarded_allow_ips`` (by default 127.0.0.1: a
proxy on the same machine, or any local client). A ``SCRIPT_NAME`` the path does not
start with was a ``500`` (gunicorn's ``ConfigurationProblem``), and ``PATH_INFO``
replaced the path the request line names. The app is never mounted under a prefix, so
the server takes neither from a request.
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
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


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
