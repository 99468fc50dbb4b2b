"""`consultbook serve --port P` refuses a port another server listens on.

gunicorn's ``reuse_port`` (each worker binds its own SO_REUSEPORT socket) used to let a
second server start silently on a busy port, after which the two shared the traffic.
The server now claims the address first (web.server.claim_address) and refuses with one
line and exit status 1. These tests use real listeners on free ports.
"""

from __future__ import annotations

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

from tests.test_cli import SECRETS, one_line, run
from web.server import REUSE_PORT, AddressInUse, claim_address

needs_reuseport = pytest.mark.skipif(not REUSE_PORT, reason="SO_REUSEPORT is Linux-only here")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listener(port: int, *, reuseport: bool = False, host: str = "127.0.0.1") -> socket.socket:
    """Another server: a listening socket, as plain servers and gunicorn workers make them."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((host, port))
    s.listen(8)
    return s


def worker_socket(port: int) -> socket.socket:
    """What each gunicorn worker of this server binds (reuse_port)."""
    return listener(port, reuseport=True)


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.mark.parametrize("reuseport", [False, True], ids=["plain", "reuse_port"])
def test_a_port_another_server_listens_on_is_refused(port: int, reuseport: bool) -> None:
    other = listener(port, reuseport=reuseport)
    try:
        with pytest.raises(AddressInUse, match=f"127.0.0.1:{port}: another server already"):
            claim_address("127.0.0.1", port)
    finally:
        other.close()


def test_a_server_on_every_address_blocks_loopback(port: int) -> None:
    other = listener(port, host="0.0.0.0")  # noqa: S104 -- a test of exactly that
    try:
        with pytest.raises(AddressInUse):
            claim_address("127.0.0.1", port)
    finally:
        other.close()


@needs_reuseport
def test_the_claim_lets_only_this_servers_workers_in(port: int) -> None:
    guard = claim_address("127.0.0.1", port)
    workers: list[socket.socket] = []
    try:
        # Before any worker listens, nothing else can take the port: no second server
        # (its guard), no plain server, no server that sets SO_REUSEADDR.
        with pytest.raises(AddressInUse):
            claim_address("127.0.0.1", port)
        for reuseaddr in (False, True):
            with socket.socket() as s:
                if reuseaddr:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                with pytest.raises(OSError):
                    s.bind(("127.0.0.1", port))
                    s.listen(1)
        # The guard itself never accepts: nothing answers until a worker listens.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()

        workers = [worker_socket(port) for _ in range(3)]
        with pytest.raises(AddressInUse):
            claim_address("127.0.0.1", port)
        # Every connection reaches one of this server's workers.
        for _ in range(10):
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                pass
        for w in workers:
            w.setblocking(False)
        accepted = 0
        deadline = time.monotonic() + 5
        while accepted < 10 and time.monotonic() < deadline:
            for w in workers:
                try:
                    conn, _ = w.accept()
                except BlockingIOError:
                    continue
                conn.close()
                accepted += 1
        assert accepted == 10
    finally:
        for w in workers:
            w.close()
        guard.close()
    # Released when the server stops: the port can be served again at once.
    claim_address("127.0.0.1", port).close()


def test_bad_addresses_are_one_line() -> None:
    with pytest.raises(AddressInUse, match="not an address of this machine"):
        claim_address("192.0.2.1", free_port())


@pytest.fixture
def migrated(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/cb.db"
    assert run(["migrate"], tmp_path, CONSULTBOOK_DATABASE_URL=url).returncode == 0
    return url


@pytest.mark.parametrize("reuseport", [False, True], ids=["plain", "reuse_port"])
def test_serve_on_a_busy_port_exits_1_with_one_line(
        tmp_path: Path, migrated: str, port: int, reuseport: bool) -> None:
    other = listener(port, reuseport=reuseport)
    try:
        started = time.monotonic()
        r = run(["serve", "--port", str(port)], tmp_path, CONSULTBOOK_DATABASE_URL=migrated,
                **SECRETS)
        assert r.returncode == 1, r.stderr
        line = one_line(r.stderr)
        assert line == (f"consultbook: cannot serve on 127.0.0.1:{port}: "
                        "another server already listens there")
        assert time.monotonic() - started < 30  # refused at once, no gunicorn retries
        # The other server still has the port to itself.
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        conn, _ = other.accept()
        conn.close()
    finally:
        other.close()


@pytest.fixture
def serving(tmp_path: Path, migrated: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CONSULTBOOK_", "SHOPIFY_"))}
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "--port", str(port), "--workers", "2"],
        cwd=tmp_path, env={**base, **SECRETS, "CONSULTBOOK_DATABASE_URL": migrated},
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 40
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                    break
            except requests.RequestException:  # not up yet, or too busy to answer in 1 s
                pass
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.2)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.mark.slow
def test_a_second_consultbook_serve_on_the_same_port_is_refused(
        tmp_path: Path, migrated: str, port: int, serving: subprocess.Popen[bytes]) -> None:
    r = run(["serve", "--port", str(port)], tmp_path, CONSULTBOOK_DATABASE_URL=migrated,
            **SECRETS)
    assert r.returncode == 1, r.stderr
    assert f"127.0.0.1:{port}: another server already listens there" in one_line(r.stderr)
    # The first server still answers every request, with both its workers.
    for _ in range(20):
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok
    assert serving.poll() is None
