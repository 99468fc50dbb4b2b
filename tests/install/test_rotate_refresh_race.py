"""``consultbook keys rotate`` racing a Shopify token refresh, on SQLite and PostgreSQL.

Shopify's refresh tokens are single use. Two lost updates were possible:

* rotation reads the row, the refresh stores the new pair, rotation writes back the
  re-encrypted *old* pair: the fresh refresh token is gone, the spent one kept;
* the refresh's compare-and-set on the spent token's ciphertext misses because rotation
  re-encrypted that very token meanwhile, and the new pair is dropped as if a
  re-authorization had won.

Either way the shop must re-authorize. Each iteration here puts the pair under the old
key, then runs a refresh and a rotation at once (with jitter on both sides, so the
interleavings vary), and asserts that the stored pair is the newest one Shopify issued
and that it decrypts with the first key alone.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import falcon.testing
import pytest
from sqlalchemy import select, update

from engine.bootstrap import Context, bootstrap
from engine.clock import FixedClock
from engine.crypto import Keyring, generate_key, parse_keys
from engine.services.install import access_token, refresh_token_aad
from engine.services.secrets import rotate_all
from engine.services.shops import access_token_aad
from engine.store.models import Shop
from tests.conftest import KEY, make_config
from tests.install.conftest import APP_URL, SHOP, session_token
from tests.install.fake_shopify import FakeShopify
from web.app import create_app

NEW_KEY = generate_key()
ITERATIONS = 40


class SlowKeyring(Keyring):
    """A keyring whose re-encryption takes a moment, so that rotation's read and its
    write are far enough apart for a refresh to commit in between."""

    def __init__(self, keys: Any, rng: random.Random) -> None:
        super().__init__(keys)
        self.rng = rng

    def rotate(self, token: str, *, aad: str) -> str:
        time.sleep(self.rng.choice([0, 0, 0.002, 0.01, 0.03]))
        return super().rotate(token, aad=aad)


@pytest.fixture
def rotated_ctx(db_url: str, clock: FixedClock, fake: FakeShopify) -> Iterator[Context]:
    """The app after the operator put a new first key in front of the old one."""
    config = make_config(db_url, app_url=APP_URL, origins={"shopify_admin": fake.origin},
                         encryption_keys=(NEW_KEY, KEY))
    context = bootstrap(config, clock=clock)
    yield context
    context.db.dispose()


def _shop_id(ctx: Context, fake: FakeShopify) -> str:
    client = falcon.testing.TestClient(create_app(ctx))
    result = client.simulate_post("/auth/token-exchange",
                                  headers={"Authorization": f"Bearer {session_token(ctx)}"})
    assert result.status_code == 200, result.text
    with ctx.db.read() as session:
        return str(session.scalars(select(Shop.id).where(Shop.domain == SHOP)).one())


def _under_the_old_key(ctx: Context, shop_id: str) -> None:
    """Re-encrypt the stored pair with the old key (as before the new key was added)
    and make the access token due for a refresh."""
    old = Keyring.parse(KEY)
    with ctx.db.write() as session:
        row = session.get(Shop, shop_id)
        assert row is not None and row.refresh_token and row.access_token
        refresh = ctx.keyring.decrypt_str(row.refresh_token, aad=refresh_token_aad(shop_id))
        access = ctx.keyring.decrypt_str(row.access_token, aad=access_token_aad(shop_id))
        session.execute(update(Shop).where(Shop.id == shop_id).values(
            refresh_token=old.encrypt(refresh, aad=refresh_token_aad(shop_id)),
            access_token=old.encrypt(access, aad=access_token_aad(shop_id)),
            access_token_expires_at=ctx.clock.now() - timedelta(seconds=1),
        ).execution_options(synchronize_session=False))


def test_rotation_during_refresh_keeps_the_newest_refresh_token(
        rotated_ctx: Context, fake: FakeShopify) -> None:
    ctx = rotated_ctx
    shop_id = _shop_id(ctx, fake)
    rng = random.Random(9)
    slow = SlowKeyring(parse_keys(f"{NEW_KEY},{KEY}"), rng)
    first_only = Keyring.parse(NEW_KEY)
    for n in range(ITERATIONS):
        _under_the_old_key(ctx, shop_id)
        refreshes_before = len(fake.grants_of("refresh"))
        fake.refresh_delay = rng.choice([0, 0.002, 0.01, 0.03])
        rotate_first = rng.random() * 0.03
        errors: list[BaseException] = []
        barrier = threading.Barrier(2)

        def refresher(barrier: threading.Barrier, errors: list[BaseException]) -> None:
            barrier.wait()
            try:
                access_token(ctx, shop_id)
            except BaseException as exc:  # reported below, with the iteration
                errors.append(exc)

        def rotator(barrier: threading.Barrier, errors: list[BaseException],
                    rotate_first: float) -> None:
            barrier.wait()
            time.sleep(rotate_first)
            try:
                rotate_all(ctx.db, slow)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=refresher, args=(barrier, errors)),
                   threading.Thread(target=rotator, args=(barrier, errors, rotate_first))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == [], f"iteration {n}: {errors!r}"
        assert len(fake.grants_of("refresh")) == refreshes_before + 1, f"iteration {n}"
        assert all(g.status == 200 for g in fake.grants_of("refresh")), f"iteration {n}"
        newest = fake.issued[-1]
        with ctx.db.read() as session:
            row = session.get(Shop, shop_id)
            assert row is not None and row.refresh_token and row.access_token
            assert row.auth_error is None, f"iteration {n}: {row.auth_error}"
            stored_refresh = first_only.decrypt_str(row.refresh_token,
                                                    aad=refresh_token_aad(shop_id))
            stored_access = first_only.decrypt_str(row.access_token,
                                                   aad=access_token_aad(shop_id))
        assert stored_refresh == newest["refresh_token"], f"iteration {n}: spent token kept"
        assert stored_access == newest["access_token"], f"iteration {n}"
        assert newest["refresh_token"] in fake.live_refresh


def test_rotation_never_writes_back_a_value_replaced_since_it_was_read(
        rotated_ctx: Context, fake: FakeShopify) -> None:
    """The rotation side alone, deterministically: a refresh commits between
    rotation's read and its write; the rotation must not restore the old value."""
    ctx = rotated_ctx
    shop_id = _shop_id(ctx, fake)
    _under_the_old_key(ctx, shop_id)
    replaced = threading.Event()

    class Interleaving(Keyring):
        def rotate(self, token: str, *, aad: str) -> str:
            rotated = super().rotate(token, aad=aad)
            if aad == refresh_token_aad(shop_id) and not replaced.is_set():
                replaced.set()
                # Another process stores a new pair now (SQLite: after this write
                # transaction, since writers are serialized; PostgreSQL: right away).
                worker = threading.Thread(target=access_token, args=(ctx, shop_id))
                worker.start()
                worker.join(0.3)
            return rotated

    rotate_all(ctx.db, Interleaving.parse([NEW_KEY, KEY]))
    time.sleep(0.5)  # let the SQLite refresher, blocked on the lock, finish
    newest = fake.issued[-1]
    with ctx.db.read() as session:
        row = session.get(Shop, shop_id)
        assert row is not None and row.refresh_token
        stored = ctx.keyring.decrypt_str(row.refresh_token, aad=refresh_token_aad(shop_id))
    assert replaced.is_set()
    assert stored == newest["refresh_token"]
