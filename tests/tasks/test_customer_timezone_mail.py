"""The customer's timezone (the hold's ``tz``) survives into the booking, and every mail
the customer gets tells them their time beside the shop's: the confirmation, the
reminder and the cancellation, in the text and the HTML part. The words never depend on
the host's ``TZ``."""

from __future__ import annotations

import html
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.bootstrap import Context
from engine.clock import FixedClock
from engine.domain.customer_time import customer_and_shop_time, local_time, zone_place
from engine.services import reminders
from engine.services.shops import ShopRef
from engine.tasks import jobs
from engine.tasks.jobs import Deps
from tests.conftest import Admin, Storefront, make_catalog, order_payload
from tests.tasks.helpers import SLOT, claim_row, eml_files

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
END = START + timedelta(hours=1)
LA_AND_BERLIN = ("Tuesday 1 December 2026, 09:00\u201310:00 (America/Los_Angeles) \u2014 "
                 "18:00\u201319:00 in Berlin (Europe/Berlin), the shop's time")

# ------------------------------------------------------------------ the words


def test_the_customers_time_first_the_shops_beside_it() -> None:
    assert customer_and_shop_time(START, END, "America/Los_Angeles", "Europe/Berlin") \
        == LA_AND_BERLIN


def test_only_the_shops_time_when_the_customer_zone_is_unknown_or_the_shops() -> None:
    shop_only = "Tuesday 1 December 2026, 18:00\u201319:00 (Europe/Berlin)"
    for customer in (None, "", "Europe/Berlin", "Mars/Olympus_Mons", "../../etc/passwd",
                     "x" * 300):
        assert customer_and_shop_time(START, END, customer, "Europe/Berlin") == shop_only


def test_the_shops_day_is_named_when_it_differs_and_midnight_is_crossed() -> None:
    # 16:00 in Berlin is already Wednesday in Tokyo.
    start = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    assert customer_and_shop_time(start, start + timedelta(minutes=30), "Asia/Tokyo",
                                  "Europe/Berlin") == (
        "Wednesday 2 December 2026, 00:00\u201300:30 (Asia/Tokyo) \u2014 Tuesday 1 December "
        "2026, 16:00\u201316:30 in Berlin (Europe/Berlin), the shop's time")
    # A session across midnight names the end's day too; a zone without a place is bare.
    late = datetime(2026, 12, 1, 22, 30, tzinfo=UTC)
    assert customer_and_shop_time(late, late + timedelta(hours=1), "Europe/Berlin", "UTC") == (
        "Tuesday 1 December 2026, 23:30\u2013Wednesday 2 December 2026, 00:30 "
        "(Europe/Berlin) \u2014 22:30\u201323:30 (UTC), the shop's time")
    assert zone_place("America/Argentina/Buenos_Aires") == "Buenos Aires"
    assert zone_place("Etc/GMT+5") is None and zone_place("UTC") is None


def test_naive_times_are_refused_rather_than_read_as_host_time() -> None:
    with pytest.raises(ValueError):
        local_time(START.replace(tzinfo=None), END, "Europe/Berlin")


ZONES = sorted(z for z in available_timezones() if not z.startswith(("posix/", "right/")))


@settings(max_examples=300, deadline=None)
@given(start=st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2060, 1, 1),
                          timezones=st.just(UTC)),
       minutes=st.integers(min_value=1, max_value=24 * 60),
       customer=st.sampled_from(ZONES), shop=st.sampled_from(ZONES))
def test_any_instant_and_zones_read_back_exactly(start: datetime, minutes: int, customer: str,
                                                 shop: str) -> None:
    end = start + timedelta(minutes=minutes)
    text = customer_and_shop_time(start, end, customer, shop)
    assert "\n" not in text and "\r" not in text
    mine, theirs = start.astimezone(ZoneInfo(customer)), start.astimezone(ZoneInfo(shop))
    assert text.startswith(f"{mine:%A} {mine.day} {mine:%B} {mine.year}, {mine:%H:%M}\u2013")
    if customer == shop:
        assert text.endswith(f"({shop})") and "the shop's time" not in text
    else:
        assert f"({customer}) \u2014 " in text and text.endswith(f"({shop}), the shop's time")
        shop_part = text.split(" \u2014 ", 1)[1]
        until = end.astimezone(ZoneInfo(shop))
        until_text = f"{until:%H:%M}" if until.date() == theirs.date() else \
            f"{until:%A} {until.day} {until:%B} {until.year}, {until:%H:%M}"
        assert f"{theirs:%H:%M}\u2013{until_text} " in shop_part
        # The shop's day is named exactly when it is not the customer's.
        named = f"{theirs:%A} {theirs.day} {theirs:%B} {theirs.year}, {theirs:%H:%M}"
        assert shop_part.startswith(named) == (theirs.date() != mine.date())


