"""The database itself refuses overlapping live claims: raw SQL, no ORM, no service.

`docs/bookings.md` promises that two live claims (``held``, ``pending``, ``confirmed``) of
one expert never overlap over ``[claim_start, claim_end)`` -- the meeting plus its
buffers -- and that this is the database's rule: PostgreSQL's exclusion constraint
``claims_no_overlap`` and SQLite's ``claims_no_overlap_insert|update`` triggers
(migration 0002). Everything here writes SQL text on a plain connection, so no Python
check can stand in for the database's; one table of cases runs on both engines and
both must answer alike.

A ``held`` row whose ``expires_at`` has passed, and a ``pending`` booking past its
deadline (``pending_hold_hours``, migration 0007 keeps it in ``expires_at``), are still
live *to the database*: the predicate is status-based (a constraint cannot read the
clock), and the writers mark the expert's stale rows ``expired`` in the same transaction
before they claim (:func:`engine.services.claims.expire_stale_holds`). Both halves of
that are asserted.

Statuses are read from the database's own ``ck_claims_status`` check, so a status added
by a later migration is covered without editing this file: each one must be either live
(blocks and is blocked) or dead (neither), and the answer must match ``LIVE_STATUSES``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool

from engine.bootstrap import Context
from engine.store.models import LIVE_STATUSES
from tests.conftest import Admin, make_catalog

T = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # a Tuesday, inside the experts' hours
PAST = datetime(2020, 1, 1, tzinfo=UTC)  # before the fixed clock and the wall clock
FUTURE = datetime(2030, 1, 1, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T + timedelta(minutes=minutes)


@dataclass(frozen=True)
class Row:
    """One claims row: meeting ``[start, end)`` in minutes after T, buffers widen it to
    ``[start - before, end + after)``; ``expert`` is 0 or 1."""

    id: str
    start: int
    end: int
    status: str = "confirmed"
    before: int = 0
    after: int = 0
    expert: int = 0
    expires_at: datetime | None = None

    @property
    def claim(self) -> tuple[int, int]:
        return (self.start - self.before, self.end + self.after)


@dataclass(frozen=True)
class Case:
    name: str
    existing: tuple[Row, ...]
    insert: Row | None = None  # either a new row...
    update: tuple[str, dict[str, Any]] | None = None  # ...or (row id, new column values)
    refused: bool = False
    notes: str = field(default="", compare=False)


def held(id: str, start: int, end: int, **kw: Any) -> Row:
    return Row(id, start, end, status="held", expires_at=FUTURE, **kw)


# The table of cases, run on SQLite and PostgreSQL alike. Minutes are relative to T.
CASES: list[Case] = [
    # --- inserts over live rows: refused
    Case("same range over a live hold", (held("a", 0, 30),), insert=held("b", 0, 30),
         refused=True),
    Case("confirmed over a live hold", (held("a", 0, 30),), insert=Row("b", 15, 45),
         refused=True),
    Case("hold over a pending booking", (Row("a", 0, 30, "pending"),),
         insert=held("b", 20, 50), refused=True),
    Case("pending over a confirmed booking", (Row("a", 0, 30),),
         insert=Row("b", -15, 15, "pending"), refused=True),
    Case("inside an existing claim", (Row("a", 0, 60),), insert=Row("b", 15, 30),
         refused=True),
    Case("around an existing claim", (Row("a", 15, 30),), insert=Row("b", 0, 60),
         refused=True),
    Case("one minute of overlap", (Row("a", 0, 30),), insert=Row("b", 29, 59),
         refused=True),
    # --- buffers: the claimed range counts, not the meeting
    Case("new meeting meets the old one's after-buffer",
         (Row("a", 0, 30, after=15),), insert=Row("b", 30, 60), refused=True),
    Case("new before-buffer reaches into the old meeting",
         (Row("a", 0, 30),), insert=Row("b", 35, 65, before=10), refused=True),
    Case("buffer against buffer", (Row("a", 0, 30, after=10),),
         insert=Row("b", 45, 75, before=10), refused=True),
    Case("buffers that only touch", (Row("a", 0, 30, after=10),),
         insert=Row("b", 50, 80, before=10)),
    # --- allowed inserts
    Case("touching ranges [a,b) [b,c)", (Row("a", 0, 30),), insert=Row("b", 30, 60)),
    Case("touching ranges [b,c) [a,b)", (Row("a", 30, 60),), insert=Row("b", 0, 30)),
    Case("different experts, same range", (Row("a", 0, 30),),
         insert=Row("b", 0, 30, expert=1)),
    Case("a dead row may be written over a live one", (Row("a", 0, 30),),
         insert=Row("b", 0, 30, "cancelled")),
    # --- a stale hold: the database goes by status only
    Case("a held row past its expires_at still blocks (writers expire it first)",
         (Row("a", 0, 30, "held", expires_at=PAST),), insert=Row("b", 0, 30), refused=True),
    # --- pending bookings lapse after pending_hold_hours (migration 0007: expires_at on
    # the pending row); to the database a lapsed one is live until a writer expires it
    Case("a pending booking past its deadline still blocks (writers expire it first)",
         (Row("a", 0, 30, "pending", expires_at=PAST),), insert=held("b", 0, 30),
         refused=True),
    Case("a pending booking before its deadline blocks",
         (Row("a", 0, 30, "pending", expires_at=FUTURE),), insert=Row("b", 15, 45),
         refused=True),
    Case("a pending booking without a deadline blocks",
         (Row("a", 0, 30, "pending"),), insert=held("b", 0, 30), refused=True),
    Case("a lapsed (expired) pending booking back to pending over a live hold",
         (Row("a", 0, 30, "expired", expires_at=PAST), held("b", 0, 30)),
         update=("a", {"status": "pending", "expires_at": FUTURE}), refused=True),
    # --- updates
    Case("a cancelled booking back to confirmed over a live one",
         (Row("a", 0, 30, "cancelled"), Row("b", 0, 30)),
         update=("a", {"status": "confirmed"}), refused=True),
    Case("an expired hold back to held over a live hold",
         (Row("a", 0, 30, "expired", expires_at=PAST), held("b", 10, 40)),
         update=("a", {"status": "held", "expires_at": FUTURE}), refused=True),
    Case("a pending booking confirmed while another overlaps",
         (Row("a", 0, 30, "cancelled"), Row("b", 20, 50, "pending")),
         update=("a", {"status": "pending"}), refused=True),
    Case("moving a range onto another",
         (Row("a", 0, 30), Row("b", 60, 90)),
         update=("b", {"start": 15, "end": 45}), refused=True),
    Case("widening a range's buffer onto another",
         (Row("a", 0, 30), Row("b", 40, 70)),
         update=("b", {"claim_start": -5}), refused=True),
    Case("moving a claim to an expert who is busy then",
         (Row("a", 0, 30), Row("b", 0, 30, expert=1)),
         update=("b", {"expert": 0}), refused=True),
    Case("moving a range within itself", (Row("a", 0, 30), Row("b", 60, 90)),
         update=("b", {"start": 45, "end": 90})),
    Case("moving a range to touch another", (Row("a", 0, 30), Row("b", 60, 90)),
         update=("b", {"start": 30, "end": 60})),
    Case("cancelling a live booking", (Row("a", 0, 30), Row("b", 60, 90)),
         update=("a", {"status": "cancelled"})),
    Case("moving a range onto a cancelled one", (Row("a", 0, 30, "cancelled"),
                                                 Row("b", 60, 90)),
         update=("b", {"start": 0, "end": 30})),
    Case("reviving a booking whose time is free", (Row("a", 0, 30, "cancelled"),
                                                   Row("b", 30, 60)),
         update=("a", {"status": "confirmed"})),
]


def _status_cases(statuses: list[str]) -> list[Case]:
    """For every status the database knows: a live one refuses a new overlapping row
    and is refused over one; a dead one does neither."""
    cases = []
    for st in statuses:
        live = st in LIVE_STATUSES
        expires = FUTURE if st == "held" else None
        dead_other = "released" if st == "cancelled" else "cancelled"
        cases.append(Case(f"existing {st} {'blocks' if live else 'does not block'}",
                          (Row("a", 0, 30, st, expires_at=expires),),
                          insert=Row("b", 10, 40), refused=live))
        cases.append(Case(f"new {st} over a live one is {'refused' if live else 'allowed'}",
                          (Row("a", 0, 30),),
                          insert=Row("b", 10, 40, st, expires_at=expires), refused=live))
        cases.append(Case(f"update to {st} over a live one is "
                          f"{'refused' if live else 'allowed'}",
                          (Row("a", 0, 30), Row("b", 10, 40, dead_other)),
                          update=("b", {"status": st, "expires_at": expires}), refused=live))
    return cases


# Statuses from migration 0002's check constraint, as known when this file was written.
# The test below also reads the live database's check, so a status added later still
# gets its cases (test_every_status_in_the_database_is_covered fails until it does).
KNOWN_STATUSES = ["held", "expired", "released", "pending", "confirmed", "cancelled"]
ALL_CASES = CASES + _status_cases(KNOWN_STATUSES)


# --------------------------------------------------------------------------- plumbing


@dataclass
class Raw:
    """A plain connection to the test database and the ids of its shop and experts."""

    engine: Engine
    shop: str
    service: str
    experts: list[str]

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def ts(self, value: datetime | None) -> str:
        """A SQL literal for an instant, in the form the app stores it (SQLite: naive UTC
        text with microseconds, which is what the triggers compare as text)."""
        if value is None:
            return "NULL"
        if self.dialect == "sqlite":
            return "'" + value.astimezone(UTC).replace(tzinfo=None).strftime(
                "%Y-%m-%d %H:%M:%S.%f") + "'"
        return "'" + value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00") + "'"

    def session_sql(self, row: Row) -> list[str]:
        """The row's own session (key = its id, seats enough) and its expert's counters
        (migration 0013): the seat and limit rules stay out of the way, so what is
        tested here is the overlap rule alone -- claims of different sessions."""
        expert = self.experts[row.expert]
        stmts = [
            "INSERT INTO claim_sessions (key, shop_id, expert_id, service_id, start_at, "
            "seats_max, seats_used, day_key, week_key, month_key, created_at) VALUES "
            f"('{row.id}', '{self.shop}', '{expert}', '{self.service}', "
            f"{self.ts(at(row.start))}, 1000, 0, '2026-12-01', '2026-W49', '2026-12', "
            f"{self.ts(T)})"]
        for scope in (self.service, "*"):
            for period in ("D2026-12-01", "W2026-W49", "M2026-12"):
                stmts.append("INSERT INTO capacity_counters (expert_id, scope, period, used) "
                             f"VALUES ('{expert}', '{scope}', '{period}', 0) "
                             "ON CONFLICT DO NOTHING")
        return stmts

    def insert(self, conn: Connection, row: Row) -> None:
        """The row's session and counters, then the row."""
        for stmt in self.session_sql(row):
            conn.exec_driver_sql(stmt)
        conn.exec_driver_sql(self.insert_sql(row))

    def insert_sql(self, row: Row) -> str:
        cs, ce = row.claim
        return (
            "INSERT INTO claims (id, shop_id, service_id, expert_id, start_at, end_at, "
            "claim_start, claim_end, status, expires_at, sequence, created_at, updated_at, "
            "session_key) "
            f"VALUES ('{row.id}', '{self.shop}', '{self.service}', "
            f"'{self.experts[row.expert]}', {self.ts(at(row.start))}, {self.ts(at(row.end))}, "
            f"{self.ts(at(cs))}, {self.ts(at(ce))}, '{row.status}', "
            f"{self.ts(row.expires_at)}, 0, {self.ts(T)}, {self.ts(T)}, '{row.id}')")

    def update_sql(self, current: Row, changes: dict[str, Any]) -> str:
        """An UPDATE of one row; ``start``/``end`` move the meeting and its buffers
        together, ``claim_start`` (minutes) moves only the claimed range's start."""
        sets: list[str] = []
        for key, value in changes.items():
            if key == "status":
                sets.append(f"status = '{value}'")
            elif key == "expires_at":
                sets.append(f"expires_at = {self.ts(value)}")
            elif key == "expert":
                sets.append(f"expert_id = '{self.experts[value]}'")
            elif key == "claim_start":
                sets.append(f"claim_start = {self.ts(at(value))}")
            elif key in ("start", "end"):
                continue
            else:
                raise AssertionError(key)
        if "start" in changes:
            start, end = changes["start"], changes["end"]
            sets += [f"start_at = {self.ts(at(start))}", f"end_at = {self.ts(at(end))}",
                     f"claim_start = {self.ts(at(start - current.before))}",
                     f"claim_end = {self.ts(at(end + current.after))}"]
        return f"UPDATE claims SET {', '.join(sets)} WHERE id = '{current.id}'"

    def rows(self, conn: Connection) -> dict[str, tuple[Any, ...]]:
        result = conn.exec_driver_sql(
            "SELECT id, expert_id, claim_start, claim_end, status, expires_at FROM claims")
        return {r[0]: tuple(r[1:]) for r in result}


