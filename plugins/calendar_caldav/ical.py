"""iCalendar for CalDAV: the booking's event, and busy time read from the server.

* :func:`event_ics` writes one ``VEVENT`` with the client-chosen ``UID``
  ``<booking id>@consultbook`` (the UID of consultbook's own invitation mails, so a
  client that sees both knows they are one appointment). It carries no ``ORGANIZER`` or
  ``ATTENDEE``: servers with implicit scheduling (iCloud, Fastmail; RFC 6638) would mail
  invitations of their own, and consultbook mails the customer itself. Who booked, and
  the meeting link, are in the description (and the link in ``LOCATION``/``URL``).
* :func:`freebusy_periods` reads a ``VFREEBUSY`` (the free-busy-query REPORT's answer).
* :func:`event_busy` expands the events of a calendar-query answer (recurrences and
  their exceptions, through ``recurring_ical_events``) into busy intervals: transparent
  and cancelled events are free; all-day dates and floating times are read in the
  calendar's zone.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

import icalendar
import recurring_ical_events

from engine.providers import BookingDetails, Meeting

PRODID = "-//consultbook//CalDAV calendar//EN"
BUSY_TYPES = frozenset({"BUSY", "BUSY-TENTATIVE", "BUSY-UNAVAILABLE"})
Interval = tuple[datetime, datetime]


def uid_of(booking_id: str) -> str:
    return f"{booking_id}@consultbook"


def _status(booking: BookingDetails) -> str:
    return {"confirmed": "CONFIRMED", "pending": "TENTATIVE",
            "cancelled": "CANCELLED"}.get(booking.status, "CONFIRMED")


def description(booking: BookingDetails, meeting_url: str | None) -> str:
    """The event's text: the description, who booked, the link, the booking id."""
    lines = [booking.description.strip()] if booking.description.strip() else []
    lines.append(f"Service: {booking.service_title}")
    lines.append(f"Expert: {booking.expert_name}")
    customers = booking.attendees or (
        ((booking.customer_email, booking.customer_name),)
        if booking.customer_name or booking.customer_email else ())
    for email, name in customers:  # a seated session: every customer of it
        who = name or ""
        if email:
            who = f"{who} <{email}>".strip()
        lines.append(f"Customer: {who}")
    if meeting_url:
        lines.append(f"Join: {meeting_url}")
    lines.append(f"Booking: {booking.booking_id} ({booking.shop_domain})")
    return "\n".join(lines)


def event_ics(booking: BookingDetails, meeting: Meeting | None, *, sequence: int,
              stamp: datetime) -> str:
    """The ``VCALENDAR`` text of the booking's event at ``sequence``."""
    url = meeting.url if meeting is not None else booking.meeting_url
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    ev = icalendar.Event()
    ev.add("uid", uid_of(booking.booking_id))
    ev.add("dtstamp", stamp.astimezone(UTC))
    ev.add("dtstart", booking.start)
    ev.add("dtend", booking.end)
    ev.add("summary", booking.summary)
    ev.add("description", description(booking, url))
    ev.add("sequence", max(0, int(sequence)))
    ev.add("status", _status(booking))
    ev.add("transp", "OPAQUE")
    if url:
        ev.add("location", url)
        ev.add("url", url)
    ev.add("x-consultbook-booking", booking.booking_id)
    ev.add("x-consultbook-shop", booking.shop_domain)
    cal.add_component(ev)
    return str(cal.to_ical().decode("utf-8"))


def parse_calendar(text: bytes | str) -> icalendar.Calendar:
    """Parse a ``VCALENDAR``; ``ValueError`` when it is not one."""
    try:
        parsed = icalendar.Calendar.from_ical(text)
    except Exception as exc:  # icalendar raises ValueError and a few others
        raise ValueError(f"not an iCalendar object: {exc}") from None
    if not isinstance(parsed, icalendar.Calendar):
        raise ValueError("not an iCalendar object")
    return parsed


def first_event(cal: icalendar.Calendar) -> Any | None:
    """The master ``VEVENT`` (the one without ``RECURRENCE-ID``), else the first one."""
    events = [c for c in cal.walk("VEVENT")]
    for ev in events:
        if ev.get("recurrence-id") is None:
            return ev
    return events[0] if events else None


