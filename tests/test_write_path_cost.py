"""The cost of the write paths, pinned: SQL statements per hold and per webhook delivery
(issue 14). Counts are deterministic, so a change that adds a round trip to a hold or a
delivery fails here and has to change the pinned number on purpose. Time is not
asserted (the machine is shared).

A hold is counted inside its write transaction (what serializes holds: SQLite's
``BEGIN IMMEDIATE`` is one statement; on PostgreSQL a one-expert hold is one statement
run in autocommit, a transaction by itself); what it reads before (the catalog from the
read cache, the calendar provider's busy time) depends on caches with a time-to-live and
is not pinned. A webhook delivery is counted whole: nothing on its path is cached.

PostgreSQL, one hold: one INSERT .. SELECT whose condition calls consultbook_hold_begin
(the visitor's advisory lock, the expiry of stale claims over the range and the limit
periods, the visitor's live holds: inserted only under the limit), the claim's triggers
making its session and counters from the catalog rows (both migration 0017). SQLite has
no advisory lock and no time zones in SQL: the visitor's live holds, the capacity facts
(one SELECT), the expiry, the session, the counters
(only for a new session), the claim.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, text

from engine.bootstrap import Context
from tests.conftest import Admin, Storefront, make_catalog, order_payload

TUE_9 = "2026-12-01T08:00:00Z"  # Tuesday 09:00 Berlin
TUE_930 = "2026-12-01T08:30:00Z"
TUE_10 = "2026-12-01T09:00:00Z"

# (sqlite, postgres)
# PostgreSQL: the claim inserted under the condition of the visitor's lock, the expiry
# and the count (one statement; its triggers make the session and counters: 0017).
HOLD_DISTINCT = {"sqlite": 7, "postgres": 1}  # a new session: its counters are written
HOLD_JOIN = {"sqlite": 6, "postgres": 1}  # a session with live seats: no counter written
HOLD_LIMITED = {"sqlite": 7, "postgres": 1}  # limits: the same, one expiry UPDATE
# orders/paid, a new order, its live hold booked: the duplicate check, the webhook id,
# the shop, the order, the hold, then the booking with its outbox rows and reminders (one
# statement on PostgreSQL: data-modifying CTEs; three on SQLite, which also has BEGIN).
WEBHOOK_FIRST = {"sqlite": 9, "postgres": 6}
WEBHOOK_DUPLICATE = {"sqlite": 1, "postgres": 1}  # one indexed lookup, no transaction


class Statements:
    """The statements this thread sends to the database while counting."""

    def __init__(self) -> None:
        self.all: list[str] = []
        self.write: list[str] = []


@contextmanager
def counting(ctx: Context) -> Iterator[Statements]:
    seen = Statements()
    me = threading.get_ident()

    def listener(conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any,
                 _many: bool) -> None:
        if threading.get_ident() != me:
            return
        seen.all.append(statement)
        # Write transactions run on the engine with sqlite_begin=IMMEDIATE (both
        # dialects: engine.store.db.Database.write), or without a Connection but with
        # their cursor (Database.transaction: a hold on PostgreSQL); Database.rows (a
        # lookup, autocommit) has neither.
        if conn is None:
            if _cursor is not None:
                seen.write.append(statement)
        elif conn.get_execution_options().get("sqlite_begin") == "IMMEDIATE":
            seen.write.append(statement)

    event.listen(ctx.db.engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        event.remove(ctx.db.engine, "before_cursor_execute", listener)


def _dialect(ctx: Context) -> str:
    return "postgres" if ctx.db.dialect == "postgresql" else "sqlite"


def _explain(seen: Statements) -> str:
    return "\n".join(" ".join(s.split())[:100] for s in seen.write or seen.all)


@pytest.fixture
def cat(admin: Admin) -> dict[str, Any]:
    return make_catalog(admin)


def test_hold_on_a_distinct_slot(ctx: Context, store: Storefront, cat: dict[str, Any]
                                 ) -> None:
    assert store.hold(cat["service"], cat["expert"], TUE_930, customer="1").status_code == 201
    with counting(ctx) as seen:
        r = store.hold(cat["service"], cat["expert"], TUE_9, customer="2")
    assert r.status_code == 201, r.text
    assert len(seen.write) == HOLD_DISTINCT[_dialect(ctx)], _explain(seen)


def test_hold_joining_a_session(ctx: Context, store: Storefront, admin: Admin,
                                cat: dict[str, Any]) -> None:
    assert admin("PATCH", f"/services/{cat['service']}", {"seats": 3}).status_code == 200
    assert store.hold(cat["service"], cat["expert"], TUE_9, customer="1").status_code == 201
    with counting(ctx) as seen:
        r = store.hold(cat["service"], cat["expert"], TUE_9, customer="2")
    assert r.status_code == 201, r.text
    assert len(seen.write) == HOLD_JOIN[_dialect(ctx)], _explain(seen)
    with ctx.db.read() as session:
        used = session.execute(text("SELECT seats_used, seats_max FROM claim_sessions")).all()
        counters = session.execute(text("SELECT scope, used FROM capacity_counters")).all()
    assert [tuple(r) for r in used] == [(2, 3)]
    assert len(counters) == 6 and {r.used for r in counters} == {1}  # one session


def test_hold_with_limits(ctx: Context, store: Storefront, admin: Admin,
                          cat: dict[str, Any]) -> None:
    assert admin("PATCH", f"/services/{cat['service']}",
                 {"limits": {"day": 2}}).status_code == 200
    assert admin("PATCH", f"/experts/{cat['expert']}",
                 {"limits": {"week": 10}}).status_code == 200
    assert store.hold(cat["service"], cat["expert"], TUE_930, customer="1").status_code == 201
    with counting(ctx) as seen:
        r = store.hold(cat["service"], cat["expert"], TUE_9, customer="2")
    assert r.status_code == 201, r.text
    assert len(seen.write) == HOLD_LIMITED[_dialect(ctx)], _explain(seen)
    # The caps were written where the database enforces them: a third session that day
    # is refused.
    third = store.hold(cat["service"], cat["expert"], TUE_10, customer="3")
    assert third.status_code == 409 and third.json["error"]["code"] == "limit_reached"


def test_webhook_first_delivery_and_duplicate(ctx: Context, store: Storefront,
                                              cat: dict[str, Any]) -> None:
    hold = store.hold(cat["service"], cat["expert"], TUE_9, customer="1").json["hold"]
    payload = order_payload(1001, [hold])
    with counting(ctx) as first:
        r = store.webhook("orders/paid", payload, webhook_id="wh-cost-1")
    assert r.status_code == 200 and r.json == {"status": "processed"}, r.text
    assert len(first.all) == WEBHOOK_FIRST[_dialect(ctx)], _explain(first)
    with counting(ctx) as again:
        r = store.webhook("orders/paid", payload, webhook_id="wh-cost-1")
    assert r.status_code == 200 and r.json == {"status": "duplicate"}, r.text
    assert len(again.all) == WEBHOOK_DUPLICATE[_dialect(ctx)], _explain(again)
    assert not again.write  # no write transaction for a duplicate
    with ctx.db.read() as session:
        rows = session.execute(text("SELECT status FROM claims WHERE order_id = '1001'")).all()
    assert [r.status for r in rows] == ["confirmed"]
