"""Small interval helpers providers share (UTC datetimes, half-open)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

Interval = tuple[datetime, datetime]


def merge_clip(intervals: Iterable[Interval], start: datetime, end: datetime) -> list[Interval]:
    """Sorted, merged (touching ones too) intervals, clipped to ``[start, end)``;
    empty ones dropped."""
    clipped = sorted((max(s, start), min(e, end)) for s, e in intervals)
    out: list[Interval] = []
    for s, e in clipped:
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def complement(windows: Iterable[Interval], start: datetime, end: datetime) -> list[Interval]:
    """The parts of ``[start, end)`` not covered by ``windows``."""
    out: list[Interval] = []
    cursor = start
    for s, e in merge_clip(windows, start, end):
        if s > cursor:
            out.append((cursor, s))
        cursor = max(cursor, e)
    if cursor < end:
        out.append((cursor, end))
    return out