def assert_overlap_refusal(exc: IntegrityError, dialect: str) -> None:
    """The refusal came from the overlap rule itself, not from some other constraint."""
    if dialect == "postgresql":
        assert getattr(exc.orig, "sqlstate", None) == "23P01", exc
        assert exc.orig is not None and exc.orig.diag.constraint_name == "claims_no_overlap"
    else:
        assert "claims_no_overlap" in str(exc.orig), exc


@pytest.fixture
def raw(ctx: Context, admin: Admin) -> Iterator[Raw]:
    """A shop with one service and two experts (made through the admin API: they are
    the setting, not what is tested), and a plain engine on the same database."""
    cat = make_catalog(admin, experts=2)
    engine = create_engine(ctx.config.database_url, poolclass=NullPool)
    with ctx.db.read() as session:
        shop = session.execute(text("SELECT id FROM shops")).scalar_one()
    yield Raw(engine, shop, cat["service"], cat["experts"])
    engine.dispose()


def run_case(raw: Raw, case: Case) -> None:
    with raw.engine.begin() as conn:
        for row in (*case.existing, *([case.insert] if case.insert else [])):
            for stmt in raw.session_sql(row):
                conn.exec_driver_sql(stmt)
        for row in case.existing:
            conn.exec_driver_sql(raw.insert_sql(row))
    with raw.engine.connect() as conn:
        before = raw.rows(conn)
    if case.insert is not None:
        sql = raw.insert_sql(case.insert)
    else:
        assert case.update is not None
        target, changes = case.update
        current = next(r for r in case.existing if r.id == target)
        sql = raw.update_sql(current, changes)

    try:
        with raw.engine.begin() as conn:
            result = conn.exec_driver_sql(sql)
            assert result.rowcount == 1, sql
    except IntegrityError as exc:
        assert case.refused, f"{case.name}: the database refused an allowed write: {exc.orig}"
        assert_overlap_refusal(exc, raw.dialect)
        with raw.engine.connect() as conn:
            assert raw.rows(conn) == before, "a refused write left a trace"
        return
    assert not case.refused, f"{case.name}: the database accepted an overlap: {sql}"
    with raw.engine.connect() as conn:
        after = raw.rows(conn)
    if case.insert is not None:
        assert set(after) == set(before) | {case.insert.id}
        assert after[case.insert.id][3] == case.insert.status
    else:
        assert case.update is not None
        target, changes = case.update
        assert after != before
        if "status" in changes:
            assert after[target][3] == changes["status"]


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.name for c in ALL_CASES])
def test_the_database_enforces_the_overlap_rule(raw: Raw, case: Case) -> None:
    run_case(raw, case)


