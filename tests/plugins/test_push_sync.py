"""Push sync end to end through the real host: the app from ``create_app(ctx)`` (the
plugins' notification routes mounted by ``consultbook_register_routes``) served on
127.0.0.1 over real HTTP, the fake Google and the fake Microsoft calling it, the jobs run
by the engine's job runner (``consultbook_register_jobs``, the once-per-period claim),
the channel tables made by the plugins' own migrations, busy time invalidated by the
host's ``invalidate_busy`` and read through the engine's FreeBusy (the availability
path). Every scenario runs on SQLite and PostgreSQL; the main ones once more with the
Redis free/busy cache."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import sqlalchemy as sa

from engine.bootstrap import Context, bootstrap
from engine.providers.push import LIVE, ORPHAN, RENEW, ChannelStore, notification_url
from engine.services.shops import ShopRef
from engine.store.migrate import check_schema
from engine.tasks import jobs
from engine.testing.push import PushSyncContract
from plugins.calendar_google import push as gpush
from plugins.calendar_outlook import push as opush
from tests.conftest import NOW, REDIS_URL
from tests.fakes.google import FakeGoogle
from tests.fakes.microsoft import FakeMicrosoft
from tests.fakes.tls import ca_file
from tests.plugins.conftest import add_experts, connect, google_config, set_providers
from web.app import create_app

DAY = 86400
JOBS = {"google": "google_push", "outlook": "outlook_push"}


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


class Host:
    """The test's handle on the real host: runs a plugin job through the engine's job
    runner and records what reached the host's ``invalidate_busy`` (the real one runs)."""

    def __init__(self, ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ctx = ctx
        self.invalidated: list[tuple[str, str | None]] = []
        real = ctx.plugins.invalidate_busy

        def recording(shop_id: str, expert_id: str | None = None) -> None:
            self.invalidated.append((shop_id, expert_id))
            real(shop_id, expert_id)

        monkeypatch.setattr(ctx.plugins, "invalidate_busy", recording)

    def run(self, name: str) -> dict[str, Any]:
        """One run of plugin job ``name`` a period after the last one (the runner claims
        one run per period: the clock moves on by the job's period first)."""
        job = next(j for j in self.ctx.plugins.jobs if j.name == name)
        self.ctx.clock.advance(job.every_seconds)  # type: ignore[attr-defined]
        deps = jobs.Deps(config=self.ctx.config, db=self.ctx.db, clock=self.ctx.clock,
                         plugins=self.ctx.plugins)
        got = jobs.run_plugin_job(deps, f"plugin:{name}", "test")
        assert "opened" in got or "disabled" in got, got  # ran, and did not raise
        return got


@pytest.fixture
def served() -> Iterator[Served]:
    server = Served()
    yield server
    server.close()


@pytest.fixture
def ms() -> Iterator[FakeMicrosoft]:
    with FakeMicrosoft() as fake:
        yield fake


@pytest.fixture
def cache_overrides() -> dict[str, Any]:
    """Free/busy cache settings (the database cache; the Redis class overrides it)."""
    return {}


@pytest.fixture
def overrides(google: FakeGoogle, ms: FakeMicrosoft, served: Served,
              cache_overrides: dict[str, Any]) -> dict[str, Any]:
    return {**google_config(google), "origins": {**google.origins(), **ms.origins()},
            "microsoft_client_id": ms.client_id, "microsoft_client_secret": ms.client_secret,
            "provider_ca_bundle": ca_file(), "app_url": served.url,
            "freebusy_ttl_seconds": 120, "freebusy_max_stale_seconds": 900,
            **cache_overrides}


@pytest.fixture
def host(ctx: Context, served: Served, google: FakeGoogle, ms: FakeMicrosoft,
         monkeypatch: pytest.MonkeyPatch) -> Host:
    handle = Host(ctx, monkeypatch)
    served.app = create_app(ctx)  # the plugins' routes are mounted by the app itself
    google.now = ms.now = lambda: ctx.clock.now().timestamp()
    return handle


@pytest.fixture(params=["google", "outlook"])
def kind(request: Any, ctx: Context, shop: ShopRef, host: Host, google: FakeGoogle,
         ms: FakeMicrosoft, client: Any) -> dict[str, Any]:
    """Everything a test needs for one provider, with two experts connected."""
    emails = ["ada@example.com", "bob@example.com"]
    experts = add_experts(ctx, shop, list(emails))
    name = request.param
    job: Callable[[], dict[str, Any]] = lambda: host.run(JOBS[name])  # noqa: E731
    if name == "google":
        connect(ctx, shop, "google", {"refresh_token": google.issue_refresh_token()})
        set_providers(ctx, shop, calendar="google")
        for e in emails:
            google.busy[e] = []
        host.invalidated.clear()  # connecting invalidates the shop; count from here
        return {"name": name, "fake": google, "job": job,
                "store": ChannelStore(ctx.db, gpush.CHANNELS), "experts": experts,
                "emails": emails, "live": lambda e=None: google.live_channels(e)}
    from tests.plugins.test_calendar_outlook import oauth_connect

    oauth_connect(ctx, client, shop)
    set_providers(ctx, shop, calendar="outlook", video="none")
    for e in emails:
        ms.schedules[e] = {"busy": []}
    host.invalidated.clear()
    return {"name": name, "fake": ms, "job": job,
            "store": ChannelStore(ctx.db, opush.CHANNELS), "experts": experts,
            "emails": emails, "live": lambda e=None: ms.live_subscriptions(e)}


def test_the_channel_tables_come_from_the_plugins_migrations(ctx: Context) -> None:
    tables = set(sa.inspect(ctx.db.engine).get_table_names())
    assert {"calendar_google_channels", "calendar_outlook_subscriptions"} <= tables
    check_schema(ctx.db.engine)  # every head applied, the plugins' included
    names = [j.name for j in ctx.plugins.jobs]
    assert "google_push" in names and "outlook_push" in names


def test_a_shops_channels_go_with_the_shop(ctx: Context, shop: ShopRef, host: Host,
                                           kind: dict[str, Any]) -> None:
    kind["job"]()
    assert len(kind["store"].for_shop(shop.id)) == 2
    from engine.store.models import Shop

    with ctx.db.write() as session:  # shop/redact deletes the row: ON DELETE CASCADE
        session.execute(sa.delete(Shop).where(Shop.id == shop.id))
    assert kind["store"].for_shop(shop.id) == []


def busy(ctx: Context, shop: ShopRef, kind: dict[str, Any]) -> dict[str, list[Any]]:
    start = int((NOW + timedelta(days=1)).timestamp())
    experts = dict(zip(kind["experts"], kind["emails"], strict=True))
    return ctx.busy_source.shop_busy(shop.id, experts, start, start + DAY)


def forge(kind: dict[str, Any], channel_id: str) -> int:
    if kind["name"] == "google":
        return int(kind["fake"].notify(channel_id, token="not-the-token"))
    return int(kind["fake"].notify(channel_id, client_state="not-the-state"))


def test_a_busy_event_reaches_availability_without_waiting_for_the_ttl(
        ctx: Context, shop: ShopRef, host: Host, kind: dict[str, Any]) -> None:
    summary = kind["job"]()
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
        ctx: Context, shop: ShopRef, host: Host, kind: dict[str, Any]) -> None:
    kind["job"]()
    channel = kind["live"](kind["emails"][0])[0]
    assert forge(kind, channel["id"]) == 403
    assert host.invalidated == []
    # A channel we never made: Google's is 404 (and remembered, to be stopped);
    # Graph's notification is ignored (403: nothing genuine in it).
    if kind["name"] == "google":
        stranger = f"cb-{shop.id}-0123456789abcdef"
        assert kind["fake"].notify(stranger, address=channel["address"]) == 404
        assert kind["store"].get(stranger).state == ORPHAN
        kind["job"]()  # the job asks Google to stop it, and forgets it
        assert kind["store"].get(stranger) is None
    else:
        assert kind["fake"].notify("00000000-0000-0000-0000-000000000000",
                                   url=channel["notificationUrl"]) == 403
    assert host.invalidated == []


