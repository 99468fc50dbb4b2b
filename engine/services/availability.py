"""Availability: the slots a storefront may offer for a service, over a range of shop dates.

Reads the service, the experts who offer it, their hours and what already claims their
time, then lets the pure slot engine (engine.domain.slots) do the arithmetic.

Seats and limits reach the engine as inputs. For a service with ``seats`` > 1 the live
claims of *this* service are grouped into sessions (expert, start -> seats left =
``seats`` minus their live seats, live judged on time by ``claims.live_clause``); every
other claim is busy time. Where a limit exists (the service's or an expert's), the
periods in which it is reached are read from ``capacity_counters`` (the database's
count, the one that refuses the hold) and corrected for sessions whose seats are all
stale holds (the next writer expires them first, so they do not count for it either).
A service with one seat and no limits anywhere -- the common case, decided from the
cached facts -- takes the old path: one query, busy ranges only.
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

import orjson
from sqlalchemy import bindparam, exists, func, select
from sqlalchemy.orm import Session, aliased

from engine.clock import Clock
from engine.domain.schedule import parse_date
from engine.domain.slots import (
    ExpertCalendar,
    Instant,
    ServiceRules,
    Slot,
    claimed_range,
    merged_slots,
    wall_to_instant,
)
from engine.errors import NotFound, ValidationError
from engine.services.capacity import EXPERT_SCOPE, caps
from engine.services.catalog import live_service
from engine.services.claims import LiveClaim, live_claims, live_clause
from engine.services.shops import AVAILABILITY_VERSIONS, CATALOG_VERSIONS, ShopRef
from engine.services.validation import timezone as parse_timezone
from engine.store import Database
from engine.store.db import Answer
from engine.store.models import (
    CONFIRMED,
    HELD,
    PENDING,
    CapacityCounter,
    Claim,
    ClaimSession,
    DateOverride,
    Expert,
    ExpertService,
    Service,
    WeeklyHours,
)
from engine.store.types import UTCDateTime, epoch

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
        seats=max(1, int(service.seats or 1)),
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


# --------------------------------------------------------------------------- capacity

_KIND = {"D": "day", "W": "week", "M": "month"}


@dataclass(frozen=True)
class Limits:
    """The caps in force for one service's availability: ``{scope: {expert: {period:
    cap}}}`` with scope the service id (the service's limits, the same for every
    expert) or ``*`` (each expert's own), only the periods that have a cap."""

    caps: Mapping[str, Mapping[str, Mapping[str, int]]]

    def floor(self) -> int:
        return min(c for by_expert in self.caps.values() for periods in by_expert.values()
                   for c in periods.values())

    def periods(self) -> set[str]:
        return {p for by_expert in self.caps.values() for periods in by_expert.values()
                for p in periods}


def limits_of(session: Session, service: Service, expert_ids: Sequence[str]) -> Limits | None:
    """The service's and its experts' caps, or None when there are none at all (the
    common case: availability then skips every capacity step)."""
    own = {p: c for p, c in caps(service.limits).items() if c is not None}
    experts: dict[str, dict[str, int]] = {}
    if expert_ids:
        for expert_id, limits in session.execute(
                select(Expert.id, Expert.limits).where(Expert.id.in_(expert_ids))):
            mine = {p: c for p, c in caps(limits).items() if c is not None}
            if mine:
                experts[expert_id] = mine
    out: dict[str, dict[str, dict[str, int]]] = {}
    if own:
        out[service.id] = {e: own for e in expert_ids}
    if experts:
        out[EXPERT_SCOPE] = experts
    return Limits(out) if out else None


def period_keys(first: date, last: date, periods: set[str]) -> list[str]:
    """The ``capacity_counters.period`` values of the local dates ``first..last`` (any
    zone: the caller widens the dates), for the periods asked."""
    keys: set[str] = set()
    day = first
    while day <= last:
        year, week, _ = day.isocalendar()
        if "day" in periods:
            keys.add(f"D{day.isoformat()}")
        if "week" in periods:
            keys.add(f"W{year:04d}-W{week:02d}")
        if "month" in periods:
            keys.add(f"M{day.year:04d}-{day.month:02d}")
        day += timedelta(days=1)
    return sorted(keys)


# Built once, like the busy query: the counters at or above the smallest cap (the caller
# compares each with its own cap), and the sessions whose live seats are all stale.
_COUNTERS = (select(CapacityCounter.expert_id, CapacityCounter.scope, CapacityCounter.period,
                    CapacityCounter.used)
             .where(CapacityCounter.expert_id.in_(bindparam("ids", expanding=True)),
                    CapacityCounter.scope.in_(bindparam("scopes", expanding=True)),
                    CapacityCounter.period.in_(bindparam("periods", expanding=True)),
                    CapacityCounter.used >= bindparam("floor")))
_STALE = aliased(Claim)
_STALE_SESSIONS = (
    select(ClaimSession.expert_id, ClaimSession.service_id, ClaimSession.day_key,
           ClaimSession.week_key, ClaimSession.month_key)
    .where(ClaimSession.key.in_(
        select(_STALE.session_key)
        .where(_STALE.expert_id.in_(bindparam("ids", expanding=True)),
               _STALE.status.in_((HELD, PENDING)),
               _STALE.expires_at <= bindparam("now", type_=UTCDateTime()))),
        ClaimSession.seats_used > 0,
        ~exists().where(Claim.session_key == ClaimSession.key,
                        live_clause(bindparam("now", type_=UTCDateTime())))))


def closed_periods(session: Session, limits: Limits, expert_ids: Sequence[str],
                   first: date, last: date, now: datetime) -> dict[str, set[str]]:
    """Per expert, the periods (``Periods`` keys, no prefix) of local dates first..last
    in which a limit is reached: the database's counter of live sessions, less the
    sessions it still counts whose every seat is a stale hold or a lapsed pending
    booking (a writer expires those before it writes: they do not refuse it)."""
    periods = limits.periods()
    scopes = sorted(limits.caps)
    full: dict[tuple[str, str, str], int] = {}
    for expert_id, scope, period, used in session.execute(_COUNTERS, {
            "ids": list(expert_ids), "scopes": scopes, "floor": limits.floor(),
            "periods": period_keys(first, last, periods)}):
        cap = limits.caps.get(scope, {}).get(expert_id, {}).get(_KIND[period[0]])
        if cap is not None and used >= cap:
            full[(expert_id, scope, period)] = int(used)
    if not full:
        return {}
    for expert_id, service_id, day, week, month in session.execute(_STALE_SESSIONS, {
            "ids": sorted({e for e, _, _ in full}), "now": now}):
        for scope in (service_id, EXPERT_SCOPE):
            for period in (f"D{day}", f"W{week}", f"M{month}"):
                key = (expert_id, scope, period)
                if key in full:
                    full[key] -= 1
    out: dict[str, set[str]] = {}
    for (expert_id, scope, period), used in full.items():
        if used >= limits.caps[scope][expert_id][_KIND[period[0]]]:
            out.setdefault(expert_id, set()).add(period[1:])
    return out


def seated_calendar(cal: ExpertCalendar, rules: ServiceRules, service_id: str,
                    claims: Sequence[LiveClaim], external: Sequence[tuple[Instant, Instant]],
                    closed: set[str] | None) -> ExpertCalendar:
    """The calendar with this service's sessions (when it has seats) apart from the rest
    of the busy time, and the closed periods. A session occupies its claimed range under
    the service's current rules (the engine blocks it); whatever of its claims lies
    outside that range (buffers since shortened) stays busy."""
    busy: list[tuple[Instant, Instant]] = list(external)
    taken: dict[Instant, int] = {}
    grouped = rules.seats > 1
    for c in claims:
        if not grouped or c.service_id != service_id:
            busy.append((c.claim_start, c.claim_end))
            continue
        taken[c.start] = taken.get(c.start, 0) + c.seats
        r0, r1 = claimed_range(c.start, rules)
        if c.claim_start < r0:
            busy.append((c.claim_start, min(c.claim_end, r0)))
        if c.claim_end > r1:
            busy.append((max(c.claim_start, r1), c.claim_end))
    sessions = {t: max(0, rules.seats - used) for t, used in taken.items()}
    return replace(cal, busy=busy, sessions=sessions, closed=frozenset(closed or ()))


# Slot instants repeat from request to request (every visitor of a service sees the
# same grid), so their text forms are memoized; bounded, pure functions of their input.
@lru_cache(maxsize=1 << 16)
def iso_utc(ts: Instant) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@lru_cache(maxsize=1 << 16)
def iso_local(ts: Instant, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, tz).isoformat()


def render_slots(slots: Sequence[Slot], tz: ZoneInfo, seated: bool = False
                 ) -> list[dict[str, Any]]:
    """One entry per slot; a service with seats > 1 also says how many are left."""
    if seated:
        return [{"start": iso_utc(s.start), "end": iso_utc(s.end), "expert": s.expert_id,
                 "local": iso_local(s.start, tz), "seats_left": s.seats_left} for s in slots]
    return [{"start": iso_utc(s.start), "end": iso_utc(s.end), "expert": s.expert_id,
             "local": iso_local(s.start, tz)} for s in slots]


def render_any(slots: Sequence[Slot], tz: ZoneInfo, seated: bool = False
               ) -> list[dict[str, Any]]:
    """``expert=any``: one entry per start (slots come sorted by start, then expert), with
    how many experts could take it; for a service with seats > 1 also ``seats_left``:
    the most that any *one* of them has left, i.e. the largest hold that can succeed
    there (a hold is one expert's session; seats of different experts don't add up)."""
    out: list[dict[str, Any]] = []
    for s in slots:
        if out and out[-1]["_start"] == s.start:
            last = out[-1]
            last["experts_free"] += 1
            if seated and s.seats_left > last["seats_left"]:
                last["seats_left"] = s.seats_left
            continue
        entry = {"_start": s.start, "start": iso_utc(s.start), "end": iso_utc(s.end),
                 "expert": ANY, "local": iso_local(s.start, tz), "experts_free": 1}
        if seated:
            entry["seats_left"] = s.seats_left
        out.append(entry)
    for entry in out:
        del entry["_start"]
    return out


# --------------------------------------------------------------------------- answers
#
# An availability answer is a function of (1) the catalog (the service's rules, its
# experts' hours and limits: the read cache's entry, replaced after any write of this
# process and whenever the shop's catalog version moves: migration 0016), (2) the live
# claims of its experts (their ``availability_versions``, bumped by the database's
# triggers on ``claims`` in the claim's own transaction: migration 0015), (3) the busy
# time the shop's calendar provider reports (read on every request, compared by value)
# and (4) the clock: a slot leaves the answer when its notice runs out, one enters when
# the horizon reaches it, and a hold or a pending booking frees its time when it
# expires. The answer is cached per process with the instants it is valid between,
# computed from those thresholds, so a cached answer is exactly the answer this request
# would compute -- never one that offers a slot another worker's hold has taken.

_VERSION_OF = (select(AVAILABILITY_VERSIONS.c.expert_id, AVAILABILITY_VERSIONS.c.version)
               .where(AVAILABILITY_VERSIONS.c.expert_id.in_(bindparam("ids", expanding=True))))
_CATALOG_VERSION = select(CATALOG_VERSIONS.c.version).where(
    CATALOG_VERSIONS.c.shop_id == bindparam("shop"))
_NOW = bindparam("now", type_=UTCDateTime())
# The busy ranges of live claims in the window with when each stops being live (NULL:
# never, by time alone). ``claim_end > lo`` leads (index ix_claims_expert_end: the
# claims ending after the window opens, not every past claim of the expert).
_BUSY_UNTIL = (select(Claim.expert_id, epoch(Claim.claim_start), epoch(Claim.claim_end),
                      Claim.status, Claim.expires_at)
               .where(Claim.expert_id.in_(bindparam("ids", expanding=True)),
                      Claim.claim_end > bindparam("lo", type_=UTCDateTime()),
                      Claim.claim_start < bindparam("hi", type_=UTCDateTime()),
                      live_clause(_NOW)))
# The first instant a hold or a pending booking of these experts lapses (anywhere: the
# limits' stale sessions look at whole days, weeks and months).
_NEXT_LAPSE = (select(func.min(Claim.expires_at))
               .where(Claim.expert_id.in_(bindparam("ids", expanding=True)),
                      Claim.status.in_((HELD, PENDING)), Claim.expires_at > _NOW))

FOREVER = float("inf")


def _freeze(external: Mapping[str, Sequence[tuple[Instant, Instant]]]) -> tuple[Any, ...]:
    return tuple(sorted((k, tuple(v)) for k, v in external.items() if v))


def _valid_until(cals: Sequence[ExpertCalendar], rules: ServiceRules, slots: Sequence[Slot],
                 now: Instant, range_start: Instant, range_end: Instant) -> float:
    """The first clock reading (POSIX seconds, fractional) at which notice or horizon
    would change the answer computed at ``now`` (whole seconds, as the engine sees it)."""
    until = FOREVER
    notice = rules.min_notice * 60
    if slots:  # the earliest slot drops out once now + notice passes it
        until = min(until, min(s.start for s in slots) - notice + 1)
    horizon = rules.max_days_ahead * 86_400
    reach = now + horizon
    if reach < range_end:
        # The next grid start at or after the horizon enters when the horizon passes it.
        lo = max(reach, range_start)
        hi = min(range_end, lo + 8 * 86_400)
        open_rules = replace(rules, min_notice=0, max_days_ahead=(hi - lo) // 86_400 + 2)
        nxt = hi
        for cal in cals:
            bare = replace(cal, busy=(), sessions={}, closed=frozenset())
            found = merged_slots([bare], open_rules, now=lo, range_start=lo, range_end=hi)
            if found:
                nxt = min(nxt, found[0].start)
        until = min(until, nxt - horizon + 1)
    return until


def _compute(session: Session, clock: Clock, shop: ShopRef, query: AvailabilityQuery,
             catalog: tuple[Any, ...], busy_source: BusySource,
             external: Mapping[str, list[tuple[Instant, Instant]]] | None = None
             ) -> tuple[dict[str, Any], float, float]:
    """The answer, the clock reading it was computed at and the first one at which it
    may differ (see above)."""
    shop_tz = zone(shop.timezone)
    range_start, range_end = shop_day_range(shop_tz, query.start, query.days)
    at = clock.now()
    now = int(at.timestamp())
    rules, cals, emails, limits, service_id = catalog
    first = query.start - timedelta(days=2)
    last = query.start + timedelta(days=query.days + 2)
    until = FOREVER
    if cals:
        pad = (rules.buffer_before + rules.buffer_after + rules.duration) * 60
        ids = [c.expert_id for c in cals]
        lo, hi = range_start - pad, range_end + pad
        # What the shop's calendar provider says is busy takes time away, and so
        # does what is already claimed here (holds, bookings).
        if external is None:
            external = busy_source(session, shop.id, emails, lo, hi)
        if rules.seats == 1 and limits is None:  # the common case: busy ranges only
            claimed: dict[str, list[tuple[Instant, Instant]]] = {}
            for expert_id, a, b, status, expires in session.execute(_BUSY_UNTIL, {
                    "ids": ids, "lo": datetime.fromtimestamp(lo, tz=at.tzinfo),
                    "hi": datetime.fromtimestamp(hi, tz=at.tzinfo), "now": at}):
                claimed.setdefault(expert_id, []).append((int(a), int(b)))
                if status != CONFIRMED and expires is not None:
                    until = min(until, expires.timestamp())
            if claimed or external:
                cals = [replace(c, busy=(*claimed.get(c.expert_id, ()),
                                         *external.get(c.expert_id, ()))) for c in cals]
        else:
            claims = live_claims(session, ids, lo, hi, at)
            lapse = session.execute(_NEXT_LAPSE, {"ids": ids, "now": at}).scalar()
            if lapse is not None:
                until = min(until, lapse.timestamp())
            closed = ({} if limits is None else
                      closed_periods(session, limits, ids, first, last, at))
            cals = [seated_calendar(c, rules, service_id, claims.get(c.expert_id, ()),
                                    external.get(c.expert_id, ()),
                                    closed.get(c.expert_id)) for c in cals]
    slots = merged_slots(cals, rules, now=now, range_start=range_start, range_end=range_end)
    if cals:
        until = min(until, _valid_until(cals, rules, slots, now, range_start, range_end))
    out_tz = zone(query.tz) if query.tz else shop_tz
    render = render_any if query.any_expert else render_slots
    body = {"shop_timezone": shop.timezone, "slots": render(slots, out_tz, rules.seats > 1)}
    return body, at.timestamp(), until


def catalog_version(session: Session, shop: ShopRef) -> int:
    """The shop's catalog version: as read with the shop (web/auth.py), else read now."""
    if shop.catalog_version is not None:
        return shop.catalog_version
    return int(session.execute(_CATALOG_VERSION, {"shop": shop.id}).scalar() or 0)


def _catalog(db: Database, session: Session, shop: ShopRef, query: AvailabilityQuery
             ) -> tuple[Any, ...]:
    """The service's rules, its experts' calendars and emails, its limits and id, from the
    process read cache (engine.store.db.ReadCache) while the shop's catalog version is
    the one they were read at (migration 0016: any process's catalog write moves it), so
    never older than the version the request read: they change rarely."""
    # Expert-local dates can differ from shop-local dates by up to a day either way.
    first = query.start - timedelta(days=2)
    last = query.start + timedelta(days=query.days + 2)
    # (The shop's zone is an expert's default: part of the entry, though a change of it
    # moves the version too.)
    key = ("availability", shop.id, shop.timezone, query.service_id, query.expert_id,
           first, last)
    version = catalog_version(session, shop)
    cached: tuple[Any, ...] | None = db.cache.get(key, version=version)
    if cached is None:
        # Read after the version: a catalog write committed in between makes the entry
        # newer than its version (the next request reads again), never older.
        service = live_service(session, shop.id, query.service_id)
        cals, emails = expert_calendars(session, shop, service.id, query.expert_id,
                                        first, last)
        cached = (rules_of(service), cals, emails,
                  limits_of(session, service, [c.expert_id for c in cals]), service.id)
        db.cache.put(key, cached, version=version)
    return cached


def claim_versions(session: Session, shop: ShopRef, query: AvailabilityQuery,
                   expert_ids: Sequence[str]) -> tuple[tuple[str, int], ...]:
    """The claim versions of ``expert_ids`` (by expert id; experts with no version row
    yet left out): as read with the shop when the request's lookup read them for this
    service and every one of these experts was linked to it then, else read now."""
    read = shop.claim_versions
    if read is not None and read.service_id == query.service_id:
        versions = read.of(expert_ids)
        if versions is not None:
            return versions
    return tuple(sorted((str(e), int(v)) for e, v in session.execute(
        _VERSION_OF, {"ids": list(expert_ids)})))


def availability(db: Database, clock: Clock, shop: ShopRef, query: AvailabilityQuery,
                 busy_source: BusySource = no_busy) -> dict[str, Any]:
    """``GET /proxy/availability``: slots whose start lies in the shop-local dates
    ``[start, start + days)``, sorted by start then expert (computed afresh; the route
    serves :func:`availability_json`, the same answer through the answer cache)."""
    with db.lookup() as session:  # reads only: no BEGIN/ROLLBACK round trips
        catalog = _catalog(db, session, shop, query)
        return _compute(session, clock, shop, query, catalog, busy_source)[0]


def availability_json(db: Database, clock: Clock, shop: ShopRef, query: AvailabilityQuery,
                      busy_source: BusySource = no_busy) -> bytes:
    """:func:`availability` as the JSON body, from the per-process answer cache when the
    cached answer is still exactly this one (same catalog entry, same claim versions of
    its experts, same provider busy time, the clock within its validity)."""
    with db.lookup() as session:
        catalog = _catalog(db, session, shop, query)
        cals, emails = catalog[1], catalog[2]
        external: Mapping[str, list[tuple[Instant, Instant]]] = {}
        versions: tuple[Any, ...] = ()
        if cals:
            rules = catalog[0]
            range_start, range_end = shop_day_range(zone(shop.timezone), query.start,
                                                    query.days)
            pad = (rules.buffer_before + rules.buffer_after + rules.duration) * 60
            external = busy_source(session, shop.id, emails, range_start - pad,
                                   range_end + pad)
            # Read before the claims (on PostgreSQL each statement has its own snapshot;
            # usually with the shop, in the request's first statement): a claim
            # committed in between makes the answer newer than its versions, and the
            # next request sees new versions and recomputes -- never the reverse.
            versions = claim_versions(session, shop, query, [c.expert_id for c in cals])
        key = (shop.id, shop.timezone, query)
        frozen = _freeze(external)
        entry = db.answers.get(key)
        if entry is not None and entry.catalog is catalog and entry.versions == versions \
                and entry.external == frozen \
                and entry.since <= clock.now().timestamp() < entry.until:
            return entry.body
        body, since, until = _compute(session, clock, shop, query, catalog, busy_source,
                                      external)
    data = orjson.dumps(body)
    db.answers.put(key, Answer(catalog, versions, frozen, since, until, data))
    return data
