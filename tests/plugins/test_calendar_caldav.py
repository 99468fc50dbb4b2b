"""The CalDAV calendar plugin against a real CalDAV server (Radicale) over HTTP.

The server runs in a subprocess (tests/fakes/radicale.py); events are put in and read
back with the real ``caldav`` client library, so what the provider writes is what any
CalDAV client sees. The provider gets a :class:`ProviderContext` built by hand with a
connection handle holding the credentials the connector's real ``connect()`` returned;
``test_the_engine_*`` runs the same through the engine (encrypted connection, the
shop's provider choice) on SQLite and PostgreSQL.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import caldav
import icalendar
import pytest

from engine.bootstrap import Context
from engine.clock import FixedClock
from engine.providers import (
    CalendarProvider,
    ConnectionBroken,
    EventRef,
    Meeting,
    ProviderChoice,
    ProviderContext,
    ProviderRejected,
    ProviderUnavailable,
    RetryPolicy,
)
from engine.services.shops import ShopRef
from engine.tasks import jobs
from engine.tasks.jobs import Deps
from engine.testing.contract import START, CalendarProviderContract, sample_booking
from plugins.calendar_caldav import (
    ALLOW_PRIVATE_ENV,
    CalDAVCalendar,
    CalDAVConnector,
    resource_name,
)
from tests.conftest import Admin, Storefront, make_catalog, make_config
from tests.fakes.radicale import PASSWORD, USER, DavProxy, Radicale
from tests.plugins.conftest import set_providers
from tests.tasks.helpers import SLOT, book, claim_row

Intervals = list[tuple[datetime, datetime]]
EXPERT = "e0@example.com"  # the first expert tests.conftest.make_catalog makes
FAST = RetryPolicy(attempts=3, base=0.001, cap=0.01, timeout=3.0, max_retry_after=1.5)
_ids = itertools.count()


@dataclass
class Shop:
    id: str = "shop_caldav"
    domain: str = "caldav.myshopify.com"
    timezone: str = "Europe/Berlin"


@dataclass
class Handle:
    """A ConnectionHandle over a dict (the engine's stores it encrypted)."""

    creds: dict[str, Any]
    provider: str = "caldav"
    account: str | None = USER
    broken: list[str] = field(default_factory=list)

    def credentials(self) -> dict[str, Any]:
        return dict(self.creds)

    def save(self, credentials: dict[str, Any]) -> None:
        self.creds = dict(credentials)

    def mark_broken(self, reason: str) -> None:
        self.broken.append(reason)


@pytest.fixture
def overrides() -> dict[str, Any]:
    """The engine's ctx (tests/plugins/conftest.py): cached busy time is stale at once, so
    an event put in by the test is read on the next availability request."""
    return {"freebusy_ttl_seconds": 0}


@pytest.fixture(autouse=True)
def private_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    # Radicale listens on 127.0.0.1 over plain http: the operator switch that allows it.
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")


@pytest.fixture(scope="module")
def radicale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Radicale]:
    users = {USER: PASSWORD, EXPERT: PASSWORD}
    with Radicale(tmp_path_factory.mktemp("radicale"), users) as server:
        yield server


@pytest.fixture(scope="module")
def principal(radicale: Radicale) -> caldav.Principal:
    return caldav.DAVClient(url=radicale.url, username=USER, password=PASSWORD).principal()


def new_calendar(principal: caldav.Principal) -> caldav.Calendar:
    n = next(_ids)
    return principal.make_calendar(name=f"Work {n}", cal_id=f"work{n}")


@pytest.fixture
def calendar(principal: caldav.Principal) -> caldav.Calendar:
    return new_calendar(principal)


def connector() -> CalDAVConnector:
    return CalDAVConnector(make_config("sqlite://"), FAST)


def connect(url: str, calendar: caldav.Calendar | None = None, *,
            password: str = PASSWORD) -> dict[str, Any]:
    # The calendar as a path on the server, as a merchant would copy it.
    path = urlsplit(str(calendar.url)).path if calendar is not None else ""
    grant = connector().connect(values={"url": url, "username": USER, "password": password,
                                        "calendar": path})
    assert grant.account == USER
    return grant.credentials


