"""Availability: the slots a storefront may offer for a service, over a range of shop dates.

Reads the service, the experts who offer it, their hours and what already claims their
time, then lets the pure slot engine (engine.domain.slots) do the arithmetic.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.clock import Clock
from engine.domain.schedule import parse_date
from engine.domain.slots import (
    ExpertCalendar,
    Instant,
    ServiceRules,
    Slot,
    merged_slots,
    wall_to_instant,
)
from engine.errors import NotFound, ValidationError
from engine.services.catalog import live_service
from engine.services.claims import busy_from_claims
from engine.services.shops import ShopRef
from engine.services.validation import timezone as parse_timezone
from engine.store import Database
from engine.store.models import DateOverride, Expert, ExpertService, Service, WeeklyHours

MAX_DAYS = 62
_DAYS = re.compile(r"[0-9]{1,2}")
# Ids this app makes are short (``svc_`` + 16 characters); anything much longer names
# nothing, and is refused before it reaches SQL.
MAX_ID_LENGTH = 64

# Busy time of one shop's experts within [start, end), read in the caller's session:
# (session, shop id, {expert id: email}, start, end) -> {expert id: [(start, end)]}.
# The experts' emails come along because that is what calendar providers look them up by,
# and the caller has just read them.
BusySource = Callable[[Session, str, Mapping[str, str | None], Instant, Instant],
                      Mapping[str, list[tuple[Instant, Instant]]]]


def no_busy(_s: Session, _shop: str, _experts: Mapping[str, str | None], _a: Instant,
            _b: Instant) -> dict[str, list[tuple[Instant, Instant]]]:
    return {}


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@dataclass(frozen=True)
class AvailabilityQuery:
    service_id: str
    start: date
    days: int
    expert_id: str | None = None
    tz: str | None = None
    #: ``expert=any``: each start once, with how many experts could take it.
    any_expert: bool = False


ANY = "any"


def parse_query(params: Mapping[str, str]) -> AvailabilityQuery:
    """The query string of ``GET /proxy/availability``; ValidationError names the parameter."""
    service = params.get("service", "").strip()
    if not service:
        raise ValidationError("the service parameter is required", field="service")
    if "start" not in params:
        raise ValidationError("the start parameter (YYYY-MM-DD) is required", field="start")
    start = parse_date(params["start"], where="start")
    raw_days = params.get("days", "").strip()
    if not raw_days:
        raise ValidationError("the days parameter (1-62) is required", field="days")
    # An ASCII-digit pattern, not str.isdigit (true for "²", which int() refuses), and
    # at most two digits before int() sees it.
    if not _DAYS.fullmatch(raw_days) or not 1 <= int(raw_days) <= MAX_DAYS:
        raise ValidationError(f"days must be a whole number from 1 to {MAX_DAYS}", field="days")
    expert = params.get("expert", "").strip() or None
    for name, value in (("service", service), ("expert", expert)):
        if value is not None and len(value) > MAX_ID_LENGTH:
            raise ValidationError(f"{name} is not an id (longer than {MAX_ID_LENGTH} "
                                  "characters)", field=name)
    tz = params.get("tz", "").strip() or None
    if tz is not None:
        parse_timezone("tz", tz)
    if start.year < 1970 or start.year > 9000:
        raise ValidationError("start is out of range", field="start")
    if expert == ANY:
        return AvailabilityQuery(service, start, int(raw_days), None, tz, any_expert=True)
    return AvailabilityQuery(service, start, int(raw_days), expert, tz)


def rules_of(service: Service) -> ServiceRules:
    return ServiceRules(
        duration=service.duration_minutes,
        interval=service.interval_minutes or service.duration_minutes,
        buffer_before=service.buffer_before_minutes,
        buffer_after=service.buffer_after_minutes,
        min_notice=service.min_notice_minutes,
        max_days_ahead=service.max_days_ahead,
    )


def expert_calendars(session: Session, shop: ShopRef, service_id: str,
                     expert_id: str | None, first: date, last: date
                     ) -> tuple[list[ExpertCalendar], dict[str, str | None]]:
    """The calendars of the live experts who offer the service (optionally just one), and
    their emails (what a calendar provider looks their busy time up by).

    Overrides are loaded for local dates first..last (callers widen by a day or two).
    """
    # The experts and their weekly windows in one query (an expert with no hours yet
    # comes back once, with NULL window columns).
    q = (select(Expert.id, Expert.timezone, Expert.email, WeeklyHours.weekday,
                WeeklyHours.start_minute, WeeklyHours.end_minute)
         .join(ExpertService, ExpertService.expert_id == Expert.id)
         .outerjoin(WeeklyHours, WeeklyHours.expert_id == Expert.id)
         .where(ExpertService.service_id == service_id, Expert.shop_id == shop.id,
                Expert.deleted_at.is_(None)))
    if expert_id is not None:
        q = q.where(Expert.id == expert_id)
    experts: dict[str, str] = {}
    emails: dict[str, str | None] = {}
    weekly: dict[str, dict[int, list[tuple[int, int]]]] = {}
    for row in session.execute(q):
        experts[row.id] = row.timezone or shop.timezone
        emails[row.id] = row.email
        days = weekly.setdefault(row.id, {})
        if row.weekday is not None:
            days.setdefault(row.weekday, []).append((row.start_minute, row.end_minute))
    if expert_id is not None and expert_id not in experts:
        raise NotFound(f"no expert {expert_id!r} offers this service")
    if not experts:
        return [], {}
    ids = sorted(experts)
    for days in weekly.values():
        for windows in days.values():
            windows.sort()
    overrides: dict[str, dict[date, list[tuple[int, int]]]] = {i: {} for i in ids}
    for o in session.execute(select(DateOverride.expert_id, DateOverride.date,
                                    DateOverride.windows)
                             .where(DateOverride.expert_id.in_(ids),
                                    DateOverride.date >= first, DateOverride.date <= last)):
        overrides[o.expert_id][o.date] = [(int(s), int(e)) for s, e in o.windows]
    return [ExpertCalendar(expert_id=i, tz=zone(experts[i]), weekly=weekly[i],
                           overrides=overrides[i]) for i in ids], emails


def shop_day_range(tz: ZoneInfo, start: date, days: int) -> tuple[Instant, Instant]:
    """The instants of local midnight of `start` and of `start + days` in the shop's zone."""
    return (wall_to_instant(tz, start, 0, edge="start"),
            wall_to_instant(tz, start + timedelta(days=days), 0, edge="start"))


