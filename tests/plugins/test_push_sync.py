"""Push sync end to end: the app served on 127.0.0.1 over real HTTP, the fake Google and
the fake Microsoft calling its notification endpoints, free/busy through the engine's
FreeBusy (the availability path).

The host side (``consultbook_register_routes``/``_jobs`` and ``invalidate_busy``) is
played by :class:`StandInHost` until the engine's host serves plugin routes and jobs:
it gives exactly what the contract's ``RouteHost``/``JobHost`` name."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import sqlalchemy as sa

from engine.bootstrap import Context
from engine.providers import ProviderContext
from engine.providers.push import LIVE, ORPHAN, RENEW, ChannelStore
from engine.services.shops import ShopRef
from engine.store.models import Expert, ShopSettings
from engine.store.providers_models import BusyCacheEntry
from engine.testing.push import PushSyncContract
from plugins.calendar_google import push as gpush
from plugins.calendar_outlook import push as opush
from tests.conftest import NOW
from tests.fakes.google import FakeGoogle
from tests.fakes.microsoft import FakeMicrosoft
from tests.fakes.tls import ca_file
from tests.plugins.conftest import add_experts, connect, google_config, set_providers
from web.app import create_app

DAY = 86400


class _Threading(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


class Served:
    """A WSGI server thread on 127.0.0.1 whose app is set once the context exists."""

    def __init__(self) -> None:
        self.app: Any = None
        self.server = make_server("127.0.0.1", 0, self._call, server_class=_Threading,
                                  handler_class=_Quiet)
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def _call(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.app(environ, start_response)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class StandInHost:
    """The contract's RouteHost/JobHost over a bootstrapped Context (see module doc)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.clock = ctx.clock
        self.config = ctx.config
        self.db = ctx.db
        self.invalidated: list[tuple[str, str | None]] = []

    def _shops(self, name: str | None = None) -> list[str]:
        with self.ctx.db.read() as session:
            query = sa.select(ShopSettings.shop_id)
            if name:
                query = query.where(ShopSettings.calendar_provider == name)
            return list(session.scalars(query))

    def contexts(self, *, kind: str, name: str) -> Iterator[ProviderContext]:
        for shop_id in self._shops(name):
            yield self.context_for(shop_id, kind, name)

    def context_for(self, shop_id: str, kind: str, name: str) -> ProviderContext:
        return self.ctx.plugins.calendar_for(shop_id).ctx

    def experts(self, shop_id: str) -> list[Any]:
        with self.ctx.db.read() as session:
            return list(session.scalars(sa.select(Expert).where(Expert.shop_id == shop_id)))

    def invalidate_busy(self, shop_id: str, expert_id: str | None = None) -> None:
        self.invalidated.append((shop_id, expert_id))
        with self.ctx.db.write() as session:
            key = f"%:{expert_id}:%" if expert_id else "%"
            session.execute(sa.delete(BusyCacheEntry).where(
                BusyCacheEntry.shop_id == shop_id, BusyCacheEntry.key.like(key)))


@pytest.fixture
def served() -> Iterator[Served]:
    server = Served()
    yield server
    server.close()


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    return sqlite_url


@pytest.fixture
def ms() -> Iterator[FakeMicrosoft]:
    with FakeMicrosoft() as fake:
        yield fake


@pytest.fixture
def overrides(google: FakeGoogle, ms: FakeMicrosoft, served: Served) -> dict[str, Any]:
    return {**google_config(google), "origins": {**google.origins(), **ms.origins()},
            "microsoft_client_id": ms.client_id, "microsoft_client_secret": ms.client_secret,
            "provider_ca_bundle": ca_file(), "app_url": served.url,
            "freebusy_ttl_seconds": 120, "freebusy_max_stale_seconds": 900}


@pytest.fixture
def host(ctx: Context, served: Served, google: FakeGoogle, ms: FakeMicrosoft) -> StandInHost:
    stand_in = StandInHost(ctx)
    app = create_app(ctx)
    app.add_route(gpush.NOTIFY_PATH, gpush.GoogleNotifications(stand_in))
    app.add_route(opush.NOTIFY_PATH, opush.GraphNotifications(stand_in))
    served.app = app
    google.now = ms.now = lambda: ctx.clock.now().timestamp()
    return stand_in


