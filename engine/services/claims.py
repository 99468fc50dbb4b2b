"""Claims: the rows that hold an expert's time (holds and bookings), and the few
primitives every writer of them uses.

The guarantee that two live claims of one expert never overlap is the database's:
PostgreSQL's exclusion constraint ``claims_no_overlap`` (SQLSTATE 23P01) and, on SQLite,
the ``claims_no_overlap_*`` triggers, with every writer under ``BEGIN IMMEDIATE``. Code
here never decides "free" by itself before writing; it writes and maps the refusal to
:class:`SlotUnavailable`.

An expired hold (or a pending booking past its ``pending_hold_hours``) never blocks:
before a claim is written, the stale rows of that expert overlapping the range are
marked ``expired`` in the same transaction, whether or not the sweeper has run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Table,
    and_,
    bindparam,
    insert,
    inspect,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, make_transient_to_detached

from engine.domain.slots import Instant
from engine.errors import Conflict
from engine.services import capacity
from engine.store.db import Transaction
from engine.store.models import CONFIRMED, EXPIRED, HELD, LIVE_STATUSES, PENDING, Claim
from engine.store.types import UTCDateTime, epoch, overlaps

HOLD_RETENTION = timedelta(days=30)  # expired/released holds are kept this long (>= 7 days)


class SlotUnavailable(Conflict):
    code = "slot_unavailable"

    def __init__(self, message: str = "this time was just taken; please choose another") -> None:
        super().__init__(message)


def is_overlap(exc: IntegrityError) -> bool:
    """Whether the database refused a write because two live claims would overlap."""
    orig = exc.orig
    if getattr(orig, "sqlstate", None) == "23P01":
        return True
    return "claims_no_overlap" in str(orig)


class SessionFull(SlotUnavailable):
    """The session has no seat left for this claim (a 409 ``slot_unavailable``)."""

    def __init__(self) -> None:
        super().__init__("this session has no seats left for that many; please choose "
                         "another time or fewer seats")


def refused(exc: IntegrityError) -> Conflict | None:
    """The conflict a refused claim write means (overlap, seats, limit), else None: the
    one place the database's refusals become errors."""
    if is_overlap(exc):
        return SlotUnavailable()
    rule = capacity.refusal(exc)
    if rule == "seats":
        return SessionFull()
    if rule == "limit":
        return capacity.LimitReached()
    return None


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def live_clause(now: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
    """SQL: the claim holds time at ``now``. A confirmed booking always does; a hold and a
    pending booking only until their ``expires_at`` (a hold's ten minutes, a pending
    booking's ``pending_hold_hours``). A pending row without a deadline (none is written
    since migration 0007, which gave the old ones theirs) counts as live: the safe side."""
    return or_(Claim.status == CONFIRMED,
               and_(Claim.status == HELD, Claim.expires_at > now),
               and_(Claim.status == PENDING,
                    or_(Claim.expires_at.is_(None), Claim.expires_at > now)))


def _expire_statement(one_expert: bool, in_range: bool) -> Any:
    """The UPDATE of :func:`expire_stale_holds`, built once per shape (a Core statement
    with bound parameters: every write runs it, and building it cost more than running
    it)."""
    key = (one_expert, in_range)
    stmt = _EXPIRE.get(key)
    if stmt is None:
        c = _CLAIMS.c
        stmt = (update(_CLAIMS)
                .where(c.status.in_((HELD, PENDING)),
                       c.expires_at <= bindparam("now", type_=UTCDateTime()))
                .values(status=EXPIRED, updated_at=bindparam("now", type_=UTCDateTime())))
        if one_expert:
            stmt = stmt.where(c.expert_id == bindparam("expert"))
        if in_range:
            stmt = stmt.where(overlaps(c.claim_start, c.claim_end,
                                       bindparam("start", type_=UTCDateTime()),
                                       bindparam("end", type_=UTCDateTime())))
        _EXPIRE[key] = stmt
    return stmt


_EXPIRE: dict[tuple[bool, bool], Any] = {}
_CLAIMS = cast(Table, Claim.__table__)


def expire_stale_holds(session: Session, now: datetime, *, expert_id: str | None = None,
                       start: datetime | None = None, end: datetime | None = None) -> int:

    """Move claims past their ``expires_at`` out of the live set (of one expert and range,
    or all): stale holds and lapsed pending bookings become ``expired``. A lapsed pending
    booking keeps its order and line item ids, so a later paid delivery finds it (and
    books it again only if its time is still free and offered: engine.services.orders).

    Every writer of a claim calls this for the expert and range first, in the same
    transaction: the overlap and seat rules of the database are status-based, and a
    stale row must not refuse a claim that availability (:func:`live_clause`) shows as
    free. Limits count a whole day, week and month: :func:`_expire_for_limits` widens
    the range to those periods when the claim is limited (one index range scan either
    way, never all of an expert's claims). Objects already loaded are not refreshed
    (``synchronize_session=False`` as before); pending changes are flushed first, as
    an ORM statement would (unless autoflush is off)."""
    in_range = start is not None and end is not None
    params: dict[str, Any] = {"now": now}
    if expert_id is not None:
        params["expert"] = expert_id
    if in_range:
        params["start"], params["end"] = start, end
    if session.autoflush:
        session.flush()
    return _rowcount(session.execute(_expire_statement(expert_id is not None, in_range),
                                     params))


def _expire_for_limits(session: Session, claim: Claim, now: datetime, *,
                       own_range: bool = False, known: capacity.Facts | None = None
                       ) -> capacity.Facts:
    """A limited claim's counters must not count stale holds anywhere in its periods:
    expire the expert's stale claims over the union of its day, ISO week and month
    (with ``own_range``, over the claim's own range too: one UPDATE for both). Returns
    the claim's capacity facts (engine.services.capacity.facts), read once for both --
    or ``known``, when the caller has them (which only chooses how wide to expire)."""
    known = known or capacity.facts(session, claim)
    window = expiry_window(session, claim, known, own_range=own_range)
    if window is not None:
        expire_stale_holds(session, now, expert_id=claim.expert_id, start=window[0],
                           end=window[1])
    return known


def expiry_window(session: Session, claim: Claim, known: capacity.Facts, *,
                  own_range: bool = True) -> tuple[datetime, datetime] | None:
    """The range over which a write of ``claim`` expires the expert's stale claims
    first (:func:`_expire_for_limits`): its limit periods, with ``own_range`` its own
    range too; None: nothing to expire."""
    if own_range:
        return claim_expiry_window(claim.start_at, (claim.claim_start, claim.claim_end),
                                   known)
    return capacity.limit_window(session, claim, known)


def claim_expiry_window(start_at: datetime, claimed: tuple[datetime, datetime],
                        known: capacity.Facts) -> tuple[datetime, datetime]:
    """:func:`expiry_window` (``own_range``) of a new claim starting at ``start_at`` and
    claiming ``claimed``, without a Claim object: its limit periods and its own range."""
    window = capacity.limit_window_at(start_at, known)
    if window is None:
        return claimed
    return (min(window[0], claimed[0]), max(window[1], claimed[1]))


_CLAIM_INSERT = insert(_CLAIMS)
# (attribute, column, Python-side scalar default) of every column of a claim.
_CLAIM_COLUMNS = tuple(
    (prop.key, prop.columns[0].key,
     prop.columns[0].default.arg if prop.columns[0].default is not None
     and prop.columns[0].default.is_scalar else None)
    for prop in Claim.__mapper__.column_attrs)


def _insert_values(claim: Claim) -> dict[str, Any]:
    """The INSERT parameters of a new claim: what the ORM's flush would send (the values
    set on it, and the scalar defaults of those not set), without the unit of work --
    one plain statement, a third of a hold's ORM time."""
    state = inspect(claim)
    assert claim.id, "insert_last takes a new claim with its id"
    values: dict[str, Any] = {}
    for attr, column, default in _CLAIM_COLUMNS:
        if attr in state.dict:
            values[column] = state.dict[attr]
        elif default is not None:
            values[column] = default
            setattr(claim, attr, default)
    return values


def _attach(session: Session, claim: Claim) -> None:
    """The claim just inserted becomes a persistent object of the session, as if the ORM
    had flushed it (what was not set is loaded on first use)."""
    make_transient_to_detached(claim)
    session.add(claim)


def insert_last(session: Session, claim: Claim, now: datetime,
                window: capacity.Facts | None = None) -> None:
    """Insert a new claim as the transaction's last write: no savepoint (two round trips
    fewer); an overlap, a full session or a reached limit raises its conflict
    (:func:`refused`) and the caller's transaction rolls back. A live claim first
    expires the expert's stale claims over its range (and its limit periods: one
    UPDATE) and gets its session and counters ready.

    ``window``: the claim's capacity facts as the caller knows them (a hold's catalog
    cache), used on PostgreSQL only to choose how wide to expire, not read again. (The
    rows' capacities are the triggers' there, read in this transaction; a limit added
    a moment ago can at worst refuse this claim for a stale hold in its period, never
    let one too many through. SQLite reads the facts here, as its capacities come from
    them.)"""
    if claim.status in LIVE_STATUSES:
        pg = session.get_bind().dialect.name == "postgresql"
        known = _expire_for_limits(session, claim, now, own_range=True,
                                   known=window if pg else None)
        capacity.prepare(session, claim, now, known)  # (PostgreSQL: only the key)
    new = inspect(claim).transient
    try:
        if not new:  # already added to the session: the ORM inserts it
            session.add(claim)
        session.flush()  # whatever else is pending goes first, as before
        if new:
            session.execute(_CLAIM_INSERT, _insert_values(claim))
    except IntegrityError as exc:
        error = refused(exc)
        if error is not None:
            raise error from None
        raise
    if new:
        _attach(session, claim)


# A new live claim written outside the ORM (engine.store.db.Database.transaction): every
# column the ORM's flush of a hold sends, built once, with the Python-side scalar
# defaults of the others (sequence, reschedules) bound as the ORM would.
_NEW_CLAIM_COLUMNS = ("id", "shop_id", "service_id", "expert_id", "start_at", "end_at",
                      "claim_start", "claim_end", "status", "expires_at", "visitor",
                      "customer_tz", "seats", "answers", "session_key", "created_at",
                      "updated_at")
_NEW_CLAIM_DEFAULTS = {column: default for _, column, default in _CLAIM_COLUMNS
                       if default is not None and column not in _NEW_CLAIM_COLUMNS}
_NEW_CLAIM_ALL = (*_NEW_CLAIM_COLUMNS, *_NEW_CLAIM_DEFAULTS)


def new_claim_insert(where: ColumnElement[bool]) -> Any:
    """``INSERT INTO claims (...) SELECT <the new claim's values> WHERE <where>
    RETURNING id``, for :func:`insert_new`: the claim is inserted only when ``where``
    holds (evaluated once, before the insert: a volatile function there runs first, in
    the same statement). Build it once."""
    values = select(*[bindparam(c, type_=_CLAIMS.c[c].type) for c in _NEW_CLAIM_ALL])
    return (insert(_CLAIMS).from_select(list(_NEW_CLAIM_ALL), values.where(where))
            .returning(_CLAIMS.c.id))


def insert_new(tx: Transaction, statement: Any, values: Mapping[str, Any]) -> bool:
    """Insert a new claim with ``statement`` (:func:`new_claim_insert`; ``values``: every
    column of :data:`_NEW_CLAIM_COLUMNS`, its ``session_key`` set, datetimes aware,
    and the parameters of the statement's condition) on PostgreSQL, outside the ORM
    (engine.store.db.Database.transaction); whether it was inserted (False: its
    condition did not hold). An overlap, a full session or a reached limit raises its
    conflict (:func:`refused`) and the transaction rolls back. What
    :func:`insert_last` does there with ``expired``: the statement's condition expires
    the expert's stale claims over :func:`claim_expiry_window` first
    (``consultbook_hold_begin``), and the claim's triggers make its session and counters
    (migration 0017). ``answers`` is a dict or None (sent as JSON)."""
    from psycopg.types.json import Json  # (PostgreSQL only)

    params = {**_NEW_CLAIM_DEFAULTS, **values}
    if params["answers"] is not None:
        params["answers"] = Json(params["answers"])
    try:
        return bool(tx.rows(statement, params))
    except IntegrityError as exc:
        error = refused(exc)
        if error is not None:
            raise error from None
        raise


def write_claim(session: Session, claim: Claim, now: datetime, **changes: object) -> None:
    """Add a new claim, or apply ``changes`` to an existing one, and flush it inside a
    savepoint; a refusal (:func:`refused`) raises its conflict and leaves the surrounding
    transaction usable. (The changes are made inside the savepoint because
    ``begin_nested`` first flushes whatever is pending outside it.) A claim that is live
    afterwards gets its session and counters ready first (engine.services.capacity):
    that is what makes a moved claim (another start or expert) count where it went."""
    try:
        with session.begin_nested():
            with session.no_autoflush:
                for name, value in changes.items():
                    setattr(claim, name, value)
                if claim.status in LIVE_STATUSES:
                    known = _expire_for_limits(session, claim, now)
                    capacity.prepare(session, claim, now, known)
            session.add(claim)
            session.flush()
    except IntegrityError as exc:
        error = refused(exc)
        if error is not None:
            raise error from None
        raise


# Built once: availability runs it on every storefront request.
_BUSY_WHERE = (Claim.expert_id.in_(bindparam("ids", expanding=True)),
               Claim.claim_start < bindparam("hi", type_=UTCDateTime()),
               Claim.claim_end > bindparam("lo", type_=UTCDateTime()),
               live_clause(bindparam("now", type_=UTCDateTime())))
_BUSY = select(Claim.expert_id, epoch(Claim.claim_start), epoch(Claim.claim_end)).where(
    *_BUSY_WHERE)
# The same claims with what a seated or limited service needs to tell its own sessions
# from other busy time: the service, the session's start, the seats taken.
_BUSY_SEATS = select(Claim.expert_id, epoch(Claim.claim_start), epoch(Claim.claim_end),
                     Claim.service_id, epoch(Claim.start_at), Claim.seats).where(*_BUSY_WHERE)


class LiveClaim(NamedTuple):
    """A live claim as availability sees it: its claimed range (buffers included), its
    service, its start (with the expert and service: its session) and its seats."""

    claim_start: Instant
    claim_end: Instant
    service_id: str
    start: Instant
    seats: int


def _busy_params(expert_ids: Sequence[str], start: Instant, end: Instant,
                 now: datetime) -> dict[str, object]:
    return {"ids": list(expert_ids), "lo": datetime.fromtimestamp(start, tz=now.tzinfo),
            "hi": datetime.fromtimestamp(end, tz=now.tzinfo), "now": now}


def busy_from_claims(session: Session, expert_ids: Sequence[str], start: Instant, end: Instant,
                     now: datetime) -> dict[str, list[tuple[Instant, Instant]]]:
    """The claimed ranges of live claims overlapping ``[start, end)``, per expert."""
    if not expert_ids:
        return {}
    rows = session.execute(_BUSY, _busy_params(expert_ids, start, end, now))
    out: dict[str, list[tuple[Instant, Instant]]] = {}
    for expert_id, a, b in rows:
        out.setdefault(expert_id, []).append((int(a), int(b)))
    return out


def live_claims(session: Session, expert_ids: Sequence[str], start: Instant, end: Instant,
                now: datetime) -> dict[str, list[LiveClaim]]:
    """:func:`busy_from_claims` with each claim's service, start and seats (one query),
    for availability of a service with seats or limits (engine.services.availability
    groups a service's claims into its sessions)."""
    if not expert_ids:
        return {}
    rows = session.execute(_BUSY_SEATS, _busy_params(expert_ids, start, end, now))
    out: dict[str, list[LiveClaim]] = {}
    for expert_id, a, b, service_id, at, seats in rows:
        out.setdefault(expert_id, []).append(
            LiveClaim(int(a), int(b), service_id, int(at), int(seats)))
    return out


def sweep(session: Session, now: datetime) -> tuple[int, int]:
    """One sweeper pass: expire stale holds and lapsed pending bookings; delete
    expired/released holds that never became bookings, older than the retention period
    (a lapsed pending booking keeps its order id and is kept). Returns (expired, deleted)."""
    from sqlalchemy import delete

    from engine.store.models import RELEASED

    expired = expire_stale_holds(session, now)
    deleted = _rowcount(session.execute(
        delete(Claim)
        .where(Claim.status.in_((EXPIRED, RELEASED)), Claim.order_id.is_(None),
               Claim.updated_at < now - HOLD_RETENTION)
        .execution_options(synchronize_session=False)))
    return expired, deleted
