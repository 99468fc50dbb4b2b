"""Claims: the rows that hold an expert's time (holds and bookings), and the few
primitives every writer of them uses.

The guarantee that two live claims of one expert never overlap is the database's:
PostgreSQL's exclusion constraint ``claims_no_overlap`` (SQLSTATE 23P01) and, on SQLite,
the ``claims_no_overlap_*`` triggers, with every writer under ``BEGIN IMMEDIATE``. Code
here never decides "free" by itself before writing; it writes and maps the refusal to
:class:`SlotUnavailable`.

An expired hold never blocks: before a claim is written, the stale holds of that expert
overlapping the range are marked ``expired`` in the same transaction, whether or not the
sweeper has run.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import BindParameter, ColumnElement, and_, bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.domain.slots import Instant
from engine.errors import Conflict
from engine.store.models import EXPIRED, HELD, LIVE_STATUSES, Claim
from engine.store.types import UTCDateTime, epoch

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


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def live_clause(now: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
    """SQL: the claim holds time at ``now`` (a held row counts only until it expires)."""
    return or_(Claim.status.in_((LIVE_STATUSES[1], LIVE_STATUSES[2])),
               and_(Claim.status == HELD, Claim.expires_at > now))


def expire_stale_holds(session: Session, now: datetime, *, expert_id: str | None = None,
                       start: datetime | None = None, end: datetime | None = None) -> int:
    """Mark holds past their ``expires_at`` as expired (of one expert and range, or all)."""
    stmt = (update(Claim)
            .where(Claim.status == HELD, Claim.expires_at <= now)
            .values(status=EXPIRED, updated_at=now)
            .execution_options(synchronize_session=False))
    if expert_id is not None:
        stmt = stmt.where(Claim.expert_id == expert_id)
    if start is not None and end is not None:
        stmt = stmt.where(Claim.claim_start < end, Claim.claim_end > start)
    return _rowcount(session.execute(stmt))


def insert_last(session: Session, claim: Claim) -> None:
    """Insert a new claim as the transaction's last write: no savepoint (two round trips
    fewer); an overlap raises SlotUnavailable and the caller's transaction rolls back."""
    session.add(claim)
    try:
        session.flush()
    except IntegrityError as exc:
        if is_overlap(exc):
            raise SlotUnavailable() from None
        raise


def write_claim(session: Session, claim: Claim, **changes: object) -> None:
    """Add a new claim, or apply ``changes`` to an existing one, and flush it inside a
    savepoint; an overlap raises SlotUnavailable and leaves the surrounding transaction
    usable. (The changes are made inside the savepoint because ``begin_nested`` first
    flushes whatever is pending outside it.)"""
    try:
        with session.begin_nested():
            for name, value in changes.items():
                setattr(claim, name, value)
            session.add(claim)
            session.flush()
    except IntegrityError as exc:
        if is_overlap(exc):
            raise SlotUnavailable() from None
        raise


# Built once: availability runs it on every storefront request.
_BUSY = (select(Claim.expert_id, epoch(Claim.claim_start), epoch(Claim.claim_end))
         .where(Claim.expert_id.in_(bindparam("ids", expanding=True)),
                Claim.claim_start < bindparam("hi", type_=UTCDateTime()),
                Claim.claim_end > bindparam("lo", type_=UTCDateTime()),
                live_clause(bindparam("now", type_=UTCDateTime()))))


def busy_from_claims(session: Session, expert_ids: Sequence[str], start: Instant, end: Instant,
                     now: datetime) -> dict[str, list[tuple[Instant, Instant]]]:
    """The claimed ranges of live claims overlapping ``[start, end)``, per expert."""
    if not expert_ids:
        return {}
    lo = datetime.fromtimestamp(start, tz=now.tzinfo)
    hi = datetime.fromtimestamp(end, tz=now.tzinfo)
    rows = session.execute(_BUSY, {"ids": list(expert_ids), "lo": lo, "hi": hi, "now": now})
    out: dict[str, list[tuple[Instant, Instant]]] = {}
    for expert_id, a, b in rows:
        out.setdefault(expert_id, []).append((int(a), int(b)))
    return out


def sweep(session: Session, now: datetime) -> tuple[int, int]:
    """One sweeper pass: expire stale holds; delete expired/released holds older than
    the retention period. Returns (expired, deleted)."""
    from sqlalchemy import delete

    from engine.store.models import RELEASED

    expired = expire_stale_holds(session, now)
    deleted = _rowcount(session.execute(
        delete(Claim)
        .where(Claim.status.in_((EXPIRED, RELEASED)), Claim.order_id.is_(None),
               Claim.updated_at < now - HOLD_RETENTION)
        .execution_options(synchronize_session=False)))
    return expired, deleted
