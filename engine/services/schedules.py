"""An expert's working hours: weekly windows and date overrides, replaced as a whole."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from engine.domain.schedule import Windows, parse_schedule, render_schedule
from engine.services.catalog import live_expert
from engine.store import Database
from engine.store.models import DateOverride, WeeklyHours


def load_schedule(session: Session, expert_id: str) -> tuple[dict[int, Windows],
                                                              dict[date, Windows]]:
    weekly: dict[int, Windows] = {}
    for w in session.execute(select(WeeklyHours.weekday, WeeklyHours.start_minute,
                                    WeeklyHours.end_minute)
                             .where(WeeklyHours.expert_id == expert_id)):
        weekly.setdefault(w.weekday, []).append((w.start_minute, w.end_minute))
    overrides: dict[date, Windows] = {
        o.date: [(int(s), int(e)) for s, e in o.windows]
        for o in session.execute(select(DateOverride.date, DateOverride.windows)
                                 .where(DateOverride.expert_id == expert_id))
    }
    return weekly, overrides


def get_schedule(db: Database, shop_id: str, expert_id: str) -> dict[str, Any]:
    with db.read() as session:
        live_expert(session, shop_id, expert_id)
        return render_schedule(*load_schedule(session, expert_id))


def put_schedule(db: Database, shop_id: str, expert_id: str, doc: Any) -> dict[str, Any]:
    """Replace the whole schedule; ``weekly`` and ``overrides`` left out become empty."""
    weekly, overrides = parse_schedule(doc)
    with db.write() as session:
        live_expert(session, shop_id, expert_id)
        session.execute(delete(WeeklyHours).where(WeeklyHours.expert_id == expert_id))
        session.execute(delete(DateOverride).where(DateOverride.expert_id == expert_id))
        session.add_all(WeeklyHours(expert_id=expert_id, weekday=day, start_minute=s,
                                    end_minute=e)
                        for day, windows in weekly.items() for s, e in windows)
        session.add_all(DateOverride(expert_id=expert_id, date=d,
                                     windows=[[s, e] for s, e in windows])
                        for d, windows in overrides.items())
        session.flush()
        return render_schedule(weekly, overrides)
