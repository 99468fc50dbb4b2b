"""A timezone is a name of the tz database, never one that means the host's own zone.

The zone folder of Debian and most Linux hosts holds ``localtime``, a link to
/etc/localtime: ``zoneinfo.available_timezones()`` lists it, and ``ZoneInfo`` opens
it. As a shop's, an expert's or a customer's zone it would mean whatever the machine
running the app is set to (and change when it moves). Refused everywhere a zone is
taken, on SQLite and PostgreSQL, and absent from the OpenAPI document's list.
"""

from __future__ import annotations

from typing import Any

import falcon.testing
import pytest

from engine.errors import ValidationError
from engine.services.validation import iana_zones, timezone
from tests.conftest import Admin, Storefront, make_catalog

TUE_9 = "2026-12-01T08:00:00Z"


@pytest.fixture
def cat(admin: Admin) -> dict[str, Any]:
    return make_catalog(admin)


def test_localtime_is_no_zone_and_real_ones_are() -> None:
    assert "localtime" not in iana_zones()
    with pytest.raises(ValidationError):
        timezone("tz", "localtime")
    for name in ("Europe/Berlin", "UTC", "America/Argentina/Buenos_Aires", "Etc/GMT+5"):
        assert timezone("tz", name) == name


def test_localtime_is_refused_wherever_a_zone_is_taken(
        admin: Admin, store: Storefront, cat: dict[str, Any],
        client: falcon.testing.TestClient) -> None:
    for r in (admin("PATCH", "/settings", {"timezone": "localtime"}),
              admin("POST", "/experts", {"name": "n", "email": "n@example.com",
                                         "timezone": "localtime"}),
              admin("PATCH", f"/experts/{cat['expert']}", {"timezone": "localtime"}),
              store.get("/availability", {"service": cat["service"], "start": "2026-12-01",
                                          "days": "1", "tz": "localtime"}),
              store.hold(cat["service"], cat["expert"], TUE_9, tz="localtime")):
        assert r.status_code == 400, r.text
        assert r.json["error"]["code"] == "invalid_request", r.text
    assert admin("GET", "/settings").json["timezone"] == "Europe/Berlin"
    assert store.hold(cat["service"], cat["expert"], TUE_9, tz="Asia/Kolkata").status_code == 201
    zones = client.simulate_get("/openapi.json").json["components"]["schemas"]["Timezone"]
    assert "localtime" not in zones["enum"] and "Europe/Berlin" in zones["enum"]
