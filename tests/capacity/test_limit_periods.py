"""Limits count in the expert's own calendar: the local day across a DST change and across
a local midnight far from UTC (Pacific/Auckland, UTC+12/+13; Pacific/Honolulu, UTC-10),
and ISO weeks across a year boundary (2026-12-31 and 2027-01-01 are both in 2026-W53).
First the pure arithmetic (engine.domain.capacity), then holds through the App Proxy on
SQLite and PostgreSQL, with the counters checked exact afterwards."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine.domain.capacity import periods_of
from tests.capacity.helpers import assert_counters_exact, counter, set_service
from tests.conftest import Admin, Storefront, make_catalog

ALL_DAY = {d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@pytest.mark.parametrize(("instant", "tz", "day", "week", "month"), [
    # Auckland: local midnight is 11:00Z in summer (NZDT, +13), 12:00Z in winter.
    ("2026-12-01T10:59:59Z", "Pacific/Auckland", "2026-12-01", "2026-W49", "2026-12"),
    ("2026-12-01T11:00:00Z", "Pacific/Auckland", "2026-12-02", "2026-W49", "2026-12"),
    ("2026-11-30T10:59:00Z", "Pacific/Auckland", "2026-11-30", "2026-W49", "2026-11"),
    ("2026-11-30T11:00:00Z", "Pacific/Auckland", "2026-12-01", "2026-W49", "2026-12"),
    # The spring-forward day (2026-09-27, 02:00 -> 03:00) is 23 hours long.
    ("2026-09-26T12:00:00Z", "Pacific/Auckland", "2026-09-27", "2026-W39", "2026-09"),
    ("2026-09-27T10:59:00Z", "Pacific/Auckland", "2026-09-27", "2026-W39", "2026-09"),
    ("2026-09-27T11:00:00Z", "Pacific/Auckland", "2026-09-28", "2026-W40", "2026-09"),
    # Honolulu: local midnight is 10:00Z; a UTC Monday morning is still Sunday there.
    ("2026-12-07T09:59:00Z", "Pacific/Honolulu", "2026-12-06", "2026-W49", "2026-12"),
    ("2026-12-07T10:00:00Z", "Pacific/Honolulu", "2026-12-07", "2026-W50", "2026-12"),
    ("2027-01-01T09:59:00Z", "Pacific/Honolulu", "2026-12-31", "2026-W53", "2026-12"),
    # ISO weeks across the year boundary, in Berlin.
    ("2026-12-28T08:00:00Z", "Europe/Berlin", "2026-12-28", "2026-W53", "2026-12"),
    ("2027-01-01T08:00:00Z", "Europe/Berlin", "2027-01-01", "2026-W53", "2027-01"),
    ("2027-01-03T22:59:00Z", "Europe/Berlin", "2027-01-03", "2026-W53", "2027-01"),
    ("2027-01-03T23:00:00Z", "Europe/Berlin", "2027-01-04", "2027-W01", "2027-01"),
    # Berlin's fall-back day (2026-10-25) has 25 hours; both 02:30s are on it.
    ("2026-10-25T00:30:00Z", "Europe/Berlin", "2026-10-25", "2026-W43", "2026-10"),
    ("2026-10-25T01:30:00Z", "Europe/Berlin", "2026-10-25", "2026-W43", "2026-10"),
    ("2026-10-25T22:59:00Z", "Europe/Berlin", "2026-10-25", "2026-W43", "2026-10"),
])
def test_periods_are_the_experts_local_ones(instant: str, tz: str, day: str, week: str,
                                            month: str) -> None:
    p = periods_of(utc(instant), ZoneInfo(tz))
    assert (p.day, p.week, p.month) == (day, week, month)


# --------------------------------------------------------------------------- through holds


def expert_in(admin: Admin, ctx: Any, tz: str, limits: dict[str, int]) -> dict[str, Any]:
    """The catalog's expert moved to ``tz`` and working around the clock there; the
    service limited by ``limits``."""
    cat = make_catalog(admin)
    assert admin("PATCH", f"/experts/{cat['expert']}", {"timezone": tz}).status_code == 200
    assert admin("PUT", f"/experts/{cat['expert']}/schedule",
                 {"weekly": ALL_DAY, "overrides": []}).status_code == 200
    set_service(ctx, cat["service"], limits=limits)
    return cat


def answers(store: Storefront, cat: dict[str, Any], starts: list[str]) -> list[Any]:
    out = []
    for n, start in enumerate(starts):
        r = store.hold(cat["service"], cat["expert"], start, customer=f"c{n}")
        out.append(r.status_code if r.status_code == 201 else r.json["error"]["code"])
    return out


def test_auckland_day_limit_across_spring_forward_and_local_midnight(
        store: Storefront, admin: Admin, ctx: Any) -> None:
    ctx.clock.set(utc("2026-09-20T00:00:00Z"))
    cat = expert_in(admin, ctx, "Pacific/Auckland", {"day": 1})
    assert answers(store, cat, [
        "2026-09-26T12:00:00Z",  # Sun 27 Sep 00:00 NZST: the 23-hour day's first session
        "2026-09-27T10:30:00Z",  # Sun 27 Sep 23:30 NZDT: same local day
        "2026-09-26T11:30:00Z",  # Sat 26 Sep 23:30 NZST: the day before
        "2026-09-27T11:00:00Z",  # Mon 28 Sep 00:00 NZDT: the day after (same UTC date)
    ]) == [201, "limit_reached", 201, 201]
    assert counter(ctx, cat["expert"], cat["service"], "D2026-09-27") == (1, 1)
    assert_counters_exact(ctx)


def test_honolulu_day_limit_at_local_midnight(store: Storefront, admin: Admin, ctx: Any
                                              ) -> None:
    cat = expert_in(admin, ctx, "Pacific/Honolulu", {"day": 1})
    assert answers(store, cat, [
        "2026-12-01T20:00:00Z",  # Tue 1 Dec 10:00 HST
        "2026-12-02T09:30:00Z",  # Tue 1 Dec 23:30 HST: another UTC date, same local day
        "2026-12-02T10:00:00Z",  # Wed 2 Dec 00:00 HST
        "2026-12-02T11:00:00Z",  # Wed 2 Dec 01:00 HST
    ]) == [201, "limit_reached", 201, "limit_reached"]
    assert_counters_exact(ctx)


def test_berlin_fall_back_day_counts_its_25_hours(store: Storefront, admin: Admin,
                                                  ctx: Any) -> None:
    ctx.clock.set(utc("2026-10-20T00:00:00Z"))
    cat = expert_in(admin, ctx, "Europe/Berlin", {"day": 2})
    assert answers(store, cat, [
        "2026-10-25T00:30:00Z",  # 02:30 CEST
        "2026-10-25T01:30:00Z",  # 02:30 CET, the second one
        "2026-10-25T22:30:00Z",  # 23:30 CET: still the 25th, a third session
        "2026-10-25T23:00:00Z",  # 00:00 on the 26th
    ]) == [201, 201, "limit_reached", 201]
    assert_counters_exact(ctx)


def test_iso_week_across_the_year_boundary(store: Storefront, admin: Admin, ctx: Any
                                           ) -> None:
    cat = expert_in(admin, ctx, "Europe/Berlin", {"week": 2, "month": 2})
    assert answers(store, cat, [
        "2026-12-28T08:00:00Z",  # Mon 28 Dec: 2026-W53
        "2026-12-31T08:00:00Z",  # Thu 31 Dec: 2026-W53 (and December's second)
        "2027-01-01T08:00:00Z",  # Fri 1 Jan 2027: still 2026-W53, a new month
        "2027-01-04T08:00:00Z",  # Mon 4 Jan: 2027-W01
        "2026-12-30T08:00:00Z",  # December and W53 both full
    ]) == [201, 201, "limit_reached", 201, "limit_reached"]
    assert counter(ctx, cat["expert"], cat["service"], "W2026-W53") == (2, 2)
    assert counter(ctx, cat["expert"], cat["service"], "M2027-01") == (1, 2)
    assert_counters_exact(ctx)


def test_honolulu_week_starts_on_its_own_monday(store: Storefront, admin: Admin, ctx: Any
                                                ) -> None:
    cat = expert_in(admin, ctx, "Pacific/Honolulu", {"week": 1})
    assert answers(store, cat, [
        "2026-12-07T09:00:00Z",  # Sun 6 Dec 23:00 HST (Monday in UTC): W49
        "2026-12-06T20:00:00Z",  # Sun 6 Dec 10:00 HST: W49, full
        "2026-12-07T10:00:00Z",  # Mon 7 Dec 00:00 HST: W50
    ]) == [201, "limit_reached", 201]
    assert_counters_exact(ctx)