def test_graph_validation_handshake_is_echoed_as_plain_text(
        ctx: Context, shop: ShopRef, host: Host, ms: FakeMicrosoft,
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
        ctx: Context, shop: ShopRef, host: Host, kind: dict[str, Any]) -> None:
    kind["job"]()
    first = {c.expert_id: c for c in kind["store"].for_shop(shop.id)}
    # Not yet due: nothing changes.
    assert kind["job"]() == {"opened": 0, "renewed": 0, "closed": 0, "failed": 0}
    lifetime = 7 * DAY if kind["name"] == "google" else 3 * DAY
    ctx.clock.advance(lifetime - DAY + 60)  # type: ignore[attr-defined]
    summary = kind["job"]()
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
        ctx: Context, shop: ShopRef, host: Host, kind: dict[str, Any]) -> None:
    kind["job"]()
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
    kind["job"]()
    live = kind["live"](kind["emails"][0])
    assert len(live) == 1 and live[0]["id"] != channel.id
    assert kind["store"].get(channel.id) is None


def test_reauthorization_required_renews_on_the_next_run(
        ctx: Context, shop: ShopRef, host: Host, ms: FakeMicrosoft,
        client: Any) -> None:
    from tests.plugins.test_calendar_outlook import oauth_connect

    add_experts(ctx, shop, ["ada@example.com"])
    oauth_connect(ctx, client, shop)
    set_providers(ctx, shop, calendar="outlook", video="none")
    host.run("outlook_push")
    host.invalidated.clear()
    store = ChannelStore(ctx.db, opush.CHANNELS)
    (sub,) = store.for_shop(shop.id)
    assert ms.notify(sub.id, lifecycle="reauthorizationRequired") == 202
    assert store.get(sub.id).state == RENEW and host.invalidated == []
    assert host.run("outlook_push")["renewed"] == 1  # the next run, 15 minutes on
    assert store.get(sub.id).state == LIVE