@pytest.fixture(params=["google", "outlook"])
def kind(request: Any, ctx: Context, shop: ShopRef, host: StandInHost, google: FakeGoogle,
         ms: FakeMicrosoft, client: Any) -> dict[str, Any]:
    """Everything a test needs for one provider, with two experts connected."""
    gpush.METADATA.create_all(ctx.db.engine)
    opush.METADATA.create_all(ctx.db.engine)
    emails = ["ada@example.com", "bob@example.com"]
    experts = add_experts(ctx, shop, list(emails))
    if request.param == "google":
        connect(ctx, shop, "google", {"refresh_token": google.issue_refresh_token()})
        set_providers(ctx, shop, calendar="google")
        for e in emails:
            google.busy[e] = []
        return {"name": "google", "fake": google, "job": gpush.run_job,
                "store": ChannelStore(ctx.db, gpush.CHANNELS), "experts": experts,
                "emails": emails, "live": lambda e=None: google.live_channels(e)}
    from tests.plugins.test_calendar_outlook import oauth_connect

    oauth_connect(ctx, client, shop)
    set_providers(ctx, shop, calendar="outlook", video="none")
    for e in emails:
        ms.schedules[e] = {"busy": []}
    return {"name": "outlook", "fake": ms, "job": opush.run_job,
            "store": ChannelStore(ctx.db, opush.CHANNELS), "experts": experts,
            "emails": emails, "live": lambda e=None: ms.live_subscriptions(e)}


def busy(ctx: Context, shop: ShopRef, kind: dict[str, Any]) -> dict[str, list[Any]]:
    start = int((NOW + timedelta(days=1)).timestamp())
    experts = dict(zip(kind["experts"], kind["emails"], strict=True))
    return ctx.busy_source.shop_busy(shop.id, experts, start, start + DAY)


def forge(kind: dict[str, Any], channel_id: str) -> int:
    if kind["name"] == "google":
        return int(kind["fake"].notify(channel_id, token="not-the-token"))
    return int(kind["fake"].notify(channel_id, client_state="not-the-state"))


def test_a_busy_event_reaches_availability_without_waiting_for_the_ttl(
        ctx: Context, shop: ShopRef, host: StandInHost, kind: dict[str, Any]) -> None:
    summary = kind["job"](host)
    assert summary["opened"] == 2 and summary["failed"] == 0
    assert len(kind["live"]()) == 2
    assert busy(ctx, shop, kind) == {e: [] for e in kind["experts"]}
    ada = kind["experts"][0]
    at = NOW + timedelta(days=1, hours=3)
    statuses = kind["fake"].add_busy(kind["emails"][0], at, at + timedelta(hours=1))
    assert statuses == [200 if kind["name"] == "google" else 202]
    assert host.invalidated == [(shop.id, ada)]
    ctx.clock.advance(1)  # type: ignore[attr-defined]  # well inside the 120 s TTL
    got = busy(ctx, shop, kind)
    assert got[ada] == [(int(at.timestamp()), int(at.timestamp()) + 3600)]
    assert got[kind["experts"][1]] == []


def test_forged_token_or_client_state_is_refused_and_nothing_is_invalidated(
        ctx: Context, shop: ShopRef, host: StandInHost, kind: dict[str, Any]) -> None:
    kind["job"](host)
    channel = kind["live"](kind["emails"][0])[0]
    assert forge(kind, channel["id"]) == 403
    assert host.invalidated == []
    # A channel we never made: Google's is 404 (and remembered, to be stopped);
    # Graph's notification is ignored (403: nothing genuine in it).
    if kind["name"] == "google":
        stranger = f"cb-{shop.id}-0123456789abcdef"
        assert kind["fake"].notify(stranger, address=channel["address"]) == 404
        assert kind["store"].get(stranger).state == ORPHAN
        kind["job"](host)  # the job asks Google to stop it, and forgets it
        assert kind["store"].get(stranger) is None
    else:
        assert kind["fake"].notify("00000000-0000-0000-0000-000000000000",
                                   url=channel["notificationUrl"]) == 403
    assert host.invalidated == []