def provider(creds: dict[str, Any], **settings: str) -> CalDAVCalendar:
    ctx = ProviderContext(shop=Shop(), choice=ProviderChoice(calendar="caldav"),
                          config=make_config("sqlite://"),
                          clock=FixedClock(datetime(2027, 2, 1, tzinfo=UTC)),
                          db=None, retry=FAST,  # type: ignore[arg-type]
                          connection=Handle(creds), settings=settings)
    return CalDAVCalendar(ctx)


def put_event(calendar: caldav.Calendar, start: datetime | date, end: datetime | date,
              **extra: Any) -> None:
    ev = icalendar.Event()
    ev.add("uid", f"seed-{next(_ids)}@test")
    ev.add("dtstamp", datetime(2027, 1, 1, tzinfo=UTC))
    ev.add("dtstart", start)
    ev.add("dtend", end)
    ev.add("summary", "seeded")
    for key, value in extra.items():
        ev.add(key, value)
    cal = icalendar.Calendar()
    cal.add("prodid", "-//test//EN")
    cal.add("version", "2.0")
    cal.add_component(ev)
    calendar.save_event(cal.to_ical().decode())


def events(calendar: caldav.Calendar) -> list[icalendar.Event]:
    found = []
    for obj in calendar.events():
        found.extend(icalendar.Calendar.from_ical(obj.data).walk("VEVENT"))
    return found


H = timedelta(hours=1)


# --------------------------------------------------------------------------- connect


def test_connect_discovers_the_principal_its_calendars_and_addresses(
        radicale: Radicale, calendar: caldav.Calendar) -> None:
    creds = connect(radicale.url, calendar)
    assert creds["calendar_url"] == str(calendar.url)
    assert creds["home_url"].startswith(radicale.url) and creds["password"] == PASSWORD
    assert USER in creds["addresses"]
    assert creds["auth_type"] == "basic"  # later sessions send it at once (no 401 first)
    assert str(calendar.url) in {c["url"] for c in creds["calendars"]}
    # Without a calendar named, the account's first calendar.
    first = connect(radicale.url)
    assert first["calendar_url"] in {c["url"] for c in first["calendars"]}


def test_connect_with_a_wrong_password_is_refused(radicale: Radicale) -> None:
    with pytest.raises(ProviderRejected, match="user name or app password"):
        connect(radicale.url, password="not-the-password")


def test_connect_needs_every_required_field_and_an_existing_calendar(
        radicale: Radicale) -> None:
    with pytest.raises(ProviderRejected, match="app password is required"):
        connector().connect(values={"url": radicale.url, "username": USER, "password": "",
                                    "calendar": ""})
    with pytest.raises(ProviderRejected, match="no calendar"):
        connector().connect(values={"url": radicale.url, "username": USER,
                                    "password": PASSWORD, "calendar": "/nowhere/at-all/"})


def test_connect_refuses_private_addresses_and_plain_http_by_default(
        radicale: Radicale, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_PRIVATE_ENV)
    with pytest.raises(ProviderRejected, match="https"):
        connect(radicale.url)
    with pytest.raises(ProviderRejected, match="private or local"):
        connect(radicale.url.replace("http://", "https://"))


def test_connect_when_the_server_is_down_is_unavailable(tmp_path: Path) -> None:
    server = Radicale(tmp_path / "down")  # configured, never started
    with pytest.raises(ProviderUnavailable):
        connect(server.url)


def test_the_form_tells_what_to_use_for_icloud_fastmail_and_nextcloud() -> None:
    fields = {f.name: f for f in CalDAVConnector.fields}
    assert fields["password"].kind == "password"
    assert fields["calendar"].required is False
    text = " ".join(f.help for f in CalDAVConnector.fields)
    assert "https://caldav.icloud.com" in text and "app-specific password" in text.lower()
    assert "fastmail" in text.lower() and "nextcloud" in text.lower()


