"""Holds: a storefront visitor's ten-minute claim on a slot, before checkout.

``create_hold`` checks, in the contract's order: the answers fit the service's questions
(422 ``invalid_answers``) and the start is a slot the engine offers (422 ``not_a_slot``),
the visitor is under the live-hold limit (429 ``too_many_holds``), then the database
decides: the time is free and the session has the seats asked for (409
``slot_unavailable``), and no limit of the service or the expert is reached (409
``limit_reached``). Seats and limits are the database's rules (engine.services.capacity):
a hold asks for ``seats`` and inserts its claim; nothing here counts.

``expert: "any"`` judges every expert who offers the service, orders those who could
take the start (engine.services.assignment) and tries them in turn, each in a
savepoint: one who lost a race, filled up or hit a limit meanwhile is passed over, and
409 comes only when nobody can take it. The per-visitor limit is checked once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from engine.clock import Clock
from engine.config import Config
from engine.domain.capacity import session_key
from engine.domain.slots import ExpertCalendar, ServiceRules, claimed_range, is_offered
from engine.errors import NotFound, TooManyRequests, Unprocessable, ValidationError
from engine.services import assignment, capacity, questions
from engine.services.availability import (
    ANY,
    BusySource,
    catalog_version,
    expert_calendars,
    no_busy,
    rules_of,
    zone,
)
from engine.services.capacity import LimitReached
from engine.services.catalog import live_expert, live_service
from engine.services.claims import (
    SlotUnavailable,
    claim_expiry_window,
    insert_last,
    insert_new,
    new_claim_insert,
)
from engine.services.shops import ShopRef
from engine.services.validation import integer
from engine.services.validation import timezone as parse_timezone
from engine.store import Database, new_id
from engine.store.models import HELD, RELEASED, Claim, Expert
from engine.store.types import UTCDateTime


@dataclass(frozen=True)
class HoldRequest:
    service_id: str
    expert_id: str
    start: datetime
    tz: str | None = None
    seats: int = 1
    answers: dict[str, Any] = field(default_factory=dict)


def parse_instant(name: str, value: Any) -> datetime:
    """An ISO-8601 UTC instant such as ``2026-12-01T08:00:00Z`` (an offset is accepted)."""
    if not isinstance(value, str) or not 10 < len(value) <= 40:
        raise ValidationError(f"{name} must be an ISO-8601 instant such as "
                              "2026-12-01T08:00:00Z", field=name)
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ValidationError(f"{name} is not a valid ISO-8601 instant", field=name) from None
    if parsed.tzinfo is None:
        raise ValidationError(f"{name} must carry a timezone (end it with Z)", field=name)
    if not 1970 <= parsed.year <= 9000:
        raise ValidationError(f"{name} is out of range", field=name)
    return parsed.astimezone(UTC)


def parse_hold(doc: Any) -> HoldRequest:
    if not isinstance(doc, dict):
        raise ValidationError("the request body must be a JSON object")
    unknown = sorted(set(doc) - {"service", "expert", "start", "tz", "seats", "answers"})
    if unknown:
        raise ValidationError(f"unknown field {unknown[0]!r}", field=unknown[0])
    for name in ("service", "expert", "start"):
        if name not in doc:
            raise ValidationError(f"{name} is required", field=name)
        if not isinstance(doc[name], str) or not doc[name].strip():
            raise ValidationError(f"{name} must be a non-empty string", field=name)
    tz = doc.get("tz")
    if tz is not None:
        tz = parse_timezone("tz", tz)
    seats = integer(1, MAX_SEATS)("seats", doc["seats"]) if "seats" in doc else 1
    answers = doc.get("answers", {})
    if not isinstance(answers, dict):
        raise ValidationError("answers must be an object of question ids to answers",
                              field="answers")
    return HoldRequest(doc["service"].strip(), doc["expert"].strip(),
                       parse_instant("start", doc["start"]), tz, seats, dict(answers))


MAX_SEATS = 1000


def _describe(start: datetime, end: datetime, tz: ZoneInfo) -> str:
    a, b = start.astimezone(tz), end.astimezone(tz)
    day = f"{a:%a} {a.day} {a:%b %Y}"
    return f"{day}, {a:%H:%M}–{b:%H:%M} ({tz.key})"  # noqa: RUF001 (an en dash, on purpose)


def appointment_text(start: datetime, end: datetime, shop_tz: str, customer_tz: str | None
                     ) -> str:
    """The ``Appointment`` line-item property: in the customer's words and the shop's."""
    shop_words = _describe(start, end, zone(shop_tz))
    if not customer_tz or customer_tz == shop_tz:
        return shop_words
    return f"{_describe(start, end, zone(customer_tz))} / {shop_words}"


# PostgreSQL (migration 0017): the visitor's transaction-scoped advisory lock, the
# expiry of the expert's stale claims over the hold's range, then the visitor's live holds
# counted after the lock -- one round trip.
_HOLD_BEGIN = text("SELECT consultbook_hold_begin(:k, :shop, :visitor, :now, :expert, :lo, "
                   ":hi)").bindparams(bindparam("now", type_=UTCDateTime()),
                                      bindparam("lo", type_=UTCDateTime()),
                                      bindparam("hi", type_=UTCDateTime()))


# PostgreSQL, one expert: the whole hold in one statement, run as a transaction of its own
# (autocommit: no BEGIN, no COMMIT): consultbook_hold_begin (the visitor's lock, the
# expiry, the visitor's live holds), and the claim inserted only while the visitor is
# under the limit -- its constraints and triggers deciding the rest.
_HOLD_INSERT = new_claim_insert(
    func.consultbook_hold_begin(
        bindparam("k"), bindparam("shop_id"), bindparam("visitor"),
        bindparam("now", type_=UTCDateTime()), bindparam("expert_id"),
        bindparam("lo", type_=UTCDateTime()), bindparam("hi", type_=UTCDateTime()))
    < bindparam("max"))


def _begin(session: Session, shop_id: str, visitor: str, now: datetime) -> int:
    """The visitor's live holds (the per-visitor limit), with one visitor's hold
    requests serialized until the transaction ends: the advisory lock on PostgreSQL
    (taken first, then counted), the database lock on SQLite (every writer holds it).
    (No expert here: on PostgreSQL the expert's lock and the expiry of its stale claims
    belong to a one-expert hold's single statement, :func:`_write_one_pg`, where the lock
    lasts that statement; the writes of this transaction expire their own.)"""
    params = {"shop": shop_id, "visitor": visitor, "now": now}
    if session.get_bind().dialect.name == "postgresql":
        return int(session.scalar(_HOLD_BEGIN, {"k": _visitor_key(shop_id, visitor),
                                                "expert": None, "lo": now, "hi": now,
                                                **params}) or 0)
    return int(session.scalar(_LIVE_HOLDS, params) or 0)


@dataclass(frozen=True)
class _ServiceFacts:
    id: str
    duration_minutes: int
    rules: ServiceRules
    seats: int = 1
    assignment: str = assignment.LEAST_BOOKED
    questions: tuple[dict[str, Any], ...] = ()
    caps: dict[str, int | None] = field(default_factory=dict)


@dataclass(frozen=True)
class _ExpertFacts:
    id: str
    name: str
    priority: int = 50
    weight: int = 1
    caps: dict[str, int | None] = field(default_factory=dict)


@dataclass(frozen=True)
class _Facts:
    """What a hold reads before it writes (see :func:`_facts`)."""

    service: _ServiceFacts
    experts: dict[str, _ExpertFacts]
    cals: tuple[ExpertCalendar, ...]
    emails: dict[str, str | None]

    def window(self, expert_id: str) -> capacity.Facts:
        """The hold's capacity facts as this cache has them: only for how wide its
        insert expires stale claims (engine.services.claims.insert_last), never for
        the capacities the database counts against."""
        tz = next(c.tz.key for c in self.cals if c.expert_id == expert_id)
        return capacity.Facts(self.service.seats, self.service.caps,
                              self.experts[expert_id].caps, tz)


def _load_facts(session: Session, shop: ShopRef, req: HoldRequest, local_day: date
                ) -> _Facts:
    service = live_service(session, shop.id, req.service_id)
    facts = _ServiceFacts(service.id, service.duration_minutes, rules_of(service),
                          max(1, int(service.seats or 1)),
                          service.assignment or assignment.LEAST_BOOKED,
                          tuple(service.questions or ()), capacity.caps(service.limits))
    first, last = local_day - timedelta(days=2), local_day + timedelta(days=2)
    if req.expert_id != ANY:
        expert = live_expert(session, shop.id, req.expert_id)
        # Only this expert's calendar (not every expert of the service): same answer,
        # a fraction of the rows.
        try:
            cals, emails = expert_calendars(session, shop, service.id, expert.id, first, last)
        except NotFound:
            cals, emails = [], {}
        one = _ExpertFacts(expert.id, expert.name, expert.priority, expert.weight,
                           capacity.caps(expert.limits))
        return _Facts(facts, {expert.id: one}, tuple(cals), emails)
    # Every live expert of the service: their calendars, then their names, priorities
    # and weights in one more query.
    cals, emails = expert_calendars(session, shop, service.id, None, first, last)
    experts: dict[str, _ExpertFacts] = {}
    if cals:
        for r in session.execute(select(Expert.id, Expert.name, Expert.priority,
                                        Expert.weight, Expert.limits)
                                 .where(Expert.id.in_([c.expert_id for c in cals]))):
            experts[r.id] = _ExpertFacts(r.id, r.name, int(r.priority), int(r.weight or 1),
                                         capacity.caps(r.limits))
    return _Facts(facts, experts, tuple(cals), emails)


def _facts(db: Database, session: Session, shop: ShopRef, req: HoldRequest) -> _Facts:
    """The catalog facts of a hold: the service (rules, seats, assignment, questions) and
    the expert asked for -- or, for ``any``, every live expert offering the service --
    with their calendars. From the read cache while the shop's catalog version is the
    one they were read at (migration 0016: any process's catalog write moves it; the
    version is read with the shop, before these rows), so never older than the version
    the request read. None of it decides a booking: the seats and limits are read again
    in the write transaction, and the database refuses what is taken."""
    local_day = req.start.date()
    key = ("hold", shop.id, shop.timezone, req.service_id, req.expert_id, local_day)
    version = catalog_version(session, shop)
    cached: _Facts | None = db.cache.get(key, version=version)
    if cached is None:
        cached = _load_facts(session, shop, req, local_day)
        db.cache.put(key, cached, version=version)
    return cached


def _new_hold(config: Config, shop: ShopRef, req: HoldRequest, service: _ServiceFacts,
              expert_id: str, claimed: tuple[datetime, datetime], answers: dict[str, str],
              visitor: str, now: datetime) -> Claim:
    end = req.start + timedelta(minutes=service.duration_minutes)
    return Claim(id=new_id("bk"), shop_id=shop.id, service_id=service.id,
                 expert_id=expert_id, start_at=req.start, end_at=end,
                 claim_start=claimed[0], claim_end=claimed[1], status=HELD,
                 expires_at=now + timedelta(seconds=config.hold_ttl_seconds),
                 visitor=visitor, customer_tz=req.tz, seats=req.seats,
                 answers=answers or None, sequence=0, created_at=now, updated_at=now)


def _assign(session: Session, now: datetime, facts: _Facts,
            candidates: list[_ExpertFacts], make: Callable[[str], Claim]) -> Claim:
    """``expert: "any"``: try the candidates in the contract's order
    (engine.services.assignment), each in a savepoint of its own, and keep the first
    the database accepts. One whose time is taken, whose session is full or who is at
    a limit by now is passed over; ``409 slot_unavailable`` only when none can take it.
    (A refused savepoint releases what it locked, on PostgreSQL too, so a loser holds
    no lock of an expert it did not get.)"""
    service = facts.service
    stats = assignment.booking_stats(session, service.id, [c.id for c in candidates], now)
    order = assignment.ranked(service.assignment,
                              [assignment.Candidate(c.id, c.priority, c.weight)
                               for c in candidates], stats)
    for candidate in order:
        hold = make(candidate.id)
        try:
            with session.begin_nested():
                # (expires the stale claims over it first)
                insert_last(session, hold, now, facts.window(candidate.id))
        except (SlotUnavailable, LimitReached):
            continue
        return hold
    raise SlotUnavailable("no expert can take this time any more; please choose another")


_DAY = 86400
DEADLOCK_ATTEMPTS = 5

# The visitor's live holds (the per-visitor limit), built once.
_C = Claim.__table__.c
_LIVE_HOLDS = (select(func.count()).select_from(Claim.__table__)
               .where(_C.shop_id == bindparam("shop"), _C.visitor == bindparam("visitor"),
                      _C.status == HELD,
                      _C.expires_at > bindparam("now", type_=UTCDateTime())))


def create_hold(db: Database, clock: Clock, config: Config, shop: ShopRef, req: HoldRequest,
                visitor: str, busy_source: BusySource = no_busy) -> dict[str, Any]:
    now = clock.now()
    # Reads first, outside the write transaction: the catalog facts (from the read cache)
    # and what the shop's calendar provider says is busy -- which may be a network call
    # on a cache miss, and must not hold the database's write lock (SQLite) or the
    # visitor lock while it runs. What decides double booking, seats and limits is the
    # database, on the insert below.
    with db.lookup() as session:
        facts = _facts(db, session, shop, req)
        service = facts.service
        answers = questions.check(service.questions, req.answers)
        if req.expert_id != ANY and not facts.cals:
            raise NotFound(f"expert {req.expert_id!r} does not offer this service")
        start_ts = int(req.start.timestamp())
        offered = [] if req.start.microsecond else [
            c.expert_id for c in facts.cals
            if c.expert_id in facts.experts
            and is_offered(c, service.rules, now=int(now.timestamp()), start=start_ts)]
        if not offered:
            who = "any expert" if req.expert_id == ANY else "expert"
            raise Unprocessable(f"this start is not a slot of this service and {who} "
                                "(check the hours, notice and booking horizon)",
                                code="not_a_slot")
        a, b = claimed_range(start_ts, service.rules)
        # Asked for the whole UTC days around the range, not the range itself: the same
        # question for every hold of that expert and day, so a provider's cached answer
        # (the local calendar's read cache, a remote provider's week chunks) serves the
        # next hold too; only what overlaps [a, b) counts below.
        external = busy_source(session, shop.id, {e: facts.emails.get(e) for e in offered},
                               a - a % _DAY, b + (-b) % _DAY)
        # Time the shop's calendar provider says is busy is not for sale either.
        free = [facts.experts[e] for e in offered
                if not any(s < b and a < t for s, t in external.get(e, ()))]
    claimed = (datetime.fromtimestamp(a, UTC), datetime.fromtimestamp(b, UTC))

    def make(expert_id: str) -> Claim:
        return _new_hold(config, shop, req, service, expert_id, claimed, answers, visitor, now)

    # Two writers of one expert inserting overlapping claims of different sessions at
    # once can each wait for the other in the overlap check (PostgreSQL breaks that with
    # a deadlock error, 40P01). A one-expert hold on PostgreSQL takes the expert's lock
    # first (consultbook_hold_begin, migration 0018), so two of those never do; an
    # "any expert" hold, or a hold meeting another writer of the expert's claims, still
    # can: the one aborted runs again, and then meets the other's claim as a plain
    # refusal (or wins, if the other one did not) -- up to DEADLOCK_ATTEMPTS runs in
    # all; only then 503.
    for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
        try:
            return _write_hold(db, config, shop, req, visitor, now, facts, free, make,
                               answers, claimed)
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != "40P01" or attempt == DEADLOCK_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _write_hold(db: Database, config: Config, shop: ShopRef, req: HoldRequest,
                visitor: str, now: datetime, facts: _Facts, free: list[_ExpertFacts],
                make: Callable[[str], Claim], answers: dict[str, str],
                claimed: tuple[datetime, datetime]) -> dict[str, Any]:
    service = facts.service
    if db.dialect == "postgresql" and req.expert_id != ANY:
        return _write_one_pg(db, config, shop, req, visitor, now, facts, free, answers,
                             claimed)
    # A hold writes only a claim (and its session and counters), which no cached read
    # holds: the cache stays valid.
    with db.write(keep_cache=True) as session:
        if _begin(session, shop.id, visitor, now) >= config.max_holds_per_visitor:
            raise TooManyRequests(
                f"you already hold {config.max_holds_per_visitor} appointments; book or "
                "release one first", code="too_many_holds")
        if not free:
            raise SlotUnavailable()
        if req.expert_id == ANY:
            hold = _assign(session, now, facts, free, make)
        else:
            # One expert (SQLite; PostgreSQL's is _write_one_pg): no savepoint, the insert
            # is the transaction's last write, after insert_last expires the expert's
            # stale claims over its range. A taken time, a session without that many
            # seats left or a reached limit is the database's refusal
            # (engine.services.claims.refused).
            hold = make(free[0].id)
            insert_last(session, hold, now, facts.window(hold.expert_id))
        assert hold.expires_at is not None
        return _answer(shop, req, service, facts.experts[hold.expert_id], hold.id,
                       hold.expires_at, hold.end_at, answers)


def _answer(shop: ShopRef, req: HoldRequest, service: _ServiceFacts, expert: _ExpertFacts,
            hold_id: str, expires_at: datetime, end: datetime, answers: dict[str, str]
            ) -> dict[str, Any]:
    """The 201 body of a hold won."""
    return {
        "hold": hold_id,
        "expert": expert.id,
        "seats": req.seats,
        "expires_at": expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "start": req.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "line_item_properties": {
            "_hold": hold_id,
            "Appointment": appointment_text(req.start, end, shop.timezone, req.tz),
            "Expert": expert.name,
            **questions.properties(service.questions, answers),
        },
    }


def _write_one_pg(db: Database, config: Config, shop: ShopRef, req: HoldRequest,
                  visitor: str, now: datetime, facts: _Facts, free: list[_ExpertFacts],
                  answers: dict[str, str], claimed: tuple[datetime, datetime]
                  ) -> dict[str, Any]:
    """One expert's hold on PostgreSQL: the same transaction as :func:`_write_hold`'s
    (``consultbook_hold_begin``, then the claim's INSERT, whose constraints and
    triggers refuse an overlap, a full session or a reached limit), sent through
    :meth:`~engine.store.db.Database.transaction`: no ORM session, no Claim object,
    no Core execution context -- half a hold's CPU in this process before."""
    service = facts.service
    key = _visitor_key(shop.id, visitor)
    too_many = TooManyRequests(
        f"you already hold {config.max_holds_per_visitor} appointments; book or "
        "release one first", code="too_many_holds")
    if not free:  # the provider's busy time: only the visitor's limit to tell first
        with db.transaction(autocommit=True) as tx:
            live = tx.rows(_HOLD_BEGIN, {"k": key, "shop": shop.id, "visitor": visitor,
                                         "now": now, "expert": None, "lo": now,
                                         "hi": now})[0][0]
        if int(live or 0) >= config.max_holds_per_visitor:
            raise too_many
        raise SlotUnavailable()
    expert = free[0]
    end = req.start + timedelta(minutes=service.duration_minutes)
    lo, hi = claim_expiry_window(req.start, claimed, facts.window(expert.id))
    hold_id = new_id("bk")
    expires_at = now + timedelta(seconds=config.hold_ttl_seconds)
    with db.transaction(autocommit=True) as tx:
        inserted = insert_new(tx, _HOLD_INSERT, {
            "k": key, "now": now, "lo": lo, "hi": hi, "max": config.max_holds_per_visitor,
            "id": hold_id, "shop_id": shop.id, "service_id": service.id,
            "expert_id": expert.id, "start_at": req.start, "end_at": end,
            "claim_start": claimed[0], "claim_end": claimed[1], "status": HELD,
            "expires_at": expires_at, "visitor": visitor, "customer_tz": req.tz,
            "seats": req.seats, "answers": answers or None,
            "session_key": session_key(expert.id, service.id, req.start),
            "created_at": now, "updated_at": now})
    if not inserted:
        raise too_many
    return _answer(shop, req, service, expert, hold_id, expires_at, end, answers)


def _visitor_key(shop_id: str, visitor: str) -> int:
    """The visitor's advisory lock key (``consultbook_hold_begin``)."""
    return int.from_bytes(hashlib.sha256(f"{shop_id}\0{visitor}".encode()).digest()[:8],
                          "big", signed=True)


def release_hold(db: Database, clock: Clock, shop: ShopRef, hold_id: str) -> None:
    """Release a live hold: its time is free at once. Releasing twice, or an expired or
    released hold, is fine; a hold that became a booking cannot be released here."""
    now = clock.now()
    with db.write(keep_cache=True) as session:
        hold = session.get(Claim, hold_id)
        if hold is None or hold.shop_id != shop.id:
            raise NotFound(f"no hold {hold_id!r}")
        if hold.order_id is not None:
            from engine.errors import Conflict

            raise Conflict("this hold is part of an order and cannot be released",
                           code="hold_booked")
        if hold.status == HELD:
            session.execute(update(Claim).where(Claim.id == hold.id, Claim.status == HELD)
                            .values(status=RELEASED, updated_at=now))
