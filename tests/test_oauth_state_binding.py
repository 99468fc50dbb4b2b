"""Provider OAuth is bound to the browser that started it; no session token in a URL.

The admin page asks ``POST /admin/api/connections/<provider>/start`` (Bearer session
token) for a one-time start URL; opening it sets an HttpOnly cookie whose hash is kept
with the state; the callback needs that cookie, and a state is dead after one use. The
real Google connector runs against the fake Google on 127.0.0.1, on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit

import falcon.testing
import pytest
import requests
from sqlalchemy import func, select

from engine.bootstrap import Context, bootstrap
from engine.clock import FixedClock
from engine.services.shops import ShopRef, install_shop
from engine.store.providers_models import OAuthStart, OAuthState, ProviderConnection
from tests.conftest import admin_headers, make_config
from tests.fakes.google import FakeGoogle
from web.app import create_app

COOKIE = "consultbook_oauth"


@pytest.fixture
def google() -> Iterator[FakeGoogle]:
    with FakeGoogle() as fake:
        yield fake


@pytest.fixture(params=["https://app.example.com", "http://127.0.0.1:8000"])
def app_url(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def ctx(db_url: str, clock: FixedClock, google: FakeGoogle, app_url: str
        ) -> Iterator[Context]:
    config = make_config(db_url, app_url=app_url, origins=google.origins(),
                         google_client_id=google.client_id,
                         google_client_secret=google.client_secret)
    context = bootstrap(config, clock=clock)
    yield context
    context.db.dispose()


@pytest.fixture
def client(ctx: Context) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(ctx))


@pytest.fixture
def shop(ctx: Context) -> ShopRef:
    return install_shop(ctx.db, ctx.clock, ctx.keyring, "alpha.myshopify.com",
                        "Europe/Berlin", access_token="shpat_alpha")


class Browser:
    """One merchant browser: it keeps the cookies the app sets on it."""

    def __init__(self, client: falcon.testing.TestClient, ctx: Context, shop: ShopRef) -> None:
        self.client, self.ctx, self.shop = client, ctx, shop
        self.cookies: dict[str, str] = {}

    def start_url(self, provider: str = "google") -> str:
        issued = self.client.simulate_post(f"/admin/api/connections/{provider}/start",
                                           headers=admin_headers(self.ctx, self.shop.domain))
        assert issued.status_code == 200, issued.text
        assert issued.json["expires_at"].endswith("Z")
        return str(issued.json["start_url"])

    def open(self, url: str) -> falcon.testing.Result:
        parts = urlsplit(url)
        result = self.client.simulate_get(parts.path, query_string=parts.query,
                                          cookies=self.cookies)
        if COOKIE in result.cookies:
            self.cookies[COOKIE] = result.cookies[COOKIE].value
        return result

    def consent(self, provider: str = "google") -> str:
        """Start, let the fake Google consent; the callback URL it sends the browser to."""
        start = self.open(self.start_url(provider))
        assert start.status_code == 302, start.text
        back = requests.get(start.headers["location"], allow_redirects=False, timeout=5)
        return str(back.headers["Location"])

    def callback(self, url: str) -> falcon.testing.Result:
        parts = urlsplit(url)
        return self.client.simulate_get(parts.path, query_string=parts.query,
                                        cookies=self.cookies)


def connections_of(ctx: Context) -> int:
    with ctx.db.read() as session:
        return int(session.scalar(select(func.count()).select_from(ProviderConnection)) or 0)


def test_the_happy_path_connects_and_sets_a_tight_cookie(
        ctx: Context, client: falcon.testing.TestClient, shop: ShopRef, app_url: str) -> None:
    browser = Browser(client, ctx, shop)
    url = browser.start_url()
    assert "id_token" not in url and "ticket=" in url
    start = browser.open(url)
    assert start.status_code == 302
    cookie = start.cookies[COOKIE]
    assert cookie.http_only and cookie.same_site == "Lax" and cookie.path == "/auth/google/"
    assert cookie.secure is app_url.startswith("https://")
    assert 0 < int(cookie.max_age or 0) <= 600
    with ctx.db.read() as session:
        [state] = session.scalars(select(OAuthState)).all()
    assert state.browser_hash and cookie.value not in state.browser_hash  # only a hash
    back = requests.get(start.headers["location"], allow_redirects=False, timeout=5)
    done = browser.callback(back.headers["Location"])
    assert done.status_code == 302 and "status=connected" in done.headers["location"]
    assert connections_of(ctx) == 1


def test_a_callback_without_the_cookie_is_refused_and_the_state_dies(
        ctx: Context, client: falcon.testing.TestClient, shop: ShopRef) -> None:
    browser = Browser(client, ctx, shop)
    back = browser.consent()
    stranger = Browser(client, ctx, shop)  # no cookie at all
    refused = stranger.callback(back)
    assert refused.status_code == 400 and refused.json["error"]["code"] == "invalid_state"
    assert connections_of(ctx) == 0
    # Used once (even refused), the state is dead: not even its own browser can use it.
    late = browser.callback(back)
    assert late.status_code == 400 and connections_of(ctx) == 0


def test_another_browsers_cookie_does_not_fit(
        ctx: Context, client: falcon.testing.TestClient, shop: ShopRef) -> None:
    """The login-CSRF case: an attacker completes consent for an account of theirs and
    gets the victim's browser (which has a flow cookie of its own) to open the callback."""
    attacker, victim = Browser(client, ctx, shop), Browser(client, ctx, shop)
    attackers_callback = attacker.consent()
    victim.consent()  # the victim's browser holds its own, valid cookie
    assert victim.cookies[COOKIE] != attacker.cookies[COOKIE]
    refused = victim.callback(attackers_callback)
    assert refused.status_code == 400 and refused.json["error"]["code"] == "invalid_state"
    assert connections_of(ctx) == 0
    forged = Browser(client, ctx, shop)
    forged.cookies[COOKIE] = "x" * 43  # a made-up nonce
    assert forged.callback(attacker.consent()).status_code == 400
    assert connections_of(ctx) == 0


