"""The waitlist: a customer waiting for a free time of a service on one date.

``POST /proxy/waitlist`` (:func:`join`) records an entry for a shop-local date. A periodic
scan (:func:`scan`, every :data:`SCAN_EVERY` seconds in the worker) asks the availability
engine whether that date has a free slot *now*, once per group of entries waiting for
the same (shop, service, date, expert). Asking "is anything free now" rather than
listening for events covers every cause at once -- a cancellation, a reschedule away, a
hold that expired (noticed from its ``expires_at``, whether or not the sweeper has run)
or was released, new hours -- and costs one availability computation per group.

Each waiting entry of a free group moves ``waiting -> notified`` by a conditional
``UPDATE ... RETURNING`` and gets ONE outbox row (kind :data:`KIND`) in the same
transaction: only the transaction that moved an entry records its row, so several frees
(or two workers scanning at once) still make one row. The row's mail goes through the
outbox's ``send_once`` step (claimed before it is sent), so a worker killed mid-send
never sends it twice. The entry is mailed once, ever; re-joining makes a new entry.

Entries whose date has passed (in the shop's zone) lapse. An entry whose email was
redacted (``customers/redact`` clears it) is never mailed.
"""

from __future__ import annotations

import hashlib
import html
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, insert, literal, select, text, tuple_, update
from sqlalchemy.orm import Session

from engine.domain.customer_time import DAYS, MONTHS, customer_and_shop_time, valid_zone
from engine.domain.mail import clean_name, clean_text, valid_address
from engine.domain.schedule import parse_date
from engine.errors import NotFound, TooManyRequests, ValidationError
from engine.providers.types import MailMessage
from engine.services import availability
from engine.services.availability import MAX_ID_LENGTH, BusySource, no_busy
from engine.services.catalog import live_expert, live_service
from engine.services.shops import ShopRef
from engine.services.validation import email as parse_email
from engine.services.validation import timezone as parse_timezone
from engine.store import Database, new_id
from engine.store.models import (
    Expert,
    ExpertService,
    OutboxItem,
    Service,
    Shop,
    WaitlistEntry,
)

if TYPE_CHECKING:
    from engine.clock import Clock
    from engine.config import Config

log = logging.getLogger("consultbook.waitlist")

#: The outbox kind of the "a time is free" mail.
KIND = "waitlist.available"
WAITING, NOTIFIED, LAPSED = "waiting", "notified", "lapsed"
#: Live (waiting) entries one storefront visitor may have in a shop (contract: 3).
MAX_ENTRIES_PER_VISITOR = 3
#: The 429 code when a visitor has that many.
TOO_MANY = "too_many_entries"
#: Seconds between scans (beat and the embedded worker). Half a minute: an expired hold
#: is noticed within a minute of its ``expires_at``.
SCAN_EVERY = 30.0
#: Groups one scan looks at (each costs one availability computation), and entries it
#: moves to ``notified`` at most; the next scan goes on from where this one stopped.
GROUPS_PER_SCAN = 200
ENTRIES_PER_SCAN = 1000
#: Free times the mail lists as examples (what was free when the scan looked).
SLOTS_IN_MAIL = 5

_FIELDS = frozenset({"service", "date", "email", "expert", "tz"})


# --------------------------------------------------------------------------- joining


@dataclass(frozen=True)
class JoinRequest:
    service_id: str
    day: date
    email: str
    expert_id: str | None = None  # None: any expert
    tz: str | None = None  # the customer's zone, for the mail


