"""The Zoom video provider (plugins/video_zoom) against a fake Zoom over real HTTP.

Provider instances are built by hand around a recording connection handle (as the host
would build them), so each test sees exactly what the provider stores, refreshes and
marks broken; the end-to-end test at the bottom goes through the engine's own wiring.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.bootstrap import Context
from engine.clock import FixedClock
from engine.providers import (
    BookingDetails,
    ConnectionBroken,
    Meeting,
    ProviderChoice,
    ProviderContext,
    ProviderRejected,
    ProviderUnavailable,
    RetryPolicy,
    VideoProvider,
)
from engine.services.connections import store_connection
from engine.services.shops import ShopRef
from engine.tasks import jobs
from engine.tasks.jobs import Deps
from engine.testing.contract import VideoProviderContract, sample_booking
from plugins.video_zoom import (
    HOSTS,
    MEETING_SETTINGS,
    ZoomConnector,
    ZoomVideo,
    consultbook_register_providers,
    marker,
)
from tests.conftest import NOW, Admin, Storefront, make_config
from tests.fakes.zoom import FakeZoom
from tests.plugins.conftest import set_providers
from tests.tasks.helpers import book, claim_row, eml_files

SHOP = ShopRef("shop_zoomtest", "zoomtest.myshopify.com", "Europe/Berlin")


@dataclass
class Handle:
    """A ConnectionHandle that keeps everything in memory and records what happens."""

    doc: dict[str, Any]
    provider: str = "zoom"
    account: str | None = "owner@example.com"
    saves: list[dict[str, Any]] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)

    def credentials(self) -> dict[str, Any]:
        return dict(self.doc)

    def save(self, credentials: dict[str, Any]) -> None:
        self.doc = dict(credentials)
        self.saves.append(dict(credentials))

    def mark_broken(self, reason: str) -> None:
        self.broken.append(reason)


class Sleeps(list[float]):
    """A retry policy's sleep that records instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def zclock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def zoom(zclock: FixedClock) -> Iterator[FakeZoom]:
    HOSTS.clear()  # the host lookup is per process: each test starts cold
    with FakeZoom(now=zclock.now) as fake:
        yield fake


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def policy(sleeps: Sleeps, **changes: Any) -> RetryPolicy:
    values: dict[str, Any] = {"attempts": 3, "base": 0.001, "cap": 0.01,
                              "max_retry_after": 1.5, "timeout": 1.0, "sleep": sleeps}
    values.update(changes)
    return RetryPolicy(**values)


def provider(zoom: FakeZoom, clock: FixedClock, sleeps: Sleeps,
             handle: Handle | None = None, **retry: Any) -> ZoomVideo:
    config = make_config("sqlite://", origins=zoom.origins())
    ctx = ProviderContext(shop=SHOP, choice=ProviderChoice(video="zoom"), config=config,
                          clock=clock, db=None,  # type: ignore[arg-type]  # Zoom keeps no rows
                          retry=policy(sleeps, **retry),
                          connection=handle or Handle(zoom.credentials()))
    return ZoomVideo(ctx)


def handle_of(video: ZoomVideo) -> Handle:
    assert isinstance(video.ctx.connection, Handle)
    return video.ctx.connection


@pytest.fixture
def video(zoom: FakeZoom, zclock: FixedClock, sleeps: Sleeps) -> ZoomVideo:
    return provider(zoom, zclock, sleeps)


def booking(**changes: Any) -> BookingDetails:
    values: dict[str, Any] = {"booking_id": "bkg_zoom000000000001",
                              "start": NOW + timedelta(days=2),
                              "end": NOW + timedelta(days=2, minutes=45),
                              "expert_timezone": "America/New_York"}
    values.update(changes)
    return sample_booking(**values)


def connector(zoom: FakeZoom, sleeps: Sleeps) -> ZoomConnector:
    return ZoomConnector(make_config("sqlite://", origins=zoom.origins()), policy(sleeps))


# --- the contract kit ------------------------------------------------------------------


class TestZoomPassesTheVideoContract(VideoProviderContract):
    @pytest.fixture
    def video_provider(self, video: ZoomVideo) -> VideoProvider:
        return video


# --- registration and connecting ---------------------------------------------------------


