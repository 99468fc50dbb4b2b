"""Weekly hours and date overrides as documents: parsing and rendering (pure).

Times are wall-clock ``"HH:MM"`` in the expert's timezone; ``"24:00"`` is allowed as
an end and means the end of that day. Windows of one day may not overlap.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date
from itertools import pairwise
from typing import Any

from engine.errors import ValidationError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")

Windows = list[tuple[int, int]]


def parse_hhmm(value: Any, *, where: str, end: bool) -> int:
    if isinstance(value, str):
        if end and value == "24:00":
            return 1440
        m = _HHMM.match(value)
        if m:
            return int(m.group(1)) * 60 + int(m.group(2))
    allowed = "00:00-24:00" if end else "00:00-23:59"
    raise ValidationError(f"{where}: {value!r} is not a time HH:MM in {allowed}", field=where)


def format_minute(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def parse_windows(value: Any, *, where: str) -> Windows:
    if not isinstance(value, list):
        raise ValidationError(f"{where} must be a list of [start, end] pairs", field=where)
    if len(value) > 48:
        raise ValidationError(f"{where} has more than 48 windows", field=where)
    windows: Windows = []
    for i, pair in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise ValidationError(f"{at} must be a pair [\"HH:MM\", \"HH:MM\"]", field=where)
        start = parse_hhmm(pair[0], where=at, end=False)
        end = parse_hhmm(pair[1], where=at, end=True)
        if start >= end:
            raise ValidationError(f"{at}: the start must be before the end", field=where)
        windows.append((start, end))
    windows.sort()
    for (_, e1), (s2, _) in pairwise(windows):
        if s2 < e1:
            raise ValidationError(f"{where}: windows overlap", field=where)
    return windows


def parse_schedule(doc: Any) -> tuple[dict[int, Windows], dict[date, Windows]]:
    """A schedule document -> (weekday -> windows, date -> windows). Fields left out are empty."""
    if not isinstance(doc, dict):
        raise ValidationError("the request body must be a JSON object")
    unknown = sorted(set(doc) - {"weekly", "overrides"})
    if unknown:
        raise ValidationError(f"unknown field {unknown[0]!r}", field=unknown[0])
    weekly_doc = doc.get("weekly", {})
    if weekly_doc is None:
        weekly_doc = {}
    if not isinstance(weekly_doc, dict):
        raise ValidationError("weekly must be an object keyed by mon..sun", field="weekly")
    weekly: dict[int, Windows] = {}
    for key, value in weekly_doc.items():
        if key not in DAYS:
            raise ValidationError(f"weekly: {key!r} is not one of {', '.join(DAYS)}",
                                  field="weekly")
        windows = parse_windows(value, where=f"weekly.{key}")
        if windows:
            weekly[DAYS.index(key)] = windows
    overrides_doc = doc.get("overrides", [])
    if overrides_doc is None:
        overrides_doc = []
    if not isinstance(overrides_doc, list):
        raise ValidationError("overrides must be a list", field="overrides")
    if len(overrides_doc) > 1000:
        raise ValidationError("overrides has more than 1000 dates", field="overrides")
    overrides: dict[date, Windows] = {}
    for i, item in enumerate(overrides_doc):
        at = f"overrides[{i}]"
        if not isinstance(item, dict) or set(item) - {"date", "windows"} or "date" not in item:
            raise ValidationError(f"{at} must be {{\"date\": \"YYYY-MM-DD\", \"windows\": [...]}}",
                                  field="overrides")
        day = parse_date(item["date"], where=f"{at}.date")
        if day in overrides:
            raise ValidationError(f"{at}: {day.isoformat()} is given twice", field="overrides")
        overrides[day] = parse_windows(item.get("windows", []), where=f"{at}.windows")
    return weekly, overrides


def parse_date(value: Any, *, where: str) -> date:
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValidationError(f"{where}: {value!r} is not a date YYYY-MM-DD", field=where)


def render_schedule(weekly: Mapping[int, Sequence[tuple[int, int]]],
                    overrides: Mapping[date, Sequence[tuple[int, int]]]) -> dict[str, Any]:
    return {
        "weekly": {
            DAYS[day]: [[format_minute(s), format_minute(e)] for s, e in sorted(weekly[day])]
            for day in sorted(weekly) if weekly[day]
        },
        "overrides": [
            {"date": d.isoformat(),
             "windows": [[format_minute(s), format_minute(e)] for s, e in sorted(overrides[d])]}
            for d in sorted(overrides)
        ],
    }
