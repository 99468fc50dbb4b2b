"""Fixtures of the provider-plugin suite: fast retry settings, fake servers, a shop with
experts, booking details, and connecting a shop without a browser."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from engine.bootstrap import Context, bootstrap
from engine.clock import FixedClock
from engine.providers import BookingDetails, Grant
from engine.services.connections import store_connection
from engine.services.shops import ShopRef
from engine.store import new_id
from engine.store.models import Expert, ExpertService, ShopSettings
from tests.conftest import NOW, make_config
from tests.fakes.google import FakeGoogle

# Millisecond backoffs and a short timeout: the real retry code, at test speed.
FAST: dict[str, Any] = {
    "provider_attempts": 3,
    "provider_backoff_seconds": 0.001,
    "provider_max_backoff_seconds": 0.01,
    "provider_timeout_seconds": 1.0,
    "provider_max_retry_after_seconds": 1.5,
}


@pytest.fixture
def overrides() -> dict[str, Any]:
    """Config overrides of a test module (override this fixture)."""
    return {}


@pytest.fixture
def ctx(db_url: str, clock: FixedClock, overrides: dict[str, Any],
        tmp_path: Path) -> Iterator[Context]:
    values = {**FAST, "outbox_dir": str(tmp_path / "outbox"), **overrides}
    context = bootstrap(make_config(db_url, **values), clock=clock)
    yield context
    cache = getattr(context.busy_source, "cache", None)
    if hasattr(cache, "close"):
        cache.close()
    context.db.dispose()


@pytest.fixture
def google() -> Iterator[FakeGoogle]:
    with FakeGoogle() as fake:
        yield fake


def google_config(google: FakeGoogle) -> dict[str, Any]:
    return {"origins": google.origins(), "google_client_id": google.client_id,
            "google_client_secret": google.client_secret}


def set_providers(ctx: Context, shop: ShopRef, **choice: str) -> None:
    values = {f"{k}_provider": v for k, v in choice.items()}
    with ctx.db.write() as session:
        session.execute(update(ShopSettings).where(ShopSettings.shop_id == shop.id)
                        .values(**values))


def connect(ctx: Context, shop: ShopRef, provider: str, credentials: dict[str, Any],
            account: str = "owner@example.com") -> str:
    return store_connection(ctx.plugins, shop, provider,
                            Grant(account=account, credentials=credentials))


def add_experts(ctx: Context, shop: ShopRef, emails: list[str | None],
                service_id: str | None = None) -> list[str]:
    ids = []
    with ctx.db.write() as session:
        for n, email in enumerate(emails):
            eid = new_id("exp")
            session.add(Expert(id=eid, shop_id=shop.id, name=f"Expert {n}", email=email,
                               timezone=None, created_at=NOW))
            session.flush()
            if service_id:
                session.add(ExpertService(expert_id=eid, service_id=service_id))
            ids.append(eid)
    return ids


def details(shop: ShopRef, **changes: Any) -> BookingDetails:
    values: dict[str, Any] = {
        "booking_id": "bkg_abcdefghijklmnop", "shop_domain": shop.domain,
        "shop_timezone": shop.timezone, "service_title": "Tax advice",
        "expert_id": "exp_1", "expert_name": "Erika Expert",
        "expert_email": "erika@example.com", "expert_timezone": "Europe/Berlin",
        "customer_name": "Carl Customer", "customer_email": "carl@example.net",
        "start": NOW + timedelta(days=1), "end": NOW + timedelta(days=1, minutes=30),
        "sequence": 0, "status": "confirmed", "description": "Booked through consultbook",
    }
    values.update(changes)
    return BookingDetails(**values)


@pytest.fixture
def booking(shop: ShopRef) -> BookingDetails:
    return details(shop)
