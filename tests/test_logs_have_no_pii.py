"""No customer name, email, answer or token ever appears in a log (the contract).

One whole booking runs through the app with observability installed and the embedded
worker relaying: availability and a hold with the customer's timezone and answers, a
signed ``orders/paid`` with known names and email, the confirmation sent by the
worker's relay -- after a first attempt that the mail provider refuses with an SMTP
550 quoting the address (the error path), while the Shopify Admin API (order tagging)
is a closed port and keeps failing -- the customer's manage page with their token, the
merchant's admin API with a session token, a metrics scrape, then ``customers/redact``.

Every record of every logger is captured at DEBUG (the root logger, so the access
logger ``consultbook.access`` too) and rendered with its arguments and traceback; none
may contain any of those values. Not the safety net's work: the records are checked as
written, before :class:`web.observability.RedactFilter` would mask them.

SQLAlchemy's own loggers are held at WARNING, as ``consultbook serve`` holds them:
at INFO and below they echo every statement with its parameters, an opt-in debugging
aid that no log an operator keeps should have.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import falcon.testing
import pytest

from engine.bootstrap import Context, bootstrap
from engine.clock import FixedClock
from engine.embedded import EmbeddedWorker
from engine.providers.errors import ProviderUnavailable
from engine.services.providers import Plugins
from engine.services.shops import ShopRef, install_shop
from tests.conftest import (
    API_SECRET,
    WEEKDAYS_9_17,
    Admin,
    Storefront,
    make_config,
    order_payload,
)
from tests.tasks.helpers import EXTRA, FAST, MAIL, free_port, set_providers, wait_for
from web import observability
from web.app import create_app

FIRST, LAST = "Arabella", "Quillfeather"
EMAIL = "arabella.quillfeather@example.org"
ANSWER = "Zebracorn migration plans for Thistlewood"
PHONE = "+49 170 5550199"
ACCESS_TOKEN = "shpat_" + "9f3c" * 8
METRICS_TOKEN = "metrics-7d41c0ffee"
CUSTOMER_ID = 880011
SLOT = "2026-12-01T09:00:00Z"  # Tuesday 10:00 Berlin, the day after NOW


@pytest.fixture(autouse=True)
def _reset_mail() -> Iterator[None]:
    MAIL.sent.clear()
    MAIL.failures.clear()
    MAIL.calls = 0
    yield
    MAIL.failures.clear()


@pytest.fixture
def ctx(db_url: str, clock: FixedClock, tmp_path: Path) -> Iterator[Context]:
    closed = f"http://127.0.0.1:{free_port()}"  # the Admin API: nobody listens there
    config = make_config(db_url, outbox_dir=str(tmp_path / "outbox"),
                         metrics_token=METRICS_TOKEN, origins={"shopify_admin": closed},
                         **FAST)
    context = bootstrap(config, clock=clock)
    context.plugins = Plugins.load(config, context.db, context.keyring, clock, extra=EXTRA)
    yield context
    context.db.dispose()


@dataclass
class Sent:
    """Every credential the test's requests carried."""

    secrets: set[str] = field(default_factory=set)

    def note(self, kwargs: dict[str, Any]) -> None:
        for key, value in parse_qsl(str(kwargs.get("query_string") or "")):
            if key in ("signature", "token"):
                self.secrets.add(value)
        for name, value in (kwargs.get("headers") or {}).items():
            if name.lower() == "authorization":
                self.secrets.add(value.split(" ", 1)[-1])
            if name.lower() == "x-shopify-hmac-sha256":
                self.secrets.add(value)


@pytest.fixture
def sent() -> Sent:
    return Sent()


@pytest.fixture
def client(ctx: Context, sent: Sent) -> falcon.testing.TestClient:
    app = create_app(ctx)
    observability.install(app, ctx)
    c = falcon.testing.TestClient(app)
    real = c.simulate_request

    def recording(method: str = "GET", path: str = "/", **kwargs: Any) -> Any:
        sent.note(kwargs)
        return real(method, path, **kwargs)

    c.simulate_request = recording  # type: ignore[method-assign]
    return c


