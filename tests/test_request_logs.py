"""``X-Request-Id`` on every response, one JSON access line per request on
``consultbook.access`` (request_id, method, route template, status, ms; nothing else of
the request), the JSON formatter and its redaction filter, and ``consultbook serve``
with ``CONSULTBOOK_LOG_FORMAT=json``."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import falcon.testing
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.bootstrap import Context, bootstrap
from engine.clock import FixedClock
from engine.errors import ConfigError
from tests.conftest import Storefront, make_catalog, make_config
from web import observability
from web.app import create_app

SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
FIELDS = {"request_id", "method", "route", "status", "ms"}


@pytest.fixture
def ctx(db_url: str, clock: FixedClock) -> Iterator[Context]:
    context = bootstrap(make_config(db_url), clock=clock)
    yield context
    context.db.dispose()


@pytest.fixture
def client(ctx: Context) -> falcon.testing.TestClient:
    app = create_app(ctx)
    observability.install(app, ctx)
    return falcon.testing.TestClient(app)


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [json.loads(r.getMessage()) for r in caplog.records
            if r.name == "consultbook.access"]


# --------------------------------------------------------------------------- request id


def test_a_sane_request_id_is_echoed_and_logged(client: falcon.testing.TestClient,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="consultbook.access")
    given_id = f"req-{uuid.uuid4()}"
    r = client.simulate_get("/healthz", headers={"X-Request-Id": given_id})
    assert r.headers["x-request-id"] == given_id
    [line] = access_lines(caplog)
    assert line["request_id"] == given_id


def test_without_one_each_response_gets_a_new_random_id(
        client: falcon.testing.TestClient) -> None:
    ids = {client.simulate_get("/healthz").headers["x-request-id"] for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.text(st.characters(min_codepoint=0x20, max_codepoint=0xff), max_size=200))
def test_any_request_id_header_is_echoed_only_when_sane(
        client: falcon.testing.TestClient, header: str) -> None:
    r = client.simulate_get("/healthz", headers={"X-Request-Id": header})
    answered = r.headers["x-request-id"]
    assert SANE.fullmatch(answered)
    if SANE.fullmatch(header.strip()):
        assert answered == header.strip()
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", answered)


def test_errors_and_refusals_before_routing_carry_an_id_too(
        client: falcon.testing.TestClient) -> None:
    for r in (client.simulate_get("/nowhere"),
              client.simulate_get("/proxy/availability", query_string="x=%01"),
              client.simulate_post("/webhooks", headers={"Content-Length": str(11 << 20)}),
              client.simulate_post("/webhooks", body=b"{}")):
        assert r.status_code >= 400 and "error" in r.json
        assert SANE.fullmatch(r.headers["x-request-id"])


# --------------------------------------------------------------------------- access line


def test_one_access_line_per_request_with_only_its_fields(
        client: falcon.testing.TestClient, store: Storefront, admin: object,
        caplog: pytest.LogCaptureFixture) -> None:
    catalog = make_catalog(admin)  # type: ignore[arg-type]
    caplog.set_level(logging.INFO, logger="consultbook.access")
    caplog.clear()
    secret_query = {"service": catalog["service"], "start": "2026-12-01", "days": "1",
                    "tz": "America/Los_Angeles"}
    r1 = store.get("/availability", secret_query)
    r2 = store.hold(catalog["service"], catalog["expert"], "2026-12-01T09:00:00Z",
                    answers={}, tz="America/Los_Angeles")
    hold = r2.json["hold"]
    r3 = store.release(hold)
    r4 = client.simulate_get("/nowhere/at/all")
    lines = access_lines(caplog)
    assert [(x["method"], x["route"], x["status"]) for x in lines] == [
        ("GET", "/proxy/availability", 200), ("POST", "/proxy/holds", 201),
        ("DELETE", "/proxy/holds/{hold_id}", 204), ("GET", "unmatched", 404)]
    for line, r in zip(lines, (r1, r2, r3, r4), strict=True):
        assert set(line) == FIELDS
        assert line["request_id"] == r.headers["x-request-id"]
        assert isinstance(line["ms"], float) and line["ms"] >= 0
    text = "\n".join(rec.getMessage() for rec in caplog.records)
    for leaked in (hold, "signature", "America/Los_Angeles", "2026-12-01", "nowhere",
                   "X-Forwarded-For", "203.0.113.7"):
        assert leaked not in text


def test_no_access_line_is_built_when_the_logger_is_off(
        client: falcon.testing.TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    monkeypatch.setattr(observability.orjson, "dumps", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(observability.access_log, "disabled", False)
    observability.access_log.setLevel(logging.WARNING)
    try:
        assert client.simulate_get("/healthz").status_code == 200
    finally:
        observability.access_log.setLevel(logging.NOTSET)
    assert calls == []


# --------------------------------------------------------------------------- formatter


def record(msg: str, *args: object, name: str = "consultbook.test",
           exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args, exc_info)


def test_the_json_formatter_writes_one_object_per_line() -> None:
    formatter = observability.JsonFormatter()
    try:
        raise ValueError("boom\nsecond line")
    except ValueError as exc:
        rec = record("outbox item %s failed", 42, exc=exc)
    line = formatter.format(rec)
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["level"] == "warning" and doc["logger"] == "consultbook.test"
    assert doc["message"] == "outbox item 42 failed"
    assert "ValueError: boom" in doc["exc"] and doc["ts"].endswith("Z")


def test_an_access_record_is_its_fields() -> None:
    fields = {"request_id": "r1", "method": "GET", "route": "/healthz", "status": 200,
              "ms": 1.5}
    rec = record("%s", json.dumps(fields), name="consultbook.access")
    rec.access = fields
    doc = json.loads(observability.JsonFormatter().format(rec))
    assert {k: doc[k] for k in FIELDS} == fields and "message" not in doc


SECRETS = [
    "jon.snow+x@winterfell.example.com",
    "eyJhbGciOiJIUzI1NiJ9.eyJkZXN0IjoiaHR0cHM6Ly9hIn0.c2lnbmF0dXJlLXZhbHVl",
    "shpat_0123456789abcdef0123456789abcdef",
    "shpss_0123456789abcdef0123456789abcdef",
    "a" * 8 + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
    "q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6j7k8l9z0x1c=",
]


@pytest.mark.parametrize("secret", SECRETS)
def test_the_filter_masks_emails_and_tokens(secret: str) -> None:
    for message in (f"sending to {secret} failed", f"token={secret}&x=1",
                    f"Authorization: Bearer {secret}", f'{{"signature": "{secret}"}}'):
        rec = record("%s", message)
        assert observability.RedactFilter().filter(rec)
        assert secret not in rec.getMessage(), rec.getMessage()


@settings(max_examples=200, deadline=None)
@given(address=st.emails(), token=st.binary(min_size=16, max_size=32))
def test_any_email_or_digest_is_masked_in_messages_and_tracebacks(address: str,
                                                                  token: bytes) -> None:
    digest = token.hex() + token.hex()[:8]  # 40 hex characters at least
    try:
        raise RuntimeError(f"550 <{address}> rejected; sig {digest}")
    except RuntimeError as exc:
        rec = record("mail to %s failed (%s)", address, digest, exc=exc)
    observability.RedactFilter().filter(rec)
    line = observability.JsonFormatter().format(rec)
    assert address not in line and address.lower() not in line.lower()
    assert digest not in line
    assert "[email]" in line and "RuntimeError" in line


def test_configure_logging_json_and_text(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    monkeypatch.setattr(logging.getLogger("sqlalchemy"), "level", logging.NOTSET)
    try:
        assert observability.configure_logging({}) == "text"
        assert root.handlers == handlers and root.level == level
        assert observability.configure_logging({"CONSULTBOOK_LOG_FORMAT": "TEXT"}) == "text"
        stream = io.StringIO()
        assert observability.configure_logging({"CONSULTBOOK_LOG_FORMAT": "json"},
                                               stream) == "json"
        observability.configure_logging({"CONSULTBOOK_LOG_FORMAT": "json"}, stream)
        assert len(root.handlers) == len(handlers) + 1  # configuring twice adds one
        # No statement echo (parameters hold customers' data) at the root's INFO.
        assert not logging.getLogger("sqlalchemy.engine").isEnabledFor(logging.INFO)
        logging.getLogger("consultbook.somewhere").info("mailed %s", "ann@example.com")
        [line] = stream.getvalue().splitlines()
        assert json.loads(line)["message"] == "mailed [email]"
        with pytest.raises(ConfigError, match="CONSULTBOOK_LOG_FORMAT"):
            observability.configure_logging({"CONSULTBOOK_LOG_FORMAT": "xml"})
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


# --------------------------------------------------------------------------- serve


@pytest.mark.slow
def test_serve_with_json_logs_writes_only_json_lines(tmp_path: Path,
                                                     sqlite_template: Path) -> None:
    from tests.tasks.helpers import stop_process
    from tests.test_metrics import start_serve, wait_up

    proc, port, log = start_serve(tmp_path, sqlite_template, CONSULTBOOK_LOG_FORMAT="json")
    try:
        wait_up(proc, port, log)
        sent = []
        for n in range(5):
            rid = f"serve-{n}-{uuid.uuid4().hex[:8]}"
            r = requests.get(f"http://127.0.0.1:{port}/healthz?who=ann@example.com",
                             headers={"X-Request-Id": rid}, timeout=5)
            assert r.headers["X-Request-Id"] == rid
            sent.append(rid)
        r = requests.get(f"http://127.0.0.1:{port}/nowhere", timeout=5)
        sent.append(r.headers["X-Request-Id"])
    finally:
        stop_process(proc)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    docs = [json.loads(line) for line in lines]  # every line is JSON, gunicorn's too
    access = [d for d in docs if d["logger"] == "consultbook.access"]
    assert [d["request_id"] for d in access if d["route"] != "/healthz" or
            d["request_id"].startswith("serve-")] == sent
    assert "ann@example.com" not in log.read_text()
