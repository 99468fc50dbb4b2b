"""pytest fixtures for plugin authors: a :class:`~engine.providers.ProviderContext` for a
throwaway shop, backed by a real (SQLite) database migrated to every head -- the engine's
and your plugin's branch, if it is installed -- so a provider under test reads and writes
its own tables exactly as it will in production.

Use it from your ``conftest.py``::

    pytest_plugins = ["engine.testing.fixtures"]

    def test_my_calendar(provider_context):
        cal = MyCalendar(provider_context)
        ...

Override ``provider_connection`` (a :class:`~engine.providers.ConnectionHandle`, default
``None``), ``provider_settings`` (default ``{}``) or ``provider_config`` (a ``Config``)
in your own conftest to give the provider its account, settings or deployment options.
``provider_context.invalidate_busy`` records its calls in
``provider_context.invalidated`` (a list of ``(shop_id, expert_id)``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.clock import FixedClock
from engine.config import Config
from engine.crypto import Keyring, generate_key, parse_keys
from engine.plugins import retry_policy
from engine.providers import ConnectionHandle, ProviderChoice, ProviderContext
from engine.services.providers import KeyringSecrets
from engine.store import Database
from engine.store.migrate import upgrade

__all__ = ["TestShop", "provider_config", "provider_connection", "provider_context",
           "provider_settings"]

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class TestShop:
    """The throwaway shop (a row in ``shops`` exists for it, so foreign keys hold)."""

    __test__ = False  # not a test class

    id: str
    domain: str
    timezone: str


@pytest.fixture
def provider_config(tmp_path: Path) -> Config:
    """Fast retries, an outbox folder in ``tmp_path``, a SQLite database there."""
    return Config(database_url=f"sqlite:///{tmp_path}/provider.db", api_key="k",
                  api_secret="s", encryption_keys=(generate_key(),),
                  outbox_dir=str(tmp_path / "outbox"), provider_attempts=3,
                  provider_backoff_seconds=0.001, provider_max_backoff_seconds=0.01,
                  provider_timeout_seconds=2.0)


@pytest.fixture
def provider_connection() -> ConnectionHandle | None:
    return None


@pytest.fixture
def provider_settings() -> Mapping[str, str]:
    return {}


@pytest.fixture
def provider_context(provider_config: Config, provider_connection: ConnectionHandle | None,
                     provider_settings: Mapping[str, str]) -> Iterator[ProviderContext]:
    """A context for a throwaway shop ``shop_test`` (``test.myshopify.com``, Berlin)."""
    from engine.services.shops import install_shop

    db = Database(provider_config.database_url)
    upgrade(db.engine)
    clock = FixedClock(NOW)
    keyring = Keyring(parse_keys(",".join(provider_config.encryption_keys)))
    ref = install_shop(db, clock, keyring, "test.myshopify.com", "Europe/Berlin")
    shop = TestShop(ref.id, ref.domain, ref.timezone)
    invalidated: list[tuple[str, str | None]] = []

    def record(shop_id: str, expert_id: str | None) -> None:
        invalidated.append((shop_id, expert_id))

    ctx: Any = ProviderContext(
        shop=shop, choice=ProviderChoice(), config=provider_config, clock=clock, db=db,
        retry=retry_policy(provider_config), connection=provider_connection,
        settings=dict(provider_settings), secrets=KeyringSecrets(keyring),
        busy_invalidator=record)
    ctx.invalidated = invalidated
    try:
        yield ctx
    finally:
        db.dispose()