def test_the_plugin_registers_the_zoom_video_provider_and_its_form_connector() -> None:
    got: dict[str, Any] = {}

    class Registry:
        def add_video(self, cls: Any) -> Any:
            got["video"] = cls
            return cls

        def add_connector(self, cls: Any) -> Any:
            got["connector"] = cls
            return cls

    consultbook_register_providers(registry=Registry())
    assert got == {"video": ZoomVideo, "connector": ZoomConnector}
    assert ZoomVideo.connection == ZoomConnector.name == "zoom"
    assert [(f.name, f.kind) for f in ZoomConnector.fields] == [
        ("account_id", "text"), ("client_id", "text"), ("client_secret", "password")]


def test_connect_with_the_right_values_names_the_account(zoom: FakeZoom,
                                                         sleeps: Sleeps) -> None:
    grant = connector(zoom, sleeps).connect(values=zoom.values())
    assert grant.account == "owner@example.com"
    assert grant.credentials == zoom.credentials()
    token_call = zoom.calls("POST", "^/oauth/token$")[-1]
    assert token_call.query == {"grant_type": "account_credentials",
                                "account_id": zoom.account_id}
    assert token_call.headers["authorization"].startswith("Basic ")
    assert len(zoom.calls("GET", "^/v2/users/me$")) == 1


@pytest.mark.parametrize("changes", [{"client_secret": "wrong-secret"},
                                     {"client_id": "someoneElse"},
                                     {"account_id": "OtherAccount"}])
def test_connect_with_a_wrong_value_is_refused_in_words(zoom: FakeZoom, sleeps: Sleeps,
                                                        changes: dict[str, str]) -> None:
    with pytest.raises(ProviderRejected) as refused:
        connector(zoom, sleeps).connect(values=zoom.values(**changes))
    assert "Zoom refused the account ID, client ID or client secret" in str(refused.value)
    assert zoom.calls("GET", "^/v2/") == []  # nothing past the token endpoint


@pytest.mark.parametrize("changes", [{"client_secret": ""}, {"account_id": "a b"},
                                     {"client_id": ""}, {"client_secret": "sec ret"}])
def test_connect_with_a_malformed_value_never_calls_zoom(zoom: FakeZoom, sleeps: Sleeps,
                                                         changes: dict[str, str]) -> None:
    with pytest.raises(ProviderRejected):
        connector(zoom, sleeps).connect(values=zoom.values(**changes))
    assert zoom.requests == []


def test_connect_while_zoom_is_down_is_unavailable(zoom: FakeZoom, sleeps: Sleeps) -> None:
    zoom.fail("POST", "^/oauth/token$", 503, times=5)
    with pytest.raises(ProviderUnavailable):
        connector(zoom, sleeps).connect(values=zoom.values())
    assert zoom.token_calls() == 3  # the policy's attempts, then up to the caller


# --- meetings --------------------------------------------------------------------------


def test_create_makes_one_scheduled_meeting_with_a_join_url(video: ZoomVideo,
                                                            zoom: FakeZoom) -> None:
    b = booking()
    meeting = video.create_meeting(b)
    assert meeting is not None and meeting.provider == "zoom"
    (made,) = zoom.live_meetings()
    assert meeting.id == str(made["id"]) and meeting.url == made["join_url"]
    assert meeting.url.startswith("https://")
    assert made["type"] == 2 and made["host_id"] == zoom.owner["id"]
    assert made["topic"] == b.service_title
    assert made["start_time"] == "2026-12-02T12:00:00Z" and made["duration"] == 45
    assert made["timezone"] == "America/New_York"
    assert made["agenda"].split("\n")[0] == marker(b.booking_id)
    assert made["settings"]["waiting_room"] is True
    assert made["settings"]["join_before_host"] is False
    assert made["settings"] == dict(MEETING_SETTINGS)


def test_create_again_for_the_same_booking_returns_the_same_meeting(
        video: ZoomVideo, zoom: FakeZoom) -> None:
    first = video.create_meeting(booking())
    second = video.create_meeting(booking())
    assert first == second and len(zoom.live_meetings()) == 1
    other = video.create_meeting(booking(booking_id="bkg_zoom000000000002"))
    assert other is not None and other.id != first.id  # type: ignore[union-attr]
    assert len(zoom.live_meetings()) == 2


