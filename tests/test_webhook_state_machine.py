"""Webhook convergence as a state machine: deliveries of orders/create, orders/paid and
orders/cancelled arrive in any order, twice, late (after the hold expired, maybe after
someone else took the time); the clock moves. After every step the stored state equals
the state one in-order delivery of the same distinct deliveries would have left:

* the first create/paid delivery of an order that was not cancelled decides its line
  item once: booked if the hold is live or its time is still free, else refunded;
* a cancel that arrives before any booking leaves no booking and no refund;
* a booked line is cancelled by a cancel, confirmed by any paid delivery (a paid
  create counts), else pending;

and always: no two live claims overlap, at most one refund per line item.

The machine runs on SQLite and on PostgreSQL (``db_url`` parametrization, so the
PostgreSQL run is marked and skipped exactly like the rest of the suite's). Each example
gets an empty database: a copy of the migrated SQLite template, or the session's
PostgreSQL test database emptied. The example counts keep both runs together well under
a minute on a CI machine; ``CONSULTBOOK_STATE_MACHINE_EXAMPLES`` raises them for a
longer hunt.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import falcon.testing
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from engine.bootstrap import bootstrap
from engine.clock import FixedClock
from engine.services.shops import install_shop
from engine.shopify import webhook_hmac
from engine.store.models import LIVE_STATUSES, Claim, Refund
from tests.conftest import (
    API_SECRET,
    NOW,
    Admin,
    Storefront,
    _truncate,
    make_catalog,
    make_config,
)
from web.app import create_app

ORDERS = 3
STARTS = ["2026-12-01T08:00:00Z", "2026-12-01T08:30:00Z", "2026-12-01T09:00:00Z"]
TOPICS = ["orders/create", "orders/paid", "orders/cancelled"]

# (max_examples, stateful_step_count) per database. PostgreSQL round trips cost more per
# step, so it runs fewer, shorter examples; together both take about half a minute.
_SCALE = float(os.environ.get("CONSULTBOOK_STATE_MACHINE_EXAMPLES", "1"))
BUDGET = {"sqlite": (int(40 * _SCALE), 25), "postgres": (int(20 * _SCALE), 20)}


@dataclass
class OrderModel:
    order_id: int
    hold: str
    start: str
    create_paid: bool
    hold_expires: Any
    delivered: set[str] = field(default_factory=set)
    decided: str | None = None  # booked | refunded | cancelled_first
    squat_expires: Any = None  # someone else held this order's time until then


class WebhookMachine(RuleBasedStateMachine):
    # Set by the test before hypothesis runs the machine: returns the URL of an empty,
    # migrated database and a callable that cleans up after the example.
    fresh_database: Callable[[], tuple[str, Callable[[], None]]]

    def __init__(self) -> None:
        super().__init__()
        url, self._cleanup = type(self).fresh_database()
        self.clock = FixedClock(NOW)
        self.ctx = bootstrap(make_config(url), clock=self.clock)
        self.client = falcon.testing.TestClient(create_app(self.ctx))
        install_shop(self.ctx.db, self.clock, self.ctx.keyring, "alpha.myshopify.com",
                     "Europe/Berlin")
        self.admin = Admin(self.client, self.ctx, "alpha.myshopify.com")
        self.store = Storefront(self.client, self.ctx, "alpha.myshopify.com")
        self.sent: list[tuple[str, str, bytes]] = []  # (webhook id, topic, body)
        self.orders: list[OrderModel] = []

    def teardown(self) -> None:
        self.ctx.db.dispose()
        self._cleanup()

    @initialize(create_paid=st.lists(st.booleans(), min_size=ORDERS, max_size=ORDERS))
    def setup(self, create_paid: list[bool]) -> None:
        self.cat = make_catalog(self.admin)
        for n, start in enumerate(STARTS):
            r = self.store.hold(self.cat["service"], self.cat["expert"], start, customer=str(n))
            assert r.status_code == 201, r.text
            self.orders.append(OrderModel(1000 + n, r.json["hold"], start, create_paid[n],
                                          self.clock.now() + timedelta(seconds=600)))

    # ----------------------------------------------------------------------- actions

    def _payload(self, o: OrderModel, topic: str) -> dict[str, Any]:
        paid = topic == "orders/paid" or (topic == "orders/create" and o.create_paid)
        return {"id": o.order_id, "email": "c@example.com", "currency": "EUR",
                "financial_status": "paid" if paid else "pending",
                "cancelled_at": "2026-11-30T12:00:00Z" if topic == "orders/cancelled" else None,
                "customer": {"id": o.order_id, "first_name": "C", "last_name": str(o.order_id)},
                "line_items": [{"id": o.order_id * 10, "price": "30.00", "quantity": 1,
                                "variant_id": 4242,
                                "properties": [{"name": "_hold", "value": o.hold}]}]}

    def _post(self, webhook_id: str, topic: str, body: bytes) -> None:
        r = self.client.simulate_post("/webhooks", body=body, headers={
            "X-Shopify-Topic": topic, "X-Shopify-Shop-Domain": "alpha.myshopify.com",
            "X-Shopify-Hmac-Sha256": webhook_hmac(body, API_SECRET),
            "X-Shopify-Webhook-Id": webhook_id})
        assert r.status_code == 200, r.text

    def _squatter_live(self, o: OrderModel) -> bool:
        return o.squat_expires is not None and self.clock.now() < o.squat_expires

    def _order_live(self, o: OrderModel) -> bool:
        if o.decided is None:
            return self.clock.now() < o.hold_expires
        return o.decided == "booked" and "orders/cancelled" not in o.delivered

    def _slot_free_for(self, o: OrderModel) -> bool:
        return self.clock.now() < o.hold_expires or not self._squatter_live(o)

    @rule(n=st.integers(0, ORDERS - 1), topic=st.sampled_from(TOPICS))
    def deliver(self, n: int, topic: str) -> None:
        o = self.orders[n]
        body = json.dumps(self._payload(o, topic)).encode()
        wid = str(uuid.uuid4())
        self.sent.append((wid, topic, body))
        # the model: one in-order delivery of what has arrived so far
        if o.decided is None:
            if topic == "orders/cancelled":
                o.decided = "cancelled_first"
            else:
                o.decided = "booked" if self._slot_free_for(o) else "refunded"
        o.delivered.add(topic)
        self._post(wid, topic, body)

    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data())
    def redeliver(self, data: st.DataObject) -> None:
        wid, topic, body = data.draw(st.sampled_from(self.sent))
        self._post(wid, topic, body)

    @rule(n=st.integers(0, ORDERS - 1), topic=st.sampled_from(TOPICS))
    def same_event_new_webhook_id(self, n: int, topic: str) -> None:
        o = self.orders[n]
        if topic not in o.delivered:
            return
        self._post(str(uuid.uuid4()), topic, json.dumps(self._payload(o, topic)).encode())

    @rule(seconds=st.integers(30, 900))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule(n=st.integers(0, ORDERS - 1))
    def squat(self, n: int) -> None:
        """Another customer tries to hold this order's time."""
        o = self.orders[n]
        r = self.store.hold(self.cat["service"], self.cat["expert"], o.start,
                            customer=f"squatter-{uuid.uuid4().hex}")
        expected_free = not self._order_live(o) and not self._squatter_live(o)
        assert r.status_code == (201 if expected_free else 409), (r.status_code, o)
        if r.status_code == 201:
            o.squat_expires = self.clock.now() + timedelta(seconds=600)

    # ----------------------------------------------------------------------- invariants

    @invariant()
    def matches_in_order_delivery(self) -> None:
        if not self.orders:
            return
        with self.ctx.db.read() as s:
            for o in self.orders:
                claims = s.scalars(select(Claim).where(Claim.order_id == str(o.order_id))).all()
                refunds = s.scalars(select(Refund).where(
                    Refund.order_id == str(o.order_id))).all()
                assert len(claims) <= 1 and len(refunds) <= 1
                if o.decided in (None, "cancelled_first"):
                    assert claims == [] and refunds == [], o
                elif o.decided == "refunded":
                    assert claims == [] and [r.reason for r in refunds] == ["slot_unavailable"], o
                else:
                    assert refunds == [], o
                    [c] = claims
                    if "orders/cancelled" in o.delivered:
                        want = "cancelled"
                    elif "orders/paid" in o.delivered or (
                            "orders/create" in o.delivered and o.create_paid):
                        want = "confirmed"
                    else:
                        want = "pending"
                    assert c.status == want, (c.status, want, o)

    @invariant()
    def no_two_live_claims_overlap(self) -> None:
        now = self.clock.now()
        with self.ctx.db.read() as s:
            live = sorted((c.claim_start, c.claim_end) for c in s.scalars(select(Claim)).all()
                          if c.status in LIVE_STATUSES and not (
                              c.status == "held" and c.expires_at <= now))
        for a, b in itertools.pairwise(live):
            assert b[0] >= a[1], (a, b)


