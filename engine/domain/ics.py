"""iCalendar invitations for bookings (RFC 5545 / iTIP RFC 5546), built with ``icalendar``.

One booking is one event with a stable ``UID`` (``<booking id>@consultbook``) for its
whole life. ``SEQUENCE`` is the booking's sequence, bumped on every change, so calendar
clients apply an update or a cancellation to the event they already have instead of
adding a second one. ``METHOD:REQUEST`` invites (confirmation, reminders);
``METHOD:CANCEL`` with the same UID and ``STATUS:CANCELLED`` removes it.

Everything that came from outside (names, titles, addresses, the meeting URL) passes
through :mod:`engine.domain.mail` first: control characters stripped, addresses and
URLs validated. ``icalendar`` escapes text values, quotes parameters and folds lines at
75 octets. Pure: the caller passes ``dtstamp``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from icalendar import Calendar, Event, vCalAddress, vText

from engine.domain.mail import clean_name, clean_text, safe_uid, safe_url, valid_address

PRODID = "-//consultbook//consultbook//EN"
Method = Literal["REQUEST", "CANCEL"]


@dataclass(frozen=True)
class Party:
    """An organizer or attendee: an address (required) and an optional display name."""

    email: str
    name: str | None = None


@dataclass(frozen=True)
class Invitation:
    """What an invitation says. ``start``/``end`` are aware instants."""

    booking_id: str
    sequence: int
    start: datetime
    end: datetime
    summary: str
    organizer: Party
    attendees: tuple[Party, ...] = ()
    description: str = ""
    meeting_url: str | None = None
    location: str | None = None


def _address(party: Party, role: str | None) -> vCalAddress | None:
    email = valid_address(party.email)
    if email is None:
        return None
    address = vCalAddress(f"mailto:{email}")
    name = clean_name(party.name)
    if name:
        address.params["CN"] = vText(name)
    if role:
        address.params["ROLE"] = vText(role)
        address.params["PARTSTAT"] = vText("NEEDS-ACTION")
        address.params["RSVP"] = vText("FALSE")
    return address


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("invitation times must be timezone-aware")
    return value.astimezone(UTC)


def render(invitation: Invitation, *, method: Method, dtstamp: datetime) -> bytes:
    """The ``VCALENDAR`` bytes (CRLF line ends, folded) for ``invitation``."""
    if method not in ("REQUEST", "CANCEL"):
        raise ValueError("method must be REQUEST or CANCEL")
    if invitation.sequence < 0:
        raise ValueError("sequence must not be negative")
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", method)

    event = Event()
    event.add("uid", safe_uid(invitation.booking_id))
    event.add("sequence", int(invitation.sequence))
    event.add("dtstamp", _utc(dtstamp))
    event.add("dtstart", _utc(invitation.start))
    event.add("dtend", _utc(invitation.end))
    event.add("summary", clean_text(invitation.summary, 200) or "Appointment")
    event.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
    event.add("transp", "OPAQUE")

    url = safe_url(invitation.meeting_url)
    description = invitation.description.replace("\r\n", "\n").replace("\r", "\n")
    # Keep the description's own line breaks (icalendar escapes them as \n) but nothing
    # else that is a control character.
    description = "\n".join(clean_text(line, 500) for line in description.split("\n"))
    if url:
        description = (description + "\n\n" if description.strip() else "") + \
            f"Join the meeting: {url}"
        event.add("url", url)
    if description.strip():
        event.add("description", description.strip()[:4000])
    location = url or clean_text(invitation.location, 200)
    if location:
        event.add("location", location)

    organizer = _address(invitation.organizer, None)
    if organizer is None:
        raise ValueError("the organizer needs a valid email address")
    event.add("organizer", organizer)
    for party in invitation.attendees:
        attendee = _address(party, "REQ-PARTICIPANT")
        if attendee is not None:
            event.add("attendee", attendee)
    cal.add_component(event)
    data: bytes = cal.to_ical()
    return data
