"""Seats and limits, held by the database.

Before a claim becomes live, its session row and its six counter rows must exist and
carry today's capacity (the service's ``seats``; the service's and the expert's
``limits``): :func:`prepare` on SQLite, the triggers themselves on PostgreSQL (see
below). Then the claim is written, and the database does the counting:
triggers on ``claims`` add and subtract the claim's seats on its session, a trigger on
``claim_sessions`` adds and subtracts one session on its counters when the session's
seats go from none to some and back, and check constraints refuse a session past its
seats (``claim_sessions_seats``) or a period past its cap (``capacity_counters_cap``).
Expiry, release, cancel, reschedule and delete all go through the same triggers, so
every counter stays exact whoever writes; no code here counts rows. See
docs/bookings.md.

A capacity lowered below what is already taken keeps what is taken (the row's maximum
becomes what is used) and refuses anything new.

Cost (a hold's write path, issue 14): on PostgreSQL the triggers make the rows they
count on (migration 0017): a live claim's insert or update upserts its session (the
service's seats, the claim's periods in the expert's zone, read in that transaction),
and a session going from none to some seats upserts its six counters with the caps the
limits give then. So :func:`prepare` sends nothing there; the write itself is the one
statement. SQLite has no time zones in SQL: there :func:`prepare` reads the
:func:`facts` in the claim's own transaction (one statement; never from the read cache:
these values decide bookings) and upserts the session with ``RETURNING`` its seats; only
a session going from none to some seats upserts its six counters, and a counter whose
cap is already right is not rewritten. Every statement is built once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.domain.capacity import PERIODS, periods_of, session_key
from engine.errors import Conflict
from engine.store.models import Claim, Expert, Service, Shop
from engine.store.types import UTCDateTime

EXPERT_SCOPE = "*"


class LimitReached(Conflict):
    code = "limit_reached"

    def __init__(self, message: str = "this expert takes no more sessions in that "
                 "period; please choose another day") -> None:
        super().__init__(message)


def refusal(exc: IntegrityError) -> str | None:
    """Which capacity rule refused a write: ``seats``, ``limit``, or None (another)."""
    orig = exc.orig
    name = getattr(getattr(orig, "diag", None), "constraint_name", None) or ""
    text_ = f"{name} {orig}"
    if "claim_sessions_seats" in text_:
        return "seats"
    if "capacity_counters_cap" in text_:
        return "limit"
    return None


def caps(limits: Mapping[str, Any] | None) -> dict[str, int | None]:
    limits = limits or {}
    return {p: (int(limits[p]) if limits.get(p) is not None else None) for p in PERIODS}


@dataclass(frozen=True, slots=True)
class Facts:
    """What a claim's session and counters are made of, as the database has it now: the
    service's seats, the service's and the expert's caps (per period of
    :data:`PERIODS`, None: no limit) and the expert's zone (else the shop's)."""

    seats: int
    service_caps: dict[str, int | None]
    expert_caps: dict[str, int | None]
    tz: str

    @property
    def limited(self) -> bool:
        return any(v is not None for v in self.service_caps.values()) or any(
            v is not None for v in self.expert_caps.values())


# Built once (the compiled form is cached): one round trip instead of three ORM loads.
_FACTS = (select(Service.seats, Service.limits, Expert.limits,
                 func.coalesce(func.nullif(Expert.timezone, ""), Shop.timezone))
          .select_from(Service)
          .join(Expert, Expert.id == bindparam("expert"))
          .join(Shop, Shop.id == Expert.shop_id)
          .where(Service.id == bindparam("service")))


def facts(session: Session, claim: Claim) -> Facts:
    """The claim's :class:`Facts`, read in the caller's transaction (one statement)."""
    row = session.execute(_FACTS, {"service": claim.service_id,
                                   "expert": claim.expert_id}).one_or_none()
    assert row is not None, "a claim of a service or expert that does not exist"
    seats, service_limits, expert_limits, tz = row
    return Facts(max(1, int(seats or 1)), caps(service_limits), caps(expert_limits), tz)


def limit_window(session: Session, claim: Claim, known: Facts | None = None
                 ) -> tuple[datetime, datetime] | None:
    """The instants of the claim's limit periods together (its local month and ISO week
    in the expert's zone), or None when neither its service nor its expert has a limit
    (then only the claim's own range matters to its rules)."""
    return limit_window_at(claim.start_at, known or facts(session, claim))


def limit_window_at(start_at: datetime, known: Facts) -> tuple[datetime, datetime] | None:
    """:func:`limit_window` of a claim starting at ``start_at`` with these facts."""
    if not known.limited:
        return None
    tz = ZoneInfo(known.tz)
    local = start_at.astimezone(tz)
    month = local.date().replace(day=1)
    week = local.date() - timedelta(days=local.weekday())
    first = min(month, week)
    next_month = (month + timedelta(days=32)).replace(day=1)
    last = max(next_month, week + timedelta(days=7))
    lo = datetime.combine(first, time.min, tz) - timedelta(days=1)  # any DST edge
    hi = datetime.combine(last, time.min, tz) + timedelta(days=1)
    return lo.astimezone(UTC), hi.astimezone(UTC)


# --- the statements -------------------------------------------------------------------

_SESSION_VALUES = """
    INSERT INTO claim_sessions AS cs (key, shop_id, expert_id, service_id, start_at,
        seats_max, seats_used, day_key, week_key, month_key, created_at)
    VALUES (:key, :shop_id, :expert_id, :service_id, :start_at, :seats_max, 0, :day_key,
            :week_key, :month_key, :created_at)
    ON CONFLICT (key) DO UPDATE SET seats_max = {bigger}(excluded.seats_max, cs.seats_used)
    RETURNING seats_used, day_key, week_key, month_key"""

# SQLite only (PostgreSQL's triggers make these rows since migration 0017). The six
# counters (service scope and '*', each period); the period keys come from the session
# row, so they are the ones its trigger counts on even if the expert's zone changed
# since the session was made.
_COUNTER_ROWS = ", ".join(
    f"({scope}, '{kind}', CAST(:{prefix}_{period} AS INTEGER))"
    for scope, prefix in (("CAST(:service_id AS VARCHAR(32))", "s"), ("'*'", "e"))
    for kind, period in zip("DWM", PERIODS, strict=True))
_NEW_CAP = "CASE WHEN excluded.cap IS NULL THEN NULL ELSE {bigger}(excluded.cap, cc.used) END"
_COUNTERS_CONFLICT = (
    "ON CONFLICT (expert_id, scope, period) DO UPDATE SET cap = " + _NEW_CAP
    + " WHERE cc.cap IS DISTINCT FROM (" + _NEW_CAP + ")")


def _typed(sql: str) -> Any:
    return text(sql).bindparams(bindparam("start_at", type_=UTCDateTime()),
                                bindparam("created_at", type_=UTCDateTime()))


# SQLite: the session, then the counters only if it has no live seat yet (every writer
# holds the database lock, so nothing changes in between).
_SQLITE_SESSION = _typed(_SESSION_VALUES.format(bigger="max"))
_SQLITE_COUNTERS = text(
    "INSERT INTO capacity_counters AS cc (expert_id, scope, period, used, cap)\n"
    "SELECT :expert_id, v.column1, v.column2 || CASE v.column2 WHEN 'D' THEN :day_key"
    " WHEN 'W' THEN :week_key ELSE :month_key END, 0, v.column3\n"
    f"FROM (VALUES {_COUNTER_ROWS}) AS v WHERE true\n"
    + _COUNTERS_CONFLICT.format(bigger="max").replace("IS DISTINCT FROM", "IS NOT"))


def prepare(session: Session, claim: Claim, now: datetime, known: Facts | None = None
            ) -> None:
    """Set the claim's ``session_key`` and make its session and counters ready for it
    (see the module docstring). Call before the claim is inserted or made live, in the
    same transaction; the write itself is what the database then accepts or refuses.
    ``known``: the claim's :func:`facts`, if the caller has read them in this
    transaction already (never from a cache: they make the rows' capacities).

    PostgreSQL (migration 0017): the claim's triggers make its session and counters
    from the rows as the writing transaction sees them; nothing is sent here."""
    claim.session_key = session_key(claim.expert_id, claim.service_id, claim.start_at)
    if session.get_bind().dialect.name == "postgresql":
        return
    with session.no_autoflush:  # the claim must not reach the database before its rows
        known = known or facts(session, claim)
        _prepare_sqlite(session, claim, now, known)


def _prepare_sqlite(session: Session, claim: Claim, now: datetime, known: Facts) -> None:
    periods = periods_of(claim.start_at, ZoneInfo(known.tz))
    params: dict[str, Any] = {
        "key": claim.session_key, "shop_id": claim.shop_id, "expert_id": claim.expert_id,
        "service_id": claim.service_id, "start_at": claim.start_at,
        "seats_max": known.seats, "day_key": periods.day, "week_key": periods.week,
        "month_key": periods.month, "created_at": now}
    for period in PERIODS:
        params[f"s_{period}"] = known.service_caps[period]
        params[f"e_{period}"] = known.expert_caps[period]
    used, day, week, month = session.execute(_SQLITE_SESSION, params).one()
    if used == 0:
        params.update(day_key=day, week_key=week, month_key=month)
        session.execute(_SQLITE_COUNTERS, params)
