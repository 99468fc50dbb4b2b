"""The provider contract as reusable pytest classes: run it against your own provider.

Subclass the class for your kind of provider in a test module and provide the fixtures
it names (see each class docstring)::

    from engine.testing.contract import CalendarProviderContract

    class TestMyCalendar(CalendarProviderContract):
        @pytest.fixture
        def calendar_provider(self, ...): return MyCalendar(provider_context)

        @pytest.fixture
        def seed_busy(self, my_fake_server):
            return lambda calendar, intervals: my_fake_server.busy.update({calendar: intervals})

        @pytest.fixture
        def live_events(self, my_fake_server):
            return lambda: len(my_fake_server.events)

The built-in providers (local, Google, Outlook, Meet, outbox, SMTP) pass these classes;
see ``tests/plugins/test_contract.py``.
"""

from __future__ import annotations

import email
import email.policy
import html
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import pytest

from engine.domain.customer_time import customer_and_shop_time
from engine.domain.ics import Invitation, Party, render
from engine.domain.mail import safe_uid
from engine.providers import (
    BookingDetails,
    CalendarBusy,
    CalendarProvider,
    EventRef,
    MailMessage,
    MailProvider,
    Meeting,
    VideoProvider,
)

START = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
Intervals = list[tuple[datetime, datetime]]


def sample_booking(**changes: object) -> BookingDetails:
    """A plausible booking for contract tests (override any field)."""
    values: dict[str, object] = {
        "booking_id": "bkg_contract0000001", "shop_domain": "contract.myshopify.com",
        "shop_timezone": "Europe/Berlin", "service_title": "Contract review",
        "expert_id": "exp_contract", "expert_name": "Erika Expert",
        "expert_email": "erika@example.com", "expert_timezone": "Europe/Berlin",
        "customer_name": "Chloé Customer", "customer_email": "chloe@example.net",
        "start": START, "end": START + timedelta(minutes=45), "sequence": 0,
        "status": "confirmed", "description": "Booked through consultbook",
    }
    values.update(changes)
    return BookingDetails(**values)  # type: ignore[arg-type]


class CalendarProviderContract:
    """Fixtures to provide:

    * ``calendar_provider`` -- an instance of your :class:`CalendarProvider`;
    * ``calendar_ids`` -- two calendar ids your backend knows (``calendar_for_expert``
      results);
    * ``seed_busy`` -- ``(calendar_id, [(start, end)]) -> None``: put busy time into
      your backend;
    * ``live_events`` -- ``() -> int``: how many non-cancelled events your backend holds.
    """

    @pytest.fixture
    def contract_booking(self) -> BookingDetails:
        return sample_booking()

    def test_busy_answers_every_asked_calendar(
            self, calendar_provider: CalendarProvider, calendar_ids: list[str],
            seed_busy: Callable[[str, Intervals], None]) -> None:
        for cal in calendar_ids:
            seed_busy(cal, [])
        answer = calendar_provider.busy(calendar_ids, START, START + timedelta(days=1))
        assert set(answer) >= set(calendar_ids)
        assert all(isinstance(v, CalendarBusy) for v in answer.values())

    def test_busy_is_clipped_merged_sorted_and_utc(
            self, calendar_provider: CalendarProvider, calendar_ids: list[str],
            seed_busy: Callable[[str, Intervals], None]) -> None:
        cal = calendar_ids[0]
        seed_busy(cal, [(START + timedelta(hours=5), START + timedelta(hours=6)),
                        (START - timedelta(hours=1), START + timedelta(hours=1)),
                        (START + timedelta(hours=1), START + timedelta(hours=2))])
        end = START + timedelta(hours=5, minutes=30)
        got = calendar_provider.busy([cal], START, end)[cal]
        assert got.error is None
        assert list(got.busy) == [(START, START + timedelta(hours=2)),
                                  (START + timedelta(hours=5), end)]
        assert all(s.utcoffset() == timedelta(0) for s, _ in got.busy)

    def test_create_event_is_idempotent_on_the_booking(
            self, calendar_provider: CalendarProvider, contract_booking: BookingDetails,
            live_events: Callable[[], int]) -> None:
        before = live_events()
        first = calendar_provider.create_event(contract_booking, None)
        second = calendar_provider.create_event(contract_booking, None)
        assert isinstance(first, EventRef) and first.id == second.id
        assert first.provider == calendar_provider.name
        assert live_events() == before + 1

    def test_update_keeps_the_event(self, calendar_provider: CalendarProvider,
                                    contract_booking: BookingDetails,
                                    live_events: Callable[[], int]) -> None:
        ref = calendar_provider.create_event(contract_booking, None)
        count = live_events()
        moved = sample_booking(booking_id=contract_booking.booking_id,
                               start=contract_booking.start + timedelta(hours=1),
                               end=contract_booking.end + timedelta(hours=1), sequence=1)
        again = calendar_provider.update_event(ref, moved, None)
        assert again.id == ref.id and live_events() == count

    def test_cancel_is_idempotent(self, calendar_provider: CalendarProvider,
                                  contract_booking: BookingDetails,
                                  live_events: Callable[[], int]) -> None:
        ref = calendar_provider.create_event(contract_booking, None)
        count = live_events()
        calendar_provider.cancel_event(ref, contract_booking)
        calendar_provider.cancel_event(ref, contract_booking)
        assert live_events() == count - 1

    def test_a_given_meeting_reaches_the_event(self, calendar_provider: CalendarProvider,
                                               contract_booking: BookingDetails) -> None:
        meeting = Meeting(url="https://video.example/room/1", id="room-1", provider="x")
        booking = sample_booking(booking_id=contract_booking.booking_id + "m")
        ref = calendar_provider.create_event(booking, meeting)
        assert ref.meeting_url == meeting.url


