"""Helpers of the delivery suite: move or cancel a booking the way the reschedule and
cancel paths record it (a claim write plus its outbox row), and run the relay."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update

from engine.bootstrap import Context
from engine.services import outbox
from engine.services.claims import write_claim
from engine.services.orders import cancel_booking
from engine.store.models import Claim, OutboxItem, ShopSettings

ISO = "%Y-%m-%dT%H:%M:%SZ"


def relay(ctx: Context) -> list[outbox.Outcome]:
    return outbox.relay(ctx.db, ctx.clock, ctx.plugins, "test-worker").outcomes


def move(ctx: Context, booking_id: str, start: datetime, *,
         expert_id: str | None = None) -> None:
    """Reschedule as the engine does: the claim moved in one transaction (the database's
    rules decide), ``sequence`` raised, one ``booking.rescheduled`` row saying where it
    was."""
    now = ctx.clock.now()
    with ctx.db.write() as session:
        c = session.get(Claim, booking_id)
        assert c is not None
        old = {"start": c.start_at.strftime(ISO), "end": c.end_at.strftime(ISO),
               "expert": c.expert_id}
        length = c.end_at - c.start_at
        write_claim(session, c, now, start_at=start, end_at=start + length,
                    claim_start=start, claim_end=start + length,
                    expert_id=expert_id or c.expert_id, sequence=c.sequence + 1,
                    updated_at=now)
        session.add(OutboxItem(shop_id=c.shop_id, booking_id=c.id,
                               kind=outbox.RESCHEDULED_KIND,
                               payload={"sequence": c.sequence, "from": old},
                               status="pending", attempts=0, available_at=now,
                               created_at=now))


def cancel(ctx: Context, booking_id: str, by: str = "customer") -> None:
    with ctx.db.write() as session:
        c = session.get(Claim, booking_id)
        assert c is not None
        assert cancel_booking(session, c, ctx.clock.now(), by=by)


def redeliver(ctx: Context, kind: str) -> None:
    """Put the done rows of ``kind`` back to pending, as a redelivered task would find
    them (their steps stay recorded)."""
    with ctx.db.write() as session:
        session.execute(update(OutboxItem).where(OutboxItem.kind == kind)
                        .values(status="pending", done_at=None, locked_until=None,
                                lease_owner=None))


def set_notify_experts(ctx: Context, shop_id: str, on: bool) -> None:
    with ctx.db.write() as session:
        session.execute(update(ShopSettings).where(ShopSettings.shop_id == shop_id)
                        .values(notify_experts=on))


def claim_of(ctx: Context, booking_id: str) -> Claim:
    with ctx.db.read() as session:
        row = session.scalar(select(Claim).where(Claim.id == booking_id))
        assert row is not None
        return row


def later(iso: str, **delta: float) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")) + timedelta(**delta)
