"""The local calendar: busy time kept in the database (entered in the admin, or imported
from ``.ics`` feeds and files), and booking events kept there too.

The embedded default: no account anywhere. Busy blocks come from
``local_busy_blocks``; bookings themselves are claims the engine already counts, so the
events written here are a record (and what an exported feed shows), not extra busy time.

A plugin like any other, through the public contract only: its tables and their
Alembic branch (``models.py``, ``migrations/``), its admin routes
(``/admin/api/calendar/busy``, ``/admin/api/calendar/feeds``), its periodic feed
refresh (job ``local_ics_feeds``) and its encrypted feed URLs (rotated by ``consultbook
keys rotate``) all come through hooks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from engine import hookimpl
from engine.providers import (
    BookingDetails,
    CalendarBusy,
    CalendarProvider,
    EventRef,
    JobRegistry,
    Meeting,
    ProviderRegistry,
    RouteRegistry,
    SecretRegistry,
)
from engine.providers.intervals import merge_clip
from plugins.calendar_local import routes as _routes
from plugins.calendar_local import service
from plugins.calendar_local.models import IcsFeed, LocalBusyBlock, LocalCalendarEvent, feed_url_aad

#: Seconds between refreshes of every ``.ics`` feed URL.
ICS_FEEDS_EVERY = 900.0
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


# Built once: every hold and uncached availability answer runs it.
_BUSY = (select(LocalBusyBlock.expert_id, LocalBusyBlock.start, LocalBusyBlock.end)
         .where(LocalBusyBlock.shop_id == bindparam("shop"),
                LocalBusyBlock.expert_id.in_(bindparam("ids", expanding=True)),
                LocalBusyBlock.start < bindparam("end"),
                LocalBusyBlock.end > bindparam("start")))


class LocalCalendar(CalendarProvider):
    """Busy blocks and events in consultbook's own database."""

    name = "local"
    label = "consultbook (busy blocks and .ics feeds)"
    remote = False

    def calendar_for_expert(self, expert_id: str, expert_email: str | None) -> str | None:
        return expert_id

    def busy(self, calendars: Sequence[str], start: datetime,
             end: datetime) -> Mapping[str, CalendarBusy]:
        with self.ctx.db.lookup() as session:
            return self.busy_in_session(session, calendars, start, end)

    def busy_in_session(self, session: Session, calendars: Sequence[str], start: datetime,
                        end: datetime) -> Mapping[str, CalendarBusy]:
        """:meth:`busy`, read in the caller's session (the engine's free/busy uses it).

        Busy blocks change only through admin edits and feed refreshes, so the answer is
        kept in the process-local read cache (void after any local write, at most 1 s
        old; see engine.store.db.ReadCache)."""
        key = ("local_busy", self.ctx.shop.id, tuple(calendars), start, end)
        cached: Mapping[str, CalendarBusy] | None = self.ctx.db.cache.get(key)
        if cached is not None:
            return cached
        found: dict[str, list[tuple[datetime, datetime]]] = {c: [] for c in calendars}
        rows = session.execute(_BUSY, {"shop": self.ctx.shop.id, "ids": list(calendars),
                                       "start": start, "end": end})
        for expert_id, s, e in rows:
            found[expert_id].append((s, e))
        answer = {c: CalendarBusy(tuple(merge_clip(found[c], start, end))) for c in calendars}
        self.ctx.db.cache.put(key, answer)
        return answer

    def create_event(self, booking: BookingDetails, meeting: Meeting | None) -> EventRef:
        now = self.ctx.clock.now()
        url = meeting.url if meeting else booking.meeting_url
        with self.ctx.db.write() as session:
            row = session.get(LocalCalendarEvent, booking.booking_id)
            if row is None:
                session.add(LocalCalendarEvent(
                    booking_id=booking.booking_id, shop_id=self.ctx.shop.id,
                    expert_id=booking.expert_id, summary=booking.service_title,
                    start=booking.start, end=booking.end, status=booking.status,
                    sequence=booking.sequence, meeting_url=url, created_at=now,
                    updated_at=now))
            else:
                url = row.meeting_url or url
        return EventRef(self.name, booking.booking_id, booking.expert_id, url)

    def update_event(self, ref: EventRef, booking: BookingDetails,
                     meeting: Meeting | None) -> EventRef:
        url = meeting.url if meeting else (booking.meeting_url or ref.meeting_url)
        with self.ctx.db.write() as session:
            row = session.get(LocalCalendarEvent, ref.id)
            if row is None or row.shop_id != self.ctx.shop.id:
                return self.create_event(booking, meeting)
            row.expert_id, row.summary = booking.expert_id, booking.service_title
            row.start, row.end, row.status = booking.start, booking.end, booking.status
            row.sequence, row.meeting_url = booking.sequence, url
            row.updated_at = self.ctx.clock.now()
        return EventRef(self.name, ref.id, booking.expert_id, url)

    def cancel_event(self, ref: EventRef, booking: BookingDetails) -> None:
        with self.ctx.db.write() as session:
            row = session.get(LocalCalendarEvent, ref.id)
            if row is not None and row.shop_id == self.ctx.shop.id:
                row.status, row.updated_at = "cancelled", self.ctx.clock.now()
                row.sequence = max(row.sequence, booking.sequence)


@hookimpl
def consultbook_register_providers(registry: ProviderRegistry) -> None:
    registry.add_calendar(LocalCalendar)


@hookimpl
def consultbook_register_routes(routes: RouteRegistry) -> None:
    routes.add("/admin/api/calendar/busy", _routes.BusyBlocks, auth="admin")
    routes.add("/admin/api/calendar/busy/{item_id}", _routes.BusyBlock, auth="admin")
    routes.add("/admin/api/calendar/feeds", _routes.Feeds, auth="admin")
    routes.add("/admin/api/calendar/feeds/{item_id}", _routes.Feed, auth="admin")
    routes.add("/admin/api/calendar/feeds/{item_id}/refresh", _routes.FeedRefresh,
               auth="admin")


@hookimpl
def consultbook_register_jobs(jobs: JobRegistry) -> None:
    jobs.add("local_ics_feeds", ICS_FEEDS_EVERY, service.refresh_all_feeds)


@hookimpl
def consultbook_register_secrets(secrets: SecretRegistry) -> None:
    secrets.add_column(cast(Table, IcsFeed.__table__), "url", lambda row: feed_url_aad(row.id))


@hookimpl
def consultbook_migration_locations() -> Sequence[str]:
    return [str(MIGRATIONS)]