def test_the_host_timezone_changes_nothing() -> None:
    script = textwrap.dedent("""
        from datetime import UTC, datetime, timedelta
        from engine.domain.customer_time import customer_and_shop_time
        s = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
        for c in ("America/Los_Angeles", "Asia/Kathmandu", "Pacific/Chatham", None):
            print(customer_and_shop_time(s, s + timedelta(minutes=90), c, "Europe/Berlin"))
    """)
    outputs = set()
    for host in ("UTC", "Pacific/Chatham", "America/St_Johns"):
        env = {**os.environ, "TZ": host, "LC_ALL": "C.UTF-8", "PYTHONPATH": str(ROOT)}
        out = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
        outputs.add(out)
    assert len(outputs) == 1
    # 00:30Z is 01:30 CET; Berlin springs forward at 01:00Z, so the end is 04:00 CEST.
    assert "01:30\u201304:00 in Berlin" in outputs.pop()


# ------------------------------------------------------------------ the mails


def _hold_and_pay(admin: Admin, store: Storefront, tz: str | None, order_id: int = 1001
                  ) -> str:
    catalog = make_catalog(admin)
    extra = {"tz": tz} if tz else {}
    r = store.hold(catalog["service"], catalog["expert"], SLOT, **extra)
    assert r.status_code == 201, r.text
    hold = str(r.json["hold"])
    r = store.webhook("orders/paid", order_payload(order_id, [hold]))
    assert r.status_code == 200, r.text
    return hold


def _parts(msg: EmailMessage) -> tuple[str, str]:
    text = next(p for p in msg.walk() if p.get_content_type() == "text/plain").get_content()
    body = next(p for p in msg.walk() if p.get_content_type() == "text/html").get_content()
    return text, body


def _to(outbox_dir: Path, address: str, subject_start: str) -> EmailMessage:
    [msg] = [m for m in eml_files(outbox_dir) if str(m["To"]) == address
             and str(m["Subject"]).startswith(subject_start)]
    return msg


# SLOT is Tuesday 09:00Z: 10:00 in Berlin (the shop), 01:00 in Los Angeles.
LA_SLOT = ("Tuesday 1 December 2026, 01:00\u201301:30 (America/Los_Angeles) \u2014 "
           "10:00\u201310:30 in Berlin (Europe/Berlin), the shop's time")
BERLIN_ONLY = "Tuesday 1 December 2026, 10:00\u201310:30 (Europe/Berlin)"


def test_confirmation_reminder_and_cancellation_speak_the_customers_time(
        ctx: Context, deps: Deps, admin: Admin, store: Storefront, shop: ShopRef,
        clock: FixedClock, outbox_dir: Path) -> None:
    booking = _hold_and_pay(admin, store, "America/Los_Angeles")
    # The hold's zone is the booking's: kept on the very row that became the booking.
    row = claim_row(ctx, booking)
    assert row.status == "confirmed" and row.customer_tz == "America/Los_Angeles"
    jobs.relay_outbox(deps, "test-owner")

    confirmation = _to(outbox_dir, "jon@example.com", "Booking confirmed")
    text, body = _parts(confirmation)
    assert f"When: {LA_SLOT}" in text
    assert html.escape(f"When: {LA_SLOT}") in body
    # The subject is the customer's own time, short (and ASCII: no encoded word).
    assert str(confirmation["Subject"]).endswith(
        "Tuesday 1 December 2026, 01:00-01:30 (America/Los_Angeles)")
    # The expert reads their own zone first, and the customer's beside it.
    expert_text, _ = _parts(_to(outbox_dir, "e0@example.com", "New booking"))
    assert f"When: {BERLIN_ONLY}" in expert_text
    assert ("The customer's time: Tuesday 1 December 2026, 01:00\u201301:30 "
            "(America/Los_Angeles)") in expert_text

    clock.set(datetime(2026, 12, 1, 8, 1, tzinfo=UTC))  # 59 minutes before the start
    result = reminders.run_due(ctx.db, clock, ctx.plugins)
    assert len(result.sent) == 1
    text, body = _parts(_to(outbox_dir, "jon@example.com", "Reminder"))
    assert f"When: {LA_SLOT}" in text and html.escape(f"When: {LA_SLOT}") in body

    assert admin("POST", f"/bookings/{booking}/cancel").status_code == 200
    jobs.relay_outbox(deps, "test-owner")
    text, body = _parts(_to(outbox_dir, "jon@example.com", "Booking cancelled"))
    assert f"It was: {LA_SLOT}" in text and html.escape(f"It was: {LA_SLOT}") in body


def test_without_a_zone_the_customer_reads_the_shops_time_only(
        ctx: Context, deps: Deps, admin: Admin, store: Storefront, outbox_dir: Path) -> None:
    _hold_and_pay(admin, store, None)
    jobs.relay_outbox(deps, "test-owner")
    text, _ = _parts(_to(outbox_dir, "jon@example.com", "Booking confirmed"))
    assert f"When: {BERLIN_ONLY}" in text.splitlines() and "the shop's time" not in text
    expert_text, _ = _parts(_to(outbox_dir, "e0@example.com", "New booking"))
    assert "The customer's time" not in expert_text


def test_the_admin_bookings_list_shows_the_customers_timezone(
        admin: Admin, store: Storefront) -> None:
    booking = _hold_and_pay(admin, store, "America/Los_Angeles")
    [listed] = admin("GET", "/bookings").json["bookings"]
    assert listed["id"] == booking
    assert listed["customer_timezone"] == "America/Los_Angeles"
