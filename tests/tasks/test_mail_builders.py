"""The mail builders: one builder for every kind of message, one text cleaner for mail,
export and orders, and the contract's confirmation layout met by the engine's own mail.

Pure: booking views are built by hand (no database), so these run in milliseconds;
the end-to-end mail tests (test_ics_and_mail.py, test_customer_timezone_mail.py) cover
the same builders through the outbox.
"""

from __future__ import annotations

import html
import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from icalendar import Calendar

from engine.domain.mail import clean_text
from engine.providers import BookingDetails, MailMessage
from engine.services import notify
from engine.services.notify import (
    CUSTOMER_CANCELLATION,
    CUSTOMER_CONFIRMATION,
    CUSTOMER_REMINDER,
    EXPERT_CANCELLATION,
    EXPERT_NOTICE,
    BookingView,
    build_message,
)
from engine.services.orders import _clean
from engine.testing.contract import ConfirmationLayout, sample_booking

NOW = datetime(2027, 2, 1, 12, 0, tzinfo=UTC)


def view(customer_tz: str = "America/Los_Angeles", **changes: Any) -> BookingView:
    details: BookingDetails = sample_booking(meeting_url="https://meet.example/r/1",
                                             **changes)
    return BookingView(details=details, shop_id="shp_1", customer_tz=customer_tz,
                       external={})


def ics_of(message: MailMessage) -> Any:
    assert message.ics is not None
    [event] = Calendar.from_ical(message.ics).walk("VEVENT")
    return event


def html_paragraphs(markup: str) -> list[str]:
    return [html.unescape(p) for p in re.findall(r"<p>(.*?)</p>", markup)
            if not p.startswith("<a ")]


ALL = [CUSTOMER_CONFIRMATION, EXPERT_NOTICE, CUSTOMER_CANCELLATION, EXPERT_CANCELLATION,
       CUSTOMER_REMINDER]


@pytest.mark.parametrize("kind", ALL, ids=lambda k: f"{k.name}-{k.audience}")
def test_text_and_html_say_the_same(kind: notify.MessageKind) -> None:
    message = build_message(kind, view(), now=NOW, sequence=2, offset_minutes=60)
    assert message is not None
    text_paragraphs = message.text.strip().split("\n\n")
    if kind.link:
        assert text_paragraphs.pop() == "Join the meeting: https://meet.example/r/1"
        assert 'href="https://meet.example/r/1"' in (message.html or "")
    else:
        assert "meet.example" not in message.text + (message.html or "")
    assert html_paragraphs(message.html or "") == text_paragraphs


@pytest.mark.parametrize("kind", ALL, ids=lambda k: f"{k.name}-{k.audience}")
def test_each_kind_has_its_recipient_invitation_and_key(kind: notify.MessageKind) -> None:
    v = view()
    message = build_message(kind, v, now=NOW, sequence=2, offset_minutes=60)
    assert message is not None
    d = v.details
    assert message.to == ((d.customer_email,) if kind.audience == "customer"
                          else (d.expert_email,))
    event = ics_of(message)
    assert str(event["uid"]) == f"{d.booking_id}@consultbook"
    assert message.ics_method == kind.ics_method
    assert Calendar.from_ical(message.ics)["method"] == kind.ics_method
    assert int(event["sequence"]) == 2
    default = build_message(kind, v, now=NOW, offset_minutes=60)  # the booking's own
    assert default is not None and int(ics_of(default)["sequence"]) == d.sequence
    if kind.keyed:
        assert message.idempotency_key == f"{kind.name}:{d.booking_id}:2:{kind.audience}"
    else:
        assert message.idempotency_key is None
    assert "\n" not in message.subject and message.subject.startswith(kind.subject + ": ")


def test_the_wording_of_each_kind() -> None:
    v = view()
    got = {(k.name, k.audience): build_message(k, v, now=NOW, sequence=0,
                                               offset_minutes=1440) for k in ALL}
    texts = {key: m.text for key, m in got.items() if m is not None}
    assert "your booking is confirmed: Contract review with Erika Expert." in \
        texts[("confirmation", "customer")]
    assert "The invitation is attached; add it to your calendar." in \
        texts[("confirmation", "customer")]
    assert "Chloé Customer booked Contract review with you." in \
        texts[("confirmation", "expert")]
    assert "Customer email: chloe@example.net" in texts[("confirmation", "expert")]
    assert "your booking was cancelled: Contract review with Erika Expert." in \
        texts[("cancellation", "customer")]
    assert "the booking of Contract review with Chloé Customer was cancelled." in \
        texts[("cancellation", "expert")]
    assert "starts in 1 day." in texts[("reminder", "customer")]
    assert texts[("cancellation", "customer")].count("It was: ") == 1
    anonymous = view(customer_name=None)
    notice = build_message(EXPERT_NOTICE, anonymous, now=NOW, sequence=0)
    assert notice is not None and "A customer booked" in notice.text
    cancel = build_message(EXPERT_CANCELLATION, anonymous, now=NOW, sequence=0)
    assert cancel is not None and "with a customer was cancelled" in cancel.text


def test_customer_time_line_for_the_expert_stays() -> None:
    """Issue 9: the expert reads the customer's time when it differs from theirs."""
    far = build_message(EXPERT_NOTICE, view("America/Los_Angeles"), now=NOW, sequence=0)
    assert far is not None
    assert "The customer's time: Monday 1 March 2027, 01:00\u201301:45 " \
           "(America/Los_Angeles)" in far.text
    near = build_message(EXPERT_NOTICE, view("Europe/Berlin"), now=NOW, sequence=0)
    assert near is not None and "The customer's time" not in near.text


