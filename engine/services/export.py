"""Exports of bookings for the merchant: CSV (spreadsheet-safe) and iCalendar.

Customer-provided text never becomes a formula (CSV cells that a spreadsheet would
evaluate are prefixed with ``'``) or a new iCalendar line or property (each value is one
line of :func:`engine.domain.mail.clean_text` -- control and bidi characters out,
whitespace collapsed -- and the icalendar library escapes and folds the rest). Intake
answers are columns of their own in the CSV (one per question label) and ``label:
answer`` lines in the iCalendar description.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime
from typing import Any

from icalendar import Calendar, Event
from sqlalchemy.orm import Session

from engine.domain.mail import clean_text
from engine.services import questions
from engine.services.bookings import booking_rows, render_booking
from engine.store import Database
from engine.store.models import Claim, Service

FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "|", "%")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
COLUMNS = ["id", "status", "start", "end", "service", "service_title", "expert", "expert_name",
           "order_id", "customer_name", "customer_email", "meeting_url", "no_show"]


def safe_cell(value: object) -> str:
    text = "" if value is None else CONTROL.sub("", str(value))
    if text.startswith(FORMULA_START):
        return "'" + text
    return text


def _questions(session: Session, c: Claim) -> list[Any]:
    service = session.get(Service, c.service_id)
    return list(service.questions or []) if service else []


def _answers(session: Session, c: Claim) -> list[tuple[str, str]]:
    return questions.labelled(_questions(session, c), c.answers)


def export_csv(db: Database, shop_id: str, lo: datetime | None, hi: datetime | None) -> str:
    """The bookings as CSV: the fixed :data:`COLUMNS`, then one column per intake
    question label of the exported bookings' services (a label shared by several
    services is one column; in order of first appearance), and of any answer to a
    question removed since (labelled by its id); empty where unanswered.
    Headers and cells both pass :func:`safe_cell` (labels are the merchant's text,
    answers the customer's)."""
    with db.read() as session:
        rows: list[tuple[dict[str, Any], dict[str, str]]] = []
        labels: dict[str, None] = {}
        for c in booking_rows(session, shop_id, lo, hi):
            b = render_booking(session, c, delivery=None)  # not exported
            row = {**b, "customer_name": b["customer"]["name"],
                   "customer_email": b["customer"]["email"],
                   "no_show": "yes" if b.get("no_show") else ""}
            for q in _questions(session, c):
                labels.setdefault(str(q.get("label") or q.get("id")))
            answers: dict[str, str] = {}
            for label, answer in _answers(session, c):
                answers.setdefault(label, answer)
                labels.setdefault(label)
            rows.append((row, answers))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([safe_cell(k) for k in [*COLUMNS, *labels]])
    for row, answers in rows:
        writer.writerow([safe_cell(row[k]) for k in COLUMNS]
                        + [safe_cell(answers.get(label)) for label in labels])
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
            lines.extend(f"{clean_text(label, None)}: {clean_text(answer, None)}"
                         for label, answer in _answers(session, c))
            if c.meeting_url:
                lines.append(f"Meeting: {clean_text(c.meeting_url, None)}")
                ev.add("location", clean_text(c.meeting_url, None))
            ev.add("description", "\n".join(lines))
            cal.add_component(ev)
    return bytes(cal.to_ical())
