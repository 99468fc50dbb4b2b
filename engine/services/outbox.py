"""The outbox relay: external work recorded in a booking's transaction, done exactly once.

The webhook (or the merchant's cancel) writes an ``outbox`` row in the same transaction
as the booking change; after commit it kicks the relay. The relay never loses a row and
never does a step twice:

* **Claim with a short lease, kept alive by a heartbeat.** A conditional ``UPDATE``
  takes a pending, available row whose lease (``locked_until``) is free -- or already
  held by the same ``owner``: a Celery task redelivered after its worker child died
  carries the same task id and takes its lease back at once. The lease is short
  (``CONSULTBOOK_OUTBOX_LEASE_SECONDS``); while the work runs, a heartbeat thread renews
  it every third of that with a conditional ``UPDATE ... WHERE lease_owner = owner``, so
  slow provider calls keep it, and the work checks that it still holds the lease before
  each step (a renewal that found another owner, or renewals that kept failing until
  the lease ran out, stop the work before its next step; the new owner does the rest).
  When the worker process dies -- ``kill -9`` of the whole worker, whose unacknowledged
  message Redis would only hand out again after the visibility timeout -- the heartbeat
  dies with it, the lease runs out within one lease, and the periodic relay (every
  :func:`relay_interval`, at most 10 s) gives the row to another worker: a dead worker's
  delivery is taken over within lease + relay interval (40 s with the defaults).
* **Two lanes.** Customer-facing work (``booking.*``: confirmation, cancellation) and
  Shopify actions (``order.tag``, ``order.refund``: :data:`SHOPIFY_KINDS`) never wait on
  each other. Only customer rows of one booking run in order (a cancellation waits for
  the confirmation before it); a Shopify row is neither ordered behind them nor in front
  of them. The Celery relay sends Shopify rows to a queue of their own
  (``consultbook.shopify``), and the embedded worker runs them on a thread of their own.
  Shopify actions of one shop run one at a time (a row is not claimable while another
  Shopify row of its shop holds a live lease: Shopify's rate limit is per shop, and a
  hanging Admin API then holds at most one worker per shop).
* **Shopify is never slept on.** Shopify actions run inside
  :func:`engine.shopify.admin_api.no_waiting`: a wait the client would take becomes a
  retry of the row, ``available_at`` pushed back with backoff (no sooner than the wait
  Shopify asked for), with short HTTP timeouts. A shop whose Admin API is failing gets
  its other due Shopify rows pushed back to the same time (they would fail the same way),
  without counting an attempt against them.
* **Steps with done-markers** (``outbox_steps``). A confirmation is: video meeting ->
  calendar event -> customer mail -> expert mail; a cancellation: cancel the event ->
  customer mail -> expert mail. Each step is recorded right after it succeeds. Meeting
  and event are idempotent at the provider (the booking id is the client-chosen key),
  so repeating them after a crash is harmless. A mail step is *claimed* (its row
  inserted as ``sending``) before the message goes out; a redelivered task finds the
  claim and does not send again. A send that the provider reports as not accepted
  (:class:`ProviderUnavailable`) gives the claim back for the retry. A worker that died
  in the middle of a send leaves ``sending`` behind: once nobody holds the row's lease
  that step becomes ``unknown`` -- it is never sent twice, and the merchant sees the
  doubt. A worker that dies anywhere else (in the calendar call, between steps) loses
  nothing: the next owner finishes the remaining steps.
* **Retries.** Provider 429/5xx/timeouts (:class:`ProviderUnavailable`), a broken
  connection (the merchant must reconnect) and database hiccups put the row back with
  exponential backoff and jitter (honouring ``Retry-After``), up to
  ``CONSULTBOOK_OUTBOX_MAX_ATTEMPTS``. A permanent refusal
  (:class:`ProviderRejected`, a provider that is not configured) fails the row at once.
  Failures are kept in ``last_error`` and shown in ``GET /admin/api/bookings/ID``
  (``delivery``).
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, exists, or_, select, true, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, aliased

from engine.domain.mail import clean_name, valid_address
from engine.errors import ConsultbookError
from engine.providers.base import CalendarProvider
from engine.providers.errors import (
    ConnectionBroken,
    ProviderNotConfigured,
    ProviderRejected,
    ProviderUnavailable,
)
from engine.providers.types import BookingDetails, EventRef, MailMessage, Meeting
from engine.services import notify, shopify_actions, waitlist
from engine.shopify import admin_api
from engine.store.models import CONFIRMED, Claim, Expert, OutboxItem, OutboxStep

if TYPE_CHECKING:
    from engine.clock import Clock
    from engine.config import Config
    from engine.services.providers import Plugins
    from engine.store import Database

log = logging.getLogger("consultbook.outbox")

CONFIRMED_KIND, CANCELLED_KIND = "booking.confirmed", "booking.cancelled"
RESCHEDULED_KIND = "booking.rescheduled"
PENDING, DONE, FAILED = "pending", "done", "failed"
SENDING, STEP_DONE, UNKNOWN, SKIPPED = "sending", "done", "unknown", "skipped"
# A broken connection waits for the merchant: retry slowly.
BROKEN_MIN_DELAY = 900.0
_ADDRESS = re.compile(r"[^\s<>@,;:\"']+@[^\s<>@,;:\"']+")


class StepBusy(Exception):
    """Another execution is sending this step right now; try again after its lease."""


@dataclass
class Outcome:
    """What one delivery attempt did. ``retry_in`` is set when the row was put back."""

    item_id: int
    status: str  # done | retry | failed | skipped
    retry_in: float | None = None
    error: str | None = None


@dataclass
class RelayResult:
    outcomes: list[Outcome] = field(default_factory=list)
    next_due: datetime | None = None


def error_text(exc: BaseException) -> str:
    """One line for ``last_error``: what the merchant reads. Addresses are masked (the
    error text of a mail server may quote the customer's), so redaction reaches it."""
    text = exc.message if isinstance(exc, ConsultbookError) else str(exc)
    text = " ".join((text or type(exc).__name__).split())
    return _ADDRESS.sub("[address]", text)[:500]


# --------------------------------------------------------------------------- claiming

#: Shopify Admin API actions: their own lane, never in a booking's customer chain.
SHOPIFY_KINDS: tuple[str, ...] = (shopify_actions.TAG_KIND, shopify_actions.REFUND_KIND)
CUSTOMER, SHOPIFY = "customer", "shopify"
#: The longest the periodic relay waits between scans for rows whose lease ran out.
RELAY_MAX_INTERVAL = 10.0


def lane_of(kind: str) -> str:
    """``shopify`` for Shopify actions, ``customer`` for everything the customer hears."""
    return SHOPIFY if kind in SHOPIFY_KINDS else CUSTOMER


def relay_interval(lease_seconds: float) -> float:
    """How often the periodic relay scans: a third of the lease, at most
    :data:`RELAY_MAX_INTERVAL`, so a dead worker's row is taken over within
    lease + interval."""
    return max(0.5, min(RELAY_MAX_INTERVAL, float(lease_seconds) / 3))


def heartbeat_interval(lease_seconds: float) -> float:
    """How often a running delivery renews its lease: three chances before it lapses."""
    return max(0.05, float(lease_seconds) / 3)


def _in_lane(lane: str | None) -> Any:
    if lane == SHOPIFY:
        return OutboxItem.kind.in_(SHOPIFY_KINDS)
    if lane == CUSTOMER:
        return OutboxItem.kind.notin_(SHOPIFY_KINDS)
    return true()


def _claimable(now: datetime, owner: str | None, lane: str | None = None) -> Any:
    earlier = aliased(OutboxItem)
    busy = aliased(OutboxItem)
    lease_free = or_(OutboxItem.locked_until.is_(None), OutboxItem.locked_until <= now)
    if owner is not None:
        lease_free = or_(lease_free, OutboxItem.lease_owner == owner)
    is_shopify = OutboxItem.kind.in_(SHOPIFY_KINDS)
    return and_(
        OutboxItem.status == PENDING,
        OutboxItem.available_at <= now,
        lease_free,
        _in_lane(lane),
        or_(
            # One booking's customer work runs in order: a cancellation waits for its
            # confirmation. Shopify actions are not in that chain, either way round.
            is_shopify,
            ~exists().where(earlier.booking_id == OutboxItem.booking_id,
                            earlier.id < OutboxItem.id, earlier.status == PENDING,
                            earlier.kind.notin_(SHOPIFY_KINDS)),
        ),
        or_(
            # One Admin API call per shop at a time (Shopify's rate limit is per shop; a
            # hanging Admin API holds one worker per shop, not all of them). Best effort
            # under concurrency: it bounds load, correctness never depends on it.
            ~is_shopify,
            ~exists().where(busy.shop_id == OutboxItem.shop_id, busy.id != OutboxItem.id,
                            busy.kind.in_(SHOPIFY_KINDS), busy.status == PENDING,
                            busy.locked_until > now),
        ),
    )


def due(db: Database, now: datetime, limit: int = 100, lane: str | None = None,
        shop_id: str | None = None) -> list[tuple[int, str, str]]:
    """``(id, kind, shop_id)`` of rows the relay could take now, oldest first (for the
    dispatcher; claiming decides)."""
    query = select(OutboxItem.id, OutboxItem.kind, OutboxItem.shop_id) \
        .where(_claimable(now, None, lane))
    if shop_id is not None:
        query = query.where(OutboxItem.shop_id == shop_id)
    with db.read() as session:
        return [(int(i), str(k), str(s)) for i, k, s in session.execute(
            query.order_by(OutboxItem.available_at, OutboxItem.id).limit(limit))]


def due_ids(db: Database, now: datetime, limit: int = 100, lane: str | None = None, *,
            shop_id: str | None = None) -> list[int]:
    """Ids of rows the relay could take now, in the order it should (one Shopify row per
    shop: the others of that shop follow when it is done)."""
    ids: list[int] = []
    shops: set[str] = set()
    for item_id, kind, shop in due(db, now, limit, lane, shop_id):
        if kind in SHOPIFY_KINDS:
            if shop in shops:
                continue
            shops.add(shop)
        ids.append(item_id)
    return ids


def shop_of(db: Database, item_id: int) -> str | None:
    """The shop of outbox row ``item_id`` (None when it is gone)."""
    with db.read() as session:
        shop_id = session.scalar(select(OutboxItem.shop_id).where(OutboxItem.id == item_id))
    return None if shop_id is None else str(shop_id)


def next_due(db: Database, lane: str | None = None) -> datetime | None:
    """When the earliest pending row becomes available (the embedded worker sleeps
    until then)."""
    with db.read() as session:
        rows = session.execute(select(OutboxItem.available_at, OutboxItem.locked_until)
                               .where(OutboxItem.status == PENDING, _in_lane(lane))
                               .order_by(OutboxItem.available_at).limit(50)).all()
    # A leased row is someone else's until its lease runs out.
    times = [max(a, locked) if locked is not None else a for a, locked in rows]
    return min(times) if times else None


def claim(db: Database, item_id: int, owner: str, now: datetime, lease_seconds: float) -> bool:
    """Take row ``item_id`` for ``owner`` until ``now + lease``; False if someone else
    holds it, it is done, not yet due, or waits behind an earlier row of its booking
    (or, for a Shopify action, behind another Shopify call of its shop in flight)."""
    with db.write() as session:
        result = session.execute(
            update(OutboxItem)
            .where(OutboxItem.id == item_id, _claimable(now, owner))
            .values(locked_until=now + timedelta(seconds=lease_seconds), lease_owner=owner,
                    attempts=OutboxItem.attempts + 1)
            .execution_options(synchronize_session=False))
        return bool(result.rowcount)  # type: ignore[attr-defined]


def renew(db: Database, item_id: int, owner: str, now: datetime, lease_seconds: float) -> bool:
    """Extend ``owner``'s lease on row ``item_id`` to ``now + lease``; False when the row
    is no longer ``owner``'s (taken over after the lease ran out, or finished)."""
    with db.write() as session:
        result = session.execute(
            update(OutboxItem)
            .where(OutboxItem.id == item_id, OutboxItem.status == PENDING,
                   OutboxItem.lease_owner == owner)
            .values(locked_until=now + timedelta(seconds=lease_seconds))
            .execution_options(synchronize_session=False))
        return bool(result.rowcount)  # type: ignore[attr-defined]


class LeaseLost(Exception):
    """This execution no longer holds the row's lease: another owner does the rest."""


class Lease:
    """A claimed row's lease, renewed by a daemon thread while the work runs.

    :meth:`check` (called before each step) raises :class:`LeaseLost` when a renewal
    found another owner, or when no renewal succeeded for a whole lease (the database
    was unreachable: someone else may have taken the row by now). The deadline is kept
    on the monotonic clock, so the check needs no database round trip.
    """

    def __init__(self, db: Database, clock: Clock, item_id: int, owner: str,
                 seconds: float, claimed_at: float | None = None) -> None:
        self.db, self.clock, self.item_id, self.owner = db, clock, item_id, owner
        self.seconds = float(seconds)
        self.renewals = 0
        self._lost = threading.Event()
        self._stop = threading.Event()
        # ``claimed_at``: time.monotonic() taken before the claim that started the lease.
        self._valid_until = (time.monotonic() if claimed_at is None else claimed_at) \
            + self.seconds
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Lease:
        self._thread = threading.Thread(target=self._beat, daemon=True,
                                        name=f"consultbook-lease-{self.item_id}")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def _beat(self) -> None:
        every = heartbeat_interval(self.seconds)
        while not self._stop.wait(every):
            started = time.monotonic()
            try:
                held = renew(self.db, self.item_id, self.owner, self.clock.now(),
                             self.seconds)
            except Exception as exc:  # a database hiccup: try again; check() times out
                log.warning("outbox item %s: could not renew the lease: %s", self.item_id,
                            exc)
                continue
            if not held:
                if not self._stop.is_set():
                    log.warning("outbox item %s: lease lost to another worker",
                                self.item_id)
                    self._lost.set()
                return
            self.renewals += 1
            self._valid_until = started + self.seconds

    def check(self) -> None:
        if self._lost.is_set():
            raise LeaseLost(f"outbox item {self.item_id}: the lease went to another worker")
        if time.monotonic() >= self._valid_until:
            raise LeaseLost(f"outbox item {self.item_id}: the lease ran out")


def _release(db: Database, item_id: int, owner: str, **values: Any) -> None:
    with db.write() as session:
        session.execute(update(OutboxItem)
                        .where(OutboxItem.id == item_id, OutboxItem.status == PENDING,
                               OutboxItem.lease_owner == owner)
                        .values(locked_until=None, lease_owner=None, **values)
                        .execution_options(synchronize_session=False))


def _hold_back_shop(db: Database, item: OutboxItem, until: datetime, now: datetime) -> int:
    """The shop's Admin API is failing: its other due Shopify rows would fail the same
    way, so they wait as long as the failed one (no attempt counted against them)."""
    with db.write() as session:
        result = session.execute(
            update(OutboxItem)
            .where(OutboxItem.shop_id == item.shop_id, OutboxItem.id != item.id,
                   OutboxItem.kind.in_(SHOPIFY_KINDS), OutboxItem.status == PENDING,
                   OutboxItem.available_at < until,
                   or_(OutboxItem.locked_until.is_(None), OutboxItem.locked_until <= now))
            .values(available_at=until)
            .execution_options(synchronize_session=False))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- steps


def _steps(db: Database, item_id: int) -> dict[str, OutboxStep]:
    with db.read() as session:
        return {s.step: s for s in session.scalars(
            select(OutboxStep).where(OutboxStep.outbox_id == item_id))}


def _record_step(db: Database, item_id: int, step: str, status: str, now: datetime,
                 detail: str | None = None) -> None:
    with db.write() as session:
        row = session.get(OutboxStep, (item_id, step))
        if row is None:
            session.add(OutboxStep(outbox_id=item_id, step=step, status=status, detail=detail,
                                   created_at=now, updated_at=now))
        else:
            row.status, row.detail, row.updated_at = status, detail, now


def _claim_step(db: Database, item_id: int, step: str, now: datetime) -> bool:
    """Insert the step as ``sending``; False when it already exists (sent, being sent,
    or in doubt). The primary key makes this a claim on SQLite and PostgreSQL alike."""
    try:
        with db.write() as session:
            session.add(OutboxStep(outbox_id=item_id, step=step, status=SENDING,
                                   created_at=now, updated_at=now))
        return True
    except IntegrityError:
        return False


def _unclaim_step(db: Database, item_id: int, step: str) -> None:
    with db.write() as session:
        session.execute(delete(OutboxStep).where(OutboxStep.outbox_id == item_id,
                                                 OutboxStep.step == step,
                                                 OutboxStep.status == SENDING))


@dataclass
class _Job:
    db: Database
    clock: Clock
    plugins: Plugins
    item: OutboxItem
    lease_seconds: float
    notes: list[str] = field(default_factory=list)
    lease: Lease | None = None

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def check_lease(self) -> None:
        """Before each step: stop (:class:`LeaseLost`) if the row is not ours any more."""
        if self.lease is not None:
            self.lease.check()

    def done(self, step: str) -> bool:
        """Whether ``step`` needs no doing; asked before each step, so it checks the
        lease first."""
        self.check_lease()
        row = _steps(self.db, self.item.id).get(step)
        return row is not None and row.status in (STEP_DONE, SKIPPED, UNKNOWN)

    def mark(self, step: str, status: str = STEP_DONE, detail: str | None = None) -> None:
        _record_step(self.db, self.item.id, step, status, self.now, detail)

    def send_once(self, step: str, build: Callable[[], MailMessage | None]) -> None:
        """Send the message of ``step`` once (claimed before it goes out).

        Through a mail provider that delivers an idempotency key at most once
        (``MailProvider.idempotent``: the outbox folder) the message carries a key of its
        item and step, and when the worker that claimed the step died mid-send the
        provider is simply asked again -- exactly once; any other (SMTP) cannot say
        whether the message left, so the step is marked in doubt rather than risk a
        second copy."""
        self.check_lease()
        existing = _steps(self.db, self.item.id).get(step)
        mailer = self.plugins.mailer_for(self.item.shop_id)
        retake = False
        if existing is not None:
            if existing.status != SENDING:
                return
            age = (self.now - existing.updated_at).total_seconds()
            if age < self.lease_seconds:
                raise StepBusy(f"{step} is being sent by another worker")
            if not mailer.idempotent:
                # We cannot know whether the message left. Never send twice; say so.
                detail = "the worker stopped while sending; the message may not have arrived"
                self.mark(step, UNKNOWN, detail)
                self.notes.append(f"{step}: {detail}")
                return
            retake = True
        message = build()
        if message is None:
            self.mark(step, SKIPPED, "no valid address")
            return
        if mailer.idempotent and not message.idempotency_key:
            message = replace(message, idempotency_key=f"outbox:{self.item.id}:{step}")
        self.check_lease()
        if retake:
            self.mark(step, SENDING)  # ours now: the lease says the first sender is gone
        elif not _claim_step(self.db, self.item.id, step, self.now):
            return self.send_once(step, build)
        try:
            mailer.send(message)
        except (ProviderUnavailable, ProviderNotConfigured, ConnectionBroken):
            # Not accepted by the provider: the retry may send it.
            _unclaim_step(self.db, self.item.id, step)
            raise
        except (ProviderRejected, ValueError) as exc:
            self.mark(step, FAILED, error_text(exc))
            raise
        except Exception as exc:
            # Whether the message left is unknown: never send it again.
            self.mark(step, UNKNOWN, error_text(exc))
            self.notes.append(f"{step}: {error_text(exc)}")
            raise
        self.mark(step, STEP_DONE)


def _view(job: _Job) -> notify.BookingView | None:
    with job.db.read() as session:
        return notify.load_view(session, job.item.booking_id or "")


def _save_refs(db: Database, booking_id: str, *, meeting: dict[str, Any] | None = None,
               event: dict[str, Any] | None = None, meeting_url: str | None = None,
               now: datetime, replace_url: bool = False) -> None:
    """Remember provider references on the booking (the cancellation needs the event).
    ``replace_url``: the meeting's link changed (a moved meeting); else a link, once
    set, stays."""
    with db.write() as session:
        claim_row = session.get(Claim, booking_id)
        if claim_row is None:
            return
        external = dict(claim_row.external or {})
        if meeting is not None:
            external["meeting"] = meeting
        if event is not None:
            external["event"] = event
        claim_row.external = external
        if meeting_url and (replace_url or not claim_row.meeting_url):
            claim_row.meeting_url = meeting_url
        claim_row.updated_at = now


def _stored_event(ref: EventRef, session_key: str | None = None) -> dict[str, Any]:
    stored: dict[str, Any] = {"provider": ref.provider, "id": ref.id,
                              "calendar_id": ref.calendar_id}
    if ref.meeting_url:
        stored["meeting_url"] = ref.meeting_url
    if session_key:
        stored["session_key"] = session_key  # the event of a seated session
    return stored


def _ref_of(stored: Any, meeting_url: str | None = None) -> EventRef | None:
    """The :class:`EventRef` kept in ``claims.external["event"]``, or None. The meeting
    link the calendar made (Meet, Teams) rides along, so an update keeps it."""
    if not isinstance(stored, dict) or not stored.get("id"):
        return None
    return EventRef(provider=str(stored.get("provider", "")), id=str(stored["id"]),
                    calendar_id=str(stored.get("calendar_id", "")),
                    meeting_url=str(stored.get("meeting_url") or meeting_url or "") or None)


def _calendar_holding(job: _Job, ref: EventRef) -> CalendarProvider:
    """The calendar provider that holds ``ref`` (the shop may have switched since)."""
    plugins = job.plugins
    sp = plugins.shop_providers(job.item.shop_id)
    cls = plugins.registry.get("calendar", ref.provider)
    if cls is None:
        raise ProviderNotConfigured(
            f"the calendar provider {ref.provider!r} that holds the event is not "
            "installed any more")
    return plugins.instantiate(cls, sp)  # type: ignore[return-value]


def _manage_link(job: _Job) -> str | None:
    return notify.manage_url(job.db, job.plugins.config, job.item.booking_id or "")


def _tell_expert(job: _Job, view: notify.BookingView, step: str,
                 build: Callable[[], MailMessage | None]) -> None:
    """The expert's mail of ``step``, when the shop tells experts (``notify_experts``)."""
    if not view.notify_experts:
        if not job.done(step):
            job.mark(step, SKIPPED, "the shop does not notify experts")
        return
    job.send_once(step, build)


# --------------------------------------------------------------------------- seated sessions

#: Rounds of "write the session's attendees, read them again" before the row is retried.
SESSION_SYNC_ROUNDS = 5


def session_event_id(session_key: str) -> str:
    """The id a seated session's one event (and video meeting) is made under: derived
    from the session, so two confirmations racing each other name the same event and
    the providers' idempotent create (client-chosen id, transactionId, resource name)
    makes it once."""
    return "ses_" + hashlib.sha256(session_key.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class _SessionState:
    views: tuple[notify.BookingView, ...]  # its confirmed bookings, by id
    ref: EventRef | None                   # its event, from any claim that kept it
    sequence: int

    @property
    def attendees(self) -> tuple[str, ...]:
        return tuple(v.booking_id for v in self.views)


def _session_state(job: _Job, key: str) -> _SessionState:
    with job.db.read() as session:
        rows = session.execute(
            select(Claim.id, Claim.status, Claim.external, Claim.sequence)
            .where(Claim.shop_id == job.item.shop_id, Claim.session_key == key)
            .order_by(Claim.id)).all()
        confirmed = [r.id for r in rows if r.status == CONFIRMED]
        views = notify.load_views(session, confirmed)
    ref = None
    for row in rows:
        stored = (row.external or {}).get("event")
        if isinstance(stored, dict) and stored.get("session_key") == key:
            ref = _ref_of(stored)
            if ref is not None:
                break
    sequence = sum(int(r.sequence or 0) for r in rows) + len(rows)
    return _SessionState(tuple(views[i] for i in confirmed if i in views), ref, sequence)


def _session_details(key: str, state: _SessionState, fallback: notify.BookingView
                     ) -> BookingDetails:
    """The session's event: every confirmed customer an attendee, the session's own id."""
    base = (state.views[0] if state.views else fallback).details
    attendees = tuple((v.details.customer_email, v.details.customer_name)
                      for v in state.views if v.details.customer_email)
    description = "\n".join((f"{base.service_title} with {base.expert_name}",
                             f"Customers booked: {len(state.views)}",
                             f"Bookings: {', '.join(state.attendees) or '-'}"))
    return replace(base, booking_id=session_event_id(key), customer_name=None,
                   customer_email=None, attendees=attendees, sequence=state.sequence,
                   status="confirmed" if state.views else "cancelled",
                   description=description)


def _sync_session(job: _Job, key: str, fallback: notify.BookingView,
                  known: EventRef | None = None) -> EventRef | None:
    """Bring a seated session's ONE event in line with its confirmed bookings: made on
    the first confirmation (under :func:`session_event_id`, so racing confirmations make
    one), each customer an attendee, the event cancelled only when the last one goes.

    Two workers may sync one session at once, each writing what it read; so each reads
    the session again after its write and writes once more when it changed meanwhile.
    The last write of all is then made from the final state (a stale write is always
    followed by its own worker's correction), without a lock held across a provider
    call. Returns the event's ref (None once cancelled)."""
    shop_id = job.item.shop_id
    for _ in range(SESSION_SYNC_ROUNDS):
        state = _session_state(job, key)
        ref = state.ref or known
        details = _session_details(key, state, fallback)
        job.check_lease()
        result: EventRef | None = None
        if not state.views:
            if ref is not None:
                _calendar_holding(job, ref).cancel_event(ref, details)
        else:
            meeting = job.plugins.video_for(shop_id).create_meeting(details)  # one per session
            if meeting is not None:
                details = replace(details, meeting_url=meeting.url)
            if ref is None:
                calendar = job.plugins.calendar_for(shop_id)
                ref = calendar.create_event(details, meeting)
            else:
                calendar = _calendar_holding(job, ref)
            # Also after a create: a racing worker's create may have won with fewer.
            result = calendar.update_event(ref, details, meeting)
            if result.meeting_url is None and ref.meeting_url:
                result = replace(result, meeting_url=ref.meeting_url)
            url = result.meeting_url or (meeting.url if meeting else None)
            for view in state.views:
                _save_refs(job.db, view.booking_id, event=_stored_event(result, key),
                           meeting_url=url, now=job.now)
        if _session_state(job, key).attendees == state.attendees:
            return result
    raise ProviderUnavailable("the session's bookings kept changing while its calendar "
                              "event was updated; trying again")


# --------------------------------------------------------------------------- handlers


def _sequence(item: OutboxItem, view: notify.BookingView) -> int:
    payload = item.payload or {}
    try:
        return int(payload.get("sequence", view.details.sequence))
    except (TypeError, ValueError):
        return view.details.sequence


def _confirm(job: _Job) -> None:
    view = _view(job)
    if view is None:
        job.notes.append("the booking no longer exists")
        return
    if view.details.status != CONFIRMED:
        # Cancelled before the relay got here: its cancellation follows; nothing to make.
        for step in ("meeting", "event", "customer_mail", "expert_mail"):
            if not job.done(step):
                job.mark(step, SKIPPED, "the booking was cancelled first")
        return
    sequence = _sequence(job.item, view)
    details = view.details
    booking_id = details.booking_id
    if view.seated and not job.done("event"):
        # One event and one video link for the whole session; this customer an attendee.
        _sync_session(job, view.session_key, view)
        if not job.done("meeting"):
            job.mark("meeting")
        job.mark("event")
        view = _view(job) or view
    if not job.done("event"):
        meeting = None
        if not job.done("meeting"):
            meeting = job.plugins.video_for(job.item.shop_id).create_meeting(details)
            if meeting is not None:
                _save_refs(job.db, booking_id, meeting={"provider": meeting.provider,
                                                        "id": meeting.id},
                           meeting_url=meeting.url, now=job.now)
            job.mark("meeting")
        else:
            meeting = job.plugins.video_for(job.item.shop_id).create_meeting(details)
        if meeting is not None:
            details = replace(details, meeting_url=meeting.url)
        job.check_lease()  # the meeting may have taken long: still ours?
        ref = job.plugins.calendar_for(job.item.shop_id).create_event(details, meeting)
        _save_refs(job.db, booking_id, event=_stored_event(ref),
                   meeting_url=ref.meeting_url or (meeting.url if meeting else None),
                   now=job.now)
        job.mark("event")
        view = _view(job) or view
    job.send_once("customer_mail", lambda: notify.customer_confirmation(
        view, sequence=sequence, now=job.now, manage_url=_manage_link(job)))
    _tell_expert(job, view, "expert_mail", lambda: notify.expert_notification(
        view, sequence=sequence, now=job.now, attach_ics=True))


def _cancel(job: _Job) -> None:
    view = _view(job)
    if view is None:
        job.notes.append("the booking no longer exists")
        return
    sequence = _sequence(job.item, view)
    event = view.external.get("event")
    if not job.done("event_cancel"):
        ref = _ref_of(event)
        session_key = event.get("session_key") if isinstance(event, dict) else None
        if view.seated or session_key:
            # A seat of a session: this customer leaves its event; the event itself is
            # cancelled only when the last one goes.
            key = str(session_key or view.session_key)
            _sync_session(job, key, view, known=ref if session_key == key else None)
            job.mark("event_cancel")
        elif ref is not None:
            details = replace(view.details, sequence=sequence, status="cancelled")
            _calendar_holding(job, ref).cancel_event(ref, details)
            job.mark("event_cancel")
        else:
            job.mark("event_cancel", SKIPPED, "no calendar event was made")
    job.send_once("customer_mail", lambda: notify.customer_cancellation(
        view, sequence=sequence, now=job.now))
    _tell_expert(job, view, "expert_mail", lambda: notify.expert_cancellation(
        view, sequence=sequence, now=job.now, attach_ics=True))


def _previous(item: OutboxItem) -> tuple[datetime, datetime, str | None] | None:
    """Where a rescheduled booking was (the payload's ``from``: start, end, expert)."""
    moved = (item.payload or {}).get("from")
    if not isinstance(moved, dict):
        return None
    try:
        start = datetime.fromisoformat(str(moved["start"]).replace("Z", "+00:00"))
        end = datetime.fromisoformat(str(moved["end"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return None
    if start.tzinfo is None or end.tzinfo is None or end <= start:
        return None
    expert = moved.get("expert")
    return start, end, str(expert) if isinstance(expert, str) and expert else None


def _moved_meeting(job: _Job, view: notify.BookingView, details: BookingDetails
                   ) -> Meeting | None:
    """The booking's video meeting, moved with it where its provider can move one
    (``VideoProvider.update_meeting``); the same link otherwise. None: no meeting of
    its own (none, or made by the calendar inside the event)."""
    stored = view.external.get("meeting")
    if not isinstance(stored, dict) or not stored.get("id") or not view.details.meeting_url:
        return None
    meeting = Meeting(url=view.details.meeting_url, id=str(stored["id"]),
                      provider=str(stored.get("provider", "")))
    video = job.plugins.video_for(job.item.shop_id)
    if video.provider is None or video.name != meeting.provider:
        return meeting  # the shop switched video providers since: keep the link it has
    moved = video.provider.update_meeting(meeting, details)
    if moved.url != meeting.url:
        _save_refs(job.db, view.booking_id, meeting={"provider": moved.provider,
                                                     "id": moved.id},
                   meeting_url=moved.url, now=job.now, replace_url=True)
    return moved


def _move_event(job: _Job, view: notify.BookingView, details: BookingDetails) -> None:
    """The SAME provider event, updated in place (new time, sequence); the video link
    stays. A booking whose event was never made gets one now."""
    ref = _ref_of(view.external.get("event"), view.details.meeting_url)
    meeting = _moved_meeting(job, view, details)
    if meeting is not None:
        details = replace(details, meeting_url=meeting.url)
    job.check_lease()
    if ref is None:
        new = job.plugins.calendar_for(job.item.shop_id).create_event(details, meeting)
    else:
        new = _calendar_holding(job, ref).update_event(ref, details, meeting)
        if new.meeting_url is None and ref.meeting_url:
            new = replace(new, meeting_url=ref.meeting_url)
    _save_refs(job.db, view.booking_id, event=_stored_event(new),
               meeting_url=new.meeting_url or (meeting.url if meeting else None), now=job.now)


def _previous_expert_view(job: _Job, view: notify.BookingView, expert_id: str,
                          start: datetime, end: datetime) -> notify.BookingView | None:
    """The booking as its previous expert had it (their name, address and zone, the old
    time), for the cancellation they are sent when a reschedule hands it to another."""
    with job.db.read() as session:
        expert = session.get(Expert, expert_id)
        if expert is None or expert.shop_id != view.shop_id:
            return None
        name, email, tz = expert.name, expert.email, expert.timezone
    d = view.details
    details = replace(d, expert_id=expert_id, expert_name=clean_name(name) or "Your expert",
                      expert_email=valid_address(email), start=start, end=end,
                      expert_timezone=tz or d.shop_timezone, status="cancelled")
    return replace(view, details=details)


def _reschedule(job: _Job) -> None:
    """After a reschedule (``booking.rescheduled``, recorded in its transaction): the
    calendar event moved in place -> the customer's one "rescheduled" mail (same UID,
    higher SEQUENCE, the manage link) -> the expert told (and a previous expert told of
    the cancellation). Each step recorded once, as for a confirmation."""
    view = _view(job)
    if view is None:
        job.notes.append("the booking no longer exists")
        return
    steps = ("event_update", "customer_mail", "expert_mail", "previous_expert_mail")
    if view.details.status != CONFIRMED:
        # Cancelled (or lapsed) since: its cancellation tells everyone what is left.
        for step in steps:
            if not job.done(step):
                job.mark(step, SKIPPED, "the booking is no longer confirmed")
        return
    # The booking's own sequence when it has moved again since: the mail shows the time
    # it has now, so its invitation carries the sequence of that time.
    sequence = max(_sequence(job.item, view), view.details.sequence)
    details = replace(view.details, sequence=sequence)
    previous = _previous(job.item)
    if not job.done("event_update"):
        stored = view.external.get("event")
        old_key = stored.get("session_key") if isinstance(stored, dict) else None
        if view.seated or old_key:
            if old_key and old_key != view.session_key:
                _sync_session(job, str(old_key), view, known=_ref_of(stored))
            if view.seated:
                _sync_session(job, view.session_key, view)
        else:
            _move_event(job, view, details)
        job.mark("event_update")
        view = _view(job) or view
    was = (previous[0], previous[1]) if previous else None
    job.send_once("customer_mail", lambda: notify.customer_rescheduled(
        view, sequence=sequence, now=job.now, manage_url=_manage_link(job), previous=was))
    _tell_expert(job, view, "expert_mail", lambda: notify.expert_rescheduled(
        view, sequence=sequence, now=job.now, previous=was))
    old_expert = previous[2] if previous else None
    if previous is None or old_expert is None or old_expert == view.details.expert_id:
        if not job.done("previous_expert_mail"):
            job.mark("previous_expert_mail", SKIPPED, "the expert stayed")
        return
    before = _previous_expert_view(job, view, old_expert, previous[0], previous[1])
    _tell_expert(job, view, "previous_expert_mail", lambda: None if before is None else
                 notify.expert_cancellation(before, sequence=sequence, now=job.now,
                                            attach_ics=True))


HANDLERS: dict[str, Callable[[_Job], None]] = {
    CONFIRMED_KIND: _confirm,
    CANCELLED_KIND: _cancel,
    RESCHEDULED_KIND: _reschedule,
    shopify_actions.TAG_KIND: shopify_actions.tag_order,
    shopify_actions.REFUND_KIND: shopify_actions.refund_line,
    waitlist.KIND: waitlist.deliver,
}


# --------------------------------------------------------------------------- delivery


def backoff(config: Config, attempts: int, retry_after: float | None = None) -> float:
    """Seconds until the next attempt: exponential from ``outbox_retry_seconds``, capped,
    with "equal jitter" (half fixed, half random) so a burst of failures spreads out;
    never sooner than the provider's ``Retry-After``."""
    base = float(config.outbox_retry_seconds)
    cap = float(config.outbox_retry_max_seconds)
    delay: float = min(cap, base * (2 ** max(0, attempts - 1)))
    delay = delay / 2 + random.uniform(0, delay / 2)
    if retry_after is not None:
        delay = max(delay, min(float(retry_after), cap or float(retry_after)))
    return delay


def deliver(db: Database, clock: Clock, plugins: Plugins, item_id: int, owner: str) -> Outcome:
    """Claim row ``item_id`` for ``owner`` and do its work under a heartbeat-renewed
    lease. Never raises for the work's failures: they are recorded on the row (retry or
    failed). ``status`` ``lost``: the lease went to another worker mid-way, which
    finishes the row."""
    config = plugins.config
    lease_seconds = float(config.outbox_lease_seconds)
    now = clock.now()
    claimed_at = time.monotonic()
    if not claim(db, item_id, owner, now, lease_seconds):
        return Outcome(item_id, "skipped")
    with db.read() as session:
        item = session.get(OutboxItem, item_id)
        assert item is not None
        session.expunge(item)
    handler = HANDLERS.get(item.kind)
    if handler is None:
        return _fail(db, clock, item, owner, f"unknown outbox kind {item.kind!r}")
    lease = Lease(db, clock, item_id, owner, lease_seconds, claimed_at)
    job = _Job(db=db, clock=clock, plugins=plugins, item=item, lease_seconds=lease_seconds,
               lease=lease)
    return _run(job, handler, owner)


def _run(job: _Job, handler: Callable[[_Job], None], owner: str) -> Outcome:
    db, clock, item, config = job.db, job.clock, job.item, job.plugins.config
    item_id = item.id
    shopify = item.kind in SHOPIFY_KINDS
    try:
        # The heartbeat runs while the work does, and has stopped before the outcome is
        # written (so it never mistakes our own final write for a lost lease).
        with job.lease if job.lease is not None else nullcontext():
            if shopify:
                # Never sleep on Shopify in a worker: a wait it asks for is a retry.
                with admin_api.no_waiting() as deferral:
                    try:
                        job.check_lease()
                        handler(job)
                    except ProviderUnavailable as exc:
                        if exc.retry_after is None and deferral.retry_after is not None:
                            raise ProviderUnavailable(
                                exc.message, provider="shopify",
                                retry_after=deferral.retry_after) from None
                        raise
            else:
                handler(job)
    except LeaseLost as exc:
        log.warning("%s; leaving the rest to its new owner", exc)
        return Outcome(item_id, "lost", error=str(exc))
    except ProviderUnavailable as exc:
        return _retry(db, clock, config, item, owner, error_text(exc), exc.retry_after)
    except ConnectionBroken as exc:
        return _retry(db, clock, config, item, owner,
                      f"{error_text(exc)} (reconnect the account in the app)", BROKEN_MIN_DELAY)
    except StepBusy as exc:
        return _retry(db, clock, config, item, owner, error_text(exc), job.lease_seconds)
    except (ProviderRejected, ProviderNotConfigured, ValueError) as exc:
        return _fail(db, clock, item, owner, error_text(exc))
    except DBAPIError as exc:
        log.warning("outbox item %s: database error, will retry: %s", item_id, exc)
        return _retry(db, clock, config, item, owner, "a database error interrupted the work",
                      None)
    except Exception as exc:
        log.exception("outbox item %s (%s) failed unexpectedly", item_id, item.kind)
        return _retry(db, clock, config, item, owner, error_text(exc), None)
    finished = clock.now()
    with db.write() as session:
        session.execute(update(OutboxItem)
                        .where(OutboxItem.id == item_id, OutboxItem.status == PENDING,
                               OutboxItem.lease_owner == owner)
                        .values(status=DONE, done_at=finished, locked_until=None,
                                lease_owner=None,
                                last_error="; ".join(job.notes)[:500] or None)
                        .execution_options(synchronize_session=False))
    return Outcome(item_id, "done")


def _retry(db: Database, clock: Clock, config: Config, item: OutboxItem, owner: str, error: str,
           retry_after: float | None) -> Outcome:
    with db.read() as session:
        attempts = session.scalar(select(OutboxItem.attempts).where(OutboxItem.id == item.id))
    attempts = int(attempts or item.attempts or 1)
    if attempts >= config.outbox_max_attempts:
        return _fail(db, clock, item, owner, f"gave up after {attempts} attempts: {error}")
    delay = backoff(config, attempts, retry_after)
    log.info("outbox item %s: attempt %s failed (%s); retry in %.1fs", item.id, attempts,
             error, delay)
    now = clock.now()
    until = now + timedelta(seconds=delay)
    _release(db, item.id, owner, available_at=until, last_error=error)
    if item.kind in SHOPIFY_KINDS:
        _hold_back_shop(db, item, until, now)
    return Outcome(item.id, "retry", retry_in=delay, error=error)


def _fail(db: Database, clock: Clock, item: OutboxItem, owner: str, error: str) -> Outcome:
    log.warning("outbox item %s (%s, booking %s) failed: %s", item.id, item.kind,
                item.booking_id, error)
    with db.write() as session:
        session.execute(update(OutboxItem)
                        .where(OutboxItem.id == item.id, OutboxItem.status == PENDING,
                               OutboxItem.lease_owner == owner)
                        .values(status=FAILED, done_at=clock.now(), locked_until=None,
                                lease_owner=None, last_error=error)
                        .execution_options(synchronize_session=False))
    return Outcome(item.id, "failed", error=error)


def relay(db: Database, clock: Clock, plugins: Plugins, owner: str, limit: int = 100,
          lane: str | None = None) -> RelayResult:
    """Deliver what is due now, one row at a time, as ``owner`` (the embedded worker and
    ``consultbook`` commands; Celery dispatches rows to separate tasks instead).
    ``lane`` (:data:`CUSTOMER` / :data:`SHOPIFY`) limits it to one lane."""
    result = RelayResult()
    seen: set[int] = set()
    while len(result.outcomes) < limit:
        ids = [i for i in due_ids(db, clock.now(), limit, lane) if i not in seen]
        if not ids:
            break
        for item_id in ids:
            seen.add(item_id)
            result.outcomes.append(deliver(db, clock, plugins, item_id, owner))
            if len(result.outcomes) >= limit:
                break
    result.next_due = next_due(db, lane)
    return result


def recover_stuck_steps(db: Database, now: datetime, lease_seconds: float,
                        resendable: Callable[[str], bool] | None = None) -> int:
    """Mail steps left ``sending`` by a worker that died become ``unknown`` (never resent),
    so the merchant sees them; returns how many. A step whose row is still under a live
    lease is being sent by a live worker (its heartbeat renews the lease): left alone,
    however long the send takes. ``resendable(shop_id)``: the shop's mail provider
    delivers an idempotency key once, so the next delivery simply sends the step again
    (:meth:`_Job.send_once`): its steps are left for it."""
    cutoff = now - timedelta(seconds=lease_seconds)
    leased = select(OutboxItem.id).where(OutboxItem.status == PENDING,
                                         OutboxItem.locked_until > now)
    with db.write() as session:
        stuck = session.execute(
            select(OutboxStep.outbox_id, OutboxStep.step, OutboxItem.shop_id)
            .join(OutboxItem, OutboxItem.id == OutboxStep.outbox_id)
            .where(OutboxStep.status == SENDING, OutboxStep.updated_at < cutoff,
                   OutboxStep.outbox_id.notin_(leased))).all()
        if not stuck:
            return 0
        verdict: dict[str, bool] = {}
        closed = 0
        for item_id, step, shop_id in stuck:
            if resendable is not None and shop_id not in verdict:
                verdict[shop_id] = resendable(shop_id)
            if verdict.get(shop_id, False):
                continue
            result = session.execute(
                update(OutboxStep)
                .where(OutboxStep.outbox_id == item_id, OutboxStep.step == step,
                       OutboxStep.status == SENDING)
                .values(status=UNKNOWN, updated_at=now,
                        detail="the worker stopped while sending; the message may not "
                               "have arrived")
                .execution_options(synchronize_session=False))
            closed += int(result.rowcount or 0)  # type: ignore[attr-defined]
        return closed


# --------------------------------------------------------------------------- merchant view


def delivery_statuses(session: Session, booking_ids: Sequence[str]
                      ) -> dict[str, dict[str, Any] | None]:
    """What the merchant sees of each booking's external work (``delivery`` in the
    admin): ``status`` ``pending`` | ``retrying`` | ``done`` | ``failed``, the last error,
    and messages whose delivery is in doubt; ``None`` when there was no work. Two
    queries for any number of bookings."""
    ids = list(dict.fromkeys(booking_ids))
    if not ids:
        return {}
    items_of: dict[str, list[OutboxItem]] = {i: [] for i in ids}
    for item in session.scalars(select(OutboxItem).where(OutboxItem.booking_id.in_(ids))
                                .order_by(OutboxItem.id)):
        items_of[item.booking_id or ""].append(item)
    doubtful_of: dict[str, set[str]] = {i: set() for i in ids}
    for booking_id, step in session.execute(
            select(OutboxItem.booking_id, OutboxStep.step)
            .join(OutboxItem, OutboxItem.id == OutboxStep.outbox_id)
            .where(OutboxItem.booking_id.in_(ids), OutboxStep.status == UNKNOWN)):
        doubtful_of[booking_id or ""].add(step)
    return {i: _summary(items_of[i], doubtful_of[i]) for i in ids}


def delivery_status(session: Session, booking_id: str) -> dict[str, Any] | None:
    return delivery_statuses(session, [booking_id])[booking_id]


def _summary(items: list[OutboxItem], doubtful: set[str]) -> dict[str, Any] | None:
    if not items:
        return None
    if any(i.status == FAILED for i in items):
        status = "failed"
    elif any(i.status == PENDING for i in items):
        status = "retrying" if any(i.status == PENDING and i.last_error for i in items) \
            else "pending"
    else:
        status = "done"
    errors = [i for i in items if i.last_error]
    last = errors[-1] if errors else None
    pending = [i for i in items if i.status == PENDING]
    return {
        "status": status,
        "last_error": last.last_error if last else None,
        "attempts": sum(i.attempts for i in items),
        "next_attempt_at": pending[0].available_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        if pending else None,
        "unconfirmed_messages": sorted(doubtful),
    }