def test_a_replayed_callback_is_refused(
        ctx: Context, client: falcon.testing.TestClient, shop: ShopRef) -> None:
    browser = Browser(client, ctx, shop)
    back = browser.consent()
    assert browser.callback(back).status_code == 302
    again = browser.callback(back)
    assert again.status_code == 400 and again.json["error"]["code"] == "invalid_state"
    assert connections_of(ctx) == 1


def test_start_tickets_are_one_time_short_lived_and_per_provider(
        ctx: Context, client: falcon.testing.TestClient, shop: ShopRef,
        clock: FixedClock) -> None:
    browser = Browser(client, ctx, shop)
    url = browser.start_url()
    assert browser.open(url).status_code == 302
    reused = browser.open(url)
    assert reused.status_code == 400 and reused.json["error"]["code"] == "invalid_state"
    stale = browser.start_url()
    clock.advance(61)
    assert browser.open(stale).status_code == 400
    elsewhere = browser.start_url().replace("/auth/google/", "/auth/outlook/")
    assert browser.open(elsewhere).status_code == 400
    assert browser.open("/auth/google/start?ticket=").status_code == 400
    with ctx.db.read() as session:
        # Spent and refused tickets are gone (expired ones are swept on the next issue).
        assert session.scalar(select(func.count()).select_from(OAuthStart)) == 0


def test_no_session_token_is_accepted_in_a_url(
        ctx: Context, client: falcon.testing.TestClient, shop: ShopRef) -> None:
    token = admin_headers(ctx, shop.domain)["Authorization"].split()[1]
    via_url = client.simulate_get("/auth/google/start", params={"id_token": token})
    assert via_url.status_code == 400 and COOKIE not in via_url.cookies
    assert client.simulate_post("/admin/api/connections/google/start",
                                params={"id_token": token}).status_code == 401
    unknown = client.simulate_post("/admin/api/connections/nope/start",
                                   headers=admin_headers(ctx, shop.domain))
    assert unknown.status_code == 404
    listing = client.simulate_get("/admin/api/connections",
                                  headers=admin_headers(ctx, shop.domain)).json
    google_row = next(c for c in listing["connections"] if c["provider"] == "google")
    assert google_row["connect_url"] == "/admin/api/connections/google/start"


def test_a_cross_site_form_post_is_bounced_once_to_carry_the_cookie(
        ctx: Context, client: falcon.testing.TestClient, shop: ShopRef) -> None:
    """``response_mode=form_post`` answers arrive as a cross-site POST, without the
    SameSite=Lax cookie: the app answers a same-origin form that re-posts them."""
    browser = Browser(client, ctx, shop)
    fields = dict(parse_qsl(urlsplit(browser.consent()).query))
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    first = client.simulate_post("/auth/google/callback", body=urlencode(fields),
                                 headers=form)  # as the browser sends it: no cookie
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/html")
    csp = first.headers["content-security-policy"]
    assert "form-action 'self'" in csp and "script-src 'nonce-" in csp
    action = html.unescape(re.search(r'action="([^"]+)"', first.text).group(1))  # type: ignore[union-attr]
    assert action == ctx.config.app_url + "/auth/google/callback"
    reposted = {html.unescape(k): html.unescape(v)
                for k, v in re.findall(r'name="([^"]+)" value="([^"]*)"', first.text)}
    assert reposted["state"] == fields["state"] and connections_of(ctx) == 0
    # The same-origin re-post carries the cookie and connects.
    done = client.simulate_post("/auth/google/callback", body=urlencode(reposted),
                                headers=form, cookies=browser.cookies)
    assert done.status_code == 302 and "status=connected" in done.headers["location"]
    assert connections_of(ctx) == 1


def test_a_bounced_post_without_the_cookie_is_refused(
        ctx: Context, client: falcon.testing.TestClient, shop: ShopRef) -> None:
    browser = Browser(client, ctx, shop)
    query = urlsplit(browser.consent()).query
    body = query + "&_consultbook_bounce=1"
    refused = client.simulate_post("/auth/google/callback", body=body, headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    assert refused.status_code == 400 and refused.json["error"]["code"] == "invalid_state"
    assert connections_of(ctx) == 0


def test_no_credentials_without_the_binding_whatever_the_cookie(
        ctx: Context, client: falcon.testing.TestClient, shop: ShopRef) -> None:
    """Several cookies of the flow's name (one planted on another path) count as none."""
    browser = Browser(client, ctx, shop)
    back = browser.consent()
    parts = urlsplit(back)
    doubled = client.simulate_get(parts.path, query_string=parts.query, headers={
        "Cookie": f"{COOKIE}={browser.cookies[COOKIE]}; {COOKIE}={'y' * 43}"})
    assert doubled.status_code == 400 and connections_of(ctx) == 0