# Slot instants repeat from request to request (every visitor of a service sees the
# same grid), so their text forms are memoized; bounded, pure functions of their input.
@lru_cache(maxsize=1 << 16)
def iso_utc(ts: Instant) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@lru_cache(maxsize=1 << 16)
def iso_local(ts: Instant, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, tz).isoformat()


def render_slots(slots: Sequence[Slot], tz: ZoneInfo) -> list[dict[str, Any]]:
    return [{"start": iso_utc(s.start), "end": iso_utc(s.end), "expert": s.expert_id,
             "local": iso_local(s.start, tz)} for s in slots]


def render_any(slots: Sequence[Slot], tz: ZoneInfo) -> list[dict[str, Any]]:
    """``expert=any``: one entry per start (slots come sorted by start, then expert)."""
    out: list[dict[str, Any]] = []
    for s in slots:
        if out and out[-1]["_start"] == s.start:
            out[-1]["experts_free"] += 1
            continue
        out.append({"_start": s.start, "start": iso_utc(s.start), "end": iso_utc(s.end),
                    "expert": ANY, "local": iso_local(s.start, tz), "experts_free": 1})
    for entry in out:
        del entry["_start"]
    return out


def availability(db: Database, clock: Clock, shop: ShopRef, query: AvailabilityQuery,
                 busy_source: BusySource = no_busy) -> dict[str, Any]:
    """``GET /proxy/availability``: slots whose start lies in the shop-local dates
    ``[start, start + days)``, sorted by start then expert."""
    shop_tz = zone(shop.timezone)
    range_start, range_end = shop_day_range(shop_tz, query.start, query.days)
    now = int(clock.now().timestamp())
    with db.lookup() as session:  # reads only: no BEGIN/ROLLBACK round trips
        # Expert-local dates can differ from shop-local dates by up to a day either way.
        first, last = query.start - timedelta(days=2), query.start + timedelta(days=query.days + 2)
        # The service's rules and its experts' hours change rarely: a process-local cache
        # (engine.store.db.ReadCache: void after any local write, at most 1 s old).
        key = ("availability", shop.id, query.service_id, query.expert_id, first, last)
        cached = db.cache.get(key)
        if cached is None:
            service = live_service(session, shop.id, query.service_id)
            cached = (rules_of(service),
                      *expert_calendars(session, shop, service.id, query.expert_id, first,
                                        last))
            db.cache.put(key, cached)
        rules, cals, emails = cached
        if cals:
            pad = (rules.buffer_before + rules.buffer_after + rules.duration) * 60
            ids = [c.expert_id for c in cals]
            # What is already claimed here (holds, bookings) and what the shop's calendar
            # provider says is busy both take time away.
            claimed = busy_from_claims(session, ids, range_start - pad, range_end + pad,
                                       clock.now())
            external = busy_source(session, shop.id, emails, range_start - pad,
                                   range_end + pad)
            if claimed or external:
                cals = [replace(c, busy=(*claimed.get(c.expert_id, ()),
                                         *external.get(c.expert_id, ()))) for c in cals]
    slots = merged_slots(cals, rules, now=now, range_start=range_start, range_end=range_end)
    out_tz = zone(query.tz) if query.tz else shop_tz
    render = render_any if query.any_expert else render_slots
    return {"shop_timezone": shop.timezone, "slots": render(slots, out_tz)}
