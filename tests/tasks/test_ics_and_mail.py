"""Injection-hardened invitations and mail: names, addresses, URLs and ids from outside
never add a header, an iCalendar property or a line."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta

import icalendar
import pytest

from engine.domain.ics import Invitation, Party, render
from engine.domain.mail import clean_name, clean_text, safe_uid, safe_url, valid_address
from engine.providers.mime import build_mime
from engine.providers.types import BookingDetails
from engine.services import notify

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
EVIL_NAME = 'Jon\r\nATTENDEE:mailto:evil@example.com\r\nBcc: evil@example.com\x00\u202e"<x>'


def invitation(**changes: object) -> Invitation:
    values: dict[str, object] = {
        "booking_id": "bk_abc123", "sequence": 2, "start": START,
        "end": START + timedelta(minutes=30), "summary": "Tax advice with Erika",
        "organizer": Party("erika@example.com", "Erika"),
        "attendees": (Party("jon@example.com", "Jon Snow"),),
        "meeting_url": "https://meet.example/abc"}
    values.update(changes)
    return Invitation(**values)  # type: ignore[arg-type]


def vevent(data: bytes) -> icalendar.Event:
    (event,) = icalendar.Calendar.from_ical(data).walk("VEVENT")
    return event


def test_request_has_method_uid_sequence_parties_and_the_meeting_url() -> None:
    data = render(invitation(), method="REQUEST", dtstamp=NOW)
    cal = icalendar.Calendar.from_ical(data)
    assert cal["METHOD"] == "REQUEST"
    ev = vevent(data)
    assert str(ev["UID"]) == "bk_abc123@consultbook"
    assert int(ev["SEQUENCE"]) == 2
    assert str(ev["STATUS"]) == "CONFIRMED"
    assert str(ev["ORGANIZER"]) == "mailto:erika@example.com"
    assert ev["ORGANIZER"].params["CN"] == "Erika"
    assert str(ev["ATTENDEE"]) == "mailto:jon@example.com"
    assert ev["ATTENDEE"].params["CN"] == "Jon Snow"
    assert str(ev["URL"]) == "https://meet.example/abc"
    assert str(ev["LOCATION"]) == "https://meet.example/abc"
    assert "https://meet.example/abc" in str(ev["DESCRIPTION"])
    assert ev.decoded("DTSTAMP") == NOW
    assert ev.decoded("DTSTART") == START


def test_cancel_keeps_the_uid_and_says_cancelled() -> None:
    request = vevent(render(invitation(), method="REQUEST", dtstamp=NOW))
    data = render(invitation(sequence=3), method="CANCEL", dtstamp=NOW)
    assert icalendar.Calendar.from_ical(data)["METHOD"] == "CANCEL"
    cancel = vevent(data)
    assert cancel["UID"] == request["UID"]
    assert str(cancel["STATUS"]) == "CANCELLED" and int(cancel["SEQUENCE"]) == 3


def test_hostile_names_cannot_add_properties_and_lines_are_folded() -> None:
    data = render(invitation(summary=EVIL_NAME * 5,
                             attendees=(Party("jon@example.com", EVIL_NAME),)),
                  method="REQUEST", dtstamp=NOW)
    lines = data.split(b"\r\n")
    assert all(len(line) <= 75 for line in lines)
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert not any(line.startswith((b"ATTENDEE:mailto:evil", b"BCC")) for line in lines)
    ev = vevent(data)
    attendees = ev["ATTENDEE"]
    attendees = attendees if isinstance(attendees, list) else [attendees]
    assert [str(a) for a in attendees] == ["mailto:jon@example.com"]
    cn = attendees[0].params["CN"]
    assert "\r" not in cn and "\n" not in cn and "\x00" not in cn and "\u202e" not in cn
    assert '"' not in cn and "<" not in cn


def test_invalid_addresses_urls_and_ids_are_dropped_or_made_safe() -> None:
    data = render(invitation(attendees=(Party("jon@example.com\r\nX: y", "Jon"),
                                        Party("not an address", "Z")),
                             meeting_url="javascript:alert(1)",
                             booking_id="bk\r\nUID:evil"),
                  method="REQUEST", dtstamp=NOW)
    ev = vevent(data)
    assert "ATTENDEE" not in ev
    assert "URL" not in ev and "LOCATION" not in ev
    uid = str(ev["UID"])
    assert uid.endswith("@consultbook") and "\n" not in uid and "evil" not in uid
    with pytest.raises(ValueError):
        render(invitation(organizer=Party("bad\r\n@x.com")), method="REQUEST", dtstamp=NOW)


@pytest.mark.parametrize("value", [
    "jon@example.com\r\nBcc: x@y.com", "Jon <jon@example.com>", "a@b.com, c@d.com",
    "jon@localhost", "jon @example.com", "", None, "jon@exa\u202emple.com", "x" * 300 + "@a.com",
])
def test_invalid_addresses_are_refused(value: object) -> None:
    assert valid_address(value) is None


def test_valid_addresses_and_urls_pass_unchanged() -> None:
    assert valid_address(" jon.snow+tag@example.co.uk ") == "jon.snow+tag@example.co.uk"
    assert safe_url("https://meet.google.com/abc-defg-hij") == \
        "https://meet.google.com/abc-defg-hij"
    assert safe_url("https://x.example/a b") is None
    assert safe_url("ftp://x.example/") is None


def test_cleaning_names_and_text() -> None:
    assert clean_text("a\r\nb\x00c\u2028d\te") == "a b c d e"
    assert clean_name(EVIL_NAME) == \
        "Jon ATTENDEE:mailto:evil@example.com Bcc: evil@example.com '(x)"
    assert clean_name("\r\n\x00") is None
    assert safe_uid("bk_ok-1") == "bk_ok-1@consultbook"


def details(**changes: object) -> BookingDetails:
    values: dict[str, object] = {
        "booking_id": "bk_abc123", "shop_domain": "alpha.myshopify.com",
        "shop_timezone": "Europe/Berlin", "service_title": "Tax <b>advice</b>",
        "expert_id": "exp_1", "expert_name": "Erika", "expert_email": "erika@example.com",
        "expert_timezone": "Europe/Berlin", "customer_name": clean_name(EVIL_NAME),
        "customer_email": "jon@example.com", "start": START,
        "end": START + timedelta(minutes=30), "meeting_url": "https://meet.example/abc"}
    values.update(changes)
    return BookingDetails(**values)  # type: ignore[arg-type]


def test_the_confirmation_mail_has_one_recipient_escaped_html_and_the_invitation() -> None:
    view = notify.BookingView(details=details(), shop_id="shop_1",
                              customer_tz="America/New_York", external={})
    message = notify.customer_confirmation(view, sequence=0, now=NOW)
    assert message is not None
    mime = build_mime(message, sender="no-reply@alpha.myshopify.com")
    raw = mime.as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed.get_all("To") == ["jon@example.com"]
    assert parsed.get_all("Bcc") is None
    assert "Tuesday 1 December 2026, 04:00-04:30 (America/New_York)" in str(parsed["Subject"])
    html = next(p for p in parsed.walk() if p.get_content_type() == "text/html").get_content()
    assert "<b>advice</b>" not in html and "&lt;b&gt;advice&lt;/b&gt;" in html
    cal = next(p for p in parsed.walk() if p.get_content_type() == "text/calendar")
    assert cal.get_param("method") == "REQUEST"
    assert any(p.get_filename() == "invite.ics" for p in parsed.walk())
    # No header line was injected anywhere in the message.
    headers = raw.split(b"\r\n\r\n", 1)[0].decode()
    assert "evil" not in headers.lower()


def test_a_customer_without_a_valid_address_gets_no_message() -> None:
    view = notify.BookingView(details=details(customer_email=None), shop_id="shop_1",
                              customer_tz="UTC", external={})
    assert notify.customer_confirmation(view, sequence=0, now=NOW) is None
    assert notify.customer_reminder(view, offset_minutes=60, now=NOW) is None
