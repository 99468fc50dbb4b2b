"""The admin home page's numbers: the business at a glance (``GET /admin/api/stats``).

What is counted, and why (docs for the merchant are in the OpenAPI description):

* The period is whole ISO weeks (Monday first) of the shop's timezone: ``from`` widens
  to its week's Monday and ``to`` (inclusive) to its week's Sunday, so every bar of the
  weekly charts covers seven local days, including the weeks in which the clocks change
  (a week is a run of instants from one local Monday midnight to the next, 167 or 169
  hours long then). Default: the current week, the seven before it and the next one.
* A booking counts in the week its *start* lies in (when the consultation happens, which
  is what a weekly calendar and a fill rate need; a booking made today for next week
  shows next week). ``bookings`` are the live ones (confirmed, and pending ones whose
  slot has not lapsed), ``revenue``
  only the confirmed (paid) ones -- each line's price x the units it booked, per
  currency, as exact decimal strings -- and ``cancelled`` the cancelled ones;
  ``cancellations`` is their sum over the period.
* Fill rate per expert = booked minutes / offered minutes over the period. Booked: the
  meeting time (start to end, buffers not included) of the expert's live bookings, a
  seated session once however many customers it has. Offered: the expert's working
  windows (weekly hours and date overrides, in the expert's own timezone, through the
  slot engine's :func:`~engine.domain.slots.local_windows`, so daylight-saving days are
  as long as they really are) clipped to the period. It is not reduced by busy time of
  an external calendar (that is not on offer either, but it is not the shop's doing).
  ``null`` when the expert offered no time; it may exceed 1 when the merchant moved
  bookings outside the hours.
* ``refunds_waiting``: refund-log entries whose money is not known to be back with the
  customer. With auto-refund on, Shopify's refund not done yet: ``queued``
  (``awaiting_payment`` or ``pending``) and ``failed`` ones, whenever logged -- these
  stay until Shopify settles them. With auto-refund off (no Shopify status) the merchant
  refunds by hand and the app cannot see whether they did: those logged in the period
  count as ``by_hand``, except those of an order cancelled since (Shopify's
  cancellation settles its money, as ``skipped`` says with auto-refund on).
  ``refunded`` and ``skipped`` never count.
* ``today``: the live bookings starting on the shop's current local date, whatever the
  period.

Everything is a handful of queries whatever the size of the shop: the weekly figures are
grouped in SQL (the week is a ``CASE`` over the period's week-boundary instants, computed
here in the shop's timezone, which neither SQLite nor a portable SQL can do), sessions
are grouped in SQL, schedules are read for all experts at once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from engine.clock import Clock
from engine.domain.schedule import Windows, parse_date
from engine.domain.slots import local_windows, wall_to_instant
from engine.errors import NotFound, ValidationError
from engine.store import Database
from engine.store.models import (
    CANCELLED,
    CONFIRMED,
    PENDING,
    Claim,
    DateOverride,
    Expert,
    Order,
    Refund,
    Service,
    Shop,
    WeeklyHours,
)

ISO = "%Y-%m-%dT%H:%M:%SZ"
MAX_WEEKS = 53
#: The default period: this many weeks before the current one, and after it.
DEFAULT_WEEKS_BEFORE = 7
DEFAULT_WEEKS_AFTER = 1
#: Shopify refund states (Refund.shopify_status) of an auto-refund not done yet.
QUEUED_REFUNDS = ("awaiting_payment", "pending")
FAILED_REFUNDS = ("failed",)
_WEEK = timedelta(days=7)
_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Period:
    """Whole ISO weeks of the shop's timezone: ``first`` (a Monday) to ``last`` (a
    Sunday), inclusive; ``bounds`` are the instants of each week's first local midnight
    and, last, of the Monday after ``last``."""

    first: date
    last: date
    tz: ZoneInfo
    bounds: tuple[datetime, ...]

    @property
    def start(self) -> datetime:
        return self.bounds[0]

    @property
    def end(self) -> datetime:
        return self.bounds[-1]

    @property
    def mondays(self) -> list[date]:
        return [self.first + _WEEK * n for n in range(len(self.bounds) - 1)]


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _midnight(tz: ZoneInfo, day: date) -> datetime:
    """The first instant of ``day`` in ``tz`` (a midnight that the clocks skip maps to the
    transition, as working-hour edges do)."""
    return datetime.fromtimestamp(wall_to_instant(tz, day, 0, edge="start"), UTC)


def _date(params: Mapping[str, str], name: str) -> date | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    day = parse_date(value, where=name)
    if not 1971 <= day.year <= 9000:
        raise ValidationError(f"{name} is out of range", field=name)
    return day


def parse_period(params: Mapping[str, str], tz: ZoneInfo, today: date) -> Period:
    """``from`` / ``to`` (dates ``YYYY-MM-DD`` in the shop's timezone, both inclusive,
    both optional) as whole ISO weeks; at most :data:`MAX_WEEKS`. One left out is nine
    weeks from the other (the default's length)."""
    lo, hi = _date(params, "from"), _date(params, "to")
    span = _WEEK * (DEFAULT_WEEKS_BEFORE + DEFAULT_WEEKS_AFTER)
    if lo is None and hi is None:
        first = _monday(today) - _WEEK * DEFAULT_WEEKS_BEFORE
        last_monday = _monday(today) + _WEEK * DEFAULT_WEEKS_AFTER
    elif lo is None:
        assert hi is not None
        last_monday = _monday(hi)
        first = last_monday - span
    else:
        first = _monday(lo)
        last_monday = _monday(hi) if hi is not None else first + span
    if last_monday < first:
        raise ValidationError("to must be on or after from", field="to")
    weeks = (last_monday - first).days // 7 + 1
    if weeks > MAX_WEEKS:
        raise ValidationError(f"to must lie within {MAX_WEEKS} weeks of from (the "
                              f"period would cover {weeks} weeks)", field="to")
    bounds = tuple(_midnight(tz, first + _WEEK * n) for n in range(weeks + 1))
    return Period(first, last_monday + timedelta(days=6), tz, bounds)


def _week_label(monday: date) -> str:
    year, week, _ = monday.isocalendar()
    return f"{year:04d}-W{week:02d}"


# --------------------------------------------------------------------------- weeks


def _bookings_in(shop_id: str, lo: datetime, hi: datetime) -> Any:
    """The predicate of "a booking of this shop that starts in ``[lo, hi)``" (a claim
    with an order: holds never count)."""
    return and_(Claim.shop_id == shop_id, Claim.order_id.is_not(None),
                Claim.start_at >= lo, Claim.start_at < hi)


def _counted(now: datetime, *, cancelled: bool) -> Any:
    """Confirmed and pending bookings (and cancelled ones if asked); a pending one past
    its ``expires_at`` has lapsed (its slot is free again) even before the sweeper marks
    it, and counts as nothing."""
    pending = and_(Claim.status == PENDING,
                   or_(Claim.expires_at.is_(None), Claim.expires_at > now))
    statuses = (CONFIRMED, CANCELLED) if cancelled else (CONFIRMED,)
    return or_(Claim.status.in_(statuses), pending)


def _weekly(session: Session, shop_id: str, period: Period, now: datetime
            ) -> list[dict[str, Any]]:
    bounds = period.bounds
    week = case(*[(Claim.start_at < bound, n) for n, bound in enumerate(bounds[1:])],
                else_=len(bounds) - 1).label("week")
    # Grouped over a subquery so that PostgreSQL sees one column, not the CASE twice
    # (with its bound parameters numbered apart, it would not match the SELECT's).
    rows = (select(week, Claim.status, Claim.currency, Claim.line_price,
                   Claim.line_quantity)
            .where(_bookings_in(shop_id, period.start, period.end),
                   _counted(now, cancelled=True))
            .subquery())
    grouped = session.execute(
        select(rows.c.week, rows.c.status, rows.c.currency, rows.c.line_price,
               rows.c.line_quantity, func.count())
        .group_by(rows.c.week, rows.c.status, rows.c.currency, rows.c.line_price,
                  rows.c.line_quantity))
    weeks = [{"week": _week_label(m), "start": m.isoformat(), "bookings": 0,
              "revenue": {}, "cancelled": 0} for m in period.mondays]
    revenue: list[dict[str, Decimal]] = [defaultdict(Decimal) for _ in weeks]
    for n, status, currency, price, quantity, count in grouped:
        entry = weeks[int(n)]
        if status == CANCELLED:
            entry["cancelled"] += count
            continue
        entry["bookings"] += count
        if status == CONFIRMED and price is not None:
            try:
                amount = Decimal(price) * (quantity or 1) * count
            except InvalidOperation:  # never written so; a bad row is not revenue
                continue
            revenue[int(n)][currency or ""] += amount
    for entry, totals in zip(weeks, revenue, strict=True):
        entry["revenue"] = {cur: format(total, "f") for cur, total in sorted(totals.items())}
    return weeks


# --------------------------------------------------------------------------- experts


def _schedules(session: Session, expert_ids: Sequence[str], first: date, last: date
               ) -> tuple[dict[str, dict[int, Windows]], dict[str, dict[date, Windows]]]:
    """Every expert's weekly windows, and their overrides in ``first..last``: two
    queries for all of them."""
    weekly: dict[str, dict[int, Windows]] = defaultdict(dict)
    overrides: dict[str, dict[date, Windows]] = defaultdict(dict)
    if not expert_ids:
        return weekly, overrides
    for w in session.execute(
            select(WeeklyHours.expert_id, WeeklyHours.weekday, WeeklyHours.start_minute,
                   WeeklyHours.end_minute)
            .where(WeeklyHours.expert_id.in_(expert_ids))):
        weekly[w.expert_id].setdefault(w.weekday, []).append((w.start_minute,
                                                              w.end_minute))
    for o in session.execute(
            select(DateOverride.expert_id, DateOverride.date, DateOverride.windows)
            .where(DateOverride.expert_id.in_(expert_ids),
                   DateOverride.date >= first, DateOverride.date <= last)):
        overrides[o.expert_id][o.date] = [(int(s), int(e)) for s, e in o.windows]
    return weekly, overrides


def offered_minutes(tz: ZoneInfo, weekly: Mapping[int, Windows],
                    overrides: Mapping[date, Windows], start: datetime, end: datetime
                    ) -> int:
    """Working minutes of ``[start, end)``: the windows of every local date that can
    touch it (a day either side, for an expert whose zone is far from the shop's),
    clipped to it."""
    lo, hi = int(start.timestamp()), int(end.timestamp())
    first = start.astimezone(tz).date() - _DAY
    last = end.astimezone(tz).date() + _DAY
    seconds = 0
    for ws, we, _ in local_windows(tz, weekly, overrides, first, last):
        seconds += max(0, min(we, hi) - max(ws, lo))
    return seconds // 60


def _experts(session: Session, shop_id: str, shop_tz: ZoneInfo, period: Period,
             now: datetime) -> list[dict[str, Any]]:
    experts = session.execute(
        select(Expert.id, Expert.name, Expert.timezone)
        .where(Expert.shop_id == shop_id, Expert.deleted_at.is_(None))
        .order_by(Expert.name, Expert.id)).all()
    ids = [e.id for e in experts]
    # The overrides that can matter: the period's dates, two either side for zones far
    # from the shop's.
    weekly, overrides = _schedules(session, ids, period.first - 2 * _DAY,
                                   period.last + 2 * _DAY)
    # One row per session (live bookings of one expert at one start and end: only a
    # seated session's customers share those), so that its time counts once.
    booked: dict[str, int] = defaultdict(int)
    for expert_id, start, end in session.execute(
            select(Claim.expert_id, Claim.start_at, Claim.end_at)
            .where(_bookings_in(shop_id, period.start, period.end),
                   _counted(now, cancelled=False))
            .group_by(Claim.expert_id, Claim.start_at, Claim.end_at)):
        booked[expert_id] += int((end - start).total_seconds()) // 60
    out = []
    for e in experts:
        tz = ZoneInfo(e.timezone) if e.timezone else shop_tz
        offered = offered_minutes(tz, weekly[e.id], overrides[e.id], period.start,
                                  period.end)
        minutes = booked[e.id]
        out.append({"id": e.id, "name": e.name, "booked_minutes": minutes,
                    "offered_minutes": offered,
                    "fill_rate": round(minutes / offered, 4) if offered else None})
    return out


# --------------------------------------------------------------------------- refunds


def _refunds(session: Session, shop_id: str, period: Period) -> dict[str, int]:
    kind = case((Refund.shopify_status.in_(QUEUED_REFUNDS), "queued"),
                (Refund.shopify_status.in_(FAILED_REFUNDS), "failed"),
                else_="by_hand").label("kind")
    rows = (select(kind)
            .join(Order, and_(Order.shop_id == Refund.shop_id,
                              Order.order_id == Refund.order_id), isouter=True)
            .where(Refund.shop_id == shop_id,
                   or_(Refund.shopify_status.in_((*QUEUED_REFUNDS, *FAILED_REFUNDS)),
                       and_(Refund.shopify_status.is_(None),
                            Refund.created_at >= period.start,
                            Refund.created_at < period.end,
                            or_(Order.state.is_(None), Order.state != "cancelled"))))
            .subquery())
    counts = {"queued": 0, "failed": 0, "by_hand": 0}
    for name, count in session.execute(select(rows.c.kind, func.count())
                                       .group_by(rows.c.kind)):
        counts[str(name)] = int(count)
    return counts


# --------------------------------------------------------------------------- today


def _today(session: Session, shop_id: str, tz: ZoneInfo, today: date, now: datetime
           ) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Claim.id, Claim.start_at, Claim.end_at, Claim.status, Claim.customer_name,
               Claim.line_quantity, Service.title, Expert.name)
        .join(Service, Service.id == Claim.service_id, isouter=True)
        .join(Expert, Expert.id == Claim.expert_id, isouter=True)
        .where(_bookings_in(shop_id, _midnight(tz, today), _midnight(tz, today + _DAY)),
               _counted(now, cancelled=False))
        .order_by(Claim.start_at, Claim.id))
    return [{"id": r.id, "start": r.start_at.strftime(ISO), "end": r.end_at.strftime(ISO),
             "status": r.status, "service_title": r.title, "expert_name": r.name,
             "customer_name": r.customer_name, "seats": r.line_quantity or 1}
            for r in rows]


# --------------------------------------------------------------------------- the page


def home_stats(db: Database, clock: Clock, shop_id: str, params: Mapping[str, str]
               ) -> dict[str, Any]:
    """The home page's document (see the module docstring for what each number is)."""
    with db.read() as session:
        shop = session.get(Shop, shop_id)
        if shop is None:
            raise NotFound("no such shop")
        tz = ZoneInfo(shop.timezone)
        now = clock.now()
        today = now.astimezone(tz).date()
        period = parse_period(params, tz, today)
        weeks = _weekly(session, shop_id, period, now)
        refunds = _refunds(session, shop_id, period)
        return {
            "timezone": shop.timezone,
            "from": period.first.isoformat(),
            "to": period.last.isoformat(),
            "weeks": weeks,
            "experts": _experts(session, shop_id, tz, period, now),
            "refunds_waiting": sum(refunds.values()),
            "refunds": refunds,
            "cancellations": sum(w["cancelled"] for w in weeks),
            "today": _today(session, shop_id, tz, today, now),
        }
