"""After a merchant's reschedule through the admin API, the SAME Outlook event is updated
in place (the fake Microsoft Graph over real HTTP), one "rescheduled" mail goes, and a
retried task changes nothing more -- as the Google and local-calendar cases in
test_rescheduled_delivery.py. Both databases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import falcon.testing
import pytest

from engine.bootstrap import Context
from engine.services import outbox
from engine.services.shops import ShopRef
from tests.conftest import Admin, Storefront
from tests.delivery.helpers import claim_of, later, redeliver, relay
from tests.fakes.microsoft import FakeMicrosoft
from tests.fakes.tls import ca_file
from tests.tasks.helpers import MAIL, SLOT, book, set_providers

NEW = later(SLOT, days=1)  # Wednesday, same hour


@pytest.fixture
def ms() -> Iterator[FakeMicrosoft]:
    with FakeMicrosoft() as fake:
        yield fake


@pytest.fixture
def overrides(ms: FakeMicrosoft) -> dict[str, Any]:
    return {"origins": ms.origins(), "microsoft_client_id": ms.client_id,
            "microsoft_client_secret": ms.client_secret, "provider_ca_bundle": ca_file()}


def _rescheduled() -> list[Any]:
    return [m for m in MAIL.to("jon@example.com")
            if m.subject.startswith("Booking rescheduled")]


def test_outlook_event_is_patched_not_duplicated(
        ctx: Context, shop: ShopRef, admin: Admin, store: Storefront,
        client: falcon.testing.TestClient, ms: FakeMicrosoft) -> None:
    from tests.plugins.test_calendar_outlook import oauth_connect

    assert oauth_connect(ctx, client, shop).status_code == 302
    set_providers(ctx, shop, calendar="outlook", video="none", mail="recording")
    ms.schedules["e0@example.com"] = {"busy": []}  # the expert's calendar is free
    booking = book(admin, store)
    relay(ctx)
    [created] = ms.live_events()
    ref = claim_of(ctx, booking).external["event"]  # type: ignore[index]

    moved = admin("POST", f"/bookings/{booking}/reschedule",
                  {"start": NEW.strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert moved.status_code == 200, moved.text
    assert all(o.status == "done" for o in relay(ctx))

    [event] = ms.live_events()
    assert event["id"] == created["id"] == ref["id"]  # the same event, moved
    assert event["start"]["dateTime"].startswith(NEW.strftime("%Y-%m-%dT%H:%M:%S"))
    assert len(ms.calls("PATCH", r"/events/")) == 1
    assert len(_rescheduled()) == 1

    redeliver(ctx, outbox.RESCHEDULED_KIND)
    relay(ctx)
    assert len(ms.calls("PATCH", r"/events/")) == 1
    assert len(ms.live_events()) == 1 and len(_rescheduled()) == 1
