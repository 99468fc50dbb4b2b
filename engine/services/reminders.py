"""The reminder scan: send what is due, each reminder at most once.

Reminder rows are written when a booking is confirmed (one per offset of the shop's
``reminders`` setting; one already due then is ``skipped`` -- the confirmation stands
in for it) and cancelled with the booking. A beat scan every minute (or
``consultbook reminders run``) calls :func:`run_due`:

1. **Claim** what is due with one conditional update -- ``status 'pending' ->
   'sending'`` -- reading only the partial index ``ix_reminders_due`` (``due_at WHERE
   status = 'pending'``). On PostgreSQL the candidates are read ``FOR UPDATE SKIP
   LOCKED``, so concurrent scans split the work instead of queueing on each other; on
   SQLite the write transaction (``BEGIN IMMEDIATE``) serialises scans. Either way the
   ``WHERE status = 'pending'`` of the update is the guarantee: a reminder is claimed
   by exactly one scan.
2. **Send** each claimed reminder, then mark it ``sent``. A booking that is no longer
   confirmed, or has started, gets no reminder (``cancelled`` / ``skipped``); of two
   reminders of one booking due together only the nearer one goes out. A reminder of a
   booking that has changed (``sequence`` > 0) is judged against its *current* start:
   one claimed for a time the booking no longer has (rescheduled) goes back to
   ``pending`` at ``start - offset`` -- or is ``skipped`` when that has passed too --
   so none is ever sent for the old time. The reminder carries the manage link.
3. A send the provider reports as not accepted (``ProviderUnavailable``...) puts the
   reminder back a few times; anything else marks it ``failed``. A scan that dies
   mid-send leaves ``sending``; :func:`recover_stuck` later marks it ``failed`` -- never
   sent twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from engine.errors import ConsultbookError
from engine.providers.errors import ConnectionBroken, ProviderNotConfigured, ProviderUnavailable
from engine.services import notify
from engine.services.outbox import error_text
from engine.store.models import CONFIRMED, Claim, Reminder

if TYPE_CHECKING:
    from engine.clock import Clock
    from engine.services.providers import Plugins
    from engine.store import Database

log = logging.getLogger("consultbook.reminders")

PENDING, SENDING, SENT, FAILED = "pending", "sending", "sent", "failed"
SKIPPED, CANCELLED = "skipped", "cancelled"
MAX_ATTEMPTS = 3
STUCK_AFTER = timedelta(minutes=15)


@dataclass(frozen=True)
class Claimed:
    id: int
    shop_id: str
    booking_id: str
    offset_minutes: int
    attempts: int
    due_at: datetime | None = None


@dataclass
class ScanResult:
    claimed: int = 0
    sent: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def claim_due(db: Database, now: datetime, limit: int) -> list[Claimed]:
    """Claim up to ``limit`` due reminders for this scan (``pending -> sending``)."""
    with db.write() as session:
        ids = list(session.scalars(
            select(Reminder.id)
            .where(Reminder.status == PENDING, Reminder.due_at <= now)
            .order_by(Reminder.due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)))
        if not ids:
            return []
        rows = session.execute(
            update(Reminder)
            .where(Reminder.id.in_(ids), Reminder.status == PENDING)
            .values(status=SENDING, claimed_at=now)
            .returning(Reminder.id, Reminder.shop_id, Reminder.booking_id,
                       Reminder.offset_minutes, Reminder.attempts, Reminder.due_at)
            .execution_options(synchronize_session=False)).all()
    return [Claimed(r.id, r.shop_id, r.booking_id, r.offset_minutes, r.attempts or 0,
                    r.due_at) for r in rows]


def _finish(db: Database, reminder_id: int, status: str, now: datetime,
            error: str | None = None, **values: object) -> None:
    with db.write() as session:
        session.execute(
            update(Reminder).where(Reminder.id == reminder_id, Reminder.status == SENDING)
            .values(status=status, last_error=error,
                    sent_at=now if status == SENT else None, **values)
            .execution_options(synchronize_session=False))


def _still_confirmed(db: Database, booking_id: str) -> bool:
    with db.read() as session:
        return session.scalar(select(Claim.status).where(Claim.id == booking_id)) == CONFIRMED


def run_due(db: Database, clock: Clock, plugins: Plugins, limit: int = 500) -> ScanResult:
    """One scan pass: claim what is due now, send it, record the outcome."""
    now = clock.now()
    result = ScanResult()
    claimed = claim_due(db, now, limit)
    result.claimed = len(claimed)
    if not claimed:
        return result
    with db.read() as session:
        views = notify.load_views(session, [c.booking_id for c in claimed])
    mailers: dict[str, Any] = {}  # one provider instance per shop and pass
    nearest: dict[str, int] = {}
    for c in claimed:
        nearest[c.booking_id] = min(nearest.get(c.booking_id, c.offset_minutes),
                                    c.offset_minutes)
    for c in claimed:
        view = views.get(c.booking_id)
        if view is None or view.details.status != CONFIRMED:
            _finish(db, c.id, CANCELLED, now, "the booking is not confirmed")
            result.skipped.append(c.id)
            continue
        if view.details.start <= now:
            _finish(db, c.id, SKIPPED, now, "the booking had already started")
            result.skipped.append(c.id)
            continue
        due = view.details.start - timedelta(minutes=c.offset_minutes)
        if view.details.sequence > 0 and c.due_at is not None \
                and abs((due - c.due_at).total_seconds()) >= 1:
            # Rescheduled since this row was due: it follows the new time, never the old.
            if due > now:
                _finish(db, c.id, PENDING, now, None, due_at=due, claimed_at=None)
            else:
                _finish(db, c.id, SKIPPED, now, "the booking moved; this reminder's time "
                        "had passed", due_at=due)
            result.skipped.append(c.id)
            continue
        if c.offset_minutes != nearest[c.booking_id]:
            _finish(db, c.id, SKIPPED, now, "a nearer reminder was due at the same time")
            result.skipped.append(c.id)
            continue
        message = notify.customer_reminder(
            view, offset_minutes=c.offset_minutes, now=now,
            manage_url=notify.manage_url(db, plugins.config, c.booking_id))
        if message is None:
            _finish(db, c.id, SKIPPED, now, "the customer has no valid email address")
            result.skipped.append(c.id)
            continue
        # The booking may have been cancelled since the claim: look once more, right
        # before the send (cancel_booking only flips reminders still 'pending').
        if not _still_confirmed(db, c.booking_id):
            _finish(db, c.id, CANCELLED, now, "the booking is not confirmed")
            result.skipped.append(c.id)
            continue
        try:
            if c.shop_id not in mailers:
                mailers[c.shop_id] = plugins.mailer_for(c.shop_id)
            mailers[c.shop_id].send(message)
        except (ProviderUnavailable, ConnectionBroken, ProviderNotConfigured) as exc:
            attempts = c.attempts + 1
            if attempts < MAX_ATTEMPTS and not isinstance(exc, ProviderNotConfigured):
                _finish(db, c.id, PENDING, now, error_text(exc), attempts=attempts,
                        claimed_at=None)
                result.retried.append(c.id)
            else:
                _finish(db, c.id, FAILED, now, error_text(exc), attempts=attempts)
                result.failed.append(c.id)
            continue
        except (ConsultbookError, ValueError) as exc:
            _finish(db, c.id, FAILED, now, error_text(exc))
            result.failed.append(c.id)
            continue
        except Exception as exc:
            log.exception("reminder %s failed", c.id)
            _finish(db, c.id, FAILED, now, error_text(exc))
            result.failed.append(c.id)
            continue
        _finish(db, c.id, SENT, clock.now())
        result.sent.append(c.id)
    return result


def recover_stuck(db: Database, now: datetime, older_than: timedelta = STUCK_AFTER) -> int:
    """Reminders left ``sending`` by a scan that died are marked ``failed`` (whether they
    left is unknown, so they are never sent again); returns how many."""
    with db.write() as session:
        result = session.execute(
            update(Reminder)
            .where(Reminder.status == SENDING, Reminder.claimed_at < now - older_than)
            .values(status=FAILED,
                    last_error="the scan stopped while sending; it may not have arrived")
            .execution_options(synchronize_session=False))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