def test_a_worker_dying_between_zooms_create_and_the_store_makes_no_second_meeting(
        zoom: FakeZoom, zclock: FixedClock, sleeps: Sleeps) -> None:
    # Worker 1 made the meeting in Zoom, then died before the facade stored it: all that
    # survives is Zoom's side. Worker 2 is a new process (new handle, no token, cold
    # host cache) retrying the task.
    made = provider(zoom, zclock, sleeps).create_meeting(booking())
    HOSTS.clear()
    again = provider(zoom, zclock, sleeps).create_meeting(booking())
    assert again == made and len(zoom.live_meetings()) == 1
    assert len(zoom.calls("POST", "/meetings$")) == 1


@pytest.mark.parametrize("delay", [0.0, 1.3])
def test_a_create_whose_answer_is_lost_is_found_by_the_next_attempt(
        zoom: FakeZoom, zclock: FixedClock, sleeps: Sleeps, delay: float) -> None:
    # 0.0: Zoom's edge answers 502 after the meeting was made; 1.3 s: the answer comes
    # after the client's 1 s timeout. Either way the retry must adopt, not create.
    zoom.lose_create_answers, zoom.lose_delay = 1, delay
    meeting = provider(zoom, zclock, sleeps).create_meeting(booking())
    (made,) = zoom.live_meetings()
    assert meeting is not None and meeting.id == str(made["id"])
    assert len(zoom.calls("POST", "/meetings$")) == 1


def test_the_lookup_reads_every_page(zclock: FixedClock, sleeps: Sleeps) -> None:
    with FakeZoom(now=zclock.now, max_page_size=2) as zoom:
        HOSTS.clear()
        video = provider(zoom, zclock, sleeps)
        for n in range(5):  # the host's other meetings that day, made before ours
            video.create_meeting(booking(booking_id=f"bkg_other{n:011d}"))
        ours = video.create_meeting(booking())
        assert ours is not None
        HOSTS.clear()
        again = provider(zoom, zclock, sleeps).create_meeting(booking())
        assert again == ours and len(zoom.live_meetings()) == 6
        pages = [r for r in zoom.calls("GET", "/users/[^/]+/meetings$")
                 if r.query.get("next_page_token")]
        assert pages, "the lookup never asked for a second page"


def test_the_expert_hosts_when_the_account_has_their_user(video: ZoomVideo,
                                                          zoom: FakeZoom) -> None:
    expert = zoom.add_user("erika@example.com")
    video.create_meeting(booking())
    video.create_meeting(booking(booking_id="bkg_zoom000000000003"))
    assert {m["host_id"] for m in zoom.live_meetings()} == {expert["id"]}
    # One lookup of the expert's user for both bookings.
    assert len(zoom.calls("GET", "^/v2/users/erika@example.com$")) == 1


def test_update_moves_the_meeting_and_keeps_its_link(video: ZoomVideo,
                                                     zoom: FakeZoom) -> None:
    b = booking()
    meeting = video.create_meeting(b)
    assert meeting is not None
    moved = replace(b, start=b.start + timedelta(days=1, hours=2),
                    end=b.start + timedelta(days=1, hours=3), sequence=1,
                    service_title="Tax advice (long)")
    again = video.update_meeting(meeting, moved)
    assert again == meeting
    (made,) = zoom.live_meetings()
    assert made["start_time"] == "2026-12-03T14:00:00Z" and made["duration"] == 60
    assert made["topic"] == "Tax advice (long)" and made["join_url"] == meeting.url
    assert made["agenda"].split("\n")[0] == marker(b.booking_id)  # still findable
    # And a retry of the create after the move adopts the moved meeting.
    HOSTS.clear()
    assert video.create_meeting(moved) == meeting


def test_updating_a_meeting_zoom_no_longer_has_is_rejected(video: ZoomVideo,
                                                           zoom: FakeZoom) -> None:
    meeting = video.create_meeting(booking())
    assert meeting is not None
    zoom.deleted.add(int(meeting.id))
    with pytest.raises(ProviderRejected, match="3001"):
        video.update_meeting(meeting, booking())


