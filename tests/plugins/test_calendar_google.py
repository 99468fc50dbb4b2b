"""Google Calendar and Meet through google-api-python-client + google-auth, over real HTTP
against the fake Google on 127.0.0.1."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import select

from engine.bootstrap import Context
from engine.providers import (
    BookingDetails,
    ConnectionBroken,
    ProviderRejected,
    ProviderUnavailable,
)
from engine.services.shops import ShopRef
from engine.store.providers_models import ProviderConnection
from plugins.calendar_google import event_id
from tests.conftest import NOW, Admin, admin_headers
from tests.fakes.google import FakeGoogle
from tests.plugins.conftest import connect, details, google_config, set_providers


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """SQLite only: these tests are about the provider's HTTP behaviour; storing
    connections is covered on both databases by test_freebusy, test_contract, test_meta."""
    return sqlite_url


@pytest.fixture
def overrides(google: FakeGoogle) -> dict[str, Any]:
    return google_config(google)


@pytest.fixture
def refresh_token(ctx: Context, shop: ShopRef, google: FakeGoogle) -> str:
    token = google.issue_refresh_token()
    connect(ctx, shop, "google", {"refresh_token": token})
    set_providers(ctx, shop, calendar="google", video="meet")
    return token


def stored_credentials(ctx: Context, shop: ShopRef) -> tuple[ProviderConnection, str]:
    with ctx.db.read() as session:
        row = session.scalars(select(ProviderConnection).where(
            ProviderConnection.shop_id == shop.id)).one()
    from engine.services.connections import credentials_aad

    assert row.credentials is not None
    return row, ctx.keyring.decrypt_str(row.credentials, aad=credentials_aad(row.id))


# --- OAuth ------------------------------------------------------------------------------


def begin_oauth(ctx: Context, client: Any, shop: ShopRef) -> tuple[str, dict[str, str]]:
    """The admin page's connect flow: a one-time start URL from the API (session token
    in the header), opened by the browser: (the provider's authorize URL, the cookie)."""
    issued = client.simulate_post("/admin/api/connections/google/start",
                                  headers=admin_headers(ctx, shop.domain))
    assert issued.status_code == 200, issued.text
    start_url = issued.json["start_url"]
    assert start_url.startswith(ctx.config.app_url + "/auth/google/start?ticket=")
    assert "id_token" not in start_url
    start = client.simulate_get("/auth/google/start", query_string=start_url.split("?", 1)[1])
    assert start.status_code == 302, start.text
    cookie = start.cookies["consultbook_oauth"]
    assert cookie.http_only and cookie.same_site == "Lax" and cookie.path == "/auth/google/"
    return start.headers["location"], {"consultbook_oauth": cookie.value}


def test_oauth_flow_connects_and_stores_the_refresh_token_encrypted(
        ctx: Context, client: Any, shop: ShopRef, google: FakeGoogle, admin: Admin) -> None:
    authorize, cookies = begin_oauth(ctx, client, shop)
    assert authorize.startswith(google.url + "/o/oauth2/auth?")
    assert "access_type=offline" in authorize and "code_challenge_method=S256" in authorize
    consent = requests.get(authorize, allow_redirects=False, timeout=5)
    back = consent.headers["Location"]
    assert back.startswith(ctx.config.app_url + "/auth/google/callback?")
    done = client.simulate_get("/auth/google/callback", query_string=back.split("?", 1)[1],
                               cookies=cookies)
    assert done.status_code == 302
    assert "status=connected" in done.headers["location"]
    row, plain = stored_credentials(ctx, shop)
    assert row.account == "owner@example.com" and row.status == "connected"
    assert "1//rt-" in plain and "1//rt-" not in (row.credentials or "")
    listing = admin("GET", "/connections").json
    google_row = next(c for c in listing["connections"] if c["provider"] == "google")
    assert google_row["status"] == "connected" and google_row["account"] == "owner@example.com"
    # The state is single use: replaying the callback is refused.
    again = client.simulate_get("/auth/google/callback", query_string=back.split("?", 1)[1],
                                cookies=cookies)
    assert again.status_code == 400 and again.json["error"]["code"] == "invalid_state"


def test_oauth_callback_refuses_unknown_state_and_reports_denial(
        ctx: Context, client: Any, shop: ShopRef, google: FakeGoogle) -> None:
    bad = client.simulate_get("/auth/google/callback", params={"code": "x", "state": "nope"})
    assert bad.status_code == 400 and bad.json["error"]["code"] == "invalid_state"
    authorize, cookies = begin_oauth(ctx, client, shop)
    state = authorize.split("state=")[1].split("&")[0]
    denied = client.simulate_get("/auth/google/callback",
                                 params={"error": "access_denied", "state": state},
                                 cookies=cookies)
    assert denied.status_code == 302 and "status=error" in denied.headers["location"]
    # The start page needs a ticket; a session token is no longer accepted in the URL.
    unauth = client.simulate_get("/auth/google/start")
    assert unauth.status_code == 400
    assert client.simulate_post("/admin/api/connections/google/start").status_code == 401


def test_oauth_state_expires(ctx: Context, client: Any, shop: ShopRef,
                             google: FakeGoogle) -> None:
    url, cookies = begin_oauth(ctx, client, shop)
    back = requests.get(url, allow_redirects=False, timeout=5).headers["Location"]
    ctx.clock.advance(11 * 60)  # type: ignore[attr-defined]
    late = client.simulate_get("/auth/google/callback", query_string=back.split("?", 1)[1],
                               cookies=cookies)
    assert late.status_code == 400 and late.json["error"]["code"] == "invalid_state"


# --- free/busy --------------------------------------------------------------------------


def test_busy_batches_fifty_calendars_per_call_and_splits_long_ranges(
        ctx: Context, shop: ShopRef, google: FakeGoogle, refresh_token: str) -> None:
    calendars = [f"e{n}@example.com" for n in range(120)]
    for cal in calendars:
        google.busy[cal] = [(NOW + timedelta(days=100), NOW + timedelta(days=100, hours=1))]
    cal = ctx.plugins.calendar_for(shop)
    answer = cal.busy(calendars, NOW, NOW + timedelta(days=130))
    calls = google.calls("POST", "/freeBusy$")
    # 120 calendars = 3 batches; 130 days = 3 pieces of at most 60 days.
    assert len(calls) == 9
    assert max(len(c.json["items"]) for c in calls) == 50
    assert all(datetime.fromisoformat(c.json["timeMax"].replace("Z", "+00:00"))
               - datetime.fromisoformat(c.json["timeMin"].replace("Z", "+00:00"))
               <= timedelta(days=60) for c in calls)
    assert answer["e7@example.com"].busy == (
        (NOW + timedelta(days=100), NOW + timedelta(days=100, hours=1)),)


def test_busy_reports_unreadable_calendars_as_errors_not_free(
        ctx: Context, shop: ShopRef, google: FakeGoogle, refresh_token: str) -> None:
    google.busy["known@example.com"] = []
    answer = ctx.plugins.calendar_for(shop).busy(["known@example.com", "ghost@example.com"],
                                                 NOW, NOW + timedelta(days=1))
    assert answer["known@example.com"].error is None
    assert answer["ghost@example.com"].error and "notFound" in answer["ghost@example.com"].error


# --- events -----------------------------------------------------------------------------


def test_create_event_uses_a_client_chosen_id_and_waits_for_a_pending_meet_link(
        ctx: Context, shop: ShopRef, google: FakeGoogle, refresh_token: str,
        booking: BookingDetails) -> None:
    google.conference_pending_reads = 2
    ref = ctx.plugins.calendar_for(shop).create_event(booking, None)
    eid = event_id(booking.booking_id)
    assert ref.id == eid and set(eid) <= set("0123456789abcdefghijklmnopqrstuv")
    assert ref.meeting_url and ref.meeting_url.startswith("https://meet.google.com/")
    event = google.events[eid]
    assert event["_query"]["sendUpdates"] == "none"
    assert event["_query"]["conferenceDataVersion"] == "1"
    assert event["conferenceData"]["createRequest"]["requestId"] == booking.booking_id
    assert {a["email"] for a in event["attendees"]} == {"erika@example.com",
                                                         "carl@example.net"}
    assert event["start"]["dateTime"] == "2026-12-01T12:00:00Z"
    assert len(google.calls("GET", "/events/" + eid)) == 2


def test_a_retried_create_is_a_409_and_returns_the_same_event(
        ctx: Context, shop: ShopRef, google: FakeGoogle, refresh_token: str,
        booking: BookingDetails) -> None:
    first = ctx.plugins.calendar_for(shop).create_event(booking, None)
    second = ctx.plugins.calendar_for(shop).create_event(booking, None)
    assert first == second
    assert len(google.live_events()) == 1
    assert len(google.calls("POST", "/events$")) == 2


def test_a_lost_insert_answer_is_retried_without_a_second_event(
        ctx: Context, shop: ShopRef, google: FakeGoogle, refresh_token: str,
        booking: BookingDetails) -> None:
    # The first insert lands but its answer is a 503: the retry meets a 409 = success.
    original = google.route

    def land_then_fail(r: Any) -> Any:
        resp = original(r)
        if r.method == "POST" and r.path.endswith("/events") and \
                len(google.calls("POST", "/events$")) == 1:
            from tests.fakes.http import Response
            return Response(503, {"error": {"code": 503}})
        return resp

    google.route = land_then_fail  # type: ignore[method-assign]
    ref = ctx.plugins.calendar_for(shop).create_event(booking, None)
    assert ref.id == event_id(booking.booking_id)
    assert len(google.live_events()) == 1


def test_update_and_cancel(ctx: Context, shop: ShopRef, google: FakeGoogle,
                           refresh_token: str, booking: BookingDetails) -> None:
    cal = ctx.plugins.calendar_for(shop)
    ref = cal.create_event(booking, None)
    moved = details(shop, start=booking.start + timedelta(hours=2),
                    end=booking.end + timedelta(hours=2), sequence=1)
    ref2 = cal.update_event(ref, moved, None)
    assert ref2.id == ref.id and ref2.meeting_url == ref.meeting_url
    assert google.events[ref.id]["start"]["dateTime"] == "2026-12-01T14:00:00Z"
    cal.cancel_event(ref, moved)
    assert google.events[ref.id]["status"] == "cancelled"
    cal.cancel_event(ref, moved)  # already gone (410): still success


def test_an_external_meeting_goes_into_the_event(ctx: Context, shop: ShopRef,
                                                 google: FakeGoogle, refresh_token: str,
                                                 booking: BookingDetails) -> None:
    from engine.providers import Meeting

    set_providers(ctx, shop, video="none")
    meeting = Meeting(url="https://zoom.example/j/1", id="1", provider="zoom")
    ref = ctx.plugins.calendar_for(shop).create_event(booking, meeting)
    event = google.events[ref.id]
    assert "conferenceData" not in event
    assert event["location"] == meeting.url and ref.meeting_url == meeting.url


# --- faults -----------------------------------------------------------------------------


def test_a_401_refreshes_the_token_and_keeps_the_new_one_encrypted(
        ctx: Context, shop: ShopRef, google: FakeGoogle, refresh_token: str,
        booking: BookingDetails) -> None:
    google.busy["erika@example.com"] = []
    cal = ctx.plugins.calendar_for(shop)
    cal.busy(["erika@example.com"], NOW, NOW + timedelta(hours=1))
    _, first = stored_credentials(ctx, shop)
    assert len(google.calls("POST", "^/token$")) == 1
    google.expire_access_tokens()
    ctx.plugins.calendar_for(shop).busy(["erika@example.com"], NOW, NOW + timedelta(hours=1))
    assert len(google.calls("POST", "^/token$")) == 2
    statuses = [r for r in google.requests if r.path.endswith("/freeBusy")]
    assert len(statuses) == 3  # ok, 401, ok after refresh
    _, second = stored_credentials(ctx, shop)
    assert first != second and '"token": "ya29.' in second
    # The stored token is used next time: no refresh needed.
    ctx.plugins.calendar_for(shop).busy(["erika@example.com"], NOW, NOW + timedelta(hours=1))
    assert len(google.calls("POST", "^/token$")) == 2


def test_a_revoked_refresh_token_breaks_the_connection_visibly(
        ctx: Context, shop: ShopRef, google: FakeGoogle, refresh_token: str,
        booking: BookingDetails, admin: Admin) -> None:
    google.revoke(refresh_token)
    with pytest.raises(ConnectionBroken):
        ctx.plugins.calendar_for(shop).create_event(booking, None)
    assert not google.live_events()
    row, _ = stored_credentials(ctx, shop)
    assert row.status == "broken" and row.broken_at is not None
    listing = admin("GET", "/connections").json
    entry = next(c for c in listing["connections"] if c["provider"] == "google")
    assert entry["status"] == "broken" and "reconnect" in entry["error"].lower()
    assert any(p["kind"] == "calendar" for p in listing["problems"])
    with pytest.raises(ConnectionBroken):
        ctx.plugins.calendar_for(shop)


def test_429_with_retry_after_is_retried(ctx: Context, shop: ShopRef,
                                        google: FakeGoogle, refresh_token: str,
                                        booking: BookingDetails) -> None:
    google.fail("POST", "/events$", 429, headers={"Retry-After": "0"})
    ref = ctx.plugins.calendar_for(shop).create_event(booking, None)
    assert ref.id in google.events
    posts = [r for r in google.requests if r.method == "POST" and r.path.endswith("/events")]
    assert len(posts) == 2


def test_429_with_retry_after_timing(ctx: Context, shop: ShopRef, google: FakeGoogle,
                                     refresh_token: str) -> None:
    google.busy["a@example.com"] = []
    google.fail("POST", "/freeBusy$", 429, headers={"Retry-After": "1"})
    began = time.monotonic()
    ctx.plugins.calendar_for(shop).busy(["a@example.com"], NOW, NOW + timedelta(hours=1))
    assert time.monotonic() - began >= 0.95


def test_429_with_a_long_retry_after_gives_up_at_once_with_the_hint(
        ctx: Context, shop: ShopRef, google: FakeGoogle, refresh_token: str,
        booking: BookingDetails) -> None:
    google.fail("POST", "/events$", 429, headers={"Retry-After": "120"}, times=5)
    with pytest.raises(ProviderUnavailable) as caught:
        ctx.plugins.calendar_for(shop).create_event(booking, None)
    assert caught.value.retry_after == 120
    assert len(google.calls("POST", "/events$")) == 1


def test_429_without_retry_after_backs_off_and_retries(
        ctx: Context, shop: ShopRef, google: FakeGoogle, refresh_token: str,
        booking: BookingDetails) -> None:
    google.fail("POST", "/events$", 429, times=2)
    ref = ctx.plugins.calendar_for(shop).create_event(booking, None)
    assert ref.id in google.events and len(google.calls("POST", "/events$")) == 3


def test_403_rate_limit_is_retried_but_403_forbidden_is_not(
        ctx: Context, shop: ShopRef, google: FakeGoogle, refresh_token: str,
        booking: BookingDetails) -> None:
    google.fail("POST", "/events$", 403, body={"error": {"code": 403, "errors": [
        {"reason": "rateLimitExceeded"}]}})
    assert ctx.plugins.calendar_for(shop).create_event(booking, None)
    google.fail("POST", "/events$", 403, body={"error": {"code": 403, "errors": [
        {"reason": "forbiddenForNonOrganizer"}]}})
    with pytest.raises(ProviderRejected):
        ctx.plugins.calendar_for(shop).create_event(details(shop, booking_id="bkg_other0001"),
                                                    None)
    assert len(google.calls("POST", "/events$")) == 3


def test_persistent_5xx_ends_as_provider_unavailable(ctx: Context, shop: ShopRef,
                                                     google: FakeGoogle, refresh_token: str,
                                                     booking: BookingDetails) -> None:
    google.fail("POST", "/events$", 503, times=10)
    with pytest.raises(ProviderUnavailable):
        ctx.plugins.calendar_for(shop).create_event(booking, None)
    assert len(google.calls("POST", "/events$")) == ctx.config.provider_attempts


def test_a_timeout_is_retried(ctx: Context, shop: ShopRef, google: FakeGoogle,
                              refresh_token: str) -> None:
    google.busy["a@example.com"] = [(NOW, NOW + timedelta(minutes=30))]
    google.fail("POST", "/freeBusy$", 0, delay=ctx.config.provider_timeout_seconds + 0.3)
    answer = ctx.plugins.calendar_for(shop).busy(["a@example.com"], NOW,
                                                 NOW + timedelta(hours=1))
    assert answer["a@example.com"].busy == ((NOW, NOW + timedelta(minutes=30)),)
    assert len(google.calls("POST", "/freeBusy$")) == 2


# --- Meet -------------------------------------------------------------------------------


def test_video_for_google_calendar_with_meet_is_embedded(ctx: Context, shop: ShopRef,
                                                        refresh_token: str,
                                                        booking: BookingDetails) -> None:
    video = ctx.plugins.video_for(shop)
    assert video.embedded and video.create_meeting(booking) is None


def test_meet_space_for_a_non_google_calendar_is_made_once_per_booking(
        ctx: Context, shop: ShopRef, google: FakeGoogle, refresh_token: str,
        booking: BookingDetails) -> None:
    set_providers(ctx, shop, calendar="local", video="meet")
    first = ctx.plugins.video_for(shop).create_meeting(booking)
    again = ctx.plugins.video_for(shop).create_meeting(booking)
    assert first is not None and first == again
    assert first.url.startswith("https://meet.google.com/") and first.provider == "meet"
    assert len(google.spaces) == 1
    ref = ctx.plugins.calendar_for(shop).create_event(booking, first)
    assert ref.meeting_url == first.url


def test_meet_spaces_survive_a_5xx(ctx: Context, shop: ShopRef, google: FakeGoogle,
                                   refresh_token: str, booking: BookingDetails) -> None:
    set_providers(ctx, shop, calendar="local", video="meet")
    google.fail("POST", "^/v2/spaces$", 500)
    assert ctx.plugins.video_for(shop).create_meeting(booking) is not None


def test_now_is_fixed_for_these_tests() -> None:
    assert NOW.tzinfo is UTC
