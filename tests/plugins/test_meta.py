"""Meta-tests: every hook has a test that makes the engine call it, and a documentation
entry (as datasette checks its hooks); secrets rotate."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from engine import hookspecs
from engine.bootstrap import Context
from engine.crypto import Keyring, generate_key, parse_keys
from engine.providers import Grant
from engine.services import connections
from engine.services.secrets import rotate_all
from engine.services.shops import ShopRef
from engine.store.providers_models import OAuthState, ProviderConnection
from plugins.calendar_local.models import IcsFeed
from tests.conftest import Admin, make_catalog

ROOT = Path(__file__).resolve().parents[2]
HOOKS = sorted(n for n in dir(hookspecs) if n.startswith("consultbook_"))


def test_there_are_hooks() -> None:
    assert "consultbook_register_providers" in HOOKS


@pytest.fixture(scope="module")
def hook_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Run every ``test_hook_*`` test of tests/plugins (SQLite variants) in a subprocess
    under tests/plugins/hook_recorder.py; per test: its outcome and the hooks the engine
    invoked on the test's own plugin."""
    # (Not imported from tests/plugins/hook_recorder.py: importing it patches
    # pluggy.PluginManager.register for the rest of this process.)
    record_env = "CONSULTBOOK_HOOK_RECORD"  # what hook_recorder.RECORD_ENV names

    record = tmp_path_factory.mktemp("hooks") / "record.json"
    env = {**os.environ, record_env: str(record)}
    # Under pytest-xdist this process is a worker: the child is a run of its own (its
    # Redis database stays this worker's, already in CONSULTBOOK_TEST_REDIS_URL).
    for name in [n for n in env if n.startswith("PYTEST_XDIST_")]:
        env.pop(name)
    proc = subprocess.run(
        # -n 0: in one process even when addopts distributes the run (pytest-xdist), since
        # the recorder sees the calls in the process that runs the tests and writes the
        # file from there.
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
         "-p", "tests.plugins.hook_recorder", "-k", "test_hook_ and not postgres",
         str(ROOT / "tests" / "plugins")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert record.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    runs: dict[str, dict[str, Any]] = json.loads(record.read_text())
    return runs


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test_that_makes_the_engine_call_it(
        hook: str, hook_runs: dict[str, dict[str, Any]]) -> None:
    """Not "a function of that name exists": ``test_hook_<hook>`` must exist, pass, and
    during it the engine itself (not the test) must have called an implementation of
    ``<hook>`` that the test registered."""
    mine = {node: run for node, run in hook_runs.items()
            if re.search(rf"::test_hook_{hook}(\[|$)", node)}
    assert mine, f"write test_hook_{hook} in tests/plugins"
    for node, run in mine.items():
        assert run["outcome"] == "passed", (node, run)
        assert hook in run["hooks"], (
            f"{node} passed but the engine never called the test's {hook} implementation")


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook: str) -> None:
    docs = (ROOT / "docs" / "plugins.md").read_text()
    assert f"### `{hook}`" in docs, f"document {hook} in docs/plugins.md"


def test_every_hook_is_prefixed_and_typed() -> None:
    for name in HOOKS:
        fn = getattr(hookspecs, name)
        assert fn.__doc__ and ":param" in fn.__doc__, name
        assert "return" in fn.__annotations__, name


def test_keys_rotate_covers_provider_secrets(ctx: Context, shop: ShopRef, admin: Admin) -> None:
    conn_id = connections.store_connection(ctx.plugins, shop, "google", Grant(
        account="a@example.com", credentials={"refresh_token": "1//secret"}))
    plugins = ctx.plugins
    with ctx.db.write() as session:
        session.add(OAuthState(id="h" * 64, shop_id=shop.id, purpose="google",
                               flow=ctx.keyring.encrypt("{}", aad=connections.flow_aad("h" * 64)),
                               created_at=ctx.clock.now(), expires_at=ctx.clock.now()))
    cat = make_catalog(admin)
    from plugins.calendar_local import service as local
    from plugins.calendar_local.models import feed_url_aad

    with ctx.db.write() as session:
        feed = IcsFeed(id="feed_x", shop_id=shop.id, expert_id=cat["expert"], name="n",
                       events=0, created_at=ctx.clock.now())
        feed.url = ctx.keyring.encrypt("https://cal.example/secret.ics", aad=feed_url_aad("feed_x"))
        session.add(feed)
    new_key = generate_key()
    rotated = Keyring(parse_keys(new_key + "," + ",".join(ctx.config.encryption_keys)))
    rewritten, _ = rotate_all(ctx.db, rotated)
    assert rewritten >= 3
    only_new = Keyring(parse_keys(new_key))
    with ctx.db.read() as session:
        row = session.get(ProviderConnection, conn_id)
        assert row is not None and row.credentials is not None
        assert "1//secret" in only_new.decrypt_str(row.credentials,
                                                   aad=connections.credentials_aad(conn_id))
        state = session.scalars(select(OAuthState)).one()
        assert state.flow is not None
        only_new.decrypt_str(state.flow, aad=connections.flow_aad(state.id))
        got = session.get(IcsFeed, "feed_x")
        assert got is not None and got.url is not None
        assert only_new.decrypt_str(got.url, aad=feed_url_aad("feed_x")).endswith("secret.ics")
    assert plugins is ctx.plugins and local is not None


def test_swapped_credentials_do_not_decrypt(ctx: Context, shop: ShopRef,
                                            other_shop: ShopRef) -> None:
    from engine.providers.errors import ConnectionBroken

    a = connections.store_connection(ctx.plugins, shop, "google",
                                     Grant(account=None, credentials={"refresh_token": "A"}))
    b = connections.store_connection(ctx.plugins, other_shop, "google",
                                     Grant(account=None, credentials={"refresh_token": "B"}))
    with ctx.db.write() as session:
        ra, rb = session.get(ProviderConnection, a), session.get(ProviderConnection, b)
        assert ra is not None and rb is not None
        ra.credentials, rb.credentials = rb.credentials, ra.credentials
    # Each ciphertext is bound to its own row (AAD): swapped, neither decrypts, and the
    # connection reads as broken (the merchant reconnects), not as a crash.
    with pytest.raises(ConnectionBroken, match="cannot be decrypted"):
        connections.open_connection(ctx.plugins, shop, "google")
    with pytest.raises(ConnectionBroken, match="cannot be decrypted"):
        connections.open_connection(ctx.plugins, other_shop, "google")