def test_graph_validation_handshake_is_echoed_as_plain_text(
        ctx: Context, shop: ShopRef, host: StandInHost, ms: FakeMicrosoft,
        served: Served, client: Any) -> None:
    import requests

    token = "Validation: Testing client application <b>&x"
    resp = requests.post(served.url + opush.NOTIFY_PATH, params={"validationToken": token},
                         timeout=5)
    assert resp.status_code == 200 and resp.text == token
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert requests.post(served.url + opush.NOTIFY_PATH, data=b"{not json",
                         timeout=5).status_code == 400


def test_channels_are_renewed_before_they_expire(
        ctx: Context, shop: ShopRef, host: StandInHost, kind: dict[str, Any]) -> None:
    kind["job"](host)
    first = {c.expert_id: c for c in kind["store"].for_shop(shop.id)}
    # Not yet due: nothing changes.
    assert kind["job"](host) == {"opened": 0, "renewed": 0, "closed": 0, "failed": 0}
    lifetime = 7 * DAY if kind["name"] == "google" else 3 * DAY
    ctx.clock.advance(lifetime - DAY + 60)  # type: ignore[attr-defined]
    summary = kind["job"](host)
    now = ctx.clock.now().timestamp()
    after = {c.expert_id: c for c in kind["store"].for_shop(shop.id)}
    assert set(after) == set(first)
    for channel in after.values():
        assert channel.expires_at - now > DAY and channel.state == LIVE
    if kind["name"] == "google":  # replaced: new channel opened, old one stopped
        assert summary["opened"] == 2 and summary["closed"] == 2
        assert all(after[e].id != first[e].id for e in first)
    else:  # renewed in place
        assert summary["renewed"] == 2
        assert all(after[e].id == first[e].id for e in first)
    assert len(kind["live"]()) == 2


def test_a_channel_the_service_stopped_is_recreated(
        ctx: Context, shop: ShopRef, host: StandInHost, kind: dict[str, Any]) -> None:
    kind["job"](host)
    ada = kind["experts"][0]
    channel = next(c for c in kind["store"].for_shop(shop.id) if c.expert_id == ada)
    if kind["name"] == "google":
        kind["fake"].drop_channel(channel.id)
        # Google says nothing; the replacement comes at renewal time at the latest.
        ctx.clock.advance(6 * DAY + 60)  # type: ignore[attr-defined]
    else:
        assert kind["fake"].remove_subscription(channel.id) == 202
        assert kind["store"].get(channel.id).state == "recreate"
        assert (shop.id, ada) in host.invalidated
    kind["job"](host)
    live = kind["live"](kind["emails"][0])
    assert len(live) == 1 and live[0]["id"] != channel.id
    assert kind["store"].get(channel.id) is None


def test_reauthorization_required_renews_on_the_next_run(
        ctx: Context, shop: ShopRef, host: StandInHost, ms: FakeMicrosoft,
        client: Any) -> None:
    gpush.METADATA.create_all(ctx.db.engine)
    opush.METADATA.create_all(ctx.db.engine)
    from tests.plugins.test_calendar_outlook import oauth_connect

    add_experts(ctx, shop, ["ada@example.com"])
    oauth_connect(ctx, client, shop)
    set_providers(ctx, shop, calendar="outlook", video="none")
    opush.run_job(host)
    store = ChannelStore(ctx.db, opush.CHANNELS)
    (sub,) = store.for_shop(shop.id)
    assert ms.notify(sub.id, lifecycle="reauthorizationRequired") == 202
    assert store.get(sub.id).state == RENEW and host.invalidated == []
    ctx.clock.advance(60)  # type: ignore[attr-defined]
    assert opush.run_job(host)["renewed"] == 1
    assert store.get(sub.id).state == LIVE