def test_attachments_reply_to_and_missing_addresses() -> None:
    v = view()
    for kind in (EXPERT_NOTICE, EXPERT_CANCELLATION):
        bare = build_message(kind, v, now=NOW, sequence=0, attach_ics=False)
        assert bare is not None and bare.ics is None
    # The customer always gets the invitation.
    for kind in (CUSTOMER_CONFIRMATION, CUSTOMER_CANCELLATION, CUSTOMER_REMINDER):
        message = build_message(kind, v, now=NOW, sequence=0, attach_ics=False)
        assert message is not None and message.ics is not None
    replies = {(k.name, k.audience): build_message(k, v, now=NOW, sequence=0) for k in ALL}
    assert replies[("confirmation", "customer")].reply_to == "erika@example.com"  # type: ignore[union-attr]
    assert replies[("confirmation", "expert")].reply_to == "chloe@example.net"  # type: ignore[union-attr]
    assert replies[("cancellation", "expert")].reply_to is None  # type: ignore[union-attr]
    nobody = view(customer_email=None, expert_email=None)
    assert all(build_message(k, nobody, now=NOW, sequence=0) is None for k in ALL)


def test_the_wrappers_are_the_builder() -> None:
    v = view()
    assert notify.customer_confirmation(v, sequence=1, now=NOW) == \
        build_message(CUSTOMER_CONFIRMATION, v, sequence=1, now=NOW)
    assert notify.expert_notification(v, sequence=1, now=NOW, attach_ics=False) == \
        build_message(EXPERT_NOTICE, v, sequence=1, now=NOW, attach_ics=False)
    assert notify.customer_cancellation(v, sequence=1, now=NOW) == \
        build_message(CUSTOMER_CANCELLATION, v, sequence=1, now=NOW)
    assert notify.expert_cancellation(v, sequence=1, now=NOW, attach_ics=True) == \
        build_message(EXPERT_CANCELLATION, v, sequence=1, now=NOW)
    assert notify.customer_reminder(v, offset_minutes=30, now=NOW) == \
        build_message(CUSTOMER_REMINDER, v, now=NOW, offset_minutes=30)


@pytest.mark.parametrize("customer_tz", ["America/Los_Angeles", "Europe/Berlin",
                                         "Asia/Kolkata"])
def test_the_engines_confirmation_meets_the_contract_layout(customer_tz: str) -> None:
    v = view(customer_tz)
    message = notify.customer_confirmation(v, sequence=0, now=NOW)
    assert message is not None
    ConfirmationLayout(v.details, customer_tz).check(message)


def test_the_layout_check_can_fail() -> None:
    """The shared layout is a real check: a confirmation without the shop's time, with a
    CANCEL invitation or without the manage link does not pass."""
    v = view("America/Los_Angeles")
    layout = ConfirmationLayout(v.details, "America/Los_Angeles")
    shop_only = notify.customer_confirmation(replace(v, customer_tz="Europe/Berlin"),
                                             sequence=0, now=NOW)
    assert shop_only is not None
    with pytest.raises(AssertionError):
        layout.check(shop_only)
    cancel = notify.customer_cancellation(v, sequence=0, now=NOW)
    assert cancel is not None
    with pytest.raises(AssertionError):
        layout.check(cancel)
    confirmation = notify.customer_confirmation(v, sequence=0, now=NOW)
    assert confirmation is not None
    with pytest.raises(AssertionError):
        replace(layout, manage_url="https://shop.example/manage/1").check(confirmation)
    ConfirmationLayout(v.details, "America/Los_Angeles",
                       manage_url="https://x.example/m?a=1&b=2").check(
        ConfirmationLayout(v.details, "America/Los_Angeles",
                           manage_url="https://x.example/m?a=1&b=2").message(now=NOW))


# --------------------------------------------------------------------------- one cleaner

nasty = st.text(st.characters(codec="utf-8") | st.sampled_from(
    ["\r", "\n", "\x00", "\x85", "\u2028", "\u202e", "\t", " ", "\x7f", "\x9b"]),
    max_size=80)


@settings(max_examples=300, deadline=None)
@given(value=nasty | st.text(max_size=40), limit=st.integers(1, 400))
def test_orders_clean_is_clean_text(value: str, limit: int) -> None:
    assert _clean(value, limit) == (clean_text(value, limit) or None)
    got = _clean(value, limit)
    assert got is None or (len(got) <= limit and got == got.strip() and
                           not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202e]", got))


def test_orders_clean_refuses_non_text() -> None:
    assert _clean(12, 10) is None and _clean(None, 10) is None and _clean("  ", 10) is None
    # A line break in a name is a space now (it used to vanish: "AnnSmith").
    assert _clean("Ann\r\nSmith", 50) == "Ann Smith"


@settings(max_examples=200, deadline=None)
@given(name=nasty)
def test_a_name_cannot_break_a_mail_or_an_invitation(name: str) -> None:
    v = view(customer_name=notify.clean_name(name), service_title=clean_text(name) or "X")
    for kind in ALL:
        message = build_message(kind, v, now=NOW, sequence=0)
        assert message is not None
        assert "\n" not in message.subject and "\r" not in message.subject
        assert message.ics is not None
        lines = message.ics.decode().split("\r\n")
        names = [line.split(":", 1)[0].split(";", 1)[0] for line in lines
                 if line and not line.startswith(" ")]
        # Every line is a property of ours: none made from the name's line breaks.
        assert all(re.fullmatch(r"[A-Z][A-Z-]*", n) for n in names), names
        assert names.count("UID") == 1 and names.count("ATTENDEE") == 1
        assert names.count("BEGIN") == names.count("END") == 2


def test_export_cleans_with_the_same_function() -> None:
    """The iCalendar export has no cleaner of its own any more."""
    from engine.services import export

    assert not hasattr(export, "safe_text")
    assert export.clean_text is clean_text
