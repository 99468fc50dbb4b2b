"""The database itself counts seats and limits (migration 0013): raw SQL, no service.

What docs/bookings.md ("Capacity") promises, checked on a plain connection so that no
Python check can stand in for the database's: the triggers on ``claims`` keep
``claim_sessions.seats_used`` equal to the live claims' seats through inserts, status
changes, seat changes, moves to another session and deletes; the trigger on
``claim_sessions`` keeps ``capacity_counters.used`` equal to the sessions with a live
seat; the check constraints refuse one seat or one session too many; a live claim whose
session or counters were never prepared is refused rather than counted as nothing
(SQLite), or gets them from its trigger (PostgreSQL, migration 0017: there the
capacities come from the catalog rows as the claim is written, so the tests set those
too).
Then migration 0013 itself: live claims made before it get their sessions and counters.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool

from engine.bootstrap import Context
from engine.services.claims import refused
from engine.store.migrate import upgrade
from tests.conftest import Admin, make_catalog
from tests.schema_0012 import seed_claim, seed_shop

T = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
FUTURE = datetime(2030, 1, 1, tzinfo=UTC)
PERIODS = ("D2026-12-01", "W2026-W49", "M2026-12")


class Raw:
    def __init__(self, engine: Engine, shop: str, service: str, experts: list[str]) -> None:
        self.engine, self.shop, self.service, self.experts = engine, shop, service, experts
        self.pg = engine.dialect.name == "postgresql"

    def ts(self, value: datetime | None) -> str:
        if value is None:
            return "NULL"
        if self.engine.dialect.name == "sqlite":
            return "'" + value.astimezone(UTC).replace(tzinfo=None).strftime(
                "%Y-%m-%d %H:%M:%S.%f") + "'"
        return "'" + value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00") + "'"

    def session(self, conn: Connection, key: str, seats: int, *, expert: int = 0,
                start: datetime = T, day: str = "2026-12-01") -> None:
        conn.exec_driver_sql(
            "INSERT INTO claim_sessions (key, shop_id, expert_id, service_id, start_at, "
            "seats_max, seats_used, day_key, week_key, month_key, created_at) VALUES "
            f"('{key}', '{self.shop}', '{self.experts[expert]}', '{self.service}', "
            f"{self.ts(start)}, {seats}, 0, '{day}', '2026-W49', '2026-12', {self.ts(T)})")
        if self.pg:
            # PostgreSQL's claim trigger takes a session's capacity from the service as
            # the claim is written (migration 0017): the catalog says the same.
            conn.exec_driver_sql(f"UPDATE services SET seats = {seats} "
                                 f"WHERE id = '{self.service}'")

    def counters(self, conn: Connection, *, expert: int = 0, day_cap: int | None = None,
                 day: str = "2026-12-01") -> None:
        for scope in (self.service, "*"):
            for period in (f"D{day}", *PERIODS[1:]):
                cap = day_cap if period.startswith("D") and scope == "*" else None
                conn.exec_driver_sql(
                    "INSERT INTO capacity_counters (expert_id, scope, period, used, cap) "
                    f"VALUES ('{self.experts[expert]}', '{scope}', '{period}', 0, "
                    f"{'NULL' if cap is None else cap}) ON CONFLICT DO NOTHING")
        if self.pg and day_cap is not None:
            # (The counters' caps likewise come from the limits: migration 0017.)
            conn.exec_driver_sql(f"UPDATE experts SET limits = '{{\"day\": {day_cap}}}' "
                                 f"WHERE id = '{self.experts[expert]}'")

    def claim(self, conn: Connection, id: str, key: str, *, seats: int = 1,
              status: str = "held", expert: int = 0, minutes: int = 0) -> None:
        start = T + timedelta(minutes=minutes)
        end = start + timedelta(minutes=30)
        conn.exec_driver_sql(
            "INSERT INTO claims (id, shop_id, service_id, expert_id, start_at, end_at, "
            "claim_start, claim_end, status, expires_at, sequence, created_at, updated_at, "
            "session_key, seats) VALUES "
            f"('{id}', '{self.shop}', '{self.service}', '{self.experts[expert]}', "
            f"{self.ts(start)}, {self.ts(end)}, {self.ts(start)}, {self.ts(end)}, "
            f"'{status}', {self.ts(FUTURE)}, 0, {self.ts(T)}, {self.ts(T)}, '{key}', {seats})")

    def used(self, key: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text("SELECT seats_used FROM claim_sessions WHERE key = :k"),
                                    {"k": key}).scalar_one())

    def counted(self, period: str = PERIODS[0], scope: str = "*", expert: int = 0) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text(
                "SELECT used FROM capacity_counters WHERE expert_id = :e AND scope = :s "
                "AND period = :p"), {"e": self.experts[expert], "s": scope, "p": period}
            ).scalar_one())


@pytest.fixture
def raw(ctx: Context, admin: Admin) -> Iterator[Raw]:
    cat = make_catalog(admin, experts=2)
    engine = create_engine(ctx.config.database_url, poolclass=NullPool)
    with engine.connect() as conn:
        shop = conn.execute(text("SELECT id FROM shops")).scalar_one()
    yield Raw(engine, shop, cat["service"], cat["experts"])
    engine.dispose()


def _refusal(exc: IntegrityError) -> str:
    error = refused(exc)
    assert error is not None, exc
    return error.code


def test_seats_are_counted_and_the_one_too_many_is_refused(raw: Raw) -> None:
    with raw.engine.begin() as conn:
        raw.session(conn, "s1", seats=3)
        raw.counters(conn)
        raw.claim(conn, "a", "s1", seats=2)
    assert raw.used("s1") == 2
    with pytest.raises(IntegrityError) as exc:
        with raw.engine.begin() as conn:
            raw.claim(conn, "b", "s1", seats=2)
    assert _refusal(exc.value) == "slot_unavailable"
    assert raw.used("s1") == 2  # the refused write left nothing
    with raw.engine.begin() as conn:
        raw.claim(conn, "b", "s1", seats=1)  # overlapping "a": same session, allowed
    assert raw.used("s1") == 3
    # Status changes: held -> pending -> confirmed keeps the seats; cancelled frees them.
    with raw.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE claims SET status = 'pending' WHERE id = 'a'")
        conn.exec_driver_sql("UPDATE claims SET status = 'confirmed' WHERE id = 'a'")
    assert raw.used("s1") == 3
    with raw.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE claims SET seats = 1 WHERE id = 'a'")  # fewer units
    assert raw.used("s1") == 2
    with raw.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE claims SET status = 'cancelled' WHERE id = 'a'")
        conn.exec_driver_sql("DELETE FROM claims WHERE id = 'b'")
    assert raw.used("s1") == 0
    # A dead claim coming back to life is counted again, and refused when it won't fit.
    with raw.engine.begin() as conn:
        raw.claim(conn, "c", "s1", seats=3)
    with pytest.raises(IntegrityError):
        with raw.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE claims SET status = 'pending' WHERE id = 'a'")
    assert raw.used("s1") == 3


def test_a_session_counts_once_in_its_periods_and_the_cap_refuses(raw: Raw) -> None:
    with raw.engine.begin() as conn:
        for key in ("s1", "s2"):
            raw.session(conn, key, seats=5)
        raw.counters(conn, day_cap=1)
        raw.claim(conn, "a", "s1")
        raw.claim(conn, "b", "s1")  # joining the session: no new session counted
    assert raw.counted() == 1 and raw.counted(PERIODS[2], scope=raw.service) == 1
    with pytest.raises(IntegrityError) as exc:
        with raw.engine.begin() as conn:
            raw.claim(conn, "c", "s2", minutes=120)
    assert _refusal(exc.value) == "limit_reached"
    with raw.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE claims SET status = 'expired' WHERE id = 'a'")
    assert raw.counted() == 1  # "b" still holds a seat of s1
    with raw.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE claims SET status = 'released' WHERE id = 'b'")
    assert raw.counted() == 0 and raw.used("s1") == 0
    with raw.engine.begin() as conn:
        raw.claim(conn, "c", "s2", minutes=120)
    assert raw.counted() == 1


def test_moving_a_claim_moves_its_seats_and_its_count(raw: Raw) -> None:
    """A reschedule is an update of session_key (and times): the old session loses the
    seats, the new one gains them, in one statement."""
    with raw.engine.begin() as conn:
        raw.session(conn, "s1", seats=1)
        raw.session(conn, "s2", seats=1, start=T + timedelta(days=1), day="2026-12-02")
        raw.counters(conn)
        raw.counters(conn, day="2026-12-02")
        raw.claim(conn, "a", "s1", status="confirmed")
        raw.claim(conn, "b", "s2", status="confirmed", minutes=24 * 60)
    with pytest.raises(IntegrityError) as exc:  # s2 is full
        with raw.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE claims SET session_key = 's2' WHERE id = 'a'")
    assert _refusal(exc.value) == "slot_unavailable"
    with raw.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE claims SET status = 'cancelled' WHERE id = 'b'")
        conn.exec_driver_sql("UPDATE claims SET session_key = 's2' WHERE id = 'a'")
    assert (raw.used("s1"), raw.used("s2")) == (0, 1)
    assert raw.counted("D2026-12-01") == 0 and raw.counted("D2026-12-02") == 1
    assert raw.counted("W2026-W49") == 1


def test_an_unprepared_claim_is_refused_not_uncounted(raw: Raw) -> None:
    if raw.pg:
        # PostgreSQL (migration 0017): the claim's trigger makes its session and
        # counters (the periods in the expert's zone: the shop's, Berlin) and counts it.
        with raw.engine.begin() as conn:
            raw.claim(conn, "a", "nowhere")
            raw.claim(conn, "d", "gone", status="cancelled")
        assert raw.used("nowhere") == 1 and raw.counted() == 1
        assert raw.counted(PERIODS[2], scope=raw.service) == 1
        with raw.engine.connect() as conn:
            assert conn.execute(text("SELECT seats_max, day_key, week_key, month_key FROM "
                                     "claim_sessions WHERE key = 'nowhere'")).one() == (
                1, "2026-12-01", "2026-W49", "2026-12")
            assert conn.execute(text("SELECT count(*) FROM claim_sessions WHERE key = 'gone'"
                                     )).scalar_one() == 0  # a dead claim makes nothing
        return
    with pytest.raises(IntegrityError, match="capacity_session_missing"):
        with raw.engine.begin() as conn:
            raw.claim(conn, "a", "nowhere")
    with raw.engine.begin() as conn:
        raw.session(conn, "s1", seats=2)  # but no counters
    with pytest.raises(IntegrityError, match="capacity_counters_missing"):
        with raw.engine.begin() as conn:
            raw.claim(conn, "a", "s1")
    # A dead claim needs nothing: history rows are not counted.
    with raw.engine.begin() as conn:
        raw.claim(conn, "d", "nowhere", status="cancelled")


def test_one_to_one_never_overlaps_a_session(raw: Raw) -> None:
    """Claims of different sessions of one expert may not overlap, whatever the seats."""
    with raw.engine.begin() as conn:
        raw.session(conn, "s1", seats=8)
        raw.session(conn, "other", seats=1)
        raw.counters(conn)
        raw.claim(conn, "a", "s1")
    with pytest.raises(IntegrityError) as exc:
        with raw.engine.begin() as conn:
            raw.claim(conn, "b", "other", minutes=15)
    assert _refusal(exc.value) == "slot_unavailable"


# --------------------------------------------------------------------------- migration


def test_migration_counts_the_claims_made_before_it(bare_engine: Engine) -> None:
    from alembic import command

    from engine.store.migrate import _alembic_config

    upgrade(bare_engine, "0012", locations=[])
    # 23:30 UTC on Dec 31st is already Jan 1st 2027 in Berlin: ISO week 2026-W53.
    start = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    with bare_engine.begin() as conn:
        seed_shop(conn, T)
        for i, status in enumerate(("confirmed", "cancelled", "held")):
            seed_claim(conn, f"c{i}", status, start + timedelta(hours=2 * i), T)
    upgrade(bare_engine, "0013", locations=[])
    with bare_engine.connect() as conn:
        keys = dict(conn.execute(text("SELECT id, session_key FROM claims")).all())
        sessions = conn.execute(text(
            "SELECT key, seats_used, day_key, week_key FROM claim_sessions ORDER BY key")).all()
        counters = dict(conn.execute(text(
            "SELECT period, used FROM capacity_counters WHERE scope = '*'")).all())
    assert keys["c0"] == f"exp|svc|{int(start.timestamp())}"
    assert [(s.seats_used, s.day_key, s.week_key) for s in sessions] == [
        (1, "2027-01-01", "2026-W53"), (1, "2027-01-01", "2026-W53")]
    assert counters == {"D2027-01-01": 2, "W2026-W53": 2, "M2027-01": 2}
    # The triggers are live after the upgrade: cancelling the booking frees its count.
    with bare_engine.begin() as conn:
        conn.execute(text("UPDATE claims SET status = 'cancelled' WHERE id = 'c0'"))
    with bare_engine.connect() as conn:
        assert conn.execute(text("SELECT used FROM capacity_counters WHERE scope = '*' "
                                 "AND period = 'D2027-01-01'")).scalar_one() == 1
    # And the downgrade restores 0012's schema.
    cfg = _alembic_config([])
    with bare_engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0012")
    insp = sa.inspect(bare_engine)
    assert "claim_sessions" not in insp.get_table_names()
    assert "session_key" not in {c["name"] for c in insp.get_columns("claims")}
