"""Seats and limits, held by the database.

Before a claim becomes live, :func:`prepare` makes sure its session row and its six
counter rows exist and carry today's capacity (the service's ``seats``; the service's and
the expert's ``limits``). Then the claim is written, and the database does the counting:
triggers on ``claims`` add and subtract the claim's seats on its session, a trigger on
``claim_sessions`` adds and subtracts one session on its counters when the session's
seats go from none to some and back, and check constraints refuse a session past its
seats (``claim_sessions_seats``) or a period past its cap (``capacity_counters_cap``).
Expiry, release, cancel, reschedule and delete all go through the same triggers, so
every counter stays exact whoever writes; no code here counts rows. See
docs/bookings.md.

A capacity lowered below what is already taken keeps what is taken (the row's maximum
becomes what is used) and refuses anything new.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.domain.capacity import PERIODS, periods_of, session_key
from engine.errors import Conflict
from engine.store.models import CapacityCounter, Claim, ClaimSession, Expert, Service, Shop

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
    text = f"{name} {orig}"
    if "claim_sessions_seats" in text:
        return "seats"
    if "capacity_counters_cap" in text:
        return "limit"
    return None


def caps(limits: Mapping[str, Any] | None) -> dict[str, int | None]:
    limits = limits or {}
    return {p: (int(limits[p]) if limits.get(p) is not None else None) for p in PERIODS}


def _zone_of(session: Session, expert: Expert) -> str:
    if expert.timezone:
        return expert.timezone
    shop = session.get(Shop, expert.shop_id)
    assert shop is not None
    return shop.timezone


def limit_window(session: Session, claim: Claim) -> tuple[datetime, datetime] | None:
    """The instants of the claim's limit periods together (its local month and ISO week
    in the expert's zone), or None when neither its service nor its expert has a limit
    (then only the claim's own range matters to its rules)."""
    with session.no_autoflush:
        service = session.get(Service, claim.service_id)
        expert = session.get(Expert, claim.expert_id)
        assert service is not None and expert is not None
        if not any(caps(service.limits).values()) and not any(caps(expert.limits).values()):
            return None
        tz = ZoneInfo(_zone_of(session, expert))
    local = claim.start_at.astimezone(tz)
    month = local.date().replace(day=1)
    week = local.date() - timedelta(days=local.weekday())
    first = min(month, week)
    next_month = (month + timedelta(days=32)).replace(day=1)
    last = max(next_month, week + timedelta(days=7))
    lo = datetime.combine(first, time.min, tz) - timedelta(days=1)  # any DST edge
    hi = datetime.combine(last, time.min, tz) + timedelta(days=1)
    return lo.astimezone(UTC), hi.astimezone(UTC)


def _insert(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def prepare(session: Session, claim: Claim, now: datetime) -> None:
    """Set the claim's ``session_key`` and make its session and counters ready for it
    (see the module docstring). Call before the claim is inserted or made live, in the
    same transaction; the write itself is what the database then accepts or refuses."""
    with session.no_autoflush:  # the claim must not reach the database before its rows
        _prepare(session, claim, now)


def _prepare(session: Session, claim: Claim, now: datetime) -> None:
    service = session.get(Service, claim.service_id)
    expert = session.get(Expert, claim.expert_id)
    assert service is not None and expert is not None
    tz_name = _zone_of(session, expert)
    key = session_key(expert.id, service.id, claim.start_at)
    claim.session_key = key
    periods = periods_of(claim.start_at, ZoneInfo(tz_name))
    insert = _insert(session)
    row = insert(ClaimSession).values(
        key=key, shop_id=claim.shop_id, expert_id=expert.id, service_id=service.id,
        start_at=claim.start_at, seats_max=max(1, int(service.seats or 1)), seats_used=0,
        day_key=periods.day, week_key=periods.week, month_key=periods.month,
        created_at=now)
    current = ClaimSession.__table__.c
    session.execute(row.on_conflict_do_update(
        index_elements=["key"],
        set_={"seats_max": func.max(row.excluded.seats_max, current.seats_used)
              if insert is sqlite.insert
              else func.greatest(row.excluded.seats_max, current.seats_used)}))
    values = []
    for scope, limits in ((service.id, service.limits), (EXPERT_SCOPE, expert.limits)):
        cap = caps(limits)
        for period, counter in zip(PERIODS, periods.counter_keys(), strict=True):
            values.append({"expert_id": expert.id, "scope": scope, "period": counter,
                           "used": 0, "cap": cap[period]})
    rows = insert(CapacityCounter).values(values)
    used = CapacityCounter.__table__.c.used
    bigger = (func.max(rows.excluded.cap, used) if insert is sqlite.insert
              else func.greatest(rows.excluded.cap, used))
    session.execute(rows.on_conflict_do_update(
        index_elements=["expert_id", "scope", "period"],
        set_={"cap": case((rows.excluded.cap.is_(None), None), else_=bigger)}))