def test_delete_then_delete_again(video: ZoomVideo, zoom: FakeZoom) -> None:
    meeting = video.create_meeting(booking())
    assert meeting is not None
    video.delete_meeting(meeting)
    assert zoom.live_meetings() == []
    video.delete_meeting(meeting)  # already gone: success
    assert len(zoom.calls("DELETE", "^/v2/meetings/")) == 2


def test_deleting_another_providers_meeting_calls_nothing(video: ZoomVideo,
                                                          zoom: FakeZoom) -> None:
    video.delete_meeting(Meeting(url="https://meet.google.com/abc", id="spaces/x",
                                 provider="meet"))
    video.delete_meeting(Meeting(url="https://x", id="../../users/me", provider="zoom"))
    assert zoom.requests == []


# --- rate limits and faults ----------------------------------------------------------


def test_the_daily_limit_is_unavailable_until_midnight_utc_without_sleeping(
        zclock: FixedClock, sleeps: Sleeps) -> None:
    with FakeZoom(now=zclock.now, daily_limit=2) as zoom:
        HOSTS.clear()
        video = provider(zoom, zclock, sleeps)
        first = video.create_meeting(booking())
        assert first is not None
        video.update_meeting(first, booking())  # the 2nd create/update of the day
        with pytest.raises(ProviderUnavailable) as unavailable:
            video.create_meeting(booking(booking_id="bkg_zoom000000000009"))
        # NOW is 12:00 UTC: Zoom lets this user create again in 12 hours.
        assert unavailable.value.retry_after == pytest.approx(12 * 3600)
        assert sleeps == [] and len(zoom.calls("POST", "/meetings$")) == 2
        zclock.advance(12 * 3600)
        assert video.create_meeting(booking(booking_id="bkg_zoom000000000009")) is not None


def test_a_short_429_is_waited_out_in_the_call(video: ZoomVideo, zoom: FakeZoom,
                                               sleeps: Sleeps) -> None:
    zoom.fail("POST", "/meetings$", 429, body={"code": 429, "message": "Too many requests"},
              headers={"Retry-After": "1", "X-RateLimit-Type": "QPS"})
    assert video.create_meeting(booking()) is not None
    assert sleeps == [1.0] and len(zoom.live_meetings()) == 1


def test_a_429_without_retry_after_backs_off_and_then_gives_the_outbox_the_task(
        video: ZoomVideo, zoom: FakeZoom, sleeps: Sleeps) -> None:
    zoom.fail("POST", "/meetings$", 429, times=10,
              body={"code": 429, "message": "Too many requests"})
    with pytest.raises(ProviderUnavailable) as unavailable:
        video.create_meeting(booking())
    assert unavailable.value.retry_after is None and len(sleeps) == 2
    assert zoom.live_meetings() == []


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_retried_then_unavailable(video: ZoomVideo, zoom: FakeZoom, status: int) -> None:
    zoom.fail("POST", "/meetings$", status, times=1)
    assert video.create_meeting(booking()) is not None
    zoom.fail("DELETE", "^/v2/meetings/", status, times=10, headers={"Retry-After": "120"})
    meeting = video.create_meeting(booking())
    assert meeting is not None
    with pytest.raises(ProviderUnavailable) as unavailable:
        video.delete_meeting(meeting)
    assert unavailable.value.retry_after == 120.0  # longer than the policy waits in-call


def test_a_timeout_is_retried(video: ZoomVideo, zoom: FakeZoom) -> None:
    zoom.fail("GET", "/users/[^/]+/meetings$", 0, delay=1.3)
    assert video.create_meeting(booking()) is not None
    assert len(zoom.live_meetings()) == 1


@pytest.mark.parametrize("status, code", [(400, 300), (404, 1001), (403, 200)])
def test_4xx_is_rejected(video: ZoomVideo, zoom: FakeZoom, status: int, code: int) -> None:
    zoom.fail("POST", "/meetings$", status, body={"code": code, "message": "no"})
    with pytest.raises(ProviderRejected, match=f"HTTP {status} code {code}"):
        video.create_meeting(booking())
    assert handle_of(video).broken == []


# --- tokens ----------------------------------------------------------------------------