# --------------------------------------------------------------------------- which calendar


def test_calendar_for_expert_mapping_then_own_address_else_unknowable(
        radicale: Radicale, calendar: caldav.Calendar, principal: caldav.Principal) -> None:
    other = new_calendar(principal)
    creds = connect(radicale.url, calendar)
    path = str(other.url)[len(radicale.url) - 1:]
    cal = provider(creds, expert_calendars=f"ben@example.com = {path}, exp_9={other.url}")
    assert cal.calendar_for_expert("exp_1", "Ben@Example.com") == str(other.url)
    assert cal.calendar_for_expert("exp_9", None) == str(other.url)
    assert cal.calendar_for_expert("exp_2", USER.upper()) == str(calendar.url)
    assert cal.calendar_for_expert("exp_3", "stranger@example.com") is None
    assert cal.calendar_for_expert("exp_4", None) is None


def test_a_calendar_on_another_server_is_an_error_never_free(
        radicale: Radicale, calendar: caldav.Calendar) -> None:
    cal = provider(connect(radicale.url, calendar),
                   expert_calendars="ben@example.com = https://elsewhere.example/cal/")
    target = cal.calendar_for_expert("exp_1", "ben@example.com")
    assert target == "https://elsewhere.example/cal/"
    got = cal.busy([target, str(calendar.url)], START, START + H)
    assert got[target].error and not got[target].busy
    assert got[str(calendar.url)].error is None


# --------------------------------------------------------------------------- busy


@pytest.mark.parametrize("method", ["freebusy", "events"])
def test_busy_from_events_put_in_with_caldav(radicale: Radicale, calendar: caldav.Calendar,
                                             method: str) -> None:
    put_event(calendar, START, START + H)
    put_event(calendar, START + 3 * H, START + 4 * H, rrule={"freq": "daily", "count": 3})
    put_event(calendar, START + 6 * H, START + 7 * H, transp="TRANSPARENT")
    put_event(calendar, START + 8 * H, START + 9 * H, status="CANCELLED")
    with DavProxy(radicale.url) as proxy:
        cal = provider(connect(proxy.url, calendar), busy_method=method)
        url = str(calendar.url).replace(radicale.url, proxy.url)
        got = cal.busy([url], START, START + timedelta(days=3))[url]
        reports = [body for verb, _path, body in proxy.requests if verb == "REPORT"]
    assert got.error is None
    # The free-busy report answers alone; "events" reads the events and expands them here.
    kinds = [b"free-busy-query" in r for r in reports]
    assert kinds == ([True] if method == "freebusy" else [False])
    assert list(got.busy) == [
        (START, START + H), (START + 3 * H, START + 4 * H),
        (START + timedelta(days=1, hours=3), START + timedelta(days=1, hours=4)),
        (START + timedelta(days=2, hours=3), START + timedelta(days=2, hours=4))]


def test_an_all_day_event_is_busy_in_the_calendars_zone(
        radicale: Radicale, calendar: caldav.Calendar) -> None:
    put_event(calendar, date(2027, 3, 2), date(2027, 3, 3))
    cal = provider(connect(radicale.url, calendar), busy_method="events")
    url = str(calendar.url)
    got = cal.busy([url], datetime(2027, 3, 1, tzinfo=UTC), datetime(2027, 3, 4, tzinfo=UTC))
    # Europe/Berlin in March is UTC+1: the day runs 23:00 to 23:00 UTC.
    assert list(got[url].busy) == [(datetime(2027, 3, 1, 23, tzinfo=UTC),
                                    datetime(2027, 3, 2, 23, tzinfo=UTC))]


