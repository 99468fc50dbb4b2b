"""The values that cross the boundary between the engine and provider plugins.

Everything here is a frozen dataclass of plain values: no database rows, no sessions,
nothing a provider could use to reach into the engine. Instants are timezone-aware
``datetime`` objects in UTC.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

__all__ = [
    "BookingDetails",
    "BusyInterval",
    "CalendarBusy",
    "EventRef",
    "MailMessage",
    "Meeting",
]

BookingStatus = Literal["pending", "confirmed", "cancelled"]
BusyInterval = tuple[datetime, datetime]
"""``[start, end)`` in UTC."""

_CRLF = re.compile(r"[\r\n\x00]")
_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,75}")
_EMAIL = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+")


def _utc(name: str, value: datetime) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return value.astimezone(UTC)


def _no_newlines(name: str, value: str | None) -> None:
    if value is not None and _CRLF.search(value):
        raise ValueError(f"{name} may not contain line breaks")


@dataclass(frozen=True)
class BookingDetails:
    """One booking as a provider sees it: enough to write a calendar event or a message.

    ``start``/``end`` are the appointment itself (buffers are not part of the event).
    ``sequence`` increases every time the booking changes (iCalendar ``SEQUENCE``), so
    providers and mail clients can tell an update from a repeat. ``customer_name`` and
    ``customer_email`` may be ``None`` after a privacy redaction.

    ``attendees`` is set for the event of a seated session (a service with more than one
    seat: one event for every customer of the session): each customer's ``(email,
    name)``, and the ``customer_*`` fields are then empty. Empty for a one-to-one
    booking, whose customer is ``customer_email``.
    """

    booking_id: str
    shop_domain: str
    shop_timezone: str
    service_title: str
    expert_id: str
    expert_name: str
    expert_email: str | None
    expert_timezone: str
    customer_name: str | None
    customer_email: str | None
    start: datetime
    end: datetime
    sequence: int = 0
    status: BookingStatus = "confirmed"
    description: str = ""
    meeting_url: str | None = None
    attendees: tuple[tuple[str, str | None], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _utc("start", self.start))
        object.__setattr__(self, "end", _utc("end", self.end))
        if self.end <= self.start:
            raise ValueError("a booking must end after it starts")
        if not self.booking_id:
            raise ValueError("booking_id is required")
        for name in ("service_title", "expert_name", "customer_name", "expert_email",
                     "customer_email"):
            _no_newlines(name, getattr(self, name))
        object.__setattr__(self, "attendees", tuple(self.attendees))
        for address, attendee_name in self.attendees:
            _no_newlines("an attendee", address)
            _no_newlines("an attendee", attendee_name)

    @property
    def summary(self) -> str:
        """The event title: ``"<service> with <customer>"`` (or just the service)."""
        if self.customer_name:
            return f"{self.service_title} with {self.customer_name}"
        return self.service_title


@dataclass(frozen=True)
class Meeting:
    """A video meeting made by a video provider before the calendar event exists."""

    url: str
    id: str
    provider: str


@dataclass(frozen=True)
class EventRef:
    """Where a booking's calendar event lives; the worker stores it to update or cancel.

    ``meeting_url`` is filled when the calendar made the video link itself (Meet through
    Google Calendar, Teams through Outlook); it can be ``None`` while Google still has
    the conference ``pending``.
    """

    provider: str
    id: str
    calendar_id: str
    meeting_url: str | None = None


@dataclass(frozen=True)
class CalendarBusy:
    """Busy time of one calendar over the asked range, or why it could not be read.

    ``busy`` is sorted, merged and clipped to the asked range. When ``error`` is set the
    calendar's busy time is unknown (the engine fails closed for that expert).
    """

    busy: tuple[BusyInterval, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class MailMessage:
    """One outgoing message: plain text, HTML, and optionally an iCalendar invitation.

    ``ics`` is the raw ``VCALENDAR`` (bytes); ``ics_method`` is its ``METHOD``
    (``REQUEST`` for new and changed bookings, ``CANCEL`` for cancellations). It goes
    out as a ``text/calendar; method=...`` alternative and as an ``invite.ics``
    attachment. ``idempotency_key`` (e.g. ``"confirmation:bkg_x:3"``) makes a repeated
    send of the same message a no-op through the facade. Any line break in an address,
    the subject or a header is refused (``ValueError``): no header injection.
    """

    to: tuple[str, ...]
    subject: str
    text: str
    html: str | None = None
    ics: bytes | None = None
    ics_method: Literal["REQUEST", "CANCEL", "PUBLISH"] = "REQUEST"
    from_name: str | None = None
    reply_to: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None

    def __post_init__(self) -> None:
        to = (self.to,) if isinstance(self.to, str) else tuple(self.to)
        if not to:
            raise ValueError("a message needs at least one recipient")
        object.__setattr__(self, "to", to)
        for address in (*to, self.reply_to):
            if address is None:
                continue
            _no_newlines("an address", address)
            if not _EMAIL.fullmatch(address):
                raise ValueError(f"{address!r} is not an email address")
        _no_newlines("subject", self.subject)
        _no_newlines("from_name", self.from_name)
        _no_newlines("idempotency_key", self.idempotency_key)
        if self.ics_method not in ("REQUEST", "CANCEL", "PUBLISH"):
            raise ValueError("ics_method must be REQUEST, CANCEL or PUBLISH")
        headers = dict(self.headers)
        for name, value in headers.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a header name")
            _no_newlines(f"header {name}", value)
        object.__setattr__(self, "headers", headers)