@pytest.fixture
def shop(ctx: Context) -> ShopRef:
    return install_shop(ctx.db, ctx.clock, ctx.keyring, "alpha.myshopify.com",
                        "Europe/Berlin", access_token=ACCESS_TOKEN)


@dataclass
class Run:
    records: list[logging.LogRecord]
    secrets: dict[str, set[str]]


def rendered(record: logging.LogRecord) -> str:
    """The record as any handler would write it: message with arguments, traceback,
    and the structured fields of an access line."""
    text = logging.Formatter("%(name)s %(message)s").format(record)
    access = getattr(record, "access", None)
    return f"{text} {access}" if access else text


@pytest.fixture
def booking(ctx: Context, client: falcon.testing.TestClient, shop: ShopRef, sent: Sent,
            clock: FixedClock, caplog: pytest.LogCaptureFixture) -> Iterator[Run]:
    caplog.set_level(logging.DEBUG)
    sqlalchemy_level = logging.getLogger("sqlalchemy").level
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    admin, store = Admin(client, ctx, shop.domain), Storefront(client, ctx, shop.domain)
    set_providers(ctx, shop, mail="recording")
    # Intake questions, where this release has them; the answers travel in the order
    # too (a note and a line-item property the customer typed), which every release has.
    service_doc: dict[str, Any] = {"title": "Consultation", "duration_minutes": 30,
                                   "variant_id": 4242}
    r = admin("POST", "/services", {**service_doc, "questions": [
        {"id": "topic", "label": "What should we talk about?", "type": "textarea",
         "required": True},
        {"id": "phone", "label": "Phone", "type": "phone", "required": False}]})
    answers: dict[str, str] = {"topic": ANSWER, "phone": PHONE}
    if r.status_code == 400 and "questions" in r.text:
        r = admin("POST", "/services", service_doc)
        answers = {}
    assert r.status_code == 201, r.text
    service = r.json
    expert = admin("POST", "/experts", {"name": "Expert Zero", "email": "e0@example.com",
                                        "services": [service["id"]]}).json
    admin("PUT", f"/experts/{expert['id']}/schedule", {"weekly": WEEKDAYS_9_17,
                                                       "overrides": []})
    # The mail provider refuses the first attempt the way an SMTP server does.
    MAIL.failures.append(ProviderUnavailable(
        f"550 5.1.1 <{EMAIL}>: Recipient address rejected",
        provider="recording"))
    worker = EmbeddedWorker(ctx.config, clock=clock, extra_plugins=EXTRA).start()
    ctx.after_commit = worker.wake
    try:
        r = store.get("/availability", {"service": service["id"], "start": "2026-12-01",
                                        "days": "2", "tz": "America/Los_Angeles"})
        assert r.status_code == 200, r.text
        # Answers that do not fit are refused (422): the refusal must not log them either.
        r = store.hold(service["id"], expert["id"], SLOT, customer=str(CUSTOMER_ID),
                       tz="America/Los_Angeles", answers={"nope": ANSWER, "topic": PHONE})
        assert r.status_code == 422, r.text
        r = store.hold(service["id"], expert["id"], SLOT, customer=str(CUSTOMER_ID),
                       tz="America/Los_Angeles", answers=answers)
        assert r.status_code == 201, r.text
        hold = r.json["hold"]
        payload = order_payload(4401, [hold], email=EMAIL, first_name=FIRST, last_name=LAST,
                                customer_id=CUSTOMER_ID)
        payload["phone"] = PHONE
        payload["note"] = ANSWER
        payload["line_items"][0]["properties"].append({"name": "Topic", "value": ANSWER})
        r = store.webhook("orders/paid", payload)
        assert r.status_code == 200 and r.json["status"] == "processed", r.text
        wait_for(lambda: MAIL.calls >= 1, timeout=20, message="the first, refused, attempt")
        # The refused attempt is retried after its backoff: the clock moves on by at most
        # 40 minutes, and the worker gets up to 30 s of wall time (a loaded machine).
        for i in range(300):
            if MAIL.to(EMAIL):
                break
            if i < 40:
                clock.advance(60)
            worker.wake()
            time.sleep(0.1)
        [confirmation] = MAIL.to(EMAIL)
        body = f"{confirmation.text}\n{confirmation.html}"
        manage = re.search(r"manage\?booking=([A-Za-z0-9_-]+)&(?:amp;)?token=([A-Za-z0-9_-]+)",
                           body)
        tokens: set[str] = set()
        if manage is not None:  # the customer's manage link, where this release has it
            booking_id, token = manage.groups()
            tokens.add(token)
            r = store.get(f"/bookings/{booking_id}", {"token": token})
            assert r.status_code == 200, r.text
            assert store.get(f"/bookings/{booking_id}", {"token": token[:-2] + "xx"}
                             ).status_code == 404
        r = admin("GET", "/bookings?from=2026-12-01T00:00:00Z&to=2026-12-02T00:00:00Z")
        assert r.status_code == 200 and r.json["bookings"][0]["customer"]["email"] == EMAIL
        r = client.simulate_get("/metrics",
                                headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert r.status_code == 200
        r = store.webhook("customers/redact", {
            "shop_domain": shop.domain, "customer": {"id": CUSTOMER_ID, "email": EMAIL,
                                                     "phone": PHONE},
            "orders_to_redact": [4401]})
        assert r.status_code == 200, r.text
        time.sleep(0.5)  # the Shopify lane's attempts at the (closed) Admin API
    finally:
        worker.stop()
        ctx.after_commit = None
        logging.getLogger("sqlalchemy").setLevel(sqlalchemy_level)
    yield Run(records=list(caplog.records), secrets={
        "customer name": {FIRST, LAST, f"{FIRST} {LAST}"},
        "customer email": {EMAIL, EMAIL.split("@")[0]},
        "answer": {ANSWER, PHONE, PHONE.replace(" ", "")},
        "manage token": tokens,
        "request credential (proxy signature, session token, webhook HMAC, metrics token)":
            {s for s in sent.secrets if len(s) >= 8},
        "shop secret (Admin API access token, API secret)": {ACCESS_TOKEN, API_SECRET},
    })


def leaks(run: Run, kind: str) -> list[str]:
    found = []
    for record in run.records:
        text = rendered(record)
        for secret in run.secrets[kind]:
            if secret and secret.lower() in text.lower():
                found.append(f"{record.pathname}:{record.lineno} [{record.name}] "
                             f"{text[:300]!r}")
    return found


def test_the_booking_ran_its_error_paths_and_was_logged(booking: Run) -> None:
    access = [r for r in booking.records if r.name == "consultbook.access"]
    assert len(access) >= 10
    # The refused mail and the failing Admin API were retried, and said so in the log.
    failures = [rendered(r) for r in booking.records
                if r.name.startswith("consultbook.") and r.name != "consultbook.access"
                and "failed" in rendered(r)]
    assert any("Recipient address rejected" in f for f in failures), failures
    assert any("Admin API" in f for f in failures), failures
    assert MAIL.calls >= 2 and MAIL.to(EMAIL)


def test_the_check_finds_what_it_looks_for(booking: Run) -> None:
    planted = logging.LogRecord("consultbook.test", logging.INFO, __file__, 1,
                                "mailed %s", (EMAIL.upper(),), None)
    run = Run(records=[*booking.records, planted], secrets=booking.secrets)
    found = leaks(run, "customer email")
    assert found and all(f.startswith(f"{__file__}:1 [consultbook.test]") for f in found)


@pytest.mark.parametrize("kind", [
    "customer name", "customer email", "answer", "manage token",
    "request credential (proxy signature, session token, webhook HMAC, metrics token)",
    "shop secret (Admin API access token, API secret)"])
def test_no_log_line_holds_it(booking: Run, kind: str) -> None:
    if kind == "manage token" and not booking.secrets[kind]:
        pytest.skip("this release's confirmation carries no manage link")
    assert booking.secrets[kind], kind
    assert leaks(booking, kind) == []