def test_without_a_free_busy_report_the_events_in_range_are_read(
        radicale: Radicale, calendar: caldav.Calendar) -> None:
    put_event(calendar, START + H, START + 2 * H, rrule={"freq": "daily", "count": 2})
    put_event(calendar, START + 4 * H, START + 5 * H, transp="TRANSPARENT")
    with DavProxy(radicale.url) as proxy:
        proxy.refuse_freebusy = True
        cal = provider(connect(proxy.url, calendar))
        url = str(calendar.url).replace(radicale.url, proxy.url)
        assert cal.calendar_for_expert("e", USER) == url
        got = cal.busy([url], START, START + timedelta(days=2))[url]
        reports = [body for method, _path, body in proxy.requests if method == "REPORT"]
    assert got.error is None
    assert list(got.busy) == [(START + H, START + 2 * H),
                              (START + timedelta(days=1, hours=1),
                               START + timedelta(days=1, hours=2))]
    assert b"free-busy-query" in reports[0] and b"calendar-query" in reports[1]


def test_a_missing_calendar_is_an_error_for_that_calendar(
        radicale: Radicale, calendar: caldav.Calendar) -> None:
    cal = provider(connect(radicale.url, calendar))
    gone = radicale.url + USER + "/no-such-calendar/"
    got = cal.busy([gone, str(calendar.url)], START, START + H)
    assert got[gone].error and not got[gone].busy
    assert got[str(calendar.url)].error is None


# --------------------------------------------------------------------------- events


def test_create_twice_makes_one_event_with_the_booking_uid(
        radicale: Radicale, calendar: caldav.Calendar) -> None:
    cal = provider(connect(radicale.url, calendar))
    booking = sample_booking(booking_id="bkg_twice000000001")
    meeting = Meeting(url="https://video.example/room/7", id="room-7", provider="x")
    first = cal.create_event(booking, meeting)
    second = provider(connect(radicale.url, calendar)).create_event(booking, meeting)
    assert first == second and first.id.endswith(resource_name(booking.booking_id))
    assert first.calendar_id == str(calendar.url) and first.meeting_url == meeting.url
    [ev] = events(calendar)
    assert str(ev["uid"]) == "bkg_twice000000001@consultbook"
    assert ev["dtstart"].dt == booking.start and ev["dtend"].dt == booking.end
    text = str(ev["description"])
    assert meeting.url in text and "Chloé Customer <chloe@example.net>" in text
    assert str(ev["location"]) == meeting.url and "attendee" not in ev  # no server mail
    assert int(ev["sequence"]) == 0


def test_update_raises_sequence_and_moves_the_event(
        radicale: Radicale, calendar: caldav.Calendar) -> None:
    cal = provider(connect(radicale.url, calendar))
    booking = sample_booking(booking_id="bkg_update00000001")
    ref = cal.create_event(booking, None)
    moved = sample_booking(booking_id=booking.booking_id, start=booking.start + 2 * H,
                           end=booking.end + 2 * H, sequence=1)
    assert cal.update_event(ref, moved, None).id == ref.id
    [ev] = events(calendar)
    assert ev["dtstart"].dt == booking.start + 2 * H and int(ev["sequence"]) == 1
    # The same booking sequence again still moves SEQUENCE forward.
    cal.update_event(ref, moved, None)
    [ev] = events(calendar)
    assert int(ev["sequence"]) == 2
    # Busy time follows the event.
    url = str(calendar.url)
    assert list(cal.busy([url], booking.start, booking.end + 3 * H)[url].busy) == [
        (moved.start, moved.end)]


def test_update_of_an_event_deleted_outside_makes_it_again(
        radicale: Radicale, calendar: caldav.Calendar) -> None:
    cal = provider(connect(radicale.url, calendar))
    booking = sample_booking(booking_id="bkg_regone0000001")
    ref = cal.create_event(booking, None)
    for obj in calendar.events():
        obj.delete()
    again = cal.update_event(ref, sample_booking(booking_id=booking.booking_id, sequence=1),
                             None)
    assert again.id == ref.id and len(events(calendar)) == 1