def _sqlite_factory(template: Path) -> Callable[[], tuple[str, Callable[[], None]]]:
    def fresh() -> tuple[str, Callable[[], None]]:
        directory = Path(tempfile.mkdtemp(prefix="cb-sm-run-"))
        shutil.copy(template, directory / "db.sqlite")
        return (f"sqlite:///{directory / 'db.sqlite'}",
                lambda: shutil.rmtree(directory, ignore_errors=True))
    return fresh


def _postgres_factory(url: str) -> Callable[[], tuple[str, Callable[[], None]]]:
    def fresh() -> tuple[str, Callable[[], None]]:
        _truncate(url)  # every table emptied: the example starts from nothing
        return url, lambda: None
    return fresh


def test_webhook_deliveries_converge(db_url: str, sqlite_template: Path) -> None:
    """The state machine on this database (``db_url`` only picks the engine; every
    example gets its own empty database)."""
    kind = "sqlite" if db_url.startswith("sqlite") else "postgres"
    factory = (_sqlite_factory(sqlite_template) if kind == "sqlite"
               else _postgres_factory(db_url))
    machine = type(f"WebhookMachine_{kind}", (WebhookMachine,),
                   {"fresh_database": staticmethod(factory)})
    examples, steps = BUDGET[kind]
    run_state_machine_as_test(machine, settings=settings(
        max_examples=examples, stateful_step_count=steps, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
