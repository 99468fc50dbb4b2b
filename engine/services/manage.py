"""Customers manage their own bookings: the manage link's token, and (below) the booking
as the customer sees it, reschedule and cancel within the shop's policy, my bookings.

The manage link's token: :mod:`engine.services.manage_links`.
"""


from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.domain.slots import claimed_range, is_offered
from engine.errors import (
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    Unprocessable,
    ValidationError,
)
from engine.services.availability import BusySource, expert_calendars, no_busy, rules_of, zone
from engine.services.bookings import ISO, cancel_with_refund, render_booking
from engine.services.capacity import LimitReached
from engine.services.catalog import live_expert
from engine.services.claims import SlotUnavailable, expire_stale_holds, write_claim
from engine.services.holds import parse_instant
from engine.services.manage_links import link_in_session, token_matches
from engine.services.orders import CUSTOMER_CANCELLED, lock_order
from engine.services.shops import ShopRef
from engine.store import Database
from engine.store.models import (
    BOOKING_STATUSES,
    CANCELLED,
    CONFIRMED,
    PENDING,
    Claim,
    Expert,
    ExpertService,
    OutboxItem,
    Reminder,
    Service,
    ShopSettings,
)

if TYPE_CHECKING:
    from engine.clock import Clock
    from engine.config import Config




# --------------------------------------------------------------------------- the policy

# A booking's id as we make them (engine.store.new_id); anything else is unknown, unqueried.
_MAX_ID = 64
NOT_FOUND_MESSAGE = "no booking matches this link"
HORIZON_DAYS_MERCHANT = 36500  # the merchant's reschedule ignores the horizon


class PolicyClosed(Forbidden):
    """The shop's policy does not let the customer do this (any more)."""

    code = "policy_closed"


@dataclass(frozen=True, slots=True)
class Policy:
    """What the shop lets a customer do from the manage link (the settings)."""

    customer_cancel: bool = True
    customer_reschedule: bool = True
    cancel_notice_minutes: int = 1440
    reschedule_notice_minutes: int = 1440
    max_reschedules: int = 2


def policy_of(session: Session, shop_id: str) -> Policy:
    s = session.get(ShopSettings, shop_id)
    if s is None:
        return Policy()
    default = Policy()

    def pick(value: Any, fallback: Any) -> Any:
        return fallback if value is None else value

    return Policy(bool(pick(s.customer_cancel, True)), bool(pick(s.customer_reschedule, True)),
                  int(pick(s.cancel_notice_minutes, default.cancel_notice_minutes)),
                  int(pick(s.reschedule_notice_minutes, default.reschedule_notice_minutes)),
                  int(pick(s.max_reschedules, default.max_reschedules)))


def _holds_time(c: Claim, now: datetime) -> bool:
    """A booking the customer can still act on: pending within its deadline, or
    confirmed (a lapsed pending booking holds no time and is not moved or cancelled
    here)."""
    return c.status == CONFIRMED or (
        c.status == PENDING and (c.expires_at is None or c.expires_at > now))


def cancel_until(policy: Policy, c: Claim) -> datetime | None:
    """The last instant the customer may cancel (``cancel_notice_minutes`` -- real
    minutes, not wall-clock ones, so a DST change between the two moves nothing), or
    None when the shop lets no customer cancel."""
    if not policy.customer_cancel:
        return None
    return c.start_at - timedelta(minutes=policy.cancel_notice_minutes)


def reschedule_until(policy: Policy, c: Claim) -> datetime | None:
    """The last instant the customer may move the booking (counted back from its
    *current* start), or None when rescheduling is off or used up."""
    if not policy.customer_reschedule or c.reschedules >= policy.max_reschedules:
        return None
    return c.start_at - timedelta(minutes=policy.reschedule_notice_minutes)


def _open(until: datetime | None, c: Claim, now: datetime) -> bool:
    """Open while ``now <= until`` (the cut-off itself is still in) and before the start."""
    return until is not None and _holds_time(c, now) and now <= until and now < c.start_at


def can_cancel(policy: Policy, c: Claim, now: datetime) -> bool:
    return _open(cancel_until(policy, c), c, now)