def test_cancel_then_cancel_again(radicale: Radicale, calendar: caldav.Calendar) -> None:
    cal = provider(connect(radicale.url, calendar))
    booking = sample_booking(booking_id="bkg_cancel0000001")
    ref = cal.create_event(booking, None)
    cal.cancel_event(ref, booking)
    assert events(calendar) == []
    cal.cancel_event(ref, booking)  # already gone: success
    cal.cancel_event(EventRef("caldav", str(calendar.url) + "never.ics", str(calendar.url)),
                     booking)


def test_events_go_to_the_experts_mapped_calendar(
        radicale: Radicale, calendar: caldav.Calendar, principal: caldav.Principal) -> None:
    other = new_calendar(principal)
    cal = provider(connect(radicale.url, calendar),
                   expert_calendars=f"ben@example.com={other.url}")
    ref = cal.create_event(sample_booking(booking_id="bkg_mapped0000001",
                                          expert_email="ben@example.com"), None)
    assert ref.calendar_id == str(other.url)
    assert len(events(other)) == 1 and events(calendar) == []


# --------------------------------------------------------------------------- failures


def test_server_down_is_unavailable(tmp_path: Path) -> None:
    with Radicale(tmp_path / "own") as server:
        principal = caldav.DAVClient(url=server.url, username=USER,
                                     password=PASSWORD).principal()
        calendar = new_calendar(principal)
        cal = provider(connect(server.url, calendar))
        url = str(calendar.url)
        assert cal.busy([url], START, START + H)[url].error is None
        server.stop()
        with pytest.raises(ProviderUnavailable):
            cal.busy([url], START, START + H)
        with pytest.raises(ProviderUnavailable):
            cal.create_event(sample_booking(), None)
        server.start()
        assert cal.busy([url], START, START + H)[url].error is None


def test_5xx_is_retried_and_a_long_retry_after_ends_the_call(
        radicale: Radicale, calendar: caldav.Calendar) -> None:
    with DavProxy(radicale.url) as proxy:
        cal = provider(connect(proxy.url, calendar))
        url = str(calendar.url).replace(radicale.url, proxy.url)
        proxy.fail_next(2, 503)  # within the three attempts
        assert cal.busy([url], START, START + H)[url].error is None
        proxy.fail_next(1, 503, retry_after="120")
        with pytest.raises(ProviderUnavailable) as caught:
            cal.create_event(sample_booking(booking_id="bkg_later00000001"), None)
        assert caught.value.retry_after == 120
        proxy.fail_next(3, 502)
        with pytest.raises(ProviderUnavailable):
            cal.busy([url], START, START + H)


def test_401_is_a_broken_connection_and_other_4xx_a_rejection(
        radicale: Radicale, calendar: caldav.Calendar) -> None:
    creds = connect(radicale.url, calendar)
    revoked = provider({**creds, "password": "revoked"})
    with pytest.raises(ConnectionBroken):
        revoked.busy([str(calendar.url)], START, START + H)
    with pytest.raises(ConnectionBroken):
        revoked.create_event(sample_booking(), None)
    with DavProxy(radicale.url) as proxy:
        cal = provider(connect(proxy.url, calendar))
        proxy.fail_next(1, 400)
        with pytest.raises(ProviderRejected):
            cal.create_event(sample_booking(booking_id="bkg_refused000001"), None)


# --------------------------------------------------------------------------- contract kit


class TestCalDAVContract(CalendarProviderContract):
    """The same reusable kit the built-in calendars pass."""

    @pytest.fixture
    def calendars(self, principal: caldav.Principal) -> list[caldav.Calendar]:
        return [new_calendar(principal), new_calendar(principal)]

    @pytest.fixture
    def calendar_ids(self, calendars: list[caldav.Calendar]) -> list[str]:
        return [str(c.url) for c in calendars]

    @pytest.fixture
    def calendar_provider(self, radicale: Radicale,
                          calendars: list[caldav.Calendar]) -> CalendarProvider:
        return provider(connect(radicale.url, calendars[0]))

    @pytest.fixture
    def seed_busy(self, calendars: list[caldav.Calendar]
                  ) -> Callable[[str, Intervals], None]:
        by_url = {str(c.url): c for c in calendars}

        def seed(calendar_id: str, intervals: Intervals) -> None:
            for s, e in intervals:
                put_event(by_url[calendar_id], s, e)
        return seed

    @pytest.fixture
    def live_events(self, calendars: list[caldav.Calendar]) -> Callable[[], int]:
        return lambda: sum(len(events(c)) for c in calendars)


