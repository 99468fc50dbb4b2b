"""What the customer and the expert are told about a booking: the messages and their
``.ics`` invitations.

:func:`load_views` turns booking rows into :class:`BookingView` values (the provider-facing
:class:`~engine.providers.BookingDetails` plus what mail needs); the ``*_message``
functions build :class:`~engine.providers.MailMessage` values from them -- all through one
builder, :func:`build_message`, parametrised by a :class:`MessageKind` (confirmation,
expert notice, cancellations, reminder); a message's text, HTML and subject come from one
:class:`MessageBody` and its ``.ics`` from the same booking details. Nothing here
sends: the outbox relay (:mod:`engine.services.outbox`) and the reminder scan
(:mod:`engine.services.reminders`) do, once.

Every name and address is cleaned or validated on the way in (:mod:`engine.domain.mail`):
a customer name with a line break cannot add a header or an iCalendar property, an
invalid address is dropped (the message to it is skipped), HTML is escaped.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.domain.customer_time import customer_and_shop_time, local_time
from engine.domain.ics import Invitation, Party, render
from engine.domain.mail import clean_name, clean_text, safe_url, valid_address
from engine.providers.types import BookingDetails, MailMessage
from engine.services import manage_links, questions
from engine.store.models import Claim, Expert, Service, Shop, ShopSettings

if TYPE_CHECKING:
    from engine.config import Config
    from engine.store import Database

log = logging.getLogger("consultbook.notify")


@dataclass(frozen=True)
class BookingView:
    """One booking as the worker needs it.

    ``seated``: its service takes more than one customer per session (one calendar event
    for the whole session, ``session_key``); ``notify_experts``: the shop's setting (the
    expert is mailed about each new booking, reschedule and cancellation)."""

    details: BookingDetails
    shop_id: str
    customer_tz: str
    external: dict[str, Any]
    session_key: str = ""
    seated: bool = False
    notify_experts: bool = True

    @property
    def booking_id(self) -> str:
        return self.details.booking_id


def _zone(name: str | None, fallback: str) -> str:
    for candidate in (name, fallback, "UTC"):
        if not candidate:
            continue
        try:
            ZoneInfo(candidate)
        except (ZoneInfoNotFoundError, ValueError):
            continue
        return candidate
    return "UTC"


def _status(value: str) -> Any:
    return value if value in ("pending", "confirmed", "cancelled") else "cancelled"


def load_views(session: Session, booking_ids: Iterable[str]) -> dict[str, BookingView]:
    """Views of the given bookings (ids that are not bookings are left out), loaded with
    one query per table whatever their number (the reminder scan loads hundreds)."""
    ids = sorted(set(booking_ids))
    if not ids:
        return {}
    claims = list(session.scalars(select(Claim).where(Claim.id.in_(ids))))
    services = {s.id: s for s in session.scalars(
        select(Service).where(Service.id.in_({c.service_id for c in claims})))}
    experts = {e.id: e for e in session.scalars(
        select(Expert).where(Expert.id.in_({c.expert_id for c in claims})))}
    shops = {s.id: s for s in session.scalars(
        select(Shop).where(Shop.id.in_({c.shop_id for c in claims})))}
    settings = {s.shop_id: s for s in session.scalars(
        select(ShopSettings).where(ShopSettings.shop_id.in_(set(shops))))}
    out: dict[str, BookingView] = {}
    for c in claims:
        shop, service, expert = shops.get(c.shop_id), services.get(c.service_id), \
            experts.get(c.expert_id)
        if shop is None or c.order_id is None:
            continue
        shop_tz = _zone(shop.timezone, "UTC")
        expert_tz = _zone(expert.timezone if expert else None, shop_tz)
        details = BookingDetails(
            booking_id=c.id,
            shop_domain=shop.domain,
            shop_timezone=shop_tz,
            service_title=clean_text(service.title if service else "", 200) or "Consultation",
            expert_id=c.expert_id,
            expert_name=clean_name(expert.name if expert else None) or "Your expert",
            expert_email=valid_address(expert.email if expert else None),
            expert_timezone=expert_tz,
            customer_name=clean_name(c.customer_name),
            customer_email=valid_address(c.customer_email),
            start=c.start_at,
            end=c.end_at,
            sequence=int(c.sequence or 0),
            status=_status(c.status),
            description="",
            meeting_url=safe_url(c.meeting_url),
        )
        details = replace(details, description=_description(details, _answers(c, service)))
        shop_settings = settings.get(c.shop_id)
        out[c.id] = BookingView(
            details=details, shop_id=c.shop_id, customer_tz=_zone(c.customer_tz, shop_tz),
            external=dict(c.external or {}), session_key=c.session_key or "",
            seated=int(service.seats or 1) > 1 if service else False,
            notify_experts=bool(shop_settings.notify_experts)
            if shop_settings is not None and shop_settings.notify_experts is not None
            else True)
    return out


def load_view(session: Session, booking_id: str) -> BookingView | None:
    return load_views(session, [booking_id]).get(booking_id)


def _answers(c: Claim, service: Service | None) -> list[tuple[str, str]]:
    """The booking's intake answers as ``(label, answer)``, for its event description.
    None for a seated service's booking: its one session event is shared by every
    customer (each an attendee), who must not read each other's answers; the merchant
    sees them in the admin and the export."""
    if service is None or int(service.seats or 1) > 1:
        return []
    return questions.labelled(service.questions, c.answers)


def _description(d: BookingDetails, answers: Iterable[tuple[str, str]] = ()) -> str:
    """The calendar event's text, one fact a line, then one ``label: answer`` line per
    intake answer. Every answer is flattened to one line by ``clean_text`` (control and
    bidi characters out, a textarea's newlines become spaces, at most 500 characters),
    so a customer cannot add lines or properties to the ICS, Google or Graph event
    (Graph's body is sent as ``text``; an HTML body would have to escape these)."""
    lines = [f"{d.service_title} with {d.expert_name}"]
    if d.customer_name:
        lines.append(f"Customer: {d.customer_name}")
    for label, answer in answers:
        lines.append(f"{clean_text(label, 200)}: {clean_text(answer, 500)}")
    lines.append(f"Booking: {d.booking_id}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- times


def when(d: BookingDetails, tz: str) -> str:
    """``Tuesday 1 December 2026, 10:00-10:30 (Europe/Berlin)`` (with an en dash): the
    booking in one zone."""
    return local_time(d.start, d.end, tz)


def customer_when(view: BookingView) -> str:
    """The booking in the customer's zone (the hold's ``tz``) with the shop's time beside
    it: ``Tuesday 1 December 2026, 09:00-10:00 (America/Los_Angeles) -- 18:00-19:00 in
    Berlin (Europe/Berlin), the shop's time`` (en and em dashes); only the shop's time when
    the customer's zone is unknown or the shop's own."""
    d = view.details
    return customer_and_shop_time(d.start, d.end, view.customer_tz, d.shop_timezone)


def _customer_time_for_expert(view: BookingView) -> str | None:
    """The customer's time, for the expert, when it differs from the expert's zone."""
    d = view.details
    if view.customer_tz in (d.expert_timezone, d.shop_timezone):
        return None
    return f"The customer's time: {when(d, view.customer_tz)}"


def _duration(minutes: int) -> str:
    if minutes % 1440 == 0:
        n = minutes // 1440
        return "1 day" if n == 1 else f"{n} days"
    if minutes % 60 == 0:
        n = minutes // 60
        return "1 hour" if n == 1 else f"{n} hours"
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


# --------------------------------------------------------------------------- invitations


def organizer(d: BookingDetails) -> Party:
    """The expert when they have a valid address, else the shop's no-reply address."""
    if d.expert_email:
        return Party(d.expert_email, d.expert_name)
    return Party(f"no-reply@{d.shop_domain}", clean_name(d.shop_domain))


def invitation_ics(d: BookingDetails, *, method: str, sequence: int, now: datetime) -> bytes:
    """The booking's ``.ics``: ``METHOD:REQUEST`` or ``METHOD:CANCEL``, UID
    ``<booking id>@consultbook``, ``SEQUENCE`` = ``sequence``."""
    attendees = (Party(d.customer_email, d.customer_name),) if d.customer_email else ()
    inv = Invitation(booking_id=d.booking_id, sequence=sequence, start=d.start, end=d.end,
                     summary=f"{d.service_title} with {d.expert_name}",
                     organizer=organizer(d), attendees=attendees,
                     description=f"{d.service_title} with {d.expert_name}\n"
                                 f"Booking: {d.booking_id}",
                     meeting_url=d.meeting_url)
    return render(inv, method="CANCEL" if method == "CANCEL" else "REQUEST", dtstamp=now)


# --------------------------------------------------------------------------- messages


MANAGE_LABEL = "Change or cancel"


def _html(paragraphs: list[str], url: str | None, manage: str | None = None) -> str:
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    if url:
        body += (f'<p><a href="{html.escape(url, quote=True)}">Join the meeting</a></p>')
    if manage:
        # The address is shown too: a mail client that drops links still shows it.
        body += (f'<p><a href="{html.escape(manage, quote=True)}">{MANAGE_LABEL}</a> '
                 f"({html.escape(manage)})</p>")
    return f'<!doctype html><html><body style="font-family:sans-serif">{body}</body></html>'


def _text(paragraphs: list[str], url: str | None, manage: str | None = None) -> str:
    parts = list(paragraphs)
    if url:
        parts.append(f"Join the meeting: {url}")
    if manage:
        parts.append(f"{MANAGE_LABEL}: {manage}")
    return "\n\n".join(parts) + "\n"


def _subject(text: str, limit: int = 250) -> str:
    """A subject line: one clean line, ASCII hyphens for the time range's dashes (a
    non-ASCII word makes the header an encoded word, and Python's folding then leaves a
    doubled space before it in what the customer reads)."""
    return clean_text(text.replace("\u2013", "-").replace("\u2014", "-"), limit)


def _from_name(d: BookingDetails) -> str | None:
    return clean_name(d.shop_domain.removesuffix(".myshopify.com"))


def _greeting(name: str | None) -> str:
    return f"Hello {name}," if name else "Hello,"


@dataclass(frozen=True)
class MessageKind:
    """One kind of message about a booking: who gets it and what it says.

    ``headline`` is a ``str.format`` template over ``service``, ``expert``, ``who`` (the
    customer's name, or "a customer"; ``Who``: "A customer") and ``duration``
    (reminders); the values are substituted, never parsed, so customer text cannot reach
    the template."""

    name: str                            # confirmation | rescheduled | cancellation | reminder
    audience: Literal["customer", "expert"]
    subject: str                         # "Booking confirmed", ...
    headline: str
    time_label: str                      # "When" | "It was"
    ics_method: Literal["REQUEST", "CANCEL"]
    link: bool                           # the meeting link (not after a cancellation)
    reply_to: Literal["expert", "customer"] | None
    footer: str | None = None
    contact_lines: bool = False          # the customer's own time and address (expert)
    keyed: bool = True                   # an idempotency key (reminders go out once anyway)
    manage: bool = False                 # the customer's manage link (booking still on)


CUSTOMER_CONFIRMATION = MessageKind(
    "confirmation", "customer", "Booking confirmed",
    "your booking is confirmed: {service} with {expert}.", "When", "REQUEST", True,
    "expert", footer="The invitation is attached; add it to your calendar.", manage=True)
EXPERT_NOTICE = MessageKind(
    "confirmation", "expert", "New booking", "{Who} booked {service} with you.", "When",
    "REQUEST", True, "customer", contact_lines=True)
CUSTOMER_CANCELLATION = MessageKind(
    "cancellation", "customer", "Booking cancelled",
    "your booking was cancelled: {service} with {expert}.", "It was", "CANCEL", False,
    "expert")
EXPERT_CANCELLATION = MessageKind(
    "cancellation", "expert", "Booking cancelled",
    "the booking of {service} with {who} was cancelled.", "It was", "CANCEL", False, None)
CUSTOMER_REMINDER = MessageKind(
    "reminder", "customer", "Reminder",
    "a reminder: {service} with {expert} starts in {duration}.", "When", "REQUEST", True,
    "expert", keyed=False, manage=True)
CUSTOMER_RESCHEDULED = MessageKind(
    "rescheduled", "customer", "Booking rescheduled",
    "your booking has moved: {service} with {expert}.", "New time", "REQUEST", True,
    "expert", footer="The updated invitation is attached; your calendar moves the event.",
    manage=True)
EXPERT_RESCHEDULED = MessageKind(
    "rescheduled", "expert", "Booking moved",
    "the booking of {service} with {who} has moved.", "New time", "REQUEST", True,
    "customer", contact_lines=True)


@dataclass(frozen=True)
class MessageBody:
    """What a message says, once: the text part, the HTML part and the subject are all
    rendered from it (so they cannot drift apart)."""

    subject: str
    paragraphs: tuple[str, ...]
    link: str | None
    manage_url: str | None = None

    def text(self) -> str:
        return _text(list(self.paragraphs), self.link, self.manage_url)

    def html(self) -> str:
        return _html(list(self.paragraphs), self.link, self.manage_url)


def _previous_line(kind: MessageKind, view: BookingView,
                   previous: tuple[datetime, datetime] | None) -> str | None:
    """``It was: ...`` -- the time a rescheduled booking had before (in the reader's
    zone; the customer's with the shop's beside it)."""
    if previous is None or previous[1] <= previous[0]:
        return None
    d = view.details
    if kind.audience == "customer":
        return f"It was: {customer_and_shop_time(*previous, view.customer_tz, d.shop_timezone)}"
    return f"It was: {local_time(*previous, d.expert_timezone)}"


def describe(kind: MessageKind, view: BookingView, *, offset_minutes: int | None = None,
             manage_url: str | None = None,
             previous: tuple[datetime, datetime] | None = None) -> MessageBody:
    """The body of a ``kind`` message about the booking. The customer reads their own
    time with the shop's beside it; the expert reads their own, and the customer's when
    it differs (the line issue 9 added). ``manage_url`` (kinds with ``manage``: the
    customer's confirmation, reschedule and reminder) goes into both parts;
    ``previous`` is the old time of a rescheduled booking."""
    d = view.details
    customer = kind.audience == "customer"
    headline = kind.headline.format(
        service=d.service_title, expert=d.expert_name, who=d.customer_name or "a customer",
        Who=d.customer_name or "A customer", duration=_duration(offset_minutes or 0))
    zone = view.customer_tz if customer else d.expert_timezone
    paragraphs = [_greeting(d.customer_name if customer else d.expert_name), headline,
                  f"{kind.time_label}: {customer_when(view) if customer else when(d, zone)}"]
    before = _previous_line(kind, view, previous)
    if before:
        paragraphs.append(before)
    if kind.contact_lines:
        theirs = _customer_time_for_expert(view)
        if theirs:
            paragraphs.append(theirs)
        if d.customer_email:
            paragraphs.append(f"Customer email: {d.customer_email}")
    if kind.footer:
        paragraphs.append(kind.footer)
    manage = safe_url(manage_url) if kind.manage and customer else None
    return MessageBody(subject=_subject(f"{kind.subject}: {d.service_title}, {when(d, zone)}"),
                       paragraphs=tuple(paragraphs), link=d.meeting_url if kind.link else None,
                       manage_url=manage)


def build_message(kind: MessageKind, view: BookingView, *, now: datetime,
                  sequence: int | None = None, attach_ics: bool = True,
                  offset_minutes: int | None = None, manage_url: str | None = None,
                  previous: tuple[datetime, datetime] | None = None) -> MailMessage | None:
    """The ``kind`` message about the booking, or ``None`` when its recipient has no
    valid address. ``sequence`` is the invitation's ``SEQUENCE`` (default: the
    booking's); the customer always gets the ``.ics``, the expert when ``attach_ics``
    (the relay always asks for it: the contract gives the expert an ``.ics`` of the
    customer's UID with every notice, so that any calendar app shows it)."""
    d = view.details
    to = d.customer_email if kind.audience == "customer" else d.expert_email
    if not to:
        return None
    seq = d.sequence if sequence is None else sequence
    body = describe(kind, view, offset_minutes=offset_minutes, manage_url=manage_url,
                    previous=previous)
    attach = attach_ics or kind.audience == "customer"
    reply_to = {"expert": d.expert_email, "customer": d.customer_email, None: None}[
        kind.reply_to]
    return MailMessage(
        to=(to,), subject=body.subject, text=body.text(), html=body.html(),
        ics=invitation_ics(d, method=kind.ics_method, sequence=seq, now=now)
        if attach else None,
        ics_method=kind.ics_method, from_name=_from_name(d), reply_to=reply_to,
        idempotency_key=f"{kind.name}:{d.booking_id}:{seq}:{kind.audience}"
        if kind.keyed else None)


def customer_confirmation(view: BookingView, *, sequence: int, now: datetime,
                          manage_url: str | None = None) -> MailMessage | None:
    """The one confirmation the customer gets, with the invitation attached and the
    manage link."""
    return build_message(CUSTOMER_CONFIRMATION, view, sequence=sequence, now=now,
                         manage_url=manage_url)


def customer_rescheduled(view: BookingView, *, sequence: int, now: datetime,
                         manage_url: str | None = None,
                         previous: tuple[datetime, datetime] | None = None
                         ) -> MailMessage | None:
    """The one "rescheduled" mail of a move: the new time (the customer's and the
    shop's), the old one when known, the manage link, and the invitation with the same
    ``UID`` at the raised ``SEQUENCE`` (calendar apps move the event they have)."""
    return build_message(CUSTOMER_RESCHEDULED, view, sequence=sequence, now=now,
                         manage_url=manage_url, previous=previous)


def expert_rescheduled(view: BookingView, *, sequence: int, now: datetime,
                       previous: tuple[datetime, datetime] | None = None
                       ) -> MailMessage | None:
    """The expert's notice of a move, with the ``REQUEST`` of the customer's ``UID``."""
    return build_message(EXPERT_RESCHEDULED, view, sequence=sequence, now=now,
                         previous=previous)


def expert_notification(view: BookingView, *, sequence: int, now: datetime,
                        attach_ics: bool) -> MailMessage | None:
    """The expert's notice of a new booking (with the ``.ics`` when no calendar of theirs
    got the event)."""
    return build_message(EXPERT_NOTICE, view, sequence=sequence, now=now,
                         attach_ics=attach_ics)


def customer_cancellation(view: BookingView, *, sequence: int, now: datetime
                          ) -> MailMessage | None:
    """The customer's cancellation, with ``METHOD:CANCEL``."""
    return build_message(CUSTOMER_CANCELLATION, view, sequence=sequence, now=now)


def expert_cancellation(view: BookingView, *, sequence: int, now: datetime,
                        attach_ics: bool) -> MailMessage | None:
    """The expert's cancellation (with the ``.ics`` when no calendar of theirs had it)."""
    return build_message(EXPERT_CANCELLATION, view, sequence=sequence, now=now,
                         attach_ics=attach_ics)


def customer_reminder(view: BookingView, *, offset_minutes: int, now: datetime,
                      manage_url: str | None = None) -> MailMessage | None:
    """A reminder ``offset_minutes`` before the start, with the invitation again (no
    idempotency key: the reminder's claim, pending -> sending, already makes it go out
    at most once, and the key would cost two more transactions per message)."""
    return build_message(CUSTOMER_REMINDER, view, now=now, offset_minutes=offset_minutes,
                         manage_url=manage_url)


# --------------------------------------------------------------------------- manage link


def manage_url(db: Database, config: Config, booking_id: str) -> str | None:
    """The customer's manage link for the booking (``https://{shop}{proxy prefix}/manage
    ?booking=ID&token=T``), from :func:`engine.services.manage_links.link_for` -- the one
    place that knows the token -- or ``None`` when there is none (a redacted booking).
    Never raises: a mail goes out without the
    link rather than not at all."""
    try:
        # Only the claim's token hash is written: the read cache stays valid.
        with db.write(keep_cache=True) as session:
            claim = session.get(Claim, booking_id)
            if claim is None:
                return None
            link = manage_links.link_for(session, config, claim)
    except Exception:
        log.exception("booking %s: no manage link could be made", booking_id)
        return None
    return safe_url(link)
