"""Exports of bookings for the merchant: CSV (spreadsheet-safe) and iCalendar.

Customer-provided text never becomes a formula (CSV cells that a spreadsheet would
evaluate are prefixed with ``'``) or a new iCalendar line or property (each value is one
line of :func:`engine.domain.mail.clean_text` -- control and bidi characters out,
whitespace collapsed -- and the icalendar library escapes and folds the rest).
"""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime

from icalendar import Calendar, Event

from engine.domain.mail import clean_text
from engine.services.bookings import booking_rows, render_booking
from engine.store import Database

FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "|", "%")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
COLUMNS = ["id", "status", "start", "end", "service", "service_title", "expert", "expert_name",
           "order_id", "customer_name", "customer_email", "meeting_url"]


def safe_cell(value: object) -> str:
    text = "" if value is None else CONTROL.sub("", str(value))
    if text.startswith(FORMULA_START):
        return "'" + text
    return text


def export_csv(db: Database, shop_id: str, lo: datetime | None, hi: datetime | None) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    with db.read() as session:
        for c in booking_rows(session, shop_id, lo, hi):
            b = render_booking(session, c, delivery=None)  # not exported
            row = {**b, "customer_name": b["customer"]["name"],
                   "customer_email": b["customer"]["email"]}
            writer.writerow([safe_cell(row[k]) for k in COLUMNS])
    return out.getvalue()


def export_ics(db: Database, shop_id: str, lo: datetime | None, hi: datetime | None) -> bytes:
    cal = Calendar()
    cal.add("prodid", "-//consultbook//bookings export//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    with db.read() as session:
        for c in booking_rows(session, shop_id, lo, hi):
            b = render_booking(session, c, delivery=None)  # not exported
            ev = Event()
            ev.add("uid", f"{c.id}@consultbook")
            ev.add("dtstamp", c.updated_at)
            ev.add("dtstart", c.start_at)
            ev.add("dtend", c.end_at)
            ev.add("sequence", c.sequence)
            ev.add("status", "CANCELLED" if c.status == "cancelled" else
                   "CONFIRMED" if c.status == "confirmed" else "TENTATIVE")
            title = clean_text(b["service_title"] or "Consultation", None)
            who = clean_text(b["customer"]["name"] or "", None)
            ev.add("summary", f"{title} — {who}" if who else title)
            lines = [f"Expert: {clean_text(b['expert_name'], None)}",
                     f"Order: {clean_text(c.order_id, None)}"]
            if b["customer"]["email"]:
                lines.append(f"Customer email: {clean_text(b['customer']['email'], None)}")
            if c.meeting_url:
                lines.append(f"Meeting: {clean_text(c.meeting_url, None)}")
                ev.add("location", clean_text(c.meeting_url, None))
            ev.add("description", "\n".join(lines))
            cal.add_component(ev)
    return bytes(cal.to_ical())
