"""The local calendar: busy blocks and ICS feeds (files and URLs) through the admin API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine.bootstrap import Context
from plugins.calendar_local.ics import FeedError, busy_from_ics, fetch
from tests.conftest import Admin, make_catalog
from tests.fakes.http import FakeServer, Request, Response

BERLIN = ZoneInfo("Europe/Berlin")
WINDOW = (datetime(2026, 11, 29, tzinfo=UTC), datetime(2027, 12, 31, tzinfo=UTC))

FEED = b"""BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//test//EN\r
BEGIN:VEVENT\r
UID:weekly@test\r
DTSTART;TZID=Europe/Berlin:20261102T090000\r
DTEND;TZID=Europe/Berlin:20261102T100000\r
RRULE:FREQ=WEEKLY;BYDAY=MO;UNTIL=20270405T080000Z\r
EXDATE;TZID=Europe/Berlin:20261207T090000\r
SUMMARY:Team meeting\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:weekly@test\r
RECURRENCE-ID;TZID=Europe/Berlin:20261214T090000\r
DTSTART;TZID=Europe/Berlin:20261214T150000\r
DTEND;TZID=Europe/Berlin:20261214T160000\r
SUMMARY:Team meeting (moved)\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:holiday@test\r
DTSTART;VALUE=DATE:20261224\r
DTEND;VALUE=DATE:20261225\r
SUMMARY:Christmas Eve\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:free@test\r
DTSTART:20261201T100000Z\r
DURATION:PT1H\r
TRANSP:TRANSPARENT\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:cancelled@test\r
DTSTART:20261201T120000Z\r
DTEND:20261201T130000Z\r
STATUS:CANCELLED\r
END:VEVENT\r
END:VCALENDAR\r
"""


def test_ics_expands_recurrences_in_wall_time_with_exceptions() -> None:
    busy = busy_from_ics(FEED, BERLIN, *WINDOW)
    mondays = [s for s, _, summary in busy if summary == "Team meeting"]
    # 09:00 Berlin is 08:00 UTC in winter and stays 09:00 local after the DST change.
    assert mondays[0] == datetime(2026, 11, 30, 8, tzinfo=UTC)
    assert datetime(2026, 12, 7, 8, tzinfo=UTC) not in mondays  # EXDATE
    assert datetime(2026, 12, 14, 8, tzinfo=UTC) not in mondays  # moved
    assert (datetime(2026, 12, 14, 14, tzinfo=UTC), datetime(2026, 12, 14, 15, tzinfo=UTC),
            "Team meeting (moved)") in busy
    assert mondays[-1] == datetime(2027, 4, 5, 7, tzinfo=UTC)  # CEST: 09:00 = 07:00 UTC, <= UNTIL
    assert (datetime(2026, 12, 23, 23, tzinfo=UTC), datetime(2026, 12, 24, 23, tzinfo=UTC),
            "Christmas Eve") in busy
    assert not any(s == datetime(2026, 12, 1, 10, tzinfo=UTC) for s, _, _ in busy)
    assert not any(s == datetime(2026, 12, 1, 12, tzinfo=UTC) for s, _, _ in busy)


def test_garbage_is_a_feed_error() -> None:
    with pytest.raises(FeedError):
        busy_from_ics(b"this is not a calendar", BERLIN, *WINDOW)


class FeedServer(FakeServer):
    body = FEED

    def route(self, r: Request) -> Response:
        if r.path == "/redirect":
            return Response(302, b"", {"Location": "/feed.ics"})
        return Response(200, self.body, {"Content-Type": "text/calendar"})


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    with FeedServer() as server:
        yield server


@pytest.fixture
def overrides() -> dict[str, Any]:
    return {"ics_allow_private_hosts": True}


def test_private_addresses_are_refused_unless_allowed(feed_server: FeedServer) -> None:
    with pytest.raises(FeedError, match="private"):
        fetch(feed_server.url + "/feed.ics", timeout=1)
    assert fetch(feed_server.url + "/redirect", timeout=1, allow_private=True) == FEED
    with pytest.raises(FeedError):
        fetch("file:///etc/passwd", timeout=1, allow_private=True)


def test_feeds_through_the_admin_api(ctx: Context, admin: Admin,
                                     feed_server: FeedServer) -> None:
    cat = make_catalog(admin)
    added = admin("POST", "/calendar/feeds", {"expert": cat["expert"],
                                              "url": feed_server.url + "/feed.ics"})
    assert added.status_code == 201, added.text
    feed = added.json
    assert feed["events"] > 10 and "url" not in feed
    blocks = admin("GET", f"/calendar/busy?expert={cat['expert']}&from=2026-12-21T00:00:00Z"
                          "&to=2026-12-22T00:00:00Z").json["busy"]
    assert [(b["start"], b["end"]) for b in blocks] == [("2026-12-21T08:00:00Z",
                                                         "2026-12-21T09:00:00Z")]
    # Imported blocks are managed through their feed.
    assert admin("DELETE", f"/calendar/busy/{blocks[0]['id']}").status_code == 400
    feed_server.body = FEED.replace(b"UNTIL=20270405T080000Z", b"UNTIL=20261201T000000Z")
    refreshed = admin("POST", f"/calendar/feeds/{feed['id']}/refresh").json
    assert refreshed["events"] < feed["events"] and refreshed["last_error"] is None
    feed_server.body = b"garbage"
    failed = admin("POST", f"/calendar/feeds/{feed['id']}/refresh").json
    assert failed["last_error"] and failed["events"] == refreshed["events"]  # kept
    assert admin("DELETE", f"/calendar/feeds/{feed['id']}").status_code == 204
    assert admin("GET", "/calendar/busy").json["busy"] == []


def test_an_uploaded_ics_file(ctx: Context, admin: Admin) -> None:
    cat = make_catalog(admin)
    added = admin("POST", "/calendar/feeds", {"expert": cat["expert"], "ics": FEED.decode(),
                                              "name": "Exported"})
    assert added.status_code == 201 and added.json["kind"] == "file"
    listed = admin("GET", "/calendar/feeds").json["feeds"]
    assert [f["name"] for f in listed] == ["Exported"]


def test_admin_validation_and_tenancy(ctx: Context, admin: Admin, other_admin: Admin) -> None:
    cat = make_catalog(admin)
    assert admin("POST", "/calendar/busy", {"expert": cat["expert"], "start": "2026-12-01",
                                            "end": "2026-12-02T00:00:00Z"}).status_code == 400
    assert admin("POST", "/calendar/busy", {"expert": cat["expert"],
                                            "start": "2026-12-02T00:00:00Z",
                                            "end": "2026-12-01T00:00:00Z"}).status_code == 400
    assert admin("POST", "/calendar/feeds", {"expert": cat["expert"],
                                             "url": "ftp://x"}).status_code == 400
    block = admin("POST", "/calendar/busy", {"expert": cat["expert"],
                                             "start": "2026-12-01T00:00:00Z",
                                             "end": "2026-12-01T01:00:00Z"}).json
    assert other_admin("DELETE", f"/calendar/busy/{block['id']}").status_code == 404
    assert other_admin("POST", "/calendar/busy", {
        "expert": cat["expert"], "start": "2026-12-01T00:00:00Z",
        "end": "2026-12-01T01:00:00Z"}).status_code == 404
    assert other_admin("GET", "/calendar/busy").json["busy"] == []


def test_local_events_are_idempotent_and_cancellable(ctx: Context, admin: Admin) -> None:
    from tests.plugins.conftest import details

    shop = ctx.plugins.shop_providers("alpha.myshopify.com").shop
    cal = ctx.plugins.calendar_for(shop)
    booking = details(shop)
    ref = cal.create_event(booking, None)
    assert cal.create_event(booking, None) == ref
    moved = details(shop, start=booking.start + timedelta(hours=1),
                    end=booking.end + timedelta(hours=1), sequence=1)
    assert cal.update_event(ref, moved, None).id == ref.id
    cal.cancel_event(ref, moved)
