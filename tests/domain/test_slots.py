"""Scenario tests of the slot engine with exact, hand-derived UTC instants.

Every expectation below is written out as a UTC ISO string worked out by hand from the
zone's rules (offset before/after, transition instant), not computed with the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from engine.domain.slots import (
    ExpertCalendar,
    Instant,
    Overrides,
    ServiceRules,
    Slot,
    Weekly,
    claimed_range,
    expert_slots,
    is_offered,
    local_windows,
    merged_slots,
    wall_to_instant,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")
KATHMANDU = ZoneInfo("Asia/Kathmandu")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
APIA = ZoneInfo("Pacific/Apia")
DUBLIN = ZoneInfo("Europe/Dublin")
UTC_ZONE = ZoneInfo("UTC")

EVERYDAY = range(7)
FAR = 2**40  # a range end / horizon far enough to never matter
RULES_30 = ServiceRules(duration=30, interval=30, max_days_ahead=10**6)
RULES_60 = ServiceRules(duration=60, interval=60, max_days_ahead=10**6)


def z(text: str) -> Instant:
    """``"2026-03-28T23:00Z"`` -> POSIX seconds."""
    return int(datetime.fromisoformat(text).timestamp())


def iso(instant: Instant) -> str:
    return datetime.fromtimestamp(instant, UTC).strftime("%Y-%m-%dT%H:%MZ")


def calendar(tz: ZoneInfo, weekly: Weekly | None = None, overrides: Overrides | None = None,
             busy: Sequence[tuple[Instant, Instant]] = (), expert_id: str = "e"
             ) -> ExpertCalendar:
    return ExpertCalendar(expert_id=expert_id, tz=tz, weekly=weekly or {},
                          overrides=overrides or {}, busy=busy)


def on_day(tz: ZoneInfo, day: date, *windows: tuple[int, int]) -> ExpertCalendar:
    """An expert working only on ``day`` (an override), in ``tz``."""
    return calendar(tz, overrides={day: list(windows)})


def starts(cal: ExpertCalendar, rules: ServiceRules, *, now: Instant = 0,
           range_start: Instant = 0, range_end: Instant = FAR) -> list[str]:
    return [iso(s.start) for s in expert_slots(cal, rules, now=now, range_start=range_start,
                                               range_end=range_end)]


def hhmm(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def window(a: str, b: str) -> tuple[int, int]:
    return (hhmm(a), hhmm(b))


# --------------------------------------------------------------------------- wall_to_instant


class TestWallToInstant:
    def test_normal_wall_time_is_the_same_for_both_edges(self) -> None:
        # 2026-06-01 in Berlin is CEST, UTC+2.
        for edge in ("start", "end"):
            assert wall_to_instant(BERLIN, date(2026, 6, 1), hhmm("09:00"),
                                   edge=edge) == z("2026-06-01T07:00Z")

    def test_24_00_is_next_local_midnight(self) -> None:
        assert wall_to_instant(BERLIN, date(2026, 6, 1), 1440, edge="end") == z(
            "2026-06-01T22:00Z")
        # Midnight before the spring-forward date is still CET (UTC+1).
        assert wall_to_instant(BERLIN, date(2026, 3, 28), 1440, edge="end") == z(
            "2026-03-28T23:00Z")
        assert wall_to_instant(BERLIN, date(2026, 3, 29), 0, edge="start") == z(
            "2026-03-28T23:00Z")

    def test_gap_maps_to_the_transition_instant(self) -> None:
        # Berlin 2026-03-29: 02:00 CET -> 03:00 CEST at 01:00Z; 02:00..02:59 don't exist.
        for minute in (hhmm("02:00"), hhmm("02:30"), hhmm("02:59")):
            for edge in ("start", "end"):
                assert wall_to_instant(BERLIN, date(2026, 3, 29), minute,
                                       edge=edge) == z("2026-03-29T01:00Z")
        # 03:00 exists (CEST) and is the same instant.
        assert wall_to_instant(BERLIN, date(2026, 3, 29), hhmm("03:00"),
                               edge="start") == z("2026-03-29T01:00Z")

    def test_ambiguous_start_is_earlier_end_is_later(self) -> None:
        # Berlin 2026-10-25: 03:00 CEST -> 02:00 CET at 01:00Z; 02:00..02:59 happen twice.
        day = date(2026, 10, 25)
        assert wall_to_instant(BERLIN, day, hhmm("02:30"), edge="start") == z(
            "2026-10-25T00:30Z")
        assert wall_to_instant(BERLIN, day, hhmm("02:30"), edge="end") == z(
            "2026-10-25T01:30Z")
        assert wall_to_instant(BERLIN, day, hhmm("02:00"), edge="start") == z(
            "2026-10-25T00:00Z")
        assert wall_to_instant(BERLIN, day, hhmm("02:00"), edge="end") == z(
            "2026-10-25T01:00Z")

    def test_half_hour_dst_and_a_skipped_day(self) -> None:
        # Lord Howe 2026-10-04: 02:00 (+10:30) -> 02:30 (+11) at 2026-10-03T15:30Z.
        assert wall_to_instant(LORD_HOWE, date(2026, 10, 4), hhmm("02:15"),
                               edge="start") == z("2026-10-03T15:30Z")
        # Lord Howe 2026-04-05: 02:00 (+11) -> 01:30 (+10:30) at 2026-04-04T15:00Z.
        assert wall_to_instant(LORD_HOWE, date(2026, 4, 5), hhmm("01:45"),
                               edge="start") == z("2026-04-04T14:45Z")
        assert wall_to_instant(LORD_HOWE, date(2026, 4, 5), hhmm("01:45"),
                               edge="end") == z("2026-04-04T15:15Z")
        # Apia skipped 2011-12-30: 2011-12-29 24:00 (-10) -> 2011-12-31 00:00 (+14),
        # at 2011-12-30T10:00Z; every wall time of the 30th maps there.
        for minute in (0, hhmm("09:00"), 1439, 1440 - 1):
            assert wall_to_instant(APIA, date(2011, 12, 30), minute,
                                   edge="start") == z("2011-12-30T10:00Z")
        assert wall_to_instant(APIA, date(2011, 12, 29), 1440, edge="end") == z(
            "2011-12-30T10:00Z")

    @pytest.mark.parametrize("minute", [-1, 1441])
    def test_minute_out_of_range(self, minute: int) -> None:
        with pytest.raises(ValueError, match="minute"):
            wall_to_instant(BERLIN, date(2026, 6, 1), minute, edge="start")


# --------------------------------------------------------------------------- local_windows


class TestLocalWindows:
    def test_sorted_with_dates_and_empty_days(self) -> None:
        weekly = {0: [window("13:00", "17:00"), window("09:00", "12:00")], 2: [(0, 1440)]}
        # 2026-06-01 is a Monday; Tuesday has no windows; Wednesday is all day.
        got = local_windows(BERLIN, weekly, {}, date(2026, 6, 1), date(2026, 6, 3))
        assert [(iso(a), iso(b), d) for a, b, d in got] == [
            ("2026-06-01T07:00Z", "2026-06-01T10:00Z", date(2026, 6, 1)),
            ("2026-06-01T11:00Z", "2026-06-01T15:00Z", date(2026, 6, 1)),
            ("2026-06-02T22:00Z", "2026-06-03T22:00Z", date(2026, 6, 3)),
        ]

    def test_overrides_replace_and_close(self) -> None:
        weekly = {d: [window("09:00", "10:00")] for d in EVERYDAY}
        overrides = {date(2026, 6, 1): [window("12:00", "13:00")], date(2026, 6, 2): []}
        got = local_windows(UTC_ZONE, weekly, overrides, date(2026, 6, 1), date(2026, 6, 3))
        assert [(iso(a), iso(b)) for a, b, _ in got] == [
            ("2026-06-01T12:00Z", "2026-06-01T13:00Z"),
            ("2026-06-03T09:00Z", "2026-06-03T10:00Z"),
        ]

    def test_day_that_does_not_exist_has_no_window(self) -> None:
        weekly = {d: [window("09:00", "17:00")] for d in EVERYDAY}
        got = local_windows(APIA, weekly, {}, date(2011, 12, 29), date(2011, 12, 31))
        assert [(iso(a), iso(b), d) for a, b, d in got] == [
            ("2011-12-29T19:00Z", "2011-12-30T03:00Z", date(2011, 12, 29)),
            ("2011-12-30T19:00Z", "2011-12-31T03:00Z", date(2011, 12, 31)),
        ]

    def test_window_with_both_edges_in_a_gap_is_dropped(self) -> None:
        got = local_windows(BERLIN, {}, {date(2026, 3, 29): [window("02:10", "02:50")]},
                            date(2026, 3, 29), date(2026, 3, 29))
        assert got == []

    @pytest.mark.parametrize("bad", [(-1, 60), (60, 60), (120, 60), (0, 1441)])
    def test_invalid_window(self, bad: tuple[int, int]) -> None:
        with pytest.raises(ValueError, match="window"):
            local_windows(UTC_ZONE, {0: [bad]}, {}, date(2026, 6, 1), date(2026, 6, 1))


# --------------------------------------------------------------------------- DST zones


class TestBerlin:
    def test_spring_forward_skips_the_gap(self) -> None:
        cal = on_day(BERLIN, date(2026, 3, 29), window("00:00", "05:00"))
        # CET (+1) until 02:00 local = 01:00Z, then CEST (+2); 02:00 and 02:30 don't exist.
        assert starts(cal, RULES_30) == [
            "2026-03-28T23:00Z",  # 00:00 CET
            "2026-03-28T23:30Z",
            "2026-03-29T00:00Z",  # 01:00 CET
            "2026-03-29T00:30Z",
            "2026-03-29T01:00Z",  # 03:00 CEST
            "2026-03-29T01:30Z",
            "2026-03-29T02:00Z",
            "2026-03-29T02:30Z",  # 04:30 CEST, ends 05:00 CEST = 03:00Z
        ]

    def test_window_starting_in_the_gap_starts_at_the_transition(self) -> None:
        cal = on_day(BERLIN, date(2026, 3, 29), window("02:30", "06:00"))
        # Window [01:00Z, 04:00Z); grid 02:30 (skipped), 03:00, ... 05:30.
        assert starts(cal, RULES_30) == [
            "2026-03-29T01:00Z", "2026-03-29T01:30Z", "2026-03-29T02:00Z",
            "2026-03-29T02:30Z", "2026-03-29T03:00Z", "2026-03-29T03:30Z",
        ]

    def test_window_ending_in_the_gap_ends_at_the_transition(self) -> None:
        cal = on_day(BERLIN, date(2026, 3, 29), window("00:00", "02:30"))
        assert starts(cal, RULES_60) == ["2026-03-28T23:00Z", "2026-03-29T00:00Z"]

    def test_fall_back_offers_both_instants_once_each(self) -> None:
        cal = on_day(BERLIN, date(2026, 10, 25), window("00:00", "05:00"))
        # CEST (+2) until 03:00 CEST = 01:00Z, then CET (+1): 02:00 and 02:30 twice.
        assert starts(cal, RULES_30) == [
            "2026-10-24T22:00Z",  # 00:00 CEST
            "2026-10-24T22:30Z",
            "2026-10-24T23:00Z",
            "2026-10-24T23:30Z",
            "2026-10-25T00:00Z",  # 02:00 CEST
            "2026-10-25T00:30Z",  # 02:30 CEST
            "2026-10-25T01:00Z",  # 02:00 CET
            "2026-10-25T01:30Z",  # 02:30 CET
            "2026-10-25T02:00Z",  # 03:00 CET
            "2026-10-25T02:30Z",
            "2026-10-25T03:00Z",
            "2026-10-25T03:30Z",  # 04:30 CET, ends 05:00 CET = 04:00Z
        ]

    def test_fall_back_window_inside_the_repeated_hour(self) -> None:
        # 02:00 (start: first pass, 00:00Z) .. 03:00 (end: CET, 02:00Z): a 2-hour window.
        cal = on_day(BERLIN, date(2026, 10, 25), window("02:00", "03:00"))
        assert starts(cal, RULES_60) == ["2026-10-25T00:00Z", "2026-10-25T01:00Z"]

    def test_ordinary_week_is_utc_plus_one_then_two(self) -> None:
        weekly = {d: [window("09:00", "10:00")] for d in EVERYDAY}
        cal = calendar(BERLIN, weekly)
        got = starts(cal, RULES_60, range_start=z("2026-03-27T00:00Z"),
                     range_end=z("2026-03-31T00:00Z"))
        assert got == ["2026-03-27T08:00Z", "2026-03-28T08:00Z", "2026-03-29T07:00Z",
                       "2026-03-30T07:00Z"]


class TestNewYork:
    def test_spring_forward(self) -> None:
        # 2026-03-08: 02:00 EST (-5) -> 03:00 EDT (-4) at 07:00Z.
        cal = on_day(NEW_YORK, date(2026, 3, 8), window("00:00", "04:00"))
        assert starts(cal, RULES_60) == [
            "2026-03-08T05:00Z", "2026-03-08T06:00Z", "2026-03-08T07:00Z"]

    def test_spring_forward_window_edge_in_gap(self) -> None:
        cal = on_day(NEW_YORK, date(2026, 3, 8), window("02:30", "05:00"))
        assert starts(cal, RULES_30) == [
            "2026-03-08T07:00Z", "2026-03-08T07:30Z", "2026-03-08T08:00Z",
            "2026-03-08T08:30Z"]

    def test_fall_back(self) -> None:
        # 2026-11-01: 02:00 EDT (-4) -> 01:00 EST (-5) at 06:00Z; 01:00 happens twice.
        cal = on_day(NEW_YORK, date(2026, 11, 1), window("00:00", "03:00"))
        assert starts(cal, RULES_60) == [
            "2026-11-01T04:00Z", "2026-11-01T05:00Z", "2026-11-01T06:00Z",
            "2026-11-01T07:00Z"]

    def test_summer_day(self) -> None:
        cal = on_day(NEW_YORK, date(2026, 7, 1), window("09:00", "12:00"))
        assert starts(cal, RULES_60) == [
            "2026-07-01T13:00Z", "2026-07-01T14:00Z", "2026-07-01T15:00Z"]


class TestFractionalOffsets:
    def test_kolkata_plus_0530(self) -> None:
        cal = calendar(KOLKATA, {0: [window("09:00", "12:00")]})  # 2026-01-05 is a Monday
        got = starts(cal, RULES_60, range_start=z("2026-01-04T00:00Z"),
                     range_end=z("2026-01-07T00:00Z"))
        assert got == ["2026-01-05T03:30Z", "2026-01-05T04:30Z", "2026-01-05T05:30Z"]

    def test_kathmandu_plus_0545(self) -> None:
        cal = calendar(KATHMANDU, {0: [window("09:00", "12:00")]})
        got = starts(cal, RULES_60, range_start=z("2026-01-04T00:00Z"),
                     range_end=z("2026-01-07T00:00Z"))
        assert got == ["2026-01-05T03:15Z", "2026-01-05T04:15Z", "2026-01-05T05:15Z"]

    def test_kathmandu_45_minute_grid(self) -> None:
        cal = on_day(KATHMANDU, date(2026, 1, 5), window("09:00", "11:15"))
        rules = ServiceRules(duration=45, interval=45, max_days_ahead=10**6)
        assert starts(cal, rules) == [
            "2026-01-05T03:15Z", "2026-01-05T04:00Z", "2026-01-05T04:45Z"]


class TestLordHowe:
    def test_dst_ends_half_an_hour_repeats(self) -> None:
        # 2026-04-05: 02:00 (+11) -> 01:30 (+10:30) at 2026-04-04T15:00Z.
        cal = on_day(LORD_HOWE, date(2026, 4, 5), window("00:00", "04:00"))
        assert starts(cal, RULES_30) == [
            "2026-04-04T13:00Z",  # 00:00 +11
            "2026-04-04T13:30Z",
            "2026-04-04T14:00Z",
            "2026-04-04T14:30Z",  # 01:30 +11
            "2026-04-04T15:00Z",  # 01:30 +10:30
            "2026-04-04T15:30Z",  # 02:00 +10:30
            "2026-04-04T16:00Z",
            "2026-04-04T16:30Z",
            "2026-04-04T17:00Z",  # 03:30 +10:30, ends 04:00 +10:30 = 17:30Z
        ]

    def test_dst_starts_half_an_hour_skipped(self) -> None:
        # 2026-10-04: 02:00 (+10:30) -> 02:30 (+11) at 2026-10-03T15:30Z.
        cal = on_day(LORD_HOWE, date(2026, 10, 4), window("00:00", "04:00"))
        assert starts(cal, RULES_30) == [
            "2026-10-03T13:30Z",  # 00:00 +10:30
            "2026-10-03T14:00Z",
            "2026-10-03T14:30Z",
            "2026-10-03T15:00Z",  # 01:30 +10:30; 02:00 does not exist
            "2026-10-03T15:30Z",  # 02:30 +11
            "2026-10-03T16:00Z",
            "2026-10-03T16:30Z",  # 03:30 +11, ends 04:00 +11 = 17:00Z
        ]

    def test_quarter_hour_grid_across_the_gap(self) -> None:
        cal = on_day(LORD_HOWE, date(2026, 10, 4), window("02:15", "03:00"))
        rules = ServiceRules(duration=15, interval=15, max_days_ahead=10**6)
        # Window [15:30Z, 16:00Z); 02:15 does not exist.
        assert starts(cal, rules) == ["2026-10-03T15:30Z", "2026-10-03T15:45Z"]


class TestApia:
    def test_skipped_day_has_no_slots_neighbours_are_normal(self) -> None:
        weekly = {d: [window("09:00", "17:00")] for d in EVERYDAY}
        cal = calendar(APIA, weekly)
        got = starts(cal, RULES_60, range_start=z("2011-12-29T10:00Z"),
                     range_end=z("2011-12-31T10:00Z"))
        # 2011-12-29 at -10: 09:00 = 19:00Z; 2011-12-31 at +14: 09:00 = 12-30T19:00Z.
        assert got == [
            "2011-12-29T19:00Z", "2011-12-29T20:00Z", "2011-12-29T21:00Z",
            "2011-12-29T22:00Z", "2011-12-29T23:00Z", "2011-12-30T00:00Z",
            "2011-12-30T01:00Z", "2011-12-30T02:00Z",
            "2011-12-30T19:00Z", "2011-12-30T20:00Z", "2011-12-30T21:00Z",
            "2011-12-30T22:00Z", "2011-12-30T23:00Z", "2011-12-31T00:00Z",
            "2011-12-31T01:00Z", "2011-12-31T02:00Z",
        ]

    def test_override_on_the_missing_day_yields_nothing(self) -> None:
        cal = on_day(APIA, date(2011, 12, 30), (0, 1440))
        assert starts(cal, RULES_60) == []


class TestDublin:
    """Irish Standard Time (summer) is the standard time; winter GMT is "negative DST"."""

    def test_january_is_gmt(self) -> None:
        cal = on_day(DUBLIN, date(2026, 1, 5), window("09:00", "12:00"))
        assert starts(cal, RULES_60) == [
            "2026-01-05T09:00Z", "2026-01-05T10:00Z", "2026-01-05T11:00Z"]

    def test_july_is_utc_plus_one(self) -> None:
        cal = on_day(DUBLIN, date(2026, 7, 6), window("09:00", "12:00"))
        assert starts(cal, RULES_60) == [
            "2026-07-06T08:00Z", "2026-07-06T09:00Z", "2026-07-06T10:00Z"]

    def test_spring_transition(self) -> None:
        # 2026-03-29: 01:00 GMT -> 02:00 IST at 01:00Z; 01:00 does not exist.
        cal = on_day(DUBLIN, date(2026, 3, 29), window("00:00", "04:00"))
        assert starts(cal, RULES_60) == [
            "2026-03-29T00:00Z", "2026-03-29T01:00Z", "2026-03-29T02:00Z"]

    def test_autumn_transition(self) -> None:
        # 2026-10-25: 02:00 IST -> 01:00 GMT at 01:00Z; 01:00 happens twice.
        cal = on_day(DUBLIN, date(2026, 10, 25), window("00:00", "03:00"))
        assert starts(cal, RULES_60) == [
            "2026-10-24T23:00Z", "2026-10-25T00:00Z", "2026-10-25T01:00Z",
            "2026-10-25T02:00Z"]


# --------------------------------------------------------------------------- rules


class TestRules:
    def test_window_to_24_00_ends_at_next_local_midnight(self) -> None:
        cal = on_day(BERLIN, date(2026, 6, 1), window("20:00", "24:00"))
        assert starts(cal, RULES_60) == [
            "2026-06-01T18:00Z", "2026-06-01T19:00Z", "2026-06-01T20:00Z",
            "2026-06-01T21:00Z"]
        four_hours = ServiceRules(duration=240, interval=60, max_days_ahead=10**6)
        assert starts(cal, four_hours) == ["2026-06-01T18:00Z"]

    def test_24_00_before_a_spring_forward_midnight(self) -> None:
        cal = on_day(BERLIN, date(2026, 3, 28), window("22:00", "24:00"))
        assert starts(cal, RULES_60) == ["2026-03-28T21:00Z", "2026-03-28T22:00Z"]

    def test_overrides_replace_weekly_and_empty_closes(self) -> None:
        weekly = {0: [window("09:00", "10:00")]}  # Mondays
        overrides = {
            date(2026, 6, 1): [window("13:00", "14:00")],  # a Monday, other hours
            date(2026, 6, 6): [window("10:00", "11:00")],  # a Saturday, not in weekly
            date(2026, 6, 8): [],  # a Monday, closed
        }
        cal = calendar(UTC_ZONE, weekly, overrides)
        got = starts(cal, RULES_60, range_start=z("2026-06-01T00:00Z"),
                     range_end=z("2026-06-16T00:00Z"))
        assert got == ["2026-06-01T13:00Z", "2026-06-06T10:00Z", "2026-06-15T09:00Z"]

    def test_min_notice_boundary_is_inclusive(self) -> None:
        cal = on_day(UTC_ZONE, date(2026, 6, 1), window("09:00", "12:00"))
        rules = replace(RULES_30, min_notice=90)
        got = starts(cal, rules, now=z("2026-06-01T08:00Z"))
        assert got == ["2026-06-01T09:30Z", "2026-06-01T10:00Z", "2026-06-01T10:30Z",
                       "2026-06-01T11:00Z", "2026-06-01T11:30Z"]
        got = starts(cal, rules, now=z("2026-06-01T08:01Z"))
        assert got[0] == "2026-06-01T10:00Z"

    def test_no_slot_in_the_past(self) -> None:
        cal = on_day(UTC_ZONE, date(2026, 6, 1), window("09:00", "12:00"))
        got = starts(cal, RULES_30, now=z("2026-06-01T10:15Z"))
        assert got == ["2026-06-01T10:30Z", "2026-06-01T11:00Z", "2026-06-01T11:30Z"]

    def test_max_days_ahead_boundary_is_exclusive(self) -> None:
        weekly = {d: [window("09:00", "12:00")] for d in EVERYDAY}
        cal = calendar(UTC_ZONE, weekly)
        rules = ServiceRules(duration=30, interval=30, max_days_ahead=1)
        got = starts(cal, rules, now=z("2026-06-01T10:00Z"))
        # Horizon 2026-06-02T10:00Z: 10:00 on the 2nd is out, 09:30 in.
        assert got == ["2026-06-01T10:00Z", "2026-06-01T10:30Z", "2026-06-01T11:00Z",
                       "2026-06-01T11:30Z", "2026-06-02T09:00Z", "2026-06-02T09:30Z"]
        closed = replace(rules, max_days_ahead=0)
        assert starts(cal, closed, now=z("2026-06-01T10:00Z")) == []

    def test_horizon_counts_24_hour_days_across_dst(self) -> None:
        weekly = {d: [window("09:00", "10:00")] for d in EVERYDAY}
        cal = calendar(BERLIN, weekly)
        rules = ServiceRules(duration=60, interval=60, max_days_ahead=2)
        # now = 2026-03-28 09:00 CET = 08:00Z; horizon 2026-03-30T08:00Z, and 2026-03-30
        # 09:00 CEST = 07:00Z is inside it although the wall clock says 2 days + 0 hours.
        got = starts(cal, rules, now=z("2026-03-28T08:00Z"))
        assert got == ["2026-03-28T08:00Z", "2026-03-29T07:00Z", "2026-03-30T07:00Z"]

    def test_interval_shorter_than_duration(self) -> None:
        cal = on_day(UTC_ZONE, date(2026, 6, 1), window("09:00", "12:00"))
        rules = ServiceRules(duration=60, interval=30, max_days_ahead=10**6)
        assert starts(cal, rules) == ["2026-06-01T09:00Z", "2026-06-01T09:30Z",
                                      "2026-06-01T10:00Z", "2026-06-01T10:30Z",
                                      "2026-06-01T11:00Z"]
        rules = ServiceRules(duration=60, interval=20, max_days_ahead=10**6)
        cal = on_day(UTC_ZONE, date(2026, 6, 1), window("09:00", "10:30"))
        assert starts(cal, rules) == ["2026-06-01T09:00Z", "2026-06-01T09:20Z"]

    def test_interval_longer_than_duration(self) -> None:
        cal = on_day(UTC_ZONE, date(2026, 6, 1), window("09:00", "11:00"))
        rules = ServiceRules(duration=30, interval=45, max_days_ahead=10**6)
        assert starts(cal, rules) == ["2026-06-01T09:00Z", "2026-06-01T09:45Z",
                                      "2026-06-01T10:30Z"]

    def test_grid_is_anchored_at_each_window_start(self) -> None:
        cal = on_day(UTC_ZONE, date(2026, 6, 1), window("09:10", "10:10"),
                     window("13:00", "14:00"))
        assert starts(cal, RULES_30) == ["2026-06-01T09:10Z", "2026-06-01T09:40Z",
                                         "2026-06-01T13:00Z", "2026-06-01T13:30Z"]

    def test_unsorted_and_overlapping_windows_give_each_start_once(self) -> None:
        cal = on_day(UTC_ZONE, date(2026, 6, 1), window("10:00", "12:00"),
                     window("09:00", "11:00"), window("09:00", "11:00"))
        rules = ServiceRules(duration=60, interval=30, max_days_ahead=10**6)
        assert starts(cal, rules) == ["2026-06-01T09:00Z", "2026-06-01T09:30Z",
                                      "2026-06-01T10:00Z", "2026-06-01T10:30Z",
                                      "2026-06-01T11:00Z"]

    def test_window_shorter_than_the_meeting(self) -> None:
        cal = on_day(UTC_ZONE, date(2026, 6, 1), window("09:00", "09:45"))
        assert starts(cal, RULES_60) == []

    def test_invalid_rules(self) -> None:
        for kwargs in ({"duration": 0, "interval": 30}, {"duration": 30, "interval": 0},
                       {"duration": 30, "interval": 30, "buffer_before": -1},
                       {"duration": 30, "interval": 30, "buffer_after": -1},
                       {"duration": 30, "interval": 30, "min_notice": -1},
                       {"duration": 30, "interval": 30, "max_days_ahead": -1}):
            with pytest.raises(ValueError):
                ServiceRules(**kwargs)

    def test_claimed_range(self) -> None:
        rules = ServiceRules(duration=30, interval=30, buffer_before=10, buffer_after=5)
        start = z("2026-06-01T09:00Z")
        assert claimed_range(start, rules) == (z("2026-06-01T08:50Z"),
                                               z("2026-06-01T09:35Z"))


class TestBusy:
    def test_buffers_are_claimed_around_the_meeting(self) -> None:
        busy = [(z("2026-06-01T10:00Z"), z("2026-06-01T10:30Z"))]
        cal = calendar(UTC_ZONE, overrides={date(2026, 6, 1): [window("09:00", "12:00")]},
                       busy=busy)
        rules = replace(RULES_30, buffer_before=15, buffer_after=15)
        # 09:30 claims [09:15, 10:15) and 10:30 claims [10:15, 11:15): both overlap.
        # 11:30 claims [11:15, 12:15): buffers may leave the window.
        assert starts(cal, rules) == ["2026-06-01T09:00Z", "2026-06-01T11:00Z",
                                      "2026-06-01T11:30Z"]

    def test_half_open_touching_is_not_overlap(self) -> None:
        busy = [(z("2026-06-01T09:45Z"), z("2026-06-01T10:00Z"))]
        cal = calendar(UTC_ZONE, overrides={date(2026, 6, 1): [window("09:00", "11:00")]},
                       busy=busy)
        assert starts(cal, RULES_30) == ["2026-06-01T09:00Z", "2026-06-01T10:00Z",
                                         "2026-06-01T10:30Z"]

    def test_unsorted_overlapping_and_empty_busy(self) -> None:
        busy = [
            (z("2026-06-01T12:00Z"), z("2026-06-01T12:10Z")),
            (z("2026-06-01T09:05Z"), z("2026-06-01T09:20Z")),
            (z("2026-06-01T09:10Z"), z("2026-06-01T10:05Z")),  # overlaps the previous
            (z("2026-06-01T11:00Z"), z("2026-06-01T11:00Z")),  # empty: blocks nothing
            (z("2026-06-01T11:40Z"), z("2026-06-01T11:10Z")),  # inverted: blocks nothing
            (z("2026-05-01T00:00Z"), z("2026-05-02T00:00Z")),  # far away
        ]
        cal = calendar(UTC_ZONE, overrides={date(2026, 6, 1): [window("09:00", "13:00")]},
                       busy=busy)
        assert starts(cal, RULES_30) == [
            "2026-06-01T10:30Z", "2026-06-01T11:00Z", "2026-06-01T11:30Z",
            "2026-06-01T12:30Z"]

    def test_busy_across_a_fall_back_blocks_both_instants(self) -> None:
        cal = calendar(BERLIN, overrides={date(2026, 10, 25): [window("02:00", "03:00")]},
                       busy=[(z("2026-10-25T00:00Z"), z("2026-10-25T00:30Z"))])
        # 02:00 CEST (00:00Z) is busy, 02:00 CET (01:00Z) is not.
        assert starts(cal, RULES_60) == ["2026-10-25T01:00Z"]

    def test_a_long_busy_interval(self) -> None:
        weekly = {d: [window("09:00", "17:00")] for d in EVERYDAY}
        cal = calendar(UTC_ZONE, weekly,
                       busy=[(z("2026-06-01T09:00Z"), z("2026-06-03T16:30Z"))])
        got = starts(cal, RULES_30, range_start=z("2026-06-01T00:00Z"),
                     range_end=z("2026-06-04T00:00Z"))
        assert got == ["2026-06-03T16:30Z"]


class TestRangeAndMerge:
    def test_range_filters_starts_half_open(self) -> None:
        cal = on_day(UTC_ZONE, date(2026, 6, 1), window("09:00", "12:00"))
        got = starts(cal, RULES_30, range_start=z("2026-06-01T09:30Z"),
                     range_end=z("2026-06-01T11:00Z"))
        assert got == ["2026-06-01T09:30Z", "2026-06-01T10:00Z", "2026-06-01T10:30Z"]
        assert starts(cal, RULES_30, range_start=z("2026-06-01T10:00Z"),
                      range_end=z("2026-06-01T10:00Z")) == []
        with pytest.raises(ValueError):
            starts(cal, RULES_30, range_start=2, range_end=1)

    def test_range_picks_up_windows_of_neighbouring_local_dates(self) -> None:
        # Kiritimati is UTC+14: its 2026-06-03 09:00 is 2026-06-02T19:00Z.
        cal = calendar(ZoneInfo("Pacific/Kiritimati"),
                       {d: [window("09:00", "11:00")] for d in EVERYDAY})
        got = starts(cal, RULES_60, range_start=z("2026-06-02T00:00Z"),
                     range_end=z("2026-06-03T00:00Z"))
        assert got == ["2026-06-02T19:00Z", "2026-06-02T20:00Z"]

    def test_slots_carry_expert_and_end(self) -> None:
        cal = calendar(UTC_ZONE, overrides={date(2026, 6, 1): [window("09:00", "10:00")]},
                       expert_id="x1")
        got = expert_slots(cal, RULES_30, now=0, range_start=0, range_end=FAR)
        assert got == [Slot(z("2026-06-01T09:00Z"), "x1", z("2026-06-01T09:30Z")),
                       Slot(z("2026-06-01T09:30Z"), "x1", z("2026-06-01T10:00Z"))]

    def test_merged_sorted_by_start_then_expert(self) -> None:
        day = date(2026, 6, 1)
        cals = [
            calendar(KOLKATA, overrides={day: [window("14:30", "16:30")]}, expert_id="c"),
            calendar(UTC_ZONE, overrides={day: [window("09:00", "11:00")]}, expert_id="b"),
            calendar(BERLIN, overrides={day: [window("10:00", "13:00")]}, expert_id="a"),
        ]
        got = merged_slots(cals, RULES_60, now=0, range_start=0, range_end=FAR)
        assert [(iso(s.start), s.expert_id) for s in got] == [
            ("2026-06-01T08:00Z", "a"),
            ("2026-06-01T09:00Z", "a"), ("2026-06-01T09:00Z", "b"),
            ("2026-06-01T09:00Z", "c"),
            ("2026-06-01T10:00Z", "a"), ("2026-06-01T10:00Z", "b"),
            ("2026-06-01T10:00Z", "c"),
        ]
        assert got == sorted(got)

    def test_merged_lists_an_expert_once(self) -> None:
        cal = on_day(UTC_ZONE, date(2026, 6, 1), window("09:00", "10:00"))
        got = merged_slots([cal, cal], RULES_30, now=0, range_start=0, range_end=FAR)
        assert [iso(s.start) for s in got] == ["2026-06-01T09:00Z", "2026-06-01T09:30Z"]

    def test_merged_of_nobody(self) -> None:
        assert merged_slots([], RULES_30, now=0, range_start=0, range_end=FAR) == []


class TestIsOffered:
    CASES = [
        (BERLIN, date(2026, 3, 29), [window("00:00", "05:00"), window("20:00", "24:00")]),
        (BERLIN, date(2026, 10, 25), [window("00:00", "05:00"), window("22:00", "24:00")]),
        (LORD_HOWE, date(2026, 4, 5), [window("00:00", "04:00")]),
        (LORD_HOWE, date(2026, 10, 4), [window("01:15", "03:00")]),
        (APIA, date(2011, 12, 30), [window("09:00", "17:00")]),
        (KATHMANDU, date(2026, 1, 5), [window("09:00", "12:00")]),
    ]

    @pytest.mark.parametrize(("tz", "day", "windows"), CASES)
    @pytest.mark.parametrize("interval", [15, 30, 45])
    def test_agrees_with_expert_slots_every_five_minutes(
            self, tz: ZoneInfo, day: date, windows: list[tuple[int, int]],
            interval: int) -> None:
        rules = ServiceRules(duration=30, interval=interval, min_notice=60,
                             max_days_ahead=3)
        midnight = wall_to_instant(tz, day, 0, edge="start")
        now = midnight - 86_400 + 1800
        lo, hi = midnight - 2 * 86_400, midnight + 3 * 86_400
        free = calendar(tz, {d: windows for d in EVERYDAY})
        cal = replace(free, busy=[(lo - 86_400, hi + 86_400)])  # is_offered ignores busy
        offered = {s.start for s in expert_slots(free, rules, now=now, range_start=lo,
                                                 range_end=hi)}
        assert expert_slots(cal, rules, now=now, range_start=lo, range_end=hi) == []
        for t in range(lo, hi, 300):
            assert is_offered(cal, rules, now=now, start=t) == (t in offered), iso(t)

    def test_plain_answers(self) -> None:
        cal = calendar(UTC_ZONE, {0: [window("09:00", "12:00")]})
        rules = replace(RULES_30, min_notice=60)
        now = z("2026-06-01T08:30Z")  # a Monday
        assert not is_offered(cal, rules, now=now, start=z("2026-06-01T09:00Z"))  # notice
        assert is_offered(cal, rules, now=now, start=z("2026-06-01T09:30Z"))
        assert not is_offered(cal, rules, now=now, start=z("2026-06-01T09:40Z"))  # grid
        assert not is_offered(cal, rules, now=now, start=z("2026-06-01T11:45Z"))  # hours
        assert not is_offered(cal, rules, now=now, start=z("2026-06-02T09:30Z"))  # Tuesday
        assert is_offered(cal, rules, now=now, start=z("2026-06-08T09:30Z"))
        short = replace(rules, max_days_ahead=7)
        assert not is_offered(cal, short, now=now, start=z("2026-06-08T09:30Z"))  # horizon