def _db_statuses(raw: Raw) -> list[str]:
    checks = inspect(raw.engine).get_check_constraints("claims")
    (check,) = [c for c in checks if "status" in c["name"]]
    return re.findall(r"'([a-z_]+)'", check["sqltext"])


def test_every_status_in_the_database_is_covered(raw: Raw) -> None:
    """A status added by a later migration must get its cases here (and be live or dead
    on purpose): this fails until KNOWN_STATUSES names it."""
    statuses = _db_statuses(raw)
    assert set(LIVE_STATUSES) <= set(statuses)
    assert sorted(statuses) == sorted(KNOWN_STATUSES), (
        "claims.status gained or lost a value: update KNOWN_STATUSES")


def test_the_database_predicate_names_exactly_the_live_statuses(raw: Raw) -> None:
    """The constraint's (PostgreSQL) or the triggers' (SQLite) WHERE clause lists the live
    statuses of engine.store.models -- the same definition the Python side uses."""
    with raw.engine.connect() as conn:
        if raw.dialect == "postgresql":
            defs = [conn.execute(text(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conname = 'claims_no_overlap'")).scalar_one()]
        else:
            defs = list(conn.execute(text(
                "SELECT sql FROM sqlite_master WHERE type = 'trigger' "
                "AND name LIKE 'claims_no_overlap_%' ORDER BY name")).scalars())
    assert len(defs) == (1 if raw.dialect == "postgresql" else 2), defs
    for sql in defs:
        # PostgreSQL renders the predicate as status = ANY (ARRAY['held'::text, ...]),
        # SQLite keeps the text of the migration (NEW.status IN (...) and c.status IN (...)).
        lists = re.findall(
            r"status\)?(?:::text)?\s*(?:IN\s*\(|=\s*ANY\s*\(\(?ARRAY\[)([^)\]]*)", sql)
        assert lists, sql
        for found in lists:
            assert set(re.findall(r"'([a-z_]+)'", found)) == set(LIVE_STATUSES), sql


def test_stale_rows_stop_blocking_once_writers_expire_them(ctx: Context, raw: Raw) -> None:
    """The documented half of the stale-row rule: the writer's own step (mark the
    expert's stale holds and lapsed pending bookings in the range expired, same
    transaction) lets the claim in; live rows, and other experts' rows, are left alone."""
    from engine.services.claims import expire_stale_holds

    with raw.engine.begin() as conn:
        for row in (Row("stale", 0, 30, "held", expires_at=PAST),
                    Row("lapsed", 30, 60, "pending", expires_at=PAST),
                    Row("waiting", 60, 90, "pending", expires_at=FUTURE),
                    Row("other", 0, 30, "held", expires_at=PAST, expert=1)):
            raw.insert(conn, row)
    for blocked in (Row("b", 0, 30), Row("c", 30, 60)):
        with pytest.raises(IntegrityError) as refused:
            with raw.engine.begin() as conn:
                raw.insert(conn, blocked)
        assert_overlap_refusal(refused.value, raw.dialect)
    with ctx.db.write() as session:
        assert expire_stale_holds(session, ctx.clock.now(), expert_id=raw.experts[0],
                                  start=at(0), end=at(90)) == 2
        raw.insert(session.connection(), Row("b", 0, 60))
    with pytest.raises(IntegrityError):
        with raw.engine.begin() as conn:
            raw.insert(conn, Row("c", 75, 105))
    with raw.engine.connect() as conn:
        status = {k: v[3] for k, v in raw.rows(conn).items()}
    assert status == {"stale": "expired", "lapsed": "expired", "waiting": "pending",
                      "other": "held", "b": "confirmed"}