def can_reschedule(policy: Policy, c: Claim, now: datetime) -> bool:
    return _open(reschedule_until(policy, c), c, now)


# --------------------------------------------------------------------------- what is shown


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).strftime(ISO)


def _local(value: datetime, tz: str) -> str:
    return value.astimezone(zone(tz)).isoformat()


def render_customer_booking(session: Session, shop: ShopRef, c: Claim, now: datetime
                            ) -> dict[str, Any]:
    """The booking as its customer sees it (CONTRACT "Customers manage their own
    bookings"): ``local`` is in the customer's timezone (the hold's ``tz``, else the
    shop's). Besides the contract's fields: the service's title, the expert's name and
    both zones, which the manage page shows."""
    policy = policy_of(session, shop.id)
    service = session.get(Service, c.service_id)
    expert = session.get(Expert, c.expert_id)
    tz = c.customer_tz or shop.timezone
    live = c.status != CANCELLED
    return {
        "id": c.id,
        "service": c.service_id,
        "service_title": service.title if service else None,
        "expert": c.expert_id,
        "expert_name": expert.name if expert else None,
        "start": _iso(c.start_at),
        "end": _iso(c.end_at),
        "local": _local(c.start_at, tz),
        "timezone": tz,
        "shop_timezone": shop.timezone,
        "shop_local": _local(c.start_at, shop.timezone),
        "status": c.status,
        "seats": c.line_quantity or c.seats or 1,
        "can_cancel": can_cancel(policy, c, now),
        "can_reschedule": can_reschedule(policy, c, now),
        "cancel_until": _iso(cancel_until(policy, c)) if live else None,
        "reschedule_until": _iso(reschedule_until(policy, c)) if live else None,
    }


def _customer_booking(session: Session, shop_id: str, booking_id: str, token: object
                      ) -> Claim:
    """The booking the link opens, else the one 404 every failure gets (no booking, not
    a booking, another shop's, a wrong or missing token, redacted): the same code and
    message, so the answer tells nothing about which it was."""
    c = session.get(Claim, booking_id) \
        if isinstance(booking_id, str) and 0 < len(booking_id) <= _MAX_ID else None
    if c is None:
        token_matches(_NOBODY, token)  # the same work as for a booking that exists
        raise NotFound(NOT_FOUND_MESSAGE)
    ok = token_matches(c, token)
    if not ok or c.shop_id != shop_id or c.order_id is None \
            or c.status not in BOOKING_STATUSES:
        raise NotFound(NOT_FOUND_MESSAGE)
    return c


_NOBODY = Claim(id="", shop_id="", manage_token_hash=None)


def get_customer_booking(db: Database, clock: Clock, shop: ShopRef, booking_id: str,
                         token: object) -> dict[str, Any]:
    """``GET /proxy/bookings/ID?token=T``."""
    with db.read() as session:
        c = _customer_booking(session, shop.id, booking_id, token)
        return render_customer_booking(session, shop, c, clock.now())


# --------------------------------------------------------------------------- cancel


def parse_token_body(doc: Any) -> str:
    """``{"token"}``: the body of a customer's cancel."""
    if not isinstance(doc, dict):
        raise ValidationError("the request body must be a JSON object")
    unknown = sorted(set(doc) - {"token"})
    if unknown:
        raise ValidationError(f"unknown field {unknown[0]!r}", field=unknown[0])
    token = doc.get("token")
    if not isinstance(token, str):
        raise ValidationError("token is required (the one in the manage link)", field="token")
    return token


def customer_cancel(db: Database, clock: Clock, shop: ShopRef, booking_id: str,
                    token: str) -> dict[str, Any]:
    """``POST /proxy/bookings/ID/cancel``: within ``cancel_notice_minutes`` and with
    ``customer_cancel`` on, cancel the booking the way the merchant does (the slot or
    seat freed at once, the event cancelled and the customer mailed through the outbox,
    one refund entry ``customer_cancelled`` for a paid booking: the shared
    :func:`engine.services.bookings.cancel_with_refund`). Cancelling a cancelled booking
    answers it as it is and does nothing more."""
    now = clock.now()
    with db.write() as session:
        c = _customer_booking(session, shop.id, booking_id, token)
        if c.status != CANCELLED:
            assert c.order_id is not None
            lock_order(session, shop.id, c.order_id, now)
            session.refresh(c, with_for_update=True)
            # Judged under the locks: a concurrent reschedule or redaction is settled.
            if not token_matches(c, token):
                raise NotFound(NOT_FOUND_MESSAGE)
            if c.status != CANCELLED:
                if not can_cancel(policy_of(session, shop.id), c, now):
                    raise PolicyClosed("this booking can no longer be cancelled here; "
                                       "please contact the shop")
                cancel_with_refund(session, c, "customer", CUSTOMER_CANCELLED, now)
        return render_customer_booking(session, shop, c, now)