def test_the_token_is_cached_with_the_connection_and_reused(
        zoom: FakeZoom, zclock: FixedClock, sleeps: Sleeps) -> None:
    handle = Handle(zoom.credentials())
    provider(zoom, zclock, sleeps, handle).create_meeting(booking())
    assert zoom.token_calls() == 1 and len(handle.saves) == 1
    assert handle.doc["access_token"] in zoom.tokens
    # Another process, same connection: no new token.
    provider(zoom, zclock, sleeps, handle).create_meeting(booking(booking_id="bkg_zoom0002"))
    assert zoom.token_calls() == 1


def test_a_token_near_its_expiry_is_refreshed_before_the_call(
        zoom: FakeZoom, zclock: FixedClock, sleeps: Sleeps) -> None:
    handle = Handle(zoom.credentials())
    provider(zoom, zclock, sleeps, handle).create_meeting(booking())
    zclock.advance(3599 - 200)  # inside the five-minute margin
    provider(zoom, zclock, sleeps, handle).create_meeting(booking(booking_id="bkg_zoom0003"))
    assert zoom.token_calls() == 2 and handle.broken == []
    # Refreshed before asking, not after a 401: one lookup per create, none repeated.
    assert len(zoom.calls("GET", "/users/[^/]+/meetings$")) == 2


def test_a_401_refreshes_the_token_once(video: ZoomVideo, zoom: FakeZoom) -> None:
    video.create_meeting(booking())
    zoom.expire_tokens()  # Zoom forgot our token early (or another token replaced it)
    assert video.create_meeting(booking(booking_id="bkg_zoom0004")) is not None
    assert zoom.token_calls() == 2 and handle_of(video).broken == []
    zoom.fail("GET", "/users/[^/]+/meetings$", 401, body={"code": 124, "message": "Invalid"})
    assert video.create_meeting(booking(booking_id="bkg_zoom0005")) is not None
    assert zoom.token_calls() == 3


def test_a_revoked_app_is_a_broken_connection(video: ZoomVideo, zoom: FakeZoom) -> None:
    video.create_meeting(booking())
    zoom.revoke()
    with pytest.raises(ConnectionBroken, match="refused the app's credentials"):
        video.create_meeting(booking(booking_id="bkg_zoom0006"))
    assert handle_of(video).broken and len(zoom.live_meetings()) == 1


def test_a_401_after_a_fresh_token_is_a_broken_connection(video: ZoomVideo,
                                                         zoom: FakeZoom) -> None:
    zoom.fail("GET", "/users/[^/]+/meetings$", 401, times=2,
              body={"code": 124, "message": "Invalid access token."})
    with pytest.raises(ConnectionBroken):
        video.create_meeting(booking())
    assert handle_of(video).broken and zoom.live_meetings() == []


def test_a_token_without_the_meeting_scope_is_a_broken_connection(
        video: ZoomVideo, zoom: FakeZoom) -> None:
    zoom.fail("POST", "/meetings$", 400, body={
        "code": 4711, "message": "Invalid access token, does not contain scopes:"
                                 "[meeting:write:meeting:admin]."})
    with pytest.raises(ConnectionBroken, match="lacks a scope"):
        video.create_meeting(booking())


# --- generated bookings ----------------------------------------------------------------

_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"),
                min_size=1, max_size=300)
_EXAMPLES = itertools.count()
_ZONES = st.sampled_from(["Europe/Berlin", "America/New_York", "Asia/Kolkata",
                          "Pacific/Chatham", "UTC", "Australia/Lord_Howe"])


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(title=_TEXT, description=st.text(max_size=2500), zone=_ZONES,
       start_minutes=st.integers(0, 60 * 24 * 60), length=st.integers(1, 600),
       seconds=st.integers(0, 59), suffix=st.text("abcdefghijklmnop0123456789", min_size=4,
                                                  max_size=20))
