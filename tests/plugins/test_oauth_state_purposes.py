"""One ``oauth_states`` table, two purposes: the Shopify install's states and provider
sign-ins never stand in for each other, and neither service sweeps the other's rows.

(An install state kept after use must still answer "already used", not "unknown", after
a provider sign-in starts; a provider state must not spend an install, nor the reverse.)
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest

from engine.bootstrap import Context
from engine.services import connections, install
from engine.services.shops import ShopRef
from engine.store.providers_models import SHOPIFY_INSTALL, OAuthState
from tests.fakes.google import FakeGoogle
from tests.plugins.conftest import google_config


@pytest.fixture
def overrides(google: FakeGoogle) -> dict[str, Any]:
    return google_config(google)


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _install_state(ctx: Context, state: str, domain: str, *, used: bool = False,
                   age: timedelta = timedelta(0)) -> None:
    now = ctx.clock.now() - age
    with ctx.db.write() as session:
        session.add(OAuthState(id=_sha(state), purpose=SHOPIFY_INSTALL, shop_domain=domain,
                               created_at=now, expires_at=now + install.STATE_TTL,
                               consumed_at=now if used else None))


def _provider_state(ctx: Context, shop: ShopRef, state: str, nonce: str) -> None:
    now = ctx.clock.now()
    sid = _sha(state)
    with ctx.db.write() as session:
        session.add(OAuthState(
            id=sid, purpose="google", shop_id=shop.id,
            flow=ctx.keyring.encrypt("{}", aad=connections.flow_aad(sid)),
            browser_hash=_sha(nonce), created_at=now,
            expires_at=now + connections.STATE_TTL))


def _ids(ctx: Context) -> set[str]:
    with ctx.db.read() as session:
        return {row.id for row in session.query(OAuthState)}


def test_an_install_state_is_no_provider_sign_in(ctx: Context, shop: ShopRef) -> None:
    _install_state(ctx, "install-state", shop.domain)
    with pytest.raises(connections.InvalidState, match="unknown"):
        connections.finish_oauth(ctx.plugins, "google", {"state": "install-state"},
                                 browser_nonce="n")
    assert _ids(ctx) == {_sha("install-state")}  # not spent by the wrong flow
    install.consume_state(ctx, "install-state", shop.domain)  # still good for its own


def test_a_provider_state_is_no_install_state(ctx: Context, shop: ShopRef) -> None:
    _provider_state(ctx, shop, "sign-in-state", "nonce")
    # Even if the provider row were addressed with the shop's own domain.
    with pytest.raises(install.InvalidState, match="unknown"):
        install.consume_state(ctx, "sign-in-state", shop.domain)
    assert _ids(ctx) == {_sha("sign-in-state")}


def test_each_service_sweeps_only_its_own_states(ctx: Context, shop: ShopRef) -> None:
    # An install state used and expired an hour ago is kept (STATE_KEEP) for a clear
    # replay error; starting a provider sign-in must not sweep it.
    _install_state(ctx, "used-install", "other.myshopify.com", used=True,
                   age=timedelta(hours=1))
    url = connections.start_oauth(ctx.plugins, shop, "google", browser_hash=_sha("n"))
    assert url
    assert len(_ids(ctx)) == 2
    with pytest.raises(install.InvalidState, match="already used"):
        install.consume_state(ctx, "used-install", "other.myshopify.com")
    with ctx.db.read() as session:
        purposes = sorted(row.purpose for row in session.query(OAuthState))
    assert purposes == ["google", SHOPIFY_INSTALL]
