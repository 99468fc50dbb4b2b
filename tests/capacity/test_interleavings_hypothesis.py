"""Random interleavings of hold, book (Shopify's webhook, paid or not, any quantity),
cancel, release and expiry (the clock moves) on a seated, limited service: 2 seats per
session, at most 2 sessions a day, three starts on Tuesday and one on Wednesday.

Each hold's answer is predicted from the state before it, judged by time as availability
judges it (a hold or a pending booking is live until its ``expires_at``, whether or not
anything has marked it expired): ``201`` exactly when the session has the seats asked
for left and, if it has no seat taken yet, the day has fewer than 2 sessions; else
``409 slot_unavailable`` (not enough seats) or ``limit_reached``. So a freed seat -- a
release, an expiry, a cancel, a line that booked fewer units than it held -- is won by
the next hold that asks for it, and nothing is ever refused without cause; and
availability offers each start, with its ``seats_left``, exactly when a one-seat hold
would win it.

After every step: each session's ``seats_used`` is the sum of its live claims' seats,
each counter the number of sessions with a seat, none past its seats or cap
(tests/capacity/helpers.py). SQLite and PostgreSQL, each example on an empty database;
``CONSULTBOOK_STATE_MACHINE_EXAMPLES`` scales the example counts up for a longer hunt.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import falcon.testing
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from engine.bootstrap import bootstrap
from engine.clock import FixedClock
from engine.services.shops import install_shop
from engine.store.models import CONFIRMED, Claim
from tests.capacity.helpers import assert_counters_exact, set_service
from tests.conftest import NOW, Admin, Storefront, make_catalog, make_config, order_payload
from tests.test_webhook_state_machine import _postgres_factory, _sqlite_factory
from web.app import create_app

SEATS = 2
DAY_CAP = 2
STARTS = ["2026-12-01T08:00:00Z", "2026-12-01T08:30:00Z", "2026-12-01T09:00:00Z",
          "2026-12-02T08:00:00Z"]

_SCALE = float(os.environ.get("CONSULTBOOK_STATE_MACHINE_EXAMPLES", "1"))
BUDGET = {"sqlite": (int(25 * _SCALE), 25), "postgres": (int(12 * _SCALE), 20)}


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class CapacityMachine(RuleBasedStateMachine):
    fresh_database: Callable[[], tuple[str, Callable[[], None]]]

    holds = Bundle("holds")
    orders = Bundle("orders")

    def __init__(self) -> None:
        super().__init__()
        url, self._cleanup = type(self).fresh_database()
        self.clock = FixedClock(NOW)
        self.ctx = bootstrap(make_config(url), clock=self.clock)
        client = falcon.testing.TestClient(create_app(self.ctx))
        install_shop(self.ctx.db, self.clock, self.ctx.keyring, "alpha.myshopify.com",
                     "Europe/Berlin")
        self.admin = Admin(client, self.ctx, "alpha.myshopify.com")
        self.store = Storefront(client, self.ctx, "alpha.myshopify.com")
        self.visitors = 0
        self.next_order = 500

    def teardown(self) -> None:
        self.ctx.db.dispose()
        self._cleanup()

    @initialize()
    def catalog(self) -> None:
        self.cat = make_catalog(self.admin)
        set_service(self.ctx, self.cat["service"], seats=SEATS, limits={"day": DAY_CAP})

    # ------------------------------------------------------------------- the model

    def _live_seats(self) -> dict[str, int]:
        """Seats live *by time* per start (what the next hold must be judged by)."""
        now = self.clock.now()
        out = {s: 0 for s in STARTS}
        with self.ctx.db.read() as s:
            for c in s.scalars(select(Claim)):
                live = c.status == CONFIRMED or (
                    c.status in ("held", "pending") and c.expires_at is not None
                    and c.expires_at > now)
                if live:
                    out[c.start_at.strftime("%Y-%m-%dT%H:%M:%SZ")] += c.seats
        return out

    def _expected(self, start: str, seats: int) -> tuple[int, str | None]:
        used = self._live_seats()
        if used[start] + seats > SEATS:
            return 409, "slot_unavailable"
        day = start[:10]
        sessions = sum(1 for s, n in used.items() if s[:10] == day and n > 0)
        if used[start] == 0 and sessions >= DAY_CAP:
            return 409, "limit_reached"
        return 201, None

    # ------------------------------------------------------------------- actions

    @rule(target=holds, start=st.sampled_from(STARTS), seats=st.integers(1, SEATS + 1))
    def hold(self, start: str, seats: int) -> Any:
        want = self._expected(start, seats)
        self.visitors += 1
        r = self.store.hold(self.cat["service"], self.cat["expert"], start,
                            customer=f"v{self.visitors}", seats=seats)
        got = (r.status_code, r.json["error"]["code"] if r.status_code >= 400 else None)
        assert got == want, (start, seats, got, want, r.text)
        return r.json["hold"] if r.status_code == 201 else None

    @rule(target=orders, hold=holds, quantity=st.integers(1, SEATS + 1), paid=st.booleans())
    def book(self, hold: str | None, quantity: int, paid: bool) -> Any:
        if hold is None:
            return None
        self.next_order += 1
        r = self.store.webhook("orders/create", order_payload(
            self.next_order, [hold], quantity=quantity,
            financial_status="paid" if paid else "pending"))
        assert r.status_code == 200, r.text
        return (self.next_order, hold)

    @rule(order=consumes(orders))
    def cancel(self, order: tuple[int, str] | None) -> None:
        if order is None:
            return
        r = self.store.webhook("orders/cancelled", order_payload(order[0], [order[1]],
                                                                 cancelled=True))
        assert r.status_code == 200, r.text

    @rule(hold=holds)
    def release(self, hold: str | None) -> None:
        if hold is not None:
            assert self.store.release(hold).status_code in (204, 409)

    @rule(seconds=st.sampled_from([30, 300, 601]))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(seconds)

    # ------------------------------------------------------------------- invariants

    @invariant()
    def counters_exact(self) -> None:
        if hasattr(self, "cat"):
            assert_counters_exact(self.ctx)

    @invariant()
    def availability_offers_what_a_hold_would_win(self) -> None:
        """Each start is offered, with its seats left, exactly when a one-seat hold
        would win it: a freed seat or a freed day shows at once."""
        if not hasattr(self, "cat"):
            return
        r = self.store.get("/availability", {"service": self.cat["service"],
                                             "start": "2026-12-01", "days": "2"})
        assert r.status_code == 200, r.text
        shown = {x["start"]: x["seats_left"] for x in r.json["slots"] if x["start"] in STARTS}
        used = self._live_seats()
        want = {s: SEATS - used[s] for s in STARTS if self._expected(s, 1)[0] == 201}
        assert shown == want, (shown, want)


def test_capacity_interleavings(db_url: str, sqlite_template: Path) -> None:
    kind = "sqlite" if db_url.startswith("sqlite") else "postgres"
    factory = (_sqlite_factory(sqlite_template) if kind == "sqlite"
               else _postgres_factory(db_url))
    machine = type(f"CapacityMachine_{kind}", (CapacityMachine,),
                   {"fresh_database": staticmethod(factory)})
    examples, steps = BUDGET[kind]
    run_state_machine_as_test(machine, settings=settings(
        max_examples=examples, stateful_step_count=steps, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