class VideoProviderContract:
    """Fixtures to provide: ``video_provider`` (an instance of your VideoProvider)."""

    @pytest.fixture
    def contract_booking(self) -> BookingDetails:
        return sample_booking()

    def test_create_meeting_returns_an_https_link(self, video_provider: VideoProvider,
                                                  contract_booking: BookingDetails) -> None:
        meeting = video_provider.create_meeting(contract_booking)
        assert meeting is not None
        assert meeting.url.startswith("https://") and meeting.id
        assert meeting.provider == video_provider.name


def contract_message(**changes: object) -> MailMessage:
    values: dict[str, object] = {
        "to": ("chloe@example.net",), "subject": "Your booking: Contract review — März",
        "text": "Hello Chloé,\nyou are booked.\n", "html": "<p>Hello Chloé,</p>",
        "ics": b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//consultbook//EN\r\n"
               b"METHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:bkg_contract0000001@consultbook\r\n"
               b"DTSTAMP:20270201T000000Z\r\nDTSTART:20270301T090000Z\r\n"
               b"DTEND:20270301T094500Z\r\nSUMMARY:Contract review\r\nEND:VEVENT\r\n"
               b"END:VCALENDAR\r\n",
        "ics_method": "REQUEST", "idempotency_key": "contract:confirmation:1",
        "headers": {"X-Consultbook-Booking": "bkg_contract0000001"},
    }
    values.update(changes)
    return MailMessage(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ConfirmationLayout:
    """What a booking confirmation must contain, whoever builds or delivers it -- the
    mail layout of the contract, shared by the engine's own builder tests and every mail
    provider's contract tests:

    * the customer's time **and** the shop's time (each as ``HH:MM`` en dash ``HH:MM``
      with its zone name), in the text part and in the HTML part; only the shop's when
      the customer's zone is the shop's;
    * the ``.ics`` part with ``METHOD:REQUEST`` and the booking's ``UID``
      (``<booking id>@consultbook``), attached as ``invite.ics`` on the wire;
    * the manage link (``manage_url``), in both parts, once bookings have one.

    :meth:`message` builds a confirmation in this layout (what a mail provider must
    deliver intact); :meth:`check` asserts it of a :class:`MailMessage` or of the raw
    RFC 5322 bytes a provider delivered."""

    booking: BookingDetails
    customer_tz: str
    manage_url: str | None = None

    def times(self) -> list[tuple[str, str]]:
        """``(HH:MM`` en dash ``HH:MM, zone)`` for the customer's zone and the shop's
        (one entry when they are the same)."""
        zones = [self.customer_tz, self.booking.shop_timezone]
        out = []
        for tz in dict.fromkeys(zones):
            zone = ZoneInfo(tz)
            start, end = self.booking.start.astimezone(zone), self.booking.end.astimezone(zone)
            out.append((f"{start:%H:%M}\u2013{end:%H:%M}", tz))
        return out

    def message(self, *, now: datetime | None = None) -> MailMessage:
        """A confirmation in this layout (text, HTML, ``.ics``)."""
        b = self.booking
        paragraphs = [f"Hello {b.customer_name or ''},".replace(" ,", ","),
                      f"your booking is confirmed: {b.service_title} with {b.expert_name}.",
                      "When: " + customer_and_shop_time(b.start, b.end, self.customer_tz,
                                                        b.shop_timezone)]
        if self.manage_url:
            paragraphs.append(f"Change or cancel: {self.manage_url}")
        body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs[:3])
        if self.manage_url:
            body += (f'<p><a href="{html.escape(self.manage_url, quote=True)}">'
                     f"Change or cancel</a> ({html.escape(self.manage_url)})</p>")
        attendees = (Party(b.customer_email, b.customer_name),) if b.customer_email else ()
        ics = render(Invitation(booking_id=b.booking_id, sequence=b.sequence, start=b.start,
                                end=b.end, summary=f"{b.service_title} with {b.expert_name}",
                                organizer=Party(b.expert_email or f"no-reply@{b.shop_domain}",
                                                b.expert_name),
                                attendees=attendees, description=b.description,
                                meeting_url=b.meeting_url),
                     method="REQUEST", dtstamp=now or b.start - timedelta(days=30))
        return MailMessage(
            to=(b.customer_email or "chloe@example.net",),
            subject=f"Booking confirmed: {b.service_title}", text="\n\n".join(paragraphs) + "\n",
            html=f"<!doctype html><html><body>{body}</body></html>", ics=ics,
            ics_method="REQUEST", idempotency_key=f"contract:confirmation:{b.booking_id}")

    def check(self, mail: MailMessage | bytes | EmailMessage) -> None:
        """Assert the layout of ``mail`` (a message, or what a provider delivered)."""
        if isinstance(mail, MailMessage):
            text, markup, ics = mail.text, mail.html or "", (mail.ics or b"").decode()
            assert mail.ics_method == "REQUEST", mail.ics_method
        else:
            parsed = mail if isinstance(mail, EmailMessage) else email.message_from_bytes(
                mail, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            parts = {p.get_content_type(): p for p in parsed.walk()}
            assert {"text/plain", "text/html", "text/calendar"} <= set(parts), set(parts)
            text = parts["text/plain"].get_content()
            markup = parts["text/html"].get_content()
            ics = parts["text/calendar"].get_content()
            assert parts["text/calendar"].get_param("method") == "REQUEST"
            assert [p.get_filename() for p in parsed.walk() if p.get_filename()] == [
                "invite.ics"]
        for clock, tz in self.times():
            for part, body in (("text", text), ("html", markup)):
                assert clock in body and tz in body, f"{clock} ({tz}) missing from the {part}"
        unfolded = ics.replace("\r\n ", "").replace("\n ", "")
        assert "METHOD:REQUEST" in unfolded
        assert f"UID:{safe_uid(self.booking.booking_id)}" in unfolded
        if self.manage_url:
            assert self.manage_url in text
            assert html.escape(self.manage_url, quote=True) in markup


class MailProviderContract:
    """Fixtures to provide:

    * ``mail_provider`` -- an instance of your MailProvider;
    * ``delivered`` -- ``() -> list[bytes]``: the raw RFC 5322 messages your backend
      received, oldest first.
    """

    @staticmethod
    def parse(raw: bytes) -> EmailMessage:
        return email.message_from_bytes(raw, policy=email.policy.default)

    def test_send_delivers_text_html_and_the_invitation(
            self, mail_provider: MailProvider, delivered: Callable[[], list[bytes]]) -> None:
        message = contract_message()
        message_id = mail_provider.send(message)
        assert message_id.startswith("<") and message_id.endswith(">")
        got = self.parse(delivered()[-1])
        assert got["Message-ID"] == message_id
        assert got["Subject"] == message.subject
        assert "chloe@example.net" in got["To"]
        assert got["X-Consultbook-Booking"] == "bkg_contract0000001"
        types = [part.get_content_type() for part in got.walk()]
        assert "text/plain" in types and "text/html" in types and "text/calendar" in types
        calendar = next(p for p in got.walk() if p.get_content_type() == "text/calendar")
        assert calendar.get_param("method") == "REQUEST"
        assert "UID:bkg_contract0000001@consultbook" in calendar.get_content()
        plain = next(p for p in got.walk() if p.get_content_type() == "text/plain")
        assert "Hello Chloé" in plain.get_content()
        attachments = [p.get_filename() for p in got.walk() if p.get_filename()]
        assert attachments == ["invite.ics"]

    def test_a_confirmation_arrives_in_the_contract_layout(
            self, mail_provider: MailProvider, delivered: Callable[[], list[bytes]]) -> None:
        """Both times, the invitation (METHOD:REQUEST, the booking's UID) and the manage
        link survive the provider's encoding (quoted-printable, base64, folding)."""
        layout = ConfirmationLayout(sample_booking(), "America/Los_Angeles",
                                    manage_url="https://contract.example/manage/bkg_c?t=1&x=2")
        mail_provider.send(layout.message())
        layout.check(delivered()[-1])

    def test_a_plain_text_message(self, mail_provider: MailProvider,
                                  delivered: Callable[[], list[bytes]]) -> None:
        mail_provider.send(MailMessage(to=("a@example.org",), subject="Reminder",
                                       text="See you soon"))
        got = self.parse(delivered()[-1])
        assert got.get_content_type() == "text/plain"
        assert got.get_content().strip() == "See you soon"

    def test_header_injection_never_reaches_the_wire(self) -> None:
        with pytest.raises(ValueError):
            contract_message(subject="Hi\r\nBcc: victim@example.com")
        with pytest.raises(ValueError):
            contract_message(to=("a@example.org\r\nBcc: victim@example.com",))
        with pytest.raises(ValueError):
            contract_message(headers={"X-Tag": "a\nBcc: victim@example.com"})