def _id(doc: Mapping[str, Any], name: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{name} must be a non-empty string", field=name)
    value = value.strip()
    if len(value) > MAX_ID_LENGTH:
        raise ValidationError(f"{name} is not an id (longer than {MAX_ID_LENGTH} "
                              "characters)", field=name)
    return value


def parse_join(doc: Any) -> JoinRequest:
    """The body of ``POST /proxy/waitlist``; ValidationError names the field."""
    if not isinstance(doc, dict):
        raise ValidationError("the request body must be a JSON object")
    unknown = sorted(set(doc) - _FIELDS)
    if unknown:
        raise ValidationError(f"unknown field {unknown[0][:40]!r}", field=unknown[0][:40])
    for name in ("service", "date", "email"):
        if name not in doc:
            raise ValidationError(f"{name} is required", field=name)
    service = _id(doc, "service")
    day = parse_date(doc["date"], where="date")
    if not 1970 <= day.year <= 9000:
        raise ValidationError("date is out of range", field="date")
    address = parse_email("email", doc["email"]).strip()
    expert: str | None = None
    if doc.get("expert") is not None:
        expert = _id(doc, "expert")
        if expert == availability.ANY:
            expert = None
    tz = parse_timezone("tz", doc["tz"]) if doc.get("tz") is not None else None
    return JoinRequest(service, day, address, expert, tz)


def _visitor_lock(session: Session, shop_id: str, visitor: str) -> None:
    """Serialize one visitor's joins on PostgreSQL (SQLite's writers already are), so
    the count below and the insert are one step."""
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(f"waitlist\0{shop_id}\0{visitor}".encode())
                             .digest()[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def shop_today(shop_tz: str, now: datetime) -> date:
    return now.astimezone(ZoneInfo(shop_tz)).date()


def join(db: Database, clock: Clock, shop: ShopRef, req: JoinRequest, visitor: str
         ) -> dict[str, str]:
    """Put ``req.email`` on the waitlist of ``req.service_id`` for the shop-local date
    ``req.day``: ``{"waitlist": id}``.

    404 for an unknown service or an expert who does not offer it; 400 (``date``) for a
    date that has passed in the shop's zone or lies beyond the service's horizon
    (``max_days_ahead`` from now); 429 :data:`TOO_MANY` when the visitor already waits
    for :data:`MAX_ENTRIES_PER_VISITOR` dates. The same address waiting for the same
    date, service and expert gets its existing entry back (no second mail, no second
    place in the count).
    """
    now = clock.now()
    with db.write(keep_cache=True) as session:
        service = live_service(session, shop.id, req.service_id)
        today = shop_today(shop.timezone, now)
        if req.day < today:
            raise ValidationError(f"date {req.day.isoformat()} has passed in the shop's "
                                  f"timezone ({shop.timezone}, where it is "
                                  f"{today.isoformat()} now)", field="date")
        horizon = shop_today(shop.timezone, now + timedelta(days=service.max_days_ahead))
        if req.day > horizon:
            raise ValidationError(f"date {req.day.isoformat()} is beyond this service's "
                                  f"booking horizon ({horizon.isoformat()})", field="date")
        if req.expert_id is not None:
            expert = live_expert(session, shop.id, req.expert_id)
            offers = session.scalar(select(ExpertService.expert_id).where(
                ExpertService.expert_id == expert.id,
                ExpertService.service_id == service.id))
            if offers is None:
                raise NotFound(f"no expert {req.expert_id!r} offers this service")
        _visitor_lock(session, shop.id, visitor)
        live = (WaitlistEntry.shop_id == shop.id, WaitlistEntry.status == WAITING,
                WaitlistEntry.date >= today)
        same = session.scalar(select(WaitlistEntry.id).where(
            *live, WaitlistEntry.service_id == service.id, WaitlistEntry.date == req.day,
            WaitlistEntry.email == req.email,
            WaitlistEntry.expert_id.is_(None) if req.expert_id is None
            else WaitlistEntry.expert_id == req.expert_id).limit(1))
        if same is not None:
            return {"waitlist": str(same)}
        count = session.scalar(select(func.count()).select_from(WaitlistEntry)
                               .where(*live, WaitlistEntry.visitor == visitor))
        if (count or 0) >= MAX_ENTRIES_PER_VISITOR:
            raise TooManyRequests(
                f"you are already waiting for {MAX_ENTRIES_PER_VISITOR} dates; you will "
                "hear about those first", code=TOO_MANY)
        entry = WaitlistEntry(id=new_id("wl"), shop_id=shop.id, service_id=service.id,
                              expert_id=req.expert_id, date=req.day, email=req.email,
                              visitor=visitor[:128], customer_tz=req.tz, status=WAITING,
                              created_at=now)
        session.add(entry)
        return {"waitlist": entry.id}


# --------------------------------------------------------------------------- scanning

#: A group of entries: (date, shop id, service id, expert id or "" for any expert), the
#: order the scan walks them in (soonest dates first).
GroupKey = tuple[date, str, str, str]


@dataclass
class ScanResult:
    groups: int = 0  # groups looked at
    free: int = 0  # of those, with a free slot
    notified: int = 0  # entries moved to notified (one outbox row each)
    lapsed: int = 0
    failed: int = 0  # groups whose availability could not be computed (logged)
    #: Where the next scan goes on (None: from the start).
    cursor: GroupKey | None = None


@dataclass(frozen=True)
class _Group:
    key: GroupKey
    shop: ShopRef

    @property
    def day(self) -> date:
        return self.key[0]

    @property
    def service_id(self) -> str:
        return self.key[2]

    @property
    def expert_id(self) -> str | None:
        return self.key[3] or None


_EXPERT_KEY = func.coalesce(WaitlistEntry.expert_id, literal(""))


def _in_group(group: _Group) -> Any:
    expert = WaitlistEntry.expert_id.is_(None) if group.expert_id is None \
        else WaitlistEntry.expert_id == group.expert_id
    return and_(WaitlistEntry.shop_id == group.shop.id,
                WaitlistEntry.service_id == group.service_id,
                WaitlistEntry.date == group.day, expert)


def _groups(db: Database, after: GroupKey | None, limit: int) -> list[_Group]:
    """Up to ``limit`` groups with a waiting, mailable entry of an installed shop, in
    key order after ``after``: one query."""
    key = (WaitlistEntry.date, WaitlistEntry.shop_id, WaitlistEntry.service_id, _EXPERT_KEY)
    query = (select(*key, Shop.domain, Shop.timezone)
             .join(Shop, Shop.id == WaitlistEntry.shop_id)
             .where(WaitlistEntry.status == WAITING, WaitlistEntry.email.is_not(None),
                    Shop.installed.is_(True))
             .group_by(*key, Shop.domain, Shop.timezone)
             .order_by(*key).limit(limit))
    if after is not None:
        query = query.where(tuple_(*key) > tuple_(*after))
    with db.lookup() as session:
        return [_Group((row[0], str(row[1]), str(row[2]), str(row[3] or "")),
                       ShopRef(str(row[1]), str(row[4]), str(row[5])))
                for row in session.execute(query)]


def lapse_past(db: Database, now: datetime) -> int:
    """Entries whose date is surely past in every zone (two days before UTC's today:
    local dates are at most a day away from UTC's) lapse, mailable or not; the scan
    lapses the rest precisely, in their shop's zone."""
    cutoff = now.astimezone(UTC).date() - timedelta(days=1)
    with db.write(keep_cache=True) as session:
        result = session.execute(
            update(WaitlistEntry)
            .where(WaitlistEntry.status == WAITING, WaitlistEntry.date < cutoff)
            .values(status=LAPSED)
            .execution_options(synchronize_session=False))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _lapse_group(db: Database, group: _Group) -> int:
    with db.write(keep_cache=True) as session:
        result = session.execute(
            update(WaitlistEntry)
            .where(_in_group(group), WaitlistEntry.status == WAITING)
            .values(status=LAPSED)
            .execution_options(synchronize_session=False))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def free_slots(db: Database, clock: Clock, group: _Group, busy_source: BusySource
               ) -> list[dict[str, Any]]:
    """What the availability engine offers on the group's date now (the storefront's
    own answer: hours, notice, horizon, live claims, seats, limits, busy time)."""
    query = availability.AvailabilityQuery(
        service_id=group.service_id, start=group.day, days=1, expert_id=group.expert_id,
        any_expert=group.expert_id is None)
    slots: list[dict[str, Any]] = availability.availability(
        db, clock, group.shop, query, busy_source)["slots"]
    return slots


def _notify_group(db: Database, group: _Group, slots: Sequence[dict[str, Any]],
                  now: datetime, limit: int) -> int:
    """Move the group's waiting, mailable entries to ``notified`` and record one outbox
    row for each entry *this* transaction moved (the conditional UPDATE's RETURNING),
    in one transaction."""
    sample = [{"start": s["start"], "end": s["end"]} for s in slots[:SLOTS_IN_MAIL]]
    with db.write(keep_cache=True) as session:
        ids = list(session.scalars(
            select(WaitlistEntry.id)
            .where(_in_group(group), WaitlistEntry.status == WAITING,
                   WaitlistEntry.email.is_not(None))
            .order_by(WaitlistEntry.created_at, WaitlistEntry.id).limit(limit)))
        if not ids:
            return 0
        moved = list(session.scalars(
            update(WaitlistEntry)
            .where(WaitlistEntry.id.in_(ids), WaitlistEntry.status == WAITING,
                   WaitlistEntry.email.is_not(None))
            .values(status=NOTIFIED, notified_at=now)
            .returning(WaitlistEntry.id)
            .execution_options(synchronize_session=False)))
        if moved:  # one executemany, whatever the number
            session.execute(insert(OutboxItem), [
                {"shop_id": group.shop.id, "booking_id": None, "kind": KIND,
                 "payload": {"entry": entry_id, "slots": sample}, "status": "pending",
                 "attempts": 0, "available_at": now, "created_at": now}
                for entry_id in sorted(moved)])
        return len(moved)


def scan(db: Database, clock: Clock, busy_source: BusySource = no_busy, *,
         after: GroupKey | None = None, groups: int = GROUPS_PER_SCAN,
         entries: int = ENTRIES_PER_SCAN) -> ScanResult:
    """One pass: lapse past entries, then for up to ``groups`` groups after ``after``
    one availability computation each, and mail (through the outbox) every waiting
    entry of a group whose date has a free slot now."""
    now = clock.now()
    result = ScanResult(lapsed=lapse_past(db, now), cursor=after)
    batch = _groups(db, after, groups)
    for group in batch:
        if result.notified >= entries:
            return result  # out of budget: the next scan starts with this group
        result.groups += 1
        before, result.cursor = result.cursor, group.key
        if group.day < shop_today(group.shop.timezone, now):
            result.lapsed += _lapse_group(db, group)
            continue
        try:
            slots = free_slots(db, clock, group, busy_source)
        except NotFound:  # the service or the expert went away: nothing to offer
            continue
        except Exception:  # a provider's busy time failed: try this group next scan
            log.exception("waitlist: availability of shop %s service %s on %s failed",
                          group.shop.id, group.service_id, group.day)
            result.failed += 1
            continue
        if not slots:
            continue
        result.free += 1
        result.notified += _notify_group(db, group, slots, now, entries - result.notified)
        if result.notified >= entries:
            # The budget may have cut this group short: the next scan starts with it
            # again (what was moved is not waiting any more).
            result.cursor = before
            return result
    if len(batch) < groups:
        result.cursor = None  # the end: the next scan starts from the soonest date
    return result


class Scanner:
    """:func:`scan` with the cursor kept between runs (one per worker process). The
    cursor is only where to go on: losing it (a restart, another process) restarts
    from the soonest date, and correctness never depends on it."""

    def __init__(self) -> None:
        self.cursor: GroupKey | None = None

    def run(self, db: Database, clock: Clock, busy_source: BusySource = no_busy,
            **kwargs: int) -> ScanResult:
        result = scan(db, clock, busy_source, after=self.cursor, **kwargs)
        self.cursor = result.cursor
        return result


# --------------------------------------------------------------------------- the mail


class OutboxJob(Protocol):
    """What :func:`deliver` needs of the outbox relay's job (engine.services.outbox)."""

    db: Database
    item: OutboxItem
    notes: list[str]

    @property
    def plugins(self) -> Any: ...

    @property
    def now(self) -> datetime: ...

    def send_once(self, step: str, build: Callable[[], MailMessage | None]) -> None: ...


@dataclass(frozen=True)
class EntryView:
    """One notified entry as its mail needs it."""

    id: str
    email: str | None
    day: date
    customer_tz: str | None
    service_id: str
    service_title: str
    expert_name: str | None
    shop_domain: str
    shop_timezone: str


def load_entry(session: Session, entry_id: str) -> EntryView | None:
    row = session.execute(
        select(WaitlistEntry, Service.title, Shop.domain, Shop.timezone, Expert.name)
        .join(Service, Service.id == WaitlistEntry.service_id)
        .join(Shop, Shop.id == WaitlistEntry.shop_id)
        .outerjoin(Expert, Expert.id == WaitlistEntry.expert_id)
        .where(WaitlistEntry.id == entry_id)).first()
    if row is None:
        return None
    entry, title, domain, shop_tz, expert_name = row
    return EntryView(id=entry.id, email=entry.email, day=entry.date,
                     customer_tz=valid_zone(entry.customer_tz), service_id=entry.service_id,
                     service_title=clean_text(title, 200) or "Consultation",
                     expert_name=clean_name(expert_name) if entry.expert_id else None,
                     shop_domain=domain, shop_timezone=valid_zone(shop_tz) or "UTC")


def book_url(shop_domain: str, proxy_prefix: str, service_id: str, day: date) -> str:
    """``https://{shop}{prefix}/book?service=ID&date=YYYY-MM-DD``: the storefront's
    booking calendar on that date."""
    query = urlencode({"service": service_id, "date": day.isoformat()})
    return f"https://{shop_domain}{proxy_prefix}/book?{query}"


def _day_words(day: date) -> str:
    """``Tuesday 1 December 2026`` (English names whatever the host's locale)."""
    return f"{DAYS[day.weekday()]} {day.day} {MONTHS[day.month - 1]} {day.year}"


def _instant(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def available_message(view: EntryView, *, proxy_prefix: str,
                      slots: Sequence[Mapping[str, Any]] = ()) -> MailMessage | None:
    """The "a time is free" mail (text and HTML), or ``None`` without a valid address
    (a redacted entry). The example times are in the customer's zone with the shop's
    beside it (only the shop's when the customer's is unknown)."""
    to = valid_address(view.email)
    if to is None:
        return None
    url = book_url(view.shop_domain, proxy_prefix, view.service_id, view.day)
    who = f" with {view.expert_name}" if view.expert_name else ""
    day = _day_words(view.day)
    times = []
    for slot in slots[:SLOTS_IN_MAIL]:
        start, end = _instant(slot.get("start")), _instant(slot.get("end"))
        if start is not None and end is not None:
            times.append(customer_and_shop_time(start, end, view.customer_tz,
                                                view.shop_timezone))
    intro = [
        "Hello,",
        f"a time is free again for {view.service_title}{who} on {day} "
        f"(the shop's date, {view.shop_timezone}).",
    ]
    outro = [
        "Times go to whoever books first, so it may be taken again soon.",
        "You asked to hear when a time frees up on this date; this is the only message "
        "about it.",
    ]
    lead = "Free when we looked:"
    text_parts = [*intro]
    if times:
        text_parts.append(lead + "\n" + "\n".join(f"- {t}" for t in times))
    text_parts += [f"Book it here: {url}", *outro]
    body = "".join(f"<p>{html.escape(p)}</p>" for p in intro)
    if times:
        body += f"<p>{html.escape(lead)}</p><ul>" + "".join(
            f"<li>{html.escape(t)}</li>" for t in times) + "</ul>"
    body += (f'<p><a href="{html.escape(url, quote=True)}">'
             f"Book {html.escape(view.service_title)} on {html.escape(day)}</a></p>")
    body += "".join(f"<p>{html.escape(p)}</p>" for p in outro)
    subject = clean_text(f"A time is free: {view.service_title} on {day}", 250)
    return MailMessage(
        to=(to,), subject=subject, text="\n\n".join(text_parts) + "\n",
        html=f'<!doctype html><html><body style="font-family:sans-serif">{body}'
             "</body></html>",
        from_name=clean_name(view.shop_domain.removesuffix(".myshopify.com")),
        idempotency_key=f"waitlist:{view.id}")


def deliver(job: OutboxJob) -> None:
    """The outbox handler of :data:`KIND`: the one mail, through the shop's mail
    provider, claimed before it is sent (``send_once``)."""
    payload = job.item.payload or {}
    entry_id = str(payload.get("entry", ""))
    with job.db.read() as session:
        view = load_entry(session, entry_id)
    if view is None:
        job.notes.append("the waitlist entry no longer exists")
        return
    config: Config = job.plugins.config
    slots = payload.get("slots")
    sample = [s for s in slots if isinstance(s, dict)] if isinstance(slots, list) else []
    job.send_once("customer_mail", lambda: available_message(
        view, proxy_prefix=config.proxy_prefix, slots=sample))
