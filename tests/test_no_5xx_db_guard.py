"""The database layer's safety net (engine.store.db.guard_parameters): a text that
slipped past the request boundary -- from any caller -- is a ValidationError (400), not
a psycopg DataError or a sqlite3 UnicodeEncodeError (500), on both databases; and it
costs little on the storefront's hot path."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, select, text

from engine.bootstrap import Context
from engine.errors import ValidationError
from engine.store import new_id
from engine.store.db import _before_cursor_execute
from engine.store.models import PrivacyRequest, Service, Shop
from tests.conftest import Storefront, make_catalog


@pytest.mark.parametrize("bad", ["a\x00b", "\ud800", "x\udfff", "\x00"])
def test_unstorable_text_is_a_validation_error(ctx: Context, shop: Any, bad: str) -> None:
    with pytest.raises(ValidationError), ctx.db.write() as s:
        s.add(Service(id=new_id("svc"), shop_id=shop.id, title=bad, duration_minutes=30,
                      created_at=datetime(2026, 1, 1, tzinfo=UTC)))
    with pytest.raises(ValidationError), ctx.db.read() as s:
        s.scalar(select(Shop).where(Shop.domain == bad))
    with pytest.raises(ValidationError), ctx.db.read() as s:  # textual SQL too
        s.execute(text("SELECT 1 FROM shops WHERE domain = :d"), {"d": bad})
    # nothing half-written, and the connection is still good
    with ctx.db.read() as s:
        assert s.scalar(select(Service.id)) is None
        assert s.scalar(select(Shop.domain)) == shop.domain


def test_unstorable_text_inside_a_json_column_and_huge_ints(ctx: Context, shop: Any) -> None:
    row = PrivacyRequest(id=new_id("prv"), shop_id=shop.id, topic="t",
                         orders=["1", "x\x00"], received_at=datetime.now(UTC))
    if ctx.db.dialect == "postgresql":
        # jsonb refuses \u0000: the guard looks inside the document psycopg is given
        with pytest.raises(ValidationError), ctx.db.write() as s:
            s.add(row)
    else:
        # SQLite's JSON is text with the NUL escaped: storable, and it reads back
        with ctx.db.write() as s:
            s.add(row)
        with ctx.db.write() as s:
            assert s.scalar(select(PrivacyRequest.orders)) == ["1", "x\x00"]
            s.execute(PrivacyRequest.__table__.delete())
    with pytest.raises(ValidationError), ctx.db.read() as s:
        s.scalar(select(Shop).where(Shop.installed == 2 ** 70))  # type: ignore[comparison-overlap]
    # many rows at once (executemany) are checked too
    with pytest.raises(ValidationError), ctx.db.write() as s:
        s.add_all([PrivacyRequest(id=new_id("prv"), shop_id=shop.id, topic=t, orders=[],
                                  received_at=datetime.now(UTC)) for t in ("a", "b\x00")])
    with ctx.db.read() as s:
        assert s.scalar(select(PrivacyRequest.id)) is None


def test_good_text_passes(ctx: Context, shop: Any) -> None:
    title = "Beratung \U0001f600 \t\n 日本語 \u202e \x07"  # storable, if odd
    with ctx.db.write() as s:
        s.add(Service(id="svc_ok", shop_id=shop.id, title=title, duration_minutes=30,
                      created_at=datetime(2026, 1, 1, tzinfo=UTC)))
    with ctx.db.read() as s:
        assert s.scalar(select(Service.title)) == title


def test_the_guard_costs_little_on_the_availability_path(ctx: Context, store: Storefront,
                                                         admin: Any) -> None:
    """Measured two ways: the guard's own time per statement, and availability requests
    with and without it (reported; asserted loosely, the machine is shared)."""
    params = {"shop_id_1": "shp_abcdefghijklmnop", "id_1": "svc_abcdefghijklmnop",
              "start_1": datetime.now(UTC), "end_1": datetime.now(UTC), "status_1": "held",
              "status_2": "pending", "status_3": "confirmed", "limit": 50}
    rounds = 20_000
    started = time.perf_counter()
    for _ in range(rounds):
        _before_cursor_execute(None, None, "", params, None, False)
    per_statement = (time.perf_counter() - started) / rounds
    assert per_statement < 20e-6, f"{per_statement * 1e6:.1f} µs per statement"

    cat = make_catalog(admin)
    query = {"service": cat["service"], "start": "2026-12-01", "days": "7"}

    def timed(n: int = 60) -> float:
        for _ in range(5):
            assert store.get("/availability", query).status_code == 200
        began = time.perf_counter()
        for _ in range(n):
            store.get("/availability", query)
        return (time.perf_counter() - began) / n

    with_guard = timed()
    event.remove(ctx.db.engine, "before_cursor_execute", _before_cursor_execute)
    try:
        without = timed()
    finally:
        event.listen(ctx.db.engine, "before_cursor_execute", _before_cursor_execute)
    print(f"\n[{ctx.db.dialect}] guard {per_statement * 1e6:.2f} µs/statement; "
          f"availability {with_guard * 1e3:.2f} ms with, {without * 1e3:.2f} ms without")
    assert with_guard < without * 3 + 0.005  # loose: a shared CI machine; the benchmark measures it