def sequence_of(cal: icalendar.Calendar) -> int:
    ev = first_event(cal)
    try:
        return int(ev.get("sequence", 0)) if ev is not None else 0
    except (TypeError, ValueError):
        return 0


def status_of(cal: icalendar.Calendar) -> str:
    ev = first_event(cal)
    return str(ev.get("status", "CONFIRMED")).upper() if ev is not None else "CONFIRMED"


def _to_utc(value: date | datetime, zone: tzinfo) -> datetime:
    """An iCalendar date or date-time as UTC: dates are local midnights and naive
    (floating) times local times, both in ``zone``."""
    if not isinstance(value, datetime):
        value = datetime.combine(value, time(0))
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


def freebusy_periods(text: bytes | str) -> list[Interval]:
    """Busy periods of every ``VFREEBUSY`` in ``text`` (``FBTYPE`` BUSY by default;
    ``FREE`` periods are skipped). ``ValueError`` when ``text`` is not iCalendar."""
    cal = parse_calendar(text)
    found: list[Interval] = []
    for fb in cal.walk("VFREEBUSY"):
        props = fb.get("freebusy")
        if props is None:
            continue
        for prop in props if isinstance(props, list) else [props]:
            fbtype = str(prop.params.get("FBTYPE", "BUSY")).upper()
            if fbtype not in BUSY_TYPES:
                continue
            values = prop.dts if hasattr(prop, "dts") else [prop]
            for period in values:
                value = period.dt
                start, end_or_duration = value
                start_utc = _to_utc(start, UTC)
                if isinstance(end_or_duration, timedelta):
                    end_utc = start_utc + end_or_duration
                else:
                    end_utc = _to_utc(end_or_duration, UTC)
                if end_utc > start_utc:
                    found.append((start_utc, end_utc))
    return found


def _is_free(ev: Any) -> bool:
    transp = str(ev.get("transp", "OPAQUE")).upper()
    status = str(ev.get("status", "CONFIRMED")).upper()
    return transp == "TRANSPARENT" or status == "CANCELLED"


def event_busy(calendars: Iterable[bytes | str], start: datetime, end: datetime,
               zone: tzinfo) -> list[Interval]:
    """Busy intervals of the events in ``calendars`` (calendar-data texts) that overlap
    ``[start, end)``: every occurrence of recurring events, exceptions and ``EXDATE``s
    applied; transparent and cancelled events (or occurrences) left out; all-day and
    floating events in ``zone``. Unparseable objects raise ``ValueError``."""
    # Floating times and dates depend on the zone: ask the expander for a wider window
    # (a day each side covers every UTC offset) and clip to the asked range afterwards.
    lo, hi = start - timedelta(days=1), end + timedelta(days=1)
    found: list[Interval] = []
    for text in calendars:
        cal = parse_calendar(text)
        try:
            occurrences = recurring_ical_events.of(cal, components=["VEVENT"]).between(lo, hi)
        except Exception as exc:  # a broken RRULE: unknowable busy time, fail closed
            raise ValueError(f"cannot expand the calendar's events: {exc}") from None
        for ev in occurrences:
            if _is_free(ev):
                continue
            dtstart = ev.get("dtstart")
            if dtstart is None:
                continue
            begin = _to_utc(dtstart.dt, zone)
            dtend = ev.get("dtend")
            if dtend is not None:
                finish = _to_utc(dtend.dt, zone)
            elif ev.get("duration") is not None:
                finish = begin + ev["duration"].dt
            elif not isinstance(dtstart.dt, datetime):
                finish = _to_utc(dtstart.dt + timedelta(days=1), zone)  # RFC 5545 3.6.1
            else:
                finish = begin
            if finish > begin and begin < end and finish > start:
                found.append((begin, finish))
    return found


def zone_of_vtimezone(text: str | None) -> str | None:
    """The ``TZID`` of a ``CALDAV:calendar-timezone`` value, or ``None``."""
    if not text:
        return None
    try:
        cal = parse_calendar(text)
    except ValueError:
        return None
    for tz in cal.walk("VTIMEZONE"):
        tzid = tz.get("tzid")
        if tzid:
            return str(tzid)
    return None


__all__ = ["BUSY_TYPES", "PRODID", "description", "event_busy", "event_ics",
           "first_event", "freebusy_periods", "parse_calendar", "sequence_of",
           "status_of", "uid_of", "zone_of_vtimezone"]