def test_push_down_polling_still_works_and_freshness_fails_closed(
        ctx: Context, shop: ShopRef, host: Host, kind: dict[str, Any]) -> None:
    fake = kind["fake"]
    watch = "/events/watch$" if kind["name"] == "google" else "/subscriptions$"
    fake.fail("POST", watch, 503, times=100)
    summary = kind["job"]()
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


def test_no_channels_without_https(ctx: Context, shop: ShopRef, host: Host,
                                   kind: dict[str, Any]) -> None:
    assert notification_url("http://shop-app.example.com", "/x") is None
    assert notification_url("https://app.example.com/", "/x") == "https://app.example.com/x"
    assert notification_url("http://127.0.0.1:8000", "/x") == "http://127.0.0.1:8000/x"
    # The same database and shop, deployed at a public http URL: the job opens nothing
    # (Google and Graph call https only) and polling alone keeps free/busy fresh.
    public = bootstrap(dataclasses.replace(ctx.config, app_url="http://shop-app.example.com"),
                       db=ctx.db, clock=ctx.clock)
    got = Host(public, pytest.MonkeyPatch()).run(JOBS[kind["name"]])
    assert "https" in got["disabled"]
    assert kind["store"].for_shop(shop.id) == [] and kind["live"]() == []
    assert busy(public, shop, kind) == {e: [] for e in kind["experts"]}


