"""What the customer and the expert are told about a booking: the messages and their
``.ics`` invitations.

:func:`load_views` turns booking rows into :class:`BookingView` values (the provider-facing
:class:`~engine.providers.BookingDetails` plus what mail needs); the ``*_message``
functions build :class:`~engine.providers.MailMessage` values from them. Nothing here
sends: the outbox relay (:mod:`engine.services.outbox`) and the reminder scan
(:mod:`engine.services.reminders`) do, once.

Every name and address is cleaned or validated on the way in (:mod:`engine.domain.mail`):
a customer name with a line break cannot add a header or an iCalendar property, an
invalid address is dropped (the message to it is skipped), HTML is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.domain.customer_time import customer_and_shop_time, local_time
from engine.domain.ics import Invitation, Party, render
from engine.domain.mail import clean_name, clean_text, safe_url, valid_address
from engine.providers.types import BookingDetails, MailMessage
from engine.store.models import Claim, Expert, Service, Shop


@dataclass(frozen=True)
class BookingView:
    """One booking as the worker needs it."""

    details: BookingDetails
    shop_id: str
    customer_tz: str
    external: dict[str, Any]

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
        details = replace(details, description=_description(details))
        out[c.id] = BookingView(details=details, shop_id=c.shop_id,
                                customer_tz=_zone(c.customer_tz, shop_tz),
                                external=dict(c.external or {}))
    return out


def load_view(session: Session, booking_id: str) -> BookingView | None:
    return load_views(session, [booking_id]).get(booking_id)


def _description(d: BookingDetails) -> str:
    lines = [f"{d.service_title} with {d.expert_name}"]
    if d.customer_name:
        lines.append(f"Customer: {d.customer_name}")
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


def _html(paragraphs: list[str], url: str | None) -> str:
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    if url:
        body += (f'<p><a href="{html.escape(url, quote=True)}">Join the meeting</a></p>')
    return f'<!doctype html><html><body style="font-family:sans-serif">{body}</body></html>'


def _text(paragraphs: list[str], url: str | None) -> str:
    parts = list(paragraphs)
    if url:
        parts.append(f"Join the meeting: {url}")
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


def customer_confirmation(view: BookingView, *, sequence: int, now: datetime
                          ) -> MailMessage | None:
    """The one confirmation the customer gets, with the invitation attached."""
    d = view.details
    if not d.customer_email:
        return None
    url = d.meeting_url
    paragraphs = [_greeting(d.customer_name),
                  f"your booking is confirmed: {d.service_title} with {d.expert_name}.",
                  f"When: {customer_when(view)}",
                  "The invitation is attached; add it to your calendar."]
    return MailMessage(
        to=(d.customer_email,), subject=_subject(
            f"Booking confirmed: {d.service_title}, {when(d, view.customer_tz)}", 250),
        text=_text(paragraphs, url), html=_html(paragraphs, url),
        ics=invitation_ics(d, method="REQUEST", sequence=sequence, now=now),
        ics_method="REQUEST", from_name=_from_name(d), reply_to=d.expert_email,
        idempotency_key=f"confirmation:{d.booking_id}:{sequence}:customer")


def expert_notification(view: BookingView, *, sequence: int, now: datetime,
                        attach_ics: bool) -> MailMessage | None:
    """The expert's notice of a new booking (with the ``.ics`` when no calendar of theirs
    got the event)."""
    d = view.details
    if not d.expert_email:
        return None
    who = d.customer_name or "A customer"
    paragraphs = [_greeting(d.expert_name),
                  f"{who} booked {d.service_title} with you.",
                  f"When: {when(d, d.expert_timezone)}"]
    theirs = _customer_time_for_expert(view)
    if theirs:
        paragraphs.append(theirs)
    if d.customer_email:
        paragraphs.append(f"Customer email: {d.customer_email}")
    return MailMessage(
        to=(d.expert_email,), subject=_subject(
            f"New booking: {d.service_title}, {when(d, d.expert_timezone)}", 250),
        text=_text(paragraphs, d.meeting_url), html=_html(paragraphs, d.meeting_url),
        ics=invitation_ics(d, method="REQUEST", sequence=sequence, now=now)
        if attach_ics else None,
        ics_method="REQUEST", from_name=_from_name(d), reply_to=d.customer_email,
        idempotency_key=f"confirmation:{d.booking_id}:{sequence}:expert")


def customer_cancellation(view: BookingView, *, sequence: int, now: datetime
                          ) -> MailMessage | None:
    d = view.details
    if not d.customer_email:
        return None
    paragraphs = [_greeting(d.customer_name),
                  f"your booking was cancelled: {d.service_title} with {d.expert_name}.",
                  f"It was: {customer_when(view)}"]
    return MailMessage(
        to=(d.customer_email,), subject=_subject(
            f"Booking cancelled: {d.service_title}, {when(d, view.customer_tz)}", 250),
        text=_text(paragraphs, None), html=_html(paragraphs, None),
        ics=invitation_ics(d, method="CANCEL", sequence=sequence, now=now),
        ics_method="CANCEL", from_name=_from_name(d), reply_to=d.expert_email,
        idempotency_key=f"cancellation:{d.booking_id}:{sequence}:customer")


def expert_cancellation(view: BookingView, *, sequence: int, now: datetime,
                        attach_ics: bool) -> MailMessage | None:
    d = view.details
    if not d.expert_email:
        return None
    who = d.customer_name or "a customer"
    paragraphs = [_greeting(d.expert_name),
                  f"the booking of {d.service_title} with {who} was cancelled.",
                  f"It was: {when(d, d.expert_timezone)}"]
    return MailMessage(
        to=(d.expert_email,), subject=_subject(
            f"Booking cancelled: {d.service_title}, {when(d, d.expert_timezone)}", 250),
        text=_text(paragraphs, None), html=_html(paragraphs, None),
        ics=invitation_ics(d, method="CANCEL", sequence=sequence, now=now)
        if attach_ics else None,
        ics_method="CANCEL", from_name=_from_name(d),
        idempotency_key=f"cancellation:{d.booking_id}:{sequence}:expert")


def customer_reminder(view: BookingView, *, offset_minutes: int, now: datetime
                      ) -> MailMessage | None:
    """A reminder ``offset_minutes`` before the start, with the invitation again."""
    d = view.details
    if not d.customer_email:
        return None
    paragraphs = [_greeting(d.customer_name),
                  f"a reminder: {d.service_title} with {d.expert_name} starts in "
                  f"{_duration(offset_minutes)}.",
                  f"When: {customer_when(view)}"]
    return MailMessage(
        to=(d.customer_email,), subject=_subject(
            f"Reminder: {d.service_title}, {when(d, view.customer_tz)}", 250),
        text=_text(paragraphs, d.meeting_url), html=_html(paragraphs, d.meeting_url),
        ics=invitation_ics(d, method="REQUEST", sequence=d.sequence, now=now),
        # No idempotency key: the reminder's claim (pending -> sending) already makes it
        # go out at most once, and the key would cost two more transactions per message.
        ics_method="REQUEST", from_name=_from_name(d), reply_to=d.expert_email)