def test_any_booking_makes_a_meeting_zoom_accepts_and_finds_again(
        video: ZoomVideo, zoom: FakeZoom, title: str, description: str, zone: str,
        start_minutes: int, length: int, seconds: int, suffix: str) -> None:
    start = datetime(2026, 12, 1, tzinfo=UTC) + timedelta(minutes=start_minutes,
                                                          seconds=seconds)
    # A fresh booking id per example (the fake outlives examples), so each must be new.
    b = booking(booking_id=f"bkg_{suffix}{next(_EXAMPLES)}", service_title=title,
                description=description, expert_timezone=zone, start=start,
                end=start + timedelta(minutes=length))
    before = len(zoom.live_meetings())
    first = video.create_meeting(b)
    again = video.create_meeting(b)
    assert first is not None and first == again
    mine = [m for m in zoom.live_meetings()
            if m["agenda"].split("\n")[0] == marker(b.booking_id)]
    assert len(mine) == 1
    assert len(zoom.live_meetings()) == before + 1
    assert mine[0]["duration"] >= length


# --- end to end: a shop books, the outbox makes one Zoom meeting -----------------------


@pytest.fixture
def e2e_zoom(clock: FixedClock) -> Iterator[FakeZoom]:
    HOSTS.clear()
    with FakeZoom(now=clock.now) as fake:
        yield fake


@pytest.fixture
def overrides(e2e_zoom: FakeZoom) -> dict[str, Any]:
    return {"origins": e2e_zoom.origins(), "outbox_retry_seconds": 10.0}


@pytest.fixture
def zoom_ctx(ctx: Context) -> Context:
    """The engine's context with the Zoom plugin loaded: from its entry point where the
    package metadata has it (CI installs the checkout), else registered by name -- the
    same module either way, and once."""
    import plugins.video_zoom as zoom_plugin

    # type(...): the facade's class, wherever the host keeps it.
    ctx.plugins = type(ctx.plugins).load(ctx.config, ctx.db, ctx.keyring, ctx.clock,
                                         extra=[("video_zoom", zoom_plugin)])
    assert ctx.plugins.registry.get("video", "zoom") is ZoomVideo
    return ctx


@pytest.fixture
def shop(ctx: Context) -> ShopRef:
    """A shop without a Shopify access token (no order tagging to fake here)."""
    from engine.services.shops import install_shop

    return install_shop(ctx.db, ctx.clock, ctx.keyring, "alpha.myshopify.com", "Europe/Berlin")


def test_a_booking_gets_exactly_one_zoom_meeting_and_its_mail_the_join_url(
        zoom_ctx: Context, shop: ShopRef, admin: Admin, store: Storefront,
        e2e_zoom: FakeZoom, clock: FixedClock, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = zoom_ctx
    grant = ctx.plugins.connector("zoom").connect(values=e2e_zoom.values())  # type: ignore[attr-defined]
    store_connection(ctx.plugins, shop, "zoom", grant)
    set_providers(ctx, shop, video="zoom")

    # The first worker dies right after Zoom made the meeting, before the facade could
    # store it: the outbox only sees the step fail and reschedules it.
    real = ZoomVideo.create_meeting
    deaths: list[str] = []

    def dies_after_zoom(self: ZoomVideo, details: BookingDetails) -> Meeting | None:
        made = real(self, details)
        if not deaths:
            deaths.append(details.booking_id)
            raise ProviderUnavailable("the worker died", provider="zoom")
        return made

    monkeypatch.setattr(ZoomVideo, "create_meeting", dies_after_zoom)
    booking_id = book(admin, store)
    deps = Deps(config=ctx.config, db=ctx.db, clock=ctx.clock, plugins=ctx.plugins)
    jobs.relay_outbox(deps, "worker-1")
    assert deaths == [booking_id] and len(e2e_zoom.live_meetings()) == 1

    clock.advance(ctx.config.outbox_retry_max_seconds + 1)
    jobs.relay_outbox(deps, "worker-2")
    (meeting,) = e2e_zoom.live_meetings()
    assert len(e2e_zoom.calls("POST", "/meetings$")) == 1
    assert claim_row(ctx, booking_id).meeting_url == meeting["join_url"]
    assert meeting["agenda"].split("\n")[0] == marker(booking_id)
    customer = [m for m in eml_files(Path(ctx.config.outbox_dir))
                if "jon@example.com" in str(m["To"])]
    assert len(customer) == 1
    assert meeting["join_url"] in customer[0].as_string()

    # Another relay has nothing left to do: still one meeting, one mail.
    jobs.relay_outbox(deps, "worker-3")
    assert len(e2e_zoom.live_meetings()) == 1
    assert len(e2e_zoom.calls("POST", "/meetings$")) == 1