# --------------------------------------------------------------------------- reschedule

ANY = "any"
RESCHEDULED_KIND = "booking.rescheduled"


@dataclass(frozen=True, slots=True)
class RescheduleRequest:
    start: datetime
    expert: str | None = None  # None: keep the booking's expert; "any": assign
    token: str | None = None


def parse_reschedule(doc: Any, *, merchant: bool = False) -> RescheduleRequest:
    """The customer's ``{"token", "start"[, "expert"]}`` or the merchant's ``{"start"[,
    "expert"]}``."""
    if not isinstance(doc, dict):
        raise ValidationError("the request body must be a JSON object")
    allowed = {"start", "expert"} if merchant else {"token", "start", "expert"}
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise ValidationError(f"unknown field {unknown[0]!r}", field=unknown[0])
    token = None if merchant else parse_token_body({"token": doc.get("token")})
    if "start" not in doc:
        raise ValidationError("start is required", field="start")
    expert = doc.get("expert")
    if expert is not None and (not isinstance(expert, str) or not expert.strip()
                               or len(expert) > _MAX_ID):
        raise ValidationError("expert must be an expert's id or \"any\"", field="expert")
    return RescheduleRequest(parse_instant("start", doc["start"]),
                             expert.strip() if isinstance(expert, str) else None, token)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the read phase found: the experts (in the order to try them) for whom the
    new start is a slot, and the claimed range."""

    experts: list[str]
    claim_start: datetime
    claim_end: datetime
    end: datetime


def _candidates(session: Session, shop: ShopRef, c: Claim, service: Service,
                req: RescheduleRequest, now: datetime) -> list[str]:
    """The experts who may take the moved booking, in the order to try them: the
    booking's own (no ``expert``), the one asked for, or -- for ``any`` -- every expert
    of the service by the service's assignment (engine.services.assignment)."""
    if req.expert is None:
        return [c.expert_id]
    if req.expert != ANY:
        live_expert(session, shop.id, req.expert)
        return [req.expert]
    from engine.services import assignment

    rows = session.execute(select(Expert.id, Expert.priority, Expert.weight)
                           .join(ExpertService, ExpertService.expert_id == Expert.id)
                           .where(ExpertService.service_id == service.id,
                                  Expert.shop_id == shop.id, Expert.deleted_at.is_(None)))
    candidates = [assignment.Candidate(r.id, int(r.priority if r.priority is not None
                                                 else 50), int(r.weight or 1))
                  for r in rows]
    stats = assignment.booking_stats(session, service.id, [x.id for x in candidates], now)
    return [x.id for x in assignment.ranked(service.assignment or "", candidates, stats)]