def test_push_down_polling_still_works_and_freshness_fails_closed(
        ctx: Context, shop: ShopRef, host: StandInHost, kind: dict[str, Any]) -> None:
    fake = kind["fake"]
    watch = "/events/watch$" if kind["name"] == "google" else "/subscriptions$"
    fake.fail("POST", watch, 503, times=100)
    summary = kind["job"](host)
    assert summary["opened"] == 0 and summary["failed"] == 2
    ada = kind["experts"][0]
    assert busy(ctx, shop, kind)[ada] == []
    at = NOW + timedelta(days=1, hours=2)
    if kind["name"] == "google":
        fake.busy[kind["emails"][0]].append((at, at + timedelta(hours=1)))
    else:
        fake.schedules[kind["emails"][0]]["busy"].append((at, at + timedelta(hours=1),
                                                          "busy"))
    assert busy(ctx, shop, kind)[ada] == []  # no push: the cached answer holds ...
    ctx.clock.advance(121)  # type: ignore[attr-defined]
    assert busy(ctx, shop, kind)[ada] == [(int(at.timestamp()), int(at.timestamp()) + 3600)]
    # ... and with the provider down too, the cache serves until the freshness limit,
    # then the expert is hidden (fail closed).
    fake.fail("POST", "freeBusy$|getSchedule$", 503, times=1000)
    ctx.clock.advance(600)  # type: ignore[attr-defined]
    assert busy(ctx, shop, kind)[ada] == [(int(at.timestamp()), int(at.timestamp()) + 3600)]
    ctx.clock.advance(400)  # type: ignore[attr-defined]
    start = int((NOW + timedelta(days=1)).timestamp())
    assert busy(ctx, shop, kind)[ada] == [(start, start + DAY)]


def test_no_channels_without_https(ctx: Context, shop: ShopRef, google: FakeGoogle) -> None:
    from engine.providers.push import notification_url

    assert notification_url("http://shop-app.example.com", "/x") is None
    assert notification_url("https://app.example.com/", "/x") == "https://app.example.com/x"
    assert notification_url("http://127.0.0.1:8000", "/x") == "http://127.0.0.1:8000/x"


class TestGooglePushContract(PushSyncContract):
    @pytest.fixture
    def push_kit(self, ctx: Context, shop: ShopRef, host: StandInHost, google: FakeGoogle,
                 client: Any) -> dict[str, Any]:
        gpush.METADATA.create_all(ctx.db.engine)
        ids = add_experts(ctx, shop, ["ada@example.com"])
        connect(ctx, shop, "google", {"refresh_token": google.issue_refresh_token()})
        set_providers(ctx, shop, calendar="google")
        google.busy["ada@example.com"] = []
        return {"run_job": lambda: gpush.run_job(host), "expert_id": ids[0],
                "channels": lambda: ChannelStore(ctx.db, gpush.CHANNELS).for_shop(shop.id),
                "change": lambda: google.add_busy("ada@example.com", NOW + timedelta(days=1),
                                                  NOW + timedelta(days=1, hours=1)),
                "forge": lambda cid: google.notify(cid, token="forged"),
                "invalidated": lambda: host.invalidated,
                "advance": lambda s: ctx.clock.advance(s)}  # type: ignore[attr-defined]


class TestOutlookPushContract(PushSyncContract):
    @pytest.fixture
    def push_kit(self, ctx: Context, shop: ShopRef, host: StandInHost, ms: FakeMicrosoft,
                 client: Any) -> dict[str, Any]:
        from tests.plugins.test_calendar_outlook import oauth_connect

        opush.METADATA.create_all(ctx.db.engine)
        ids = add_experts(ctx, shop, ["ada@example.com"])
        oauth_connect(ctx, client, shop)
        set_providers(ctx, shop, calendar="outlook", video="none")
        ms.schedules["ada@example.com"] = {"busy": []}
        return {"run_job": lambda: opush.run_job(host), "expert_id": ids[0],
                "channels": lambda: ChannelStore(ctx.db, opush.CHANNELS).for_shop(shop.id),
                "change": lambda: ms.add_busy("ada@example.com", NOW + timedelta(days=1),
                                              NOW + timedelta(days=1, hours=1)),
                "forge": lambda cid: ms.notify(cid, client_state="forged"),
                "invalidated": lambda: host.invalidated,
                "advance": lambda s: ctx.clock.advance(s)}  # type: ignore[attr-defined]