@pytest.mark.redis
class TestWithTheRedisCache:
    """The push path with the Redis free/busy cache (``CONSULTBOOK_REDIS_URL``): the
    host's invalidation drops the Redis entries, and polling/fail-closed are unchanged."""

    @pytest.fixture
    def db_url(self, sqlite_url: str) -> str:
        return sqlite_url

    @pytest.fixture
    def cache_overrides(self) -> Iterator[dict[str, Any]]:
        if not REDIS_URL:
            pytest.skip("CONSULTBOOK_TEST_REDIS_URL is not set")
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter("consultbook:freebusy:*"):
            client.delete(key)
        yield {"redis_url": REDIS_URL}
        for key in client.scan_iter("consultbook:freebusy:*"):
            client.delete(key)
        client.close()

    def test_the_cache_is_redis(self, ctx: Context, shop: ShopRef, host: Host,
                                kind: dict[str, Any]) -> None:
        import redis

        busy(ctx, shop, kind)
        client = redis.Redis.from_url(REDIS_URL)
        try:
            assert list(client.scan_iter(f"consultbook:freebusy:*{kind['experts'][0]}*"))
        finally:
            client.close()

    def test_a_busy_event_reaches_availability(self, ctx: Context, shop: ShopRef,
                                               host: Host, kind: dict[str, Any]) -> None:
        test_a_busy_event_reaches_availability_without_waiting_for_the_ttl(
            ctx, shop, host, kind)

    def test_polling_and_fail_closed(self, ctx: Context, shop: ShopRef, host: Host,
                                     kind: dict[str, Any]) -> None:
        test_push_down_polling_still_works_and_freshness_fails_closed(ctx, shop, host, kind)


class TestGooglePushContract(PushSyncContract):
    @pytest.fixture
    def push_kit(self, ctx: Context, shop: ShopRef, host: Host, google: FakeGoogle,
                 client: Any) -> dict[str, Any]:
        ids = add_experts(ctx, shop, ["ada@example.com"])
        connect(ctx, shop, "google", {"refresh_token": google.issue_refresh_token()})
        set_providers(ctx, shop, calendar="google")
        google.busy["ada@example.com"] = []
        return {"run_job": lambda: host.run("google_push"), "expert_id": ids[0],
                "channels": lambda: ChannelStore(ctx.db, gpush.CHANNELS).for_shop(shop.id),
                "change": lambda: google.add_busy("ada@example.com", NOW + timedelta(days=1),
                                                  NOW + timedelta(days=1, hours=1)),
                "forge": lambda cid: google.notify(cid, token="forged"),
                "invalidated": lambda: host.invalidated,
                "advance": lambda s: ctx.clock.advance(s)}  # type: ignore[attr-defined]


class TestOutlookPushContract(PushSyncContract):
    @pytest.fixture
    def push_kit(self, ctx: Context, shop: ShopRef, host: Host, ms: FakeMicrosoft,
                 client: Any) -> dict[str, Any]:
        from tests.plugins.test_calendar_outlook import oauth_connect

        ids = add_experts(ctx, shop, ["ada@example.com"])
        oauth_connect(ctx, client, shop)
        set_providers(ctx, shop, calendar="outlook", video="none")
        ms.schedules["ada@example.com"] = {"busy": []}
        return {"run_job": lambda: host.run("outlook_push"), "expert_id": ids[0],
                "channels": lambda: ChannelStore(ctx.db, opush.CHANNELS).for_shop(shop.id),
                "change": lambda: ms.add_busy("ada@example.com", NOW + timedelta(days=1),
                                              NOW + timedelta(days=1, hours=1)),
                "forge": lambda cid: ms.notify(cid, client_state="forged"),
                "invalidated": lambda: host.invalidated,
                "advance": lambda s: ctx.clock.advance(s)}  # type: ignore[attr-defined]



def test_host_experts_is_one_query_without_deleted_experts(ctx: Context, shop: ShopRef
                                                           ) -> None:
    from engine.services.providers import Host as EngineHost
    from engine.store.models import Expert

    ids = add_experts(ctx, shop, ["ada@example.com", None, "cy@example.com"])
    with ctx.db.write() as session:
        session.execute(sa.update(Expert).where(Expert.id == ids[1])
                        .values(deleted_at=ctx.clock.now()))
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    sa.event.listen(ctx.db.engine, "before_cursor_execute", count)
    try:
        got = list(EngineHost(ctx.plugins).experts(shop.id))
    finally:
        sa.event.remove(ctx.db.engine, "before_cursor_execute", count)
    assert sorted(e.id for e in got) == sorted([ids[0], ids[2]])
    assert {e.email for e in got} == {"ada@example.com", "cy@example.com"}
    assert all(e.timezone == "Europe/Berlin" and e.shop_id == shop.id for e in got)
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1
    assert list(EngineHost(ctx.plugins).experts("no-such-shop")) == []