# --------------------------------------------------------------------------- the engine


@pytest.fixture
def expert_calendar(radicale: Radicale) -> Iterator[caldav.Calendar]:
    """The expert's only calendar on the server, deleted after the test: the connector
    picks a user's first calendar when none is named, and which of two is first is
    Radicale's listing order, so each variant of the engine test (SQLite, PostgreSQL,
    in whatever order or process they run) must find just its own."""
    dav = caldav.DAVClient(url=radicale.url, username=EXPERT, password=PASSWORD)
    calendar = new_calendar(dav.principal())
    yield calendar
    calendar.delete()


def test_the_engine_reads_busy_time_and_books_into_radicale_through_the_outbox(
        ctx: Context, shop: ShopRef, admin: Admin, store: Storefront,
        radicale: Radicale, expert_calendar: caldav.Calendar) -> None:
    """The real path: the connector's grant stored encrypted by the engine, the shop's
    calendar set to ``caldav``, the expert's busy time read through the engine's
    free/busy, a paid booking's event written by the outbox relay, then cancelled."""
    calendar = expert_calendar
    grant = connector().connect(values={"url": radicale.url, "username": EXPERT,
                                        "password": PASSWORD, "calendar": ""})
    assert grant.credentials["calendar_url"] == str(calendar.url)
    store_connection_for(ctx, shop, grant.credentials)
    set_providers(ctx, shop, calendar="caldav", video="none")
    catalog = make_catalog(admin)
    slot = datetime.fromisoformat(SLOT.replace("Z", "+00:00"))

    def offered(start: datetime) -> bool:
        day = start.strftime("%Y-%m-%d")
        r = store.get("/availability", {"service": catalog["service"], "start": day,
                                        "days": "1"})
        assert r.status_code == 200, r.text
        return start.strftime("%Y-%m-%dT%H:%M:%SZ") in [x["start"] for x in r.json["slots"]]

    assert offered(slot) and offered(slot + H)
    put_event(calendar, slot + H, slot + 2 * H)  # the expert is busy an hour later
    assert offered(slot) and not offered(slot + H)

    booking = book(admin, store, start=SLOT, catalog=catalog)
    deps = Deps(config=ctx.config, db=ctx.db, clock=ctx.clock, plugins=ctx.plugins)
    assert customer_work(deps) == ["done"]
    mine = [e for e in events(calendar) if str(e["uid"]) == f"{booking}@consultbook"]
    assert len(mine) == 1 and mine[0]["dtstart"].dt == slot
    event = claim_row(ctx, booking).external["event"]
    assert event["provider"] == "caldav" and event["calendar_id"] == str(calendar.url)

    r = admin("POST", f"/bookings/{booking}/cancel")
    assert r.status_code == 200, r.text
    assert customer_work(deps) == ["done"]
    assert [e for e in events(calendar) if str(e["uid"]) == f"{booking}@consultbook"] == []


def customer_work(deps: Any) -> list[str]:
    """The outcomes of the booking's own outbox work in one relay pass (the shop's order
    tagging is Shopify's lane, whose Admin API this test does not play)."""
    from sqlalchemy import select

    from engine.store.models import OutboxItem

    outcomes = jobs.relay_outbox(deps, "caldav-test").outcomes
    with deps.db.read() as session:
        kinds = {i: k for i, k in session.execute(select(OutboxItem.id, OutboxItem.kind))}
    return [o.status for o in outcomes if kinds.get(o.item_id, "").startswith("booking.")]


def store_connection_for(ctx: Context, shop: ShopRef, credentials: dict[str, Any]) -> None:
    from tests.plugins.conftest import connect as store_connection

    store_connection(ctx, shop, "caldav", credentials, account=EXPERT)
