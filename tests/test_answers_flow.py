"""Intake answers end to end (issue 11, CONTRACT "Intake questions"), on both databases:
the hold checks them (422 invalid_answers naming the question) and carries them into the
line item properties; the booking keeps them, and they show in the admin bookings list,
the CSV export (one column per label, formula-safe), the ICS export and the calendar
event description (no line or property injection); customers/redact erases them, with
the manage token and the customer's waitlist emails."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from typing import Any

import pytest
from icalendar import Calendar
from sqlalchemy import select

from engine.bootstrap import Context
from engine.domain.ics import Invitation, Party, render
from engine.services import notify
from engine.services.shops import ShopRef
from engine.store import new_id
from engine.store.models import Claim, WaitlistEntry
from tests.conftest import NOW, Admin, Storefront, make_catalog, order_payload

SLOT = "2026-12-01T09:00:00Z"  # Tuesday 10:00 in Berlin
SLOT2 = "2026-12-01T10:00:00Z"
QUESTIONS = [
    {"id": "topic", "label": "Topic", "type": "text", "required": True},
    {"id": "notes", "label": "Notes", "type": "textarea"},
    {"id": "level", "label": "Level", "type": "choice", "choices": ["Beginner", "Expert"]},
    {"id": "consent", "label": "Consent", "type": "checkbox", "required": True},
    {"id": "contact", "label": "Contact email", "type": "email"},
    {"id": "phone", "label": "=Phone", "type": "phone"},
]
INJECTION = ("hello\r\nATTENDEE;CN=Evil:mailto:evil@example.com\r\n"
             "END:VEVENT\nBEGIN:VEVENT\n<script>alert(1)</script>")


@pytest.fixture
def cat(admin: Admin) -> dict[str, Any]:
    cat = make_catalog(admin)
    r = admin("PATCH", f"/services/{cat['service']}", {"questions": QUESTIONS})
    assert r.status_code == 200, r.text
    return cat


def book(store: Storefront, cat: dict[str, Any], answers: dict[str, Any], *,
         start: str = SLOT, order: int = 50, email: str = "jon@example.com",
         customer_id: int = 77) -> dict[str, Any]:
    r = store.hold(cat["service"], cat["expert"], start, answers=answers)
    assert r.status_code == 201, r.text
    w = store.webhook("orders/paid", order_payload(order, [r.json["hold"]], email=email,
                                                   customer_id=customer_id))
    assert w.status_code == 200, w.text
    return r.json


def bookings(admin: Admin) -> list[dict[str, Any]]:
    return admin("GET", "/bookings").json["bookings"]


GOOD = {"topic": "Taxes 2026", "notes": "line one\nline two", "level": "Expert",
        "consent": True, "phone": "+49 30 1234567"}


def test_hold_checks_answers_before_anything_else(store: Storefront,
                                                  cat: dict[str, Any]) -> None:
    r = store.hold(cat["service"], cat["expert"], SLOT, answers={"level": "Expert",
                                                                "consent": True})
    assert r.status_code == 422 and r.json["error"]["code"] == "invalid_answers"
    assert "'topic'" in r.json["error"]["message"] and "Topic" in r.json["error"]["message"]
    # 422 invalid_answers even for a start that is not a slot: the answers come first.
    r = store.hold(cat["service"], cat["expert"], "2026-12-01T09:07:00Z",
                   answers={"nope": "x"})
    assert r.status_code == 422 and r.json["error"]["code"] == "invalid_answers"
    r = store.hold(cat["service"], cat["expert"], SLOT, answers={**GOOD, "level": "Guru"})
    assert r.status_code == 422 and "'level'" in r.json["error"]["message"]
    r = store.hold(cat["service"], cat["expert"], SLOT, answers=["x"])
    assert r.status_code == 400
    # Nothing was taken by the refusals.
    assert store.hold(cat["service"], cat["expert"], SLOT, answers=GOOD).status_code == 201


def test_answers_reach_the_line_item_properties(store: Storefront,
                                                cat: dict[str, Any]) -> None:
    r = store.hold(cat["service"], cat["expert"], SLOT, answers=GOOD)
    assert r.status_code == 201, r.text
    props = r.json["line_item_properties"]
    assert props["_hold"] == r.json["hold"] and "Appointment" in props and "Expert" in props
    assert {k: props[k] for k in ("Topic", "Notes", "Level", "Consent", "=Phone")} == {
        "Topic": "Taxes 2026", "Notes": "line one\nline two", "Level": "Expert",
        "Consent": "true", "=Phone": "+49 30 1234567"}
    assert "Contact email" not in props  # unanswered


def test_booking_keeps_answers_in_admin_csv_and_ics(store: Storefront, admin: Admin,
                                                    cat: dict[str, Any]) -> None:
    book(store, cat, {**GOOD, "notes": "=HYPERLINK(\"http://evil\")\n@SUM(1)"})
    [b] = bookings(admin)
    assert b["status"] == "confirmed"
    assert b["answers"] == {"topic": "Taxes 2026", "notes": "=HYPERLINK(\"http://evil\")\n@SUM(1)",
                            "level": "Expert", "consent": "true", "phone": "+49 30 1234567"}
    assert admin("GET", f"/bookings/{b['id']}").json["answers"] == b["answers"]

    rows = list(csv.reader(io.StringIO(admin("GET", "/export?format=csv").text)))
    header, row = rows[0], rows[1]
    # One column per label, after the fixed ones; the merchant's "=Phone" is made safe.
    assert header[-6:] == ["Topic", "Notes", "Level", "Consent", "Contact email", "'=Phone"]
    cells = dict(zip(header, row, strict=True))
    assert cells["Topic"] == "Taxes 2026" and cells["Level"] == "Expert"
    assert cells["Contact email"] == ""  # unanswered
    assert cells["Notes"].startswith("'=HYPERLINK")
    assert cells["'=Phone"] == "'+49 30 1234567"  # a leading + would be a formula
    assert not any(c.startswith(("=", "+", "-", "@")) for c in row)

    cal = Calendar.from_ical(admin("GET", "/export?format=ics").content)
    [ev] = cal.walk("VEVENT")
    description = str(ev["description"])
    assert "Topic: Taxes 2026" in description and "Consent: true" in description


def test_csv_columns_span_services_and_stay_empty_when_unanswered(
        store: Storefront, admin: Admin, cat: dict[str, Any]) -> None:
    other = admin("POST", "/services", {"title": "Other", "variant_id": 4242, "questions": [
        {"id": "t", "label": "Topic", "type": "text"},
        {"id": "age", "label": "Age", "type": "text"}]}).json
    admin("PATCH", f"/experts/{cat['expert']}", {"services": [cat["service"], other["id"]]})
    book(store, cat, {"topic": "A", "consent": "true"}, order=50)
    book(store, {**cat, "service": other["id"]}, {"age": "40"}, start=SLOT2, order=51,
         email="kim@example.com", customer_id=78)
    rows = list(csv.DictReader(io.StringIO(admin("GET", "/export?format=csv").text)))
    assert [r["Topic"] for r in rows] == ["A", ""]
    assert [r["Age"] for r in rows] == ["", "40"]
    assert [r["Notes"] for r in rows] == ["", ""]
    assert list(rows[0])[-7:] == ["Topic", "Notes", "Level", "Consent", "Contact email",
                                  "'=Phone", "Age"]


def _description(ctx: Context, booking_id: str) -> str:
    with ctx.db.read() as session:
        view = notify.load_view(session, booking_id)
        assert view is not None
        return view.details.description


def test_event_description_lists_answers_without_injection(
        ctx: Context, store: Storefront, admin: Admin, cat: dict[str, Any]) -> None:
    book(store, cat, {**GOOD, "notes": INJECTION})
    [b] = bookings(admin)
    description = _description(ctx, b["id"])
    lines = description.split("\n")
    assert lines[0] == "Consultation with Expert 0" and lines[-1] == f"Booking: {b['id']}"
    assert "Topic: Taxes 2026" in lines and "Level: Expert" in lines
    assert "=Phone: +49 30 1234567" in lines
    [notes] = [line for line in lines if line.startswith("Notes: ")]
    assert "\r" not in description and "ATTENDEE" in notes and "END:VEVENT" in notes
    assert len(lines) == 2 + 1 + 5  # title, customer, five answers, booking
    # As a calendar event: one VEVENT, one attendee, the text only in DESCRIPTION.
    ics = render(Invitation(booking_id=b["id"], sequence=0,
                            start=NOW, end=NOW, summary="s",
                            organizer=Party("shop@example.com"),
                            attendees=(Party("jon@example.com"),), description=description),
                 method="REQUEST", dtstamp=NOW)
    cal = Calendar.from_ical(ics)
    [ev] = cal.walk("VEVENT")
    attendees = ev.get("attendee")
    assert str(attendees) == "mailto:jon@example.com"
    unfolded = ics.replace(b"\r\n ", b"")
    starts = [line.split(b":")[0].split(b";")[0] for line in unfolded.split(b"\r\n")]
    assert starts.count(b"BEGIN") == 2 and starts.count(b"END") == 2  # VCALENDAR, VEVENT
    assert starts.count(b"ATTENDEE") == 1 and starts.count(b"DESCRIPTION") == 1
    assert b"<script>" in unfolded  # text, escaped by nothing but never HTML here
    # A JSON body (Google, Graph with contentType text) carries it as one string.
    assert json.loads(json.dumps({"description": description}))["description"] == description


def test_seated_service_event_does_not_share_answers(
        ctx: Context, store: Storefront, admin: Admin, cat: dict[str, Any]) -> None:
    book(store, cat, GOOD)
    [b] = bookings(admin)
    admin("PATCH", f"/services/{cat['service']}", {"seats": 4})
    description = _description(ctx, b["id"])
    assert "Taxes" not in description and "Topic" not in description
    assert bookings(admin)[0]["answers"]["topic"] == "Taxes 2026"  # the merchant still sees


def test_a_booking_without_questions_has_empty_answers(store: Storefront, admin: Admin,
                                                       cat: dict[str, Any]) -> None:
    admin("PATCH", f"/services/{cat['service']}", {"questions": []})
    book(store, cat, {})
    [b] = bookings(admin)
    assert b["answers"] == {}
    header = next(csv.reader(io.StringIO(admin("GET", "/export?format=csv").text)))
    assert header[-1] == "no_show"  # the fixed columns end there: no question, no answer column


def test_customers_redact_erases_answers_token_and_waitlist(
        ctx: Context, shop: ShopRef, store: Storefront, admin: Admin,
        cat: dict[str, Any]) -> None:
    book(store, cat, {**GOOD, "contact": "jon.private@example.com"})
    book(store, cat, {"topic": "Kept", "consent": True}, start=SLOT2, order=51,
         email="kim@example.com", customer_id=78)
    with ctx.db.write() as session:
        session.execute(Claim.__table__.update().values(manage_token_hash="ab" * 32))
        for email in ("Jon@Example.com", "kim@example.com"):
            session.add(WaitlistEntry(id=new_id("wl"), shop_id=shop.id,
                                      service_id=cat["service"], date=date(2026, 12, 2),
                                      email=email, created_at=NOW))
    r = store.webhook("customers/redact", {"shop_domain": store.domain,
                                           "customer": {"id": 77, "email": "jon@example.com"},
                                           "orders_to_redact": [50]})
    assert r.status_code == 200, r.text
    by_order = {b["order_id"]: b for b in bookings(admin)}
    assert by_order["50"]["answers"] == {} and by_order["50"]["customer"]["email"] is None
    assert by_order["50"]["status"] == "confirmed"
    assert by_order["51"]["answers"]["topic"] == "Kept"
    with ctx.db.read() as session:
        claims = {c.order_id: c for c in session.scalars(select(Claim))}
        assert claims["50"].answers is None and claims["50"].manage_token_hash is None
        assert claims["51"].manage_token_hash == "ab" * 32
        emails = sorted(str(w.email) for w in session.scalars(select(WaitlistEntry)))
        assert emails == ["None", "kim@example.com"]
    text = admin("GET", "/export?format=csv").text
    assert "Taxes" not in text and "jon.private" not in text and "Kept" in text
    assert b"Taxes" not in admin("GET", "/export?format=ics").content
    # The seat stays taken: redaction changes no capacity.
    assert store.hold(cat["service"], cat["expert"], SLOT,
                      answers={"topic": "x", "consent": True}).status_code == 409
