"""A one-expert hold on PostgreSQL is one statement outside the ORM (engine.services.holds
_write_one_pg: INSERT .. SELECT under consultbook_hold_begin's count, in autocommit);
``expert: "any"`` and SQLite keep the ORM path. Both must leave the same claim.

* A hold won by the one-statement path stores every column as the ORM path does (the
  answers as JSON, the defaults, the session key, seats), compared with an ``any`` hold
  of the same request shape; on SQLite both are the ORM's (the comparison still holds).
* The visitor's limit is the statement's condition: at the limit, 429 and nothing
  written; a refused hold (409) writes nothing either, and the stale hold it would
  have expired stays as it was (the statement's transaction rolled back).
* A deadlock (40P01) runs the write again, up to holds.DEADLOCK_ATTEMPTS runs; only
  then 503.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from engine.bootstrap import Context
from engine.clock import FixedClock
from engine.services import holds
from tests.conftest import Admin, Storefront, make_catalog

TUE_9 = "2026-12-01T08:00:00Z"  # Tuesday 09:00 Berlin
TUE_10 = "2026-12-01T09:00:00Z"
TUE_11 = "2026-12-01T10:00:00Z"

COLUMNS = ("shop_id", "service_id", "status", "visitor", "customer_tz", "order_id",
           "line_item_id", "customer_id", "customer_name", "customer_email", "redacted_at",
           "meeting_url", "external", "sequence", "confirmed_at", "cancelled_at",
           "line_price", "line_quantity", "currency", "cancelled_by", "seats", "answers",
           "manage_token_hash", "reschedules", "no_show_at")


@pytest.fixture
def cat(admin: Admin) -> dict[str, Any]:
    cat = make_catalog(admin, experts=1)
    assert admin("PATCH", f"/services/{cat['service']}", {"seats": 4, "questions": [
        {"id": "topic", "label": "Topic", "type": "text"}]}).status_code == 200
    return cat


def _claim(ctx: Context, hold_id: str) -> dict[str, Any]:
    with ctx.db.read() as session:
        row = session.execute(text("SELECT * FROM claims WHERE id = :id"),
                              {"id": hold_id}).mappings().one()
    return dict(row)


def _count(ctx: Context, sql: str) -> int:
    with ctx.db.read() as session:
        return int(session.execute(text(sql)).scalar_one())


def test_the_one_statement_hold_stores_what_the_orm_path_stores(
        ctx: Context, store: Storefront, cat: dict[str, Any]) -> None:
    one = store.hold(cat["service"], cat["expert"], TUE_9, customer="1", seats=2,
                     tz="America/New_York", answers={"topic": "Taxes «2026»"})
    anyone = store.hold(cat["service"], "any", TUE_10, customer="1", seats=2,
                        tz="America/New_York", answers={"topic": "Taxes «2026»"})
    assert one.status_code == 201 and anyone.status_code == 201, (one.text, anyone.text)
    a, b = _claim(ctx, one.json["hold"]), _claim(ctx, anyone.json["hold"])
    assert {c: a[c] for c in COLUMNS} == {c: b[c] for c in COLUMNS}
    assert a["answers"] in ({"topic": "Taxes «2026»"}, '{"topic": "Taxes \\u00ab2026\\u00bb"}')
    assert a["session_key"].startswith(f"{cat['expert']}|{cat['service']}|")
    assert b["session_key"].startswith(f"{cat['expert']}|{cat['service']}|")
    for row in (a, b):
        assert row["created_at"] == row["updated_at"]
        assert row["claim_start"] == row["start_at"]
        assert row["end_at"] != row["start_at"] and row["expires_at"] is not None
    # What the answer says of the hold, either way.
    for r in (one, anyone):
        assert r.json["seats"] == 2 and r.json["expert"] == cat["expert"]
        assert r.json["line_item_properties"]["_hold"] == r.json["hold"]
        assert r.json["line_item_properties"]["Topic"] == "Taxes «2026»"
    with ctx.db.read() as session:
        used = sorted(tuple(r) for r in session.execute(text(
            "SELECT seats_used, seats_max FROM claim_sessions")))
    assert used == [(2, 4), (2, 4)]


def test_at_the_visitors_limit_nothing_is_written(ctx: Context, store: Storefront,
                                                 cat: dict[str, Any]) -> None:
    limit = ctx.config.max_holds_per_visitor
    starts = [f"2026-12-01T{8 + n // 2:02d}:{30 * (n % 2):02d}:00Z" for n in range(limit + 1)]
    for start in starts[:limit]:
        assert store.hold(cat["service"], cat["expert"], start, customer="7").status_code == 201
    r = store.hold(cat["service"], cat["expert"], starts[limit], customer="7")
    assert r.status_code == 429 and r.json["error"]["code"] == "too_many_holds"
    assert _count(ctx, "SELECT count(*) FROM claims") == limit
    # Another visitor takes that start at once: the refused request left nothing behind.
    assert store.hold(cat["service"], cat["expert"], starts[limit],
                      customer="8").status_code == 201


def test_a_refused_hold_writes_nothing(ctx: Context, store: Storefront, admin: Admin,
                                       clock: FixedClock, cat: dict[str, Any]) -> None:
    # A day limit: a hold's expiry covers the whole month, so the refused hold below
    # expires the stale one at TUE_10 before its insert fails -- and must take that
    # back with the rest.
    assert admin("PATCH", f"/services/{cat['service']}",
                 {"seats": 1, "limits": {"day": 5}}).status_code == 200
    stale = store.hold(cat["service"], cat["expert"], TUE_10, customer="1").json["hold"]
    assert store.hold(cat["service"], cat["expert"], TUE_9, customer="2").status_code == 201
    with ctx.db.write() as session:  # lapsed a second ago (the other hold did not)
        session.execute(text("UPDATE claims SET expires_at = :at WHERE id = :id"),
                        {"at": clock.now() - timedelta(seconds=1), "id": stale})
    r = store.hold(cat["service"], cat["expert"], TUE_9, customer="3")
    assert r.status_code == 409 and r.json["error"]["code"] == "slot_unavailable"
    assert _count(ctx, "SELECT count(*) FROM claims") == 2
    assert _claim(ctx, stale)["status"] == "held"  # the refusal's expiry rolled back
    assert store.hold(cat["service"], cat["expert"], TUE_11, customer="4").status_code == 201
    assert _claim(ctx, stale)["status"] == "expired"


class _Deadlock(Exception):
    sqlstate = "40P01"


@pytest.mark.parametrize("failures", [1, holds.DEADLOCK_ATTEMPTS - 1,
                                      holds.DEADLOCK_ATTEMPTS])
def test_a_deadlocked_hold_runs_again(monkeypatch: pytest.MonkeyPatch, ctx: Context,
                                      store: Storefront, cat: dict[str, Any],
                                      failures: int) -> None:
    real = holds._write_hold
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise OperationalError("INSERT INTO claims ...", {}, _Deadlock("deadlock"))
        return real(*args, **kwargs)

    monkeypatch.setattr(holds, "_write_hold", flaky)
    r = store.hold(cat["service"], cat["expert"], TUE_11, customer="1")
    if failures < holds.DEADLOCK_ATTEMPTS:
        assert r.status_code == 201, r.text
        assert calls["n"] == failures + 1
    else:
        assert r.status_code == 503, r.text
        assert calls["n"] == holds.DEADLOCK_ATTEMPTS
        assert _count(ctx, "SELECT count(*) FROM claims") == 0
