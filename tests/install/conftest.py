"""Fixtures for the install tests: a fake Shopify on 127.0.0.1 and a context whose
``shopify_admin`` origin points at it (so the real clients speak real HTTP to it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from engine.bootstrap import Context, bootstrap
from engine.clock import FixedClock
from engine.shopify import encode_session_token, sign_oauth
from tests.conftest import API_KEY, API_SECRET, NOW, make_config
from tests.install.fake_shopify import FakeShopify

APP_URL = "https://app.example.com"
SHOP = "alpha.myshopify.com"


@pytest.fixture
def fake() -> Iterator[FakeShopify]:
    server = FakeShopify(API_KEY, API_SECRET, now=int(NOW.timestamp()))
    yield server
    server.close()


@pytest.fixture
def ctx(db_url: str, clock: FixedClock, fake: FakeShopify) -> Iterator[Context]:
    """The root ``ctx``, but talking to the fake Shopify (``client`` uses this one)."""
    config = make_config(db_url, app_url=APP_URL, origins={"shopify_admin": fake.origin})
    context = bootstrap(config, clock=clock)
    yield context
    context.db.dispose()


def signed(params: dict[str, str], secret: str = API_SECRET) -> str:
    """A query string signed the way Shopify signs OAuth redirects."""
    query = dict(params)
    query["hmac"] = sign_oauth(query, secret)
    return urlencode(query)


def session_token(ctx: Context, shop: str = SHOP, **kwargs: Any) -> str:
    return encode_session_token(shop, api_key=API_KEY, api_secret=API_SECRET,
                                now=int(ctx.clock.now().timestamp()), **kwargs)