def _plan(session: Session, shop: ShopRef, c: Claim, req: RescheduleRequest, now: datetime,
          busy_source: BusySource, *, merchant: bool) -> _Plan:
    """The read phase, outside the write transaction (a calendar provider's busy times
    may be a network call): which experts could take the new start. Judged as a hold
    is -- the service's grid, the expert's hours, notice and horizon (the merchant's
    reschedule ignores notice and horizon, never the grid and hours), and what the
    shop's calendar provider says is busy -- ignoring what is taken, which the database
    decides. Nobody: ``422 not_a_slot``; only busy in the provider: ``409``."""
    service = session.get(Service, c.service_id)
    if service is None or service.deleted_at is not None:
        raise Unprocessable("this service is no longer offered", code="not_a_slot")
    rules = rules_of(service)
    if merchant:
        rules = replace(rules, min_notice=0, max_days_ahead=HORIZON_DAYS_MERCHANT)
    ids = _candidates(session, shop, c, service, req, now)
    day = req.start.date()
    try:
        cals, emails = expert_calendars(session, shop, service.id,
                                        ids[0] if len(ids) == 1 else None,
                                        day - timedelta(days=2), day + timedelta(days=2))
    except NotFound:
        cals, emails = [], {}
    by_id = {cal.expert_id: cal for cal in cals}
    start_ts = int(req.start.timestamp())
    offered = [i for i in ids if i in by_id and not req.start.microsecond
               and is_offered(by_id[i], rules, now=int(now.timestamp()), start=start_ts)]
    if not offered:
        raise Unprocessable("this start is not a slot of this service and expert "
                            "(check the hours, notice and booking horizon)",
                            code="not_a_slot")
    a, b = claimed_range(start_ts, rules)
    external = busy_source(session, shop.id, {i: emails.get(i) for i in offered}, a, b)
    own = (int(c.claim_start.timestamp()), int(c.claim_end.timestamp()))
    free = []
    for i in offered:
        busy = external.get(i, ())
        if i == c.expert_id:
            # The provider's busy time includes this booking's own event: what lies
            # within its current range was ours already.
            busy = [(s, e) for s, e in busy if not (own[0] <= s and e <= own[1])]
        if not any(s < b and a < e for s, e in busy):
            free.append(i)
    if not free:
        raise SlotUnavailable()
    return _Plan(free, datetime.fromtimestamp(a, UTC), datetime.fromtimestamp(b, UTC),
                 req.start + timedelta(minutes=service.duration_minutes))


def _move_reminders(session: Session, c: Claim, now: datetime) -> None:
    """Reminders follow the new time: each not yet sent is due ``offset`` before the new
    start (one already due then is skipped: the rescheduled mail stands in for it); one
    sent for the old time stays sent (each reminder is sent at most once)."""
    for r in session.scalars(select(Reminder).where(Reminder.booking_id == c.id,
                                                    Reminder.status.in_(("pending",
                                                                         "skipped")))):
        r.due_at = c.start_at - timedelta(minutes=r.offset_minutes)
        r.status = "pending" if r.due_at > now else "skipped"


def _record_rescheduled(session: Session, c: Claim, old: dict[str, str], now: datetime
                        ) -> None:
    """The outbox item for what follows a reschedule (the calendar event updated in
    place, the rescheduled mail with the same UID and the new SEQUENCE, the expert(s)
    told): its payload says where the booking was."""
    session.add(OutboxItem(shop_id=c.shop_id, booking_id=c.id, kind=RESCHEDULED_KIND,
                           payload={"sequence": c.sequence, "from": old},
                           status="pending", attempts=0, available_at=now, created_at=now))


def reschedule(db: Database, clock: Clock, shop: ShopRef, booking_id: str,
               req: RescheduleRequest, busy_source: BusySource = no_busy, *,
               merchant: bool = False) -> dict[str, Any]:
    """Move a booking to ``req.start`` -- ``POST /proxy/bookings/ID/reschedule`` (the
    customer, with the link's token, within the policy) or ``POST
    /admin/api/bookings/ID/reschedule`` (``merchant``: no policy, no notice or horizon).

    One transaction: the order's and the booking's rows locked, the policy judged under
    them (customer), then the claim itself is moved (:func:`engine.services.claims.
    write_claim`): the database's overlap, seat and limit rules decide, and a refusal
    leaves the booking at its old time (``409 slot_unavailable`` / ``limit_reached``).
    The same booking id, its ``sequence`` one higher; reminders follow; one outbox item
    ``booking.rescheduled``. Asking for the time it already has changes nothing."""
    now = clock.now()
    with db.lookup() as session:
        c = _find(session, shop.id, booking_id, req.token, merchant=merchant)
        _check_policy(session, shop.id, c, now, merchant=merchant)
        if req.start == c.start_at and req.expert in (None, c.expert_id):
            return _render(session, shop, c, now, merchant=merchant)
        plan = _plan(session, shop, c, req, now, busy_source, merchant=merchant)
    with db.write(keep_cache=True) as session:
        c = _find(session, shop.id, booking_id, req.token, merchant=merchant)
        assert c.order_id is not None
        lock_order(session, shop.id, c.order_id, now)
        session.refresh(c, with_for_update=True)
        c = _find(session, shop.id, booking_id, req.token, merchant=merchant)
        _check_policy(session, shop.id, c, now, merchant=merchant)
        if req.start == c.start_at and req.expert in (None, c.expert_id):
            return _render(session, shop, c, now, merchant=merchant)
        old = {"start": c.start_at.strftime(ISO), "end": c.end_at.strftime(ISO),
               "expert": c.expert_id}
        error: Exception | None = None
        for expert_id in plan.experts:
            expire_stale_holds(session, now, expert_id=expert_id, start=plan.claim_start,
                               end=plan.claim_end)
            try:
                write_claim(session, c, now, start_at=req.start, end_at=plan.end,
                            claim_start=plan.claim_start, claim_end=plan.claim_end,
                            expert_id=expert_id, sequence=c.sequence + 1,
                            reschedules=c.reschedules + (0 if merchant else 1),
                            updated_at=now)
            except (SlotUnavailable, LimitReached) as exc:
                session.refresh(c)
                error = exc
                continue
            break
        else:
            assert error is not None
            raise error
        _move_reminders(session, c, now)
        _record_rescheduled(session, c, old, now)
        session.flush()
        return _render(session, shop, c, now, merchant=merchant)


