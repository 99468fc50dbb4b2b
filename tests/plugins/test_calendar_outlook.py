"""Outlook through msal + requests against the fake Microsoft identity platform and Graph,
over HTTPS with a trustme certificate."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from sqlalchemy import select

from engine.bootstrap import Context
from engine.providers import (
    BookingDetails,
    ConnectionBroken,
    ProviderNotConfigured,
    ProviderUnavailable,
)
from engine.services.connections import credentials_aad
from engine.services.shops import ShopRef
from engine.store.providers_models import ProviderConnection
from plugins.calendar_outlook import transaction_id
from tests.conftest import NOW, Admin, admin_headers
from tests.fakes.microsoft import FakeMicrosoft
from tests.fakes.tls import ca_file
from tests.plugins.conftest import details, set_providers

UTC_ = NOW.tzinfo


@pytest.fixture
def ms() -> Iterator[FakeMicrosoft]:
    with FakeMicrosoft() as fake:
        yield fake



@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """SQLite only: these tests are about the provider's HTTP behaviour; storing
    connections is covered on both databases by test_freebusy, test_contract, test_meta."""
    return sqlite_url


@pytest.fixture
def overrides(ms: FakeMicrosoft) -> dict[str, Any]:
    return {"origins": ms.origins(), "microsoft_client_id": ms.client_id,
            "microsoft_client_secret": ms.client_secret, "provider_ca_bundle": ca_file()}


def oauth_connect(ctx: Context, client: Any, shop: ShopRef) -> Any:
    # The admin page's flow: a one-time start URL (session token only in the header),
    # opened by the browser, which gets the flow's cookie.
    issued = client.simulate_post("/admin/api/connections/outlook/start",
                                  headers=admin_headers(ctx, shop.domain))
    assert issued.status_code == 200, issued.text
    start = client.simulate_get("/auth/outlook/start",
                                query_string=issued.json["start_url"].split("?", 1)[1])
    assert start.status_code == 302, start.text
    cookies = {"consultbook_oauth": start.cookies["consultbook_oauth"].value}
    session = requests.Session()
    session.trust_env = False
    consent = session.get(start.headers["location"], allow_redirects=False, timeout=5,
                          verify=ca_file())
    session.close()
    assert consent.status_code == 200  # form_post: a form that POSTs the code back
    action = html.unescape(re.search(r'action="([^"]+)"', consent.text).group(1))  # type: ignore[union-attr]
    assert action == ctx.config.app_url + "/auth/outlook/callback"
    fields = {html.unescape(k): html.unescape(v) for k, v in
              re.findall(r'name="([^"]+)" value="([^"]*)"', consent.text)}
    return client.simulate_post("/auth/outlook/callback", body=urlencode(fields),
                                headers={"Content-Type": "application/x-www-form-urlencoded"},
                                cookies=cookies)


@pytest.fixture
def connected(ctx: Context, client: Any, shop: ShopRef, ms: FakeMicrosoft) -> None:
    done = oauth_connect(ctx, client, shop)
    assert done.status_code == 302 and "status=connected" in done.headers["location"]
    set_providers(ctx, shop, calendar="outlook", video="teams")


def stored(ctx: Context, shop: ShopRef) -> tuple[ProviderConnection, dict[str, Any]]:
    with ctx.db.read() as session:
        row = session.scalars(select(ProviderConnection).where(
            ProviderConnection.shop_id == shop.id)).one()
    assert row.credentials is not None
    return row, json.loads(ctx.keyring.decrypt_str(row.credentials, aad=credentials_aad(row.id)))


def test_auth_code_flow_stores_the_msal_cache_encrypted(ctx: Context, shop: ShopRef,
                                                        connected: None, admin: Admin) -> None:
    row, doc = stored(ctx, shop)
    assert row.account == "owner@contoso.example"
    assert "RefreshToken" in doc["cache"] and "0.rt-" in doc["cache"]
    assert "0.rt-" not in (row.credentials or "")
    listing = admin("GET", "/connections").json
    entry = next(c for c in listing["connections"] if c["provider"] == "outlook")
    assert entry["status"] == "connected"
    assert listing["problems"] == []


def test_get_schedule_batches_twenty_and_splits_ranges_under_62_days(
        ctx: Context, shop: ShopRef, ms: FakeMicrosoft, connected: None) -> None:
    people = [f"p{n}@contoso.example" for n in range(45)]
    for p in people:
        ms.schedules[p] = {"busy": [(NOW + timedelta(days=70), NOW + timedelta(days=70, hours=1),
                                     "busy")]}
    answer = ctx.plugins.calendar_for(shop).busy(people, NOW, NOW + timedelta(days=100))
    calls = ms.calls("POST", "getSchedule$")
    assert len(calls) == 3 * 2  # 45 schedules = 3 batches; 100 days = 2 pieces
    assert max(len(c.json["schedules"]) for c in calls) == 20
    assert answer["p44@contoso.example"].busy == (
        (NOW + timedelta(days=70), NOW + timedelta(days=70, hours=1)),)


def test_tentative_and_away_are_busy_free_is_not_and_unknown_is_an_error(
        ctx: Context, shop: ShopRef, ms: FakeMicrosoft, connected: None) -> None:
    h = timedelta(hours=1)
    ms.schedules["a@contoso.example"] = {"busy": [(NOW, NOW + h, "tentative"),
                                                  (NOW + 2 * h, NOW + 3 * h, "free"),
                                                  (NOW + 4 * h, NOW + 5 * h, "oof")]}
    answer = ctx.plugins.calendar_for(shop).busy(["a@contoso.example", "nobody@contoso.example"],
                                                 NOW, NOW + 6 * h)
    assert answer["a@contoso.example"].busy == ((NOW, NOW + h), (NOW + 4 * h, NOW + 5 * h))
    assert "UserNotFound" in (answer["nobody@contoso.example"].error or "")


def test_outlook_working_hours_make_the_rest_of_the_day_busy(
        ctx: Context, shop: ShopRef, ms: FakeMicrosoft, connected: None) -> None:
    ms.schedules["w@contoso.example"] = {"busy": [], "working_hours": {
        "daysOfWeek": ["monday", "tuesday"], "startTime": "09:00:00.0000000",
        "endTime": "17:00:00.0000000", "timeZone": {"name": "Pacific Standard Time"}}}
    # Monday 2026-11-30 00:00 UTC .. Wednesday 00:00 UTC
    start = datetime(2026, 11, 30, tzinfo=UTC_)
    got = ctx.plugins.calendar_for(shop).busy(["w@contoso.example"], start,
                                              start + timedelta(days=2))
    free = []
    cursor = start
    for s, e in got["w@contoso.example"].busy:
        if s > cursor:
            free.append((cursor, s))
        cursor = e
    if cursor < start + timedelta(days=2):
        free.append((cursor, start + timedelta(days=2)))
    # 09:00-17:00 in Los Angeles (UTC-8) is 17:00-01:00 UTC; Tuesday's window runs
    # past the asked range.
    assert free == [(datetime(2026, 11, 30, 17, tzinfo=UTC_),
                     datetime(2026, 12, 1, 1, tzinfo=UTC_)),
                    (datetime(2026, 12, 1, 17, tzinfo=UTC_), datetime(2026, 12, 2, 0, tzinfo=UTC_))]


def test_create_event_makes_a_teams_meeting_once_per_booking(
        ctx: Context, shop: ShopRef, ms: FakeMicrosoft, connected: None,
        booking: BookingDetails) -> None:
    assert ctx.plugins.video_for(shop).embedded
    cal = ctx.plugins.calendar_for(shop)
    ref = cal.create_event(booking, None)
    again = cal.create_event(booking, None)
    assert ref == again and len(ms.live_events()) == 1
    event = ms.events[ref.id]
    assert event["transactionId"] == transaction_id(booking.booking_id)
    assert event["isOnlineMeeting"] is True
    assert event["onlineMeetingProvider"] == "teamsForBusiness"
    assert ref.meeting_url and ref.meeting_url.startswith("https://teams.microsoft.com/")
    assert event["start"] == {"dateTime": "2026-12-01T12:00:00", "timeZone": "UTC"}


def test_update_and_cancel(ctx: Context, shop: ShopRef, ms: FakeMicrosoft, connected: None,
                           booking: BookingDetails) -> None:
    cal = ctx.plugins.calendar_for(shop)
    ref = cal.create_event(booking, None)
    moved = details(shop, start=booking.start + timedelta(hours=1),
                    end=booking.end + timedelta(hours=1), sequence=1)
    assert cal.update_event(ref, moved, None).id == ref.id
    assert ms.events[ref.id]["start"]["dateTime"] == "2026-12-01T13:00:00"
    cal.cancel_event(ref, moved)
    cal.cancel_event(ref, moved)
    assert not ms.live_events()
    lonely = details(shop, booking_id="bkg_lonely0000001", expert_email=None,
                     customer_email=None)
    ref2 = cal.create_event(lonely, None)
    cal.cancel_event(ref2, lonely)  # no attendees to notify: deleted instead
    assert ref2.id not in ms.events


def test_a_401_refreshes_the_token_and_saves_the_rotated_cache(
        ctx: Context, shop: ShopRef, ms: FakeMicrosoft, connected: None,
        booking: BookingDetails) -> None:
    _, before = stored(ctx, shop)
    ms.expire_access_tokens()
    ctx.plugins.calendar_for(shop).create_event(booking, None)
    _, after = stored(ctx, shop)
    assert before["cache"] != after["cache"]
    token_calls = [r for r in ms.calls("POST", "/token$")
                   if r.form.get("grant_type") == "refresh_token"]
    assert len(token_calls) == 1


def test_a_revoked_grant_marks_the_connection_broken(
        ctx: Context, shop: ShopRef, ms: FakeMicrosoft, connected: None,
        booking: BookingDetails, admin: Admin) -> None:
    ms.expire_access_tokens()
    ms.revoke_all()
    with pytest.raises(ConnectionBroken):
        ctx.plugins.calendar_for(shop).create_event(booking, None)
    row, _ = stored(ctx, shop)
    assert row.status == "broken" and "invalid_grant" in (row.error or "")
    entry = next(c for c in admin("GET", "/connections").json["connections"]
                 if c["provider"] == "outlook")
    assert entry["status"] == "broken"


def test_429_retry_after_is_honoured(ctx: Context, shop: ShopRef, ms: FakeMicrosoft,
                                     connected: None, booking: BookingDetails) -> None:
    ms.fail("POST", "/v1.0/me/events$", 429, headers={"Retry-After": "1"})
    began = time.monotonic()
    ctx.plugins.calendar_for(shop).create_event(booking, None)
    assert time.monotonic() - began >= 0.95
    assert len(ms.calls("POST", "/v1.0/me/events$")) == 2


def test_429_without_retry_after_and_5xx_are_retried(ctx: Context, shop: ShopRef,
                                                     ms: FakeMicrosoft, connected: None,
                                                     booking: BookingDetails) -> None:
    ms.fail("POST", "/v1.0/me/events$", 429)
    ms.fail("POST", "/v1.0/me/events$", 503)
    ctx.plugins.calendar_for(shop).create_event(booking, None)
    assert len(ms.calls("POST", "/v1.0/me/events$")) == 3
    assert len(ms.live_events()) == 1


def test_persistent_5xx_and_timeouts_end_as_unavailable(ctx: Context, shop: ShopRef,
                                                        ms: FakeMicrosoft, connected: None,
                                                        booking: BookingDetails) -> None:
    ms.fail("POST", "getSchedule$", 500, times=10)
    with pytest.raises(ProviderUnavailable):
        ctx.plugins.calendar_for(shop).busy(["a@contoso.example"], NOW, NOW + timedelta(hours=1))
    ms.fail("POST", "/v1.0/me/events$", 0, delay=ctx.config.provider_timeout_seconds + 0.3)
    ctx.plugins.calendar_for(shop).create_event(booking, None)  # the retry succeeds
    assert len(ms.live_events()) == 1  # transactionId: the slow first POST did not duplicate


def test_teams_without_outlook_is_a_clear_error(ctx: Context, shop: ShopRef,
                                                booking: BookingDetails) -> None:
    set_providers(ctx, shop, calendar="local", video="teams")
    with pytest.raises(ProviderNotConfigured):
        ctx.plugins.video_for(shop).create_meeting(booking)
