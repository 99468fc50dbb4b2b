"""The waitlist's date across time zones, as the storefront sends it: a shop date (the
contract), judged by the shop's today. A customer west of the shop in their evening is
already on the shop's next date: that date is taken, the shop's date of the customer's
noon (past there) is refused, and the refusal says so in a sentence that starts with the
field it is about -- what the storefront reads to put an error on a field (only an
``email ...`` refusal goes on the email field; a ``date ...`` one is said as a general
warning). Both databases (the ``db_url`` fixture)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from engine.clock import FixedClock
from tests.conftest import Storefront
from tests.waitlist.test_waitlist import WAITER, catalog, entries, join  # noqa: F401

# 00:30 UTC on 1 December 2026: 19:30 on 30 November in New York, 01:30 on 1 December in
# Berlin (the shop's zone).
NY_EVENING = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)


def test_a_new_york_evening_waits_on_berlins_next_date(
        ctx: Any, store: Storefront, catalog: dict[str, Any],  # noqa: F811
        clock: FixedClock) -> None:
    clock.set(NY_EVENING)
    body = {"service": catalog["service"], "email": WAITER, "tz": "America/New_York"}
    # The shop's date at the customer's noon (18:00 in Berlin on 30 November): past.
    r = join(store, {**body, "date": "2026-11-30"})
    assert r.status_code == 400, r.text
    error = r.json["error"]
    assert error["code"] == "invalid_request"
    assert error["message"].startswith("date 2026-11-30 has passed"), error
    # It says what the shop's date is now, not only that the one sent is wrong.
    assert "Europe/Berlin, where it is 2026-12-01 now" in error["message"], error
    # The shop date holding the rest of the customer's evening: the shop's today.
    ok = join(store, {**body, "date": "2026-12-01"})
    assert ok.status_code == 201, ok.text
    (entry,) = entries(ctx).values()
    assert (str(entry.date), entry.customer_tz) == ("2026-12-01", "America/New_York")


@pytest.mark.parametrize(("change", "field"), [
    ({"date": "2026-11-29"}, "date"),  # past in Berlin
    ({"date": "2027-06-01"}, "date"),  # beyond the 60-day horizon
    ({"date": "1.12.2026"}, "date"),
    ({"email": "later@exa_mple.com"}, "email"),  # passes a browser's check, not ours
    ({"email": "not-an-address"}, "email"),
])
def test_a_refusal_starts_with_the_field_it_is_about(
        store: Storefront, catalog: dict[str, Any],  # noqa: F811
        change: dict[str, Any], field: str) -> None:
    r = join(store, {"service": catalog["service"], "date": "2026-12-01", "email": WAITER,
                     **change})
    assert r.status_code == 400, r.text
    message = r.json["error"]["message"]
    assert message.startswith(field) and message[len(field)] in " :", message