def _find(session: Session, shop_id: str, booking_id: str, token: str | None, *,
          merchant: bool) -> Claim:
    if merchant:
        c = session.get(Claim, booking_id) if len(booking_id) <= _MAX_ID else None
        if c is None or c.shop_id != shop_id or c.order_id is None \
                or c.status not in BOOKING_STATUSES:
            raise NotFound(f"no booking {booking_id[:_MAX_ID]!r}")
        return c
    return _customer_booking(session, shop_id, booking_id, token)


def _check_policy(session: Session, shop_id: str, c: Claim, now: datetime, *,
                  merchant: bool) -> None:
    if merchant:
        if not _holds_time(c, now):
            raise Conflict("a cancelled or lapsed booking cannot be moved",
                           code="booking_not_live")
        return
    if not can_reschedule(policy_of(session, shop_id), c, now):
        raise PolicyClosed("this booking can no longer be rescheduled here; please "
                           "contact the shop")


def _render(session: Session, shop: ShopRef, c: Claim, now: datetime, *, merchant: bool
            ) -> dict[str, Any]:
    if merchant:
        return render_booking(session, c)
    return render_customer_booking(session, shop, c, now)


# --------------------------------------------------------------------------- my bookings

MY_BOOKINGS_PAST = timedelta(days=30)


def my_bookings(db: Database, clock: Clock, config: Config, shop: ShopRef,
                customer_id: str) -> list[dict[str, Any]]:
    """``GET /proxy/my-bookings``: the signed ``logged_in_customer_id``'s bookings in
    this shop (matched by the order's customer id) from 30 days ago on, each with its
    manage link -- the same link as in the mails (the token is derived, not stored).
    Redacted bookings have no link and are not listed. A booking whose link was never
    made yet gets its token issued here (a write only then)."""
    now = clock.now()
    customer_id = customer_id.strip()
    if not customer_id:
        raise Unauthorized("log in to see your bookings", code="login_required")

    def rows(session: Session) -> list[Claim]:
        return list(session.scalars(
            select(Claim).where(Claim.shop_id == shop.id, Claim.customer_id == customer_id,
                                Claim.order_id.is_not(None),
                                Claim.status.in_(BOOKING_STATUSES),
                                Claim.redacted_at.is_(None),
                                Claim.start_at >= now - MY_BOOKINGS_PAST)
            .order_by(Claim.start_at, Claim.id)))

    def render(session: Session, found: list[Claim]) -> list[dict[str, Any]]:
        out = []
        for c in found:
            link = link_in_session(session, config, c)
            if link is None:
                continue
            item = render_customer_booking(session, shop, c, now)
            item["manage_url"] = link
            out.append(item)
        return out

    with db.read() as session:
        found = rows(session)
        if all(c.manage_token_hash is not None for c in found):
            return render(session, found)
    with db.write(keep_cache=True) as session:
        return render(session, rows(session))
