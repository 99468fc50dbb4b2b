"""/readyz names the failing part with 503 and Retry-After, and answers fast whatever
the dependency does: refuses connections, or accepts them and never answers."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import falcon.testing
import pytest

from engine.bootstrap import Context, bootstrap
from tests.conftest import make_config
from web.app import create_app
from web.health import PROBE_TIMEOUT_SECONDS

REDIS_URL = os.environ.get("CONSULTBOOK_TEST_REDIS_URL", "")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A server that accepts connections and never says a word (a hung database or
    broker, a black-holed network path)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(timeout=2)
    for conn in held:
        conn.close()
    server.close()


_contexts: list[Context] = []


@pytest.fixture(autouse=True)
def _dispose() -> Iterator[None]:
    yield
    while _contexts:
        _contexts.pop().db.dispose()


def client_for(database_url: str, broker_url: str | None = None) -> falcon.testing.TestClient:
    ctx = bootstrap(make_config(database_url, broker_url=broker_url))
    _contexts.append(ctx)
    return falcon.testing.TestClient(create_app(ctx))


def timed_get(client: falcon.testing.TestClient) -> tuple[falcon.testing.Result, float]:
    started = time.monotonic()
    result = client.simulate_get("/readyz")
    return result, time.monotonic() - started


def assert_not_ready(result: falcon.testing.Result, parts: list[str]) -> None:
    assert result.status_code == 503
    assert result.headers["Retry-After"].isdigit()
    body = result.json
    assert body["error"]["code"] == "service_unavailable"
    assert body["unavailable"] == parts
    for part in parts:
        assert part in body["error"]["message"]
        assert body["checks"][part].startswith("unavailable")


def test_ready_with_the_embedded_worker(db_url: str) -> None:
    result, _ = timed_get(client_for(db_url))
    assert result.status_code == 200
    assert result.json == {"status": "ready", "checks": {"database": "ok", "broker": "embedded"}}


def test_an_unreachable_database_is_named_at_once(sqlite_url: str) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/consultbook"
    result, took = timed_get(client_for(url))
    assert_not_ready(result, ["database"])
    assert result.json["error"]["message"] == "not ready: the database is unavailable"
    assert took < PROBE_TIMEOUT_SECONDS + 1


def test_a_database_that_never_answers_fails_within_the_deadline(silent_port: int) -> None:
    client = client_for(f"postgresql+psycopg://postgres@127.0.0.1:{silent_port}/consultbook")
    result, took = timed_get(client)
    assert_not_ready(result, ["database"])
    assert PROBE_TIMEOUT_SECONDS - 0.2 < took < PROBE_TIMEOUT_SECONDS + 1
    # The first check is still stuck in the driver: the next probes do not pile more
    # threads onto it, they answer at once.
    before = threading.active_count()
    for _ in range(5):
        again, took = timed_get(client)
        assert_not_ready(again, ["database"])
        assert took < 0.5
        assert "still waiting" in again.json["checks"]["database"]
    assert threading.active_count() <= before


def test_an_unreachable_broker_is_named(sqlite_url: str) -> None:
    result, took = timed_get(client_for(sqlite_url, f"redis://127.0.0.1:{closed_port()}/0"))
    assert_not_ready(result, ["broker"])
    assert result.json["checks"]["database"] == "ok"
    assert took < PROBE_TIMEOUT_SECONDS + 1


def test_both_down_are_both_named_within_one_deadline(silent_port: int) -> None:
    client = client_for(f"postgresql+psycopg://postgres@127.0.0.1:{silent_port}/consultbook",
                        f"redis://127.0.0.1:{silent_port}/0")
    result, took = timed_get(client)
    assert_not_ready(result, ["database", "broker"])
    assert result.json["error"]["message"] == (
        "not ready: the database and the broker are unavailable")
    assert took < PROBE_TIMEOUT_SECONDS + 1


@pytest.mark.skipif(not REDIS_URL, reason="CONSULTBOOK_TEST_REDIS_URL is not set")
def test_ready_with_a_live_broker(db_url: str) -> None:
    result, _ = timed_get(client_for(db_url, REDIS_URL))
    assert result.status_code == 200
    assert result.json["checks"] == {"database": "ok", "broker": "ok"}


def test_overlapping_probes_share_one_check_and_its_answer() -> None:
    """Under load a load balancer's probes overlap: each gets the check's real answer
    (before, the second of two overlapping probes read "unavailable"), and one slow
    check is run once, not once per caller."""
    import threading
    import time

    from web.health import Probe

    calls = []

    def slow_ok() -> None:
        calls.append(1)
        time.sleep(0.3)

    probe = Probe(slow_ok, timeout=2.0)
    answers: list[str] = []
    threads = [threading.Thread(target=lambda: answers.append(probe.run())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == ["ok"] * 8 and len(calls) == 1
    assert probe.run() == "ok" and len(calls) == 2  # a finished check is not reused

    stuck = threading.Event()
    hung = Probe(lambda: stuck.wait(), timeout=0.2)
    assert hung.run().startswith("unavailable: no answer within 0.2 s")
    assert "still waiting" in hung.run()  # at once: the stuck attempt is not waited on
    stuck.set()
