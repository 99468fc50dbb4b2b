"""Holds: a storefront visitor's ten-minute claim on a slot, before checkout.

``create_hold`` checks, in the contract's order: the start is a slot the engine offers
(422 ``not_a_slot``), the visitor is under the live-hold limit (429 ``too_many_holds``),
the time is free (409 ``slot_unavailable``, decided by the database).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text, update

from engine.clock import Clock
from engine.config import Config
from engine.domain.slots import ServiceRules, claimed_range, is_offered
from engine.errors import NotFound, TooManyRequests, Unprocessable, ValidationError
from engine.services.availability import (
    BusySource,
    expert_calendars,
    no_busy,
    rules_of,
    zone,
)
from engine.services.catalog import live_expert, live_service
from engine.services.claims import SlotUnavailable, expire_stale_holds, insert_last
from engine.services.shops import ShopRef
from engine.services.validation import integer
from engine.services.validation import timezone as parse_timezone
from engine.store import Database, new_id
from engine.store.models import HELD, RELEASED, Claim


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
SERVICE_SEATS = 1  # one customer per session in this release


def check_answers(answers: dict[str, Any]) -> None:
    """``422 invalid_answers`` unless ``answers`` fit the service's questions. A service
    asks no questions in this release, so any answer names an unknown question."""
    for question in sorted(answers):
        raise Unprocessable(f"the service asks no question {question[:40]!r}",
                            code="invalid_answers")


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


def _visitor_lock(session: Any, shop_id: str, visitor: str) -> None:
    """Serialize one visitor's hold requests on PostgreSQL (SQLite's writers already are)."""
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(f"{shop_id}\0{visitor}".encode()).digest()[:8],
                             "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


@dataclass(frozen=True)
class _ServiceFacts:
    id: str
    duration_minutes: int
    rules: ServiceRules


@dataclass(frozen=True)
class _ExpertFacts:
    id: str
    name: str


def create_hold(db: Database, clock: Clock, config: Config, shop: ShopRef, req: HoldRequest,
                visitor: str, busy_source: BusySource = no_busy) -> dict[str, Any]:
    now = clock.now()
    local_day = req.start.date()
    # Reads first, outside the write transaction: the catalog facts (from the read cache,
    # at most 1 s old, void after a local catalog write) and what the shop's calendar
    # provider says is busy -- which may be a network call on a cache miss, and must not
    # hold the database's write lock (SQLite) or the visitor lock while it runs. What
    # decides double booking is the database's constraint on the insert below.
    with db.lookup() as session:
        key = ("hold", shop.id, req.service_id, req.expert_id, local_day)
        cached = db.cache.get(key)
        if cached is None:
            service = live_service(session, shop.id, req.service_id)
            expert = live_expert(session, shop.id, req.expert_id)
            # Only this expert's calendar (not every expert of the service): same answer,
            # a fraction of the rows.
            try:
                cals, emails = expert_calendars(session, shop, service.id, expert.id,
                                                local_day - timedelta(days=2),
                                                local_day + timedelta(days=2))
            except NotFound:
                cals, emails = [], {}
            cached = (_ServiceFacts(service.id, service.duration_minutes, rules_of(service)),
                      _ExpertFacts(expert.id, expert.name), cals, emails)
            db.cache.put(key, cached)
        service, expert, cals, emails = cached
        rules = service.rules
        check_answers(req.answers)
        cal = next((c for c in cals if c.expert_id == expert.id), None)
        if cal is None:
            raise NotFound(f"expert {expert.id!r} does not offer this service")
        start_ts = int(req.start.timestamp())
        if req.start.microsecond or not is_offered(cal, rules, now=int(now.timestamp()),
                                                   start=start_ts):
            raise Unprocessable("this start is not a slot of this service and expert "
                                "(check the hours, notice and booking horizon)",
                                code="not_a_slot")
        a, b = claimed_range(start_ts, rules)
        external = busy_source(session, shop.id, {expert.id: emails.get(expert.id)}, a,
                               b).get(expert.id, ())
    # A hold writes only a claim, which no cached read holds: the cache stays valid.
    with db.write(keep_cache=True) as session:
        _visitor_lock(session, shop.id, visitor)
        live = session.scalar(
            select(func.count()).select_from(Claim)
            .where(Claim.shop_id == shop.id, Claim.visitor == visitor, Claim.status == HELD,
                   Claim.expires_at > now))
        if (live or 0) >= config.max_holds_per_visitor:
            raise TooManyRequests(
                f"you already hold {config.max_holds_per_visitor} appointments; book or "
                "release one first", code="too_many_holds")
        if req.seats > SERVICE_SEATS:
            raise SlotUnavailable(f"this session has {SERVICE_SEATS} seat; ask for fewer")
        claim_start, claim_end = (datetime.fromtimestamp(a, UTC), datetime.fromtimestamp(b, UTC))
        # Time the shop's calendar provider says is busy is not for sale either.
        if any(s < b and a < e for s, e in external):
            raise SlotUnavailable()
        expire_stale_holds(session, now, expert_id=expert.id, start=claim_start, end=claim_end)
        end = req.start + timedelta(minutes=service.duration_minutes)
        hold = Claim(id=new_id("bk"), shop_id=shop.id, service_id=service.id,
                     expert_id=expert.id, start_at=req.start, end_at=end,
                     claim_start=claim_start, claim_end=claim_end, status=HELD,
                     expires_at=now + timedelta(seconds=config.hold_ttl_seconds),
                     visitor=visitor, customer_tz=req.tz, sequence=0, created_at=now,
                     updated_at=now)
        insert_last(session, hold, now)
        assert hold.expires_at is not None
        return {
            "hold": hold.id,
            "expert": expert.id,
            "seats": req.seats,
            "expires_at": hold.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "start": req.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "line_item_properties": {
                "_hold": hold.id,
                "Appointment": appointment_text(req.start, end, shop.timezone, req.tz),
                "Expert": expert.name,
            },
        }


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
