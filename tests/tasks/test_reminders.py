"""The reminder scan: due reminders go out once, with the invitation; one already past at
confirmation, and any of a cancelled booking, never; racing scans split the work."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import icalendar
import pytest
from sqlalchemy import select, text, update

from engine.bootstrap import Context
from engine.clock import FixedClock
from engine.services import reminders
from engine.services.claims import insert_last
from engine.services.providers import Plugins
from engine.services.shops import ShopRef
from engine.store import Database, new_id
from engine.store.models import Claim, Reminder
from engine.tasks.jobs import Deps
from tests.conftest import NOW, Admin, Storefront, make_catalog
from tests.tasks.helpers import EXTRA, MAIL, book, eml_files, process_env, set_providers

START = datetime.fromisoformat("2026-12-01T09:00:00+00:00")


def reminder_rows(ctx: Context, booking: str) -> dict[int, Reminder]:
    with ctx.db.read() as session:
        return {r.offset_minutes: r for r in session.scalars(
            select(Reminder).where(Reminder.booking_id == booking))}


def test_a_reminder_already_past_at_confirmation_is_skipped_the_next_goes_once(
        ctx: Context, deps: Deps, admin: Admin, store: Storefront, shop: ShopRef,
        clock: FixedClock) -> None:
    set_providers(ctx, shop, mail="recording")
    booking = book(admin, store)  # Tuesday 09:00Z, booked Monday 12:00Z
    rows = reminder_rows(ctx, booking)
    # 24 h before was Monday 09:00Z: already past when the booking was confirmed.
    assert rows[1440].status == "skipped"
    assert rows[60].status == "pending"
    assert rows[60].due_at == START - timedelta(minutes=60)

    clock.set(START - timedelta(minutes=61))
    assert reminders.run_due(ctx.db, clock, ctx.plugins).claimed == 0
    clock.set(START - timedelta(minutes=59, seconds=30))
    result = reminders.run_due(ctx.db, clock, ctx.plugins)
    assert result.claimed == 1 and len(result.sent) == 1
    assert reminders.run_due(ctx.db, clock, ctx.plugins).claimed == 0
    clock.advance(3600)
    assert reminders.run_due(ctx.db, clock, ctx.plugins).claimed == 0

    reminder_mails = [m for m in MAIL.sent if m.subject.startswith("Reminder")]
    assert len(reminder_mails) == 1
    (mail,) = reminder_mails
    assert mail.to == ("jon@example.com",) and "starts in 1 hour" in mail.text
    assert mail.ics is not None and mail.ics_method == "REQUEST"
    (vevent,) = icalendar.Calendar.from_ical(mail.ics).walk("VEVENT")
    assert str(vevent["UID"]) == f"{booking}@consultbook"
    rows = reminder_rows(ctx, booking)
    assert rows[60].status == "sent" and rows[60].sent_at is not None
    assert rows[1440].status == "skipped" and rows[1440].sent_at is None


def test_a_cancelled_booking_gets_no_reminder(
        ctx: Context, admin: Admin, store: Storefront, shop: ShopRef,
        clock: FixedClock) -> None:
    set_providers(ctx, shop, mail="recording")
    booking = book(admin, store)
    admin("POST", f"/bookings/{booking}/cancel")
    clock.set(START - timedelta(minutes=30))
    assert reminders.run_due(ctx.db, clock, ctx.plugins).claimed == 0
    assert reminder_rows(ctx, booking)[60].status == "cancelled"
    assert not [m for m in MAIL.sent if m.subject.startswith("Reminder")]


def test_a_booking_cancelled_after_the_claim_is_not_reminded(
        ctx: Context, admin: Admin, store: Storefront, shop: ShopRef,
        clock: FixedClock) -> None:
    set_providers(ctx, shop, mail="recording")
    booking = book(admin, store)
    clock.set(START - timedelta(minutes=30))
    claimed = reminders.claim_due(ctx.db, clock.now(), 10)
    assert [c.booking_id for c in claimed] == [booking]
    admin("POST", f"/bookings/{booking}/cancel")
    # A scan that claimed it before the cancel still checks before sending.
    with ctx.db.write() as session:
        session.execute(text("UPDATE reminders SET status = 'pending'"))
        session.execute(text("UPDATE claims SET status = 'cancelled' WHERE id = :id"),
                        {"id": booking})
    assert reminders.run_due(ctx.db, clock, ctx.plugins).sent == []


def test_only_the_nearest_of_reminders_due_together_goes_out(
        ctx: Context, admin: Admin, store: Storefront, shop: ShopRef,
        clock: FixedClock) -> None:
    """A scan that was down for a day finds both the 24 h and the 1 h reminder due."""
    set_providers(ctx, shop, mail="recording")
    catalog = make_catalog(admin)
    booking = book(admin, store, catalog=catalog, start="2026-12-03T09:00:00Z")
    clock.set(datetime.fromisoformat("2026-12-03T08:30:00+00:00"))
    result = reminders.run_due(ctx.db, clock, ctx.plugins)
    assert len(result.sent) == 1 and len(result.skipped) == 1
    rows = reminder_rows(ctx, booking)
    assert rows[60].status == "sent" and rows[1440].status == "skipped"


def test_a_transient_failure_puts_the_reminder_back_a_few_times(
        ctx: Context, admin: Admin, store: Storefront, shop: ShopRef,
        clock: FixedClock) -> None:
    from engine.providers import ProviderUnavailable

    set_providers(ctx, shop, mail="recording")
    booking = book(admin, store)
    clock.set(START - timedelta(minutes=30))
    MAIL.failures.extend([ProviderUnavailable("down", provider="recording")] * 2)
    assert len(reminders.run_due(ctx.db, clock, ctx.plugins).retried) == 1
    assert reminder_rows(ctx, booking)[60].status == "pending"
    assert len(reminders.run_due(ctx.db, clock, ctx.plugins).retried) == 1
    assert len(reminders.run_due(ctx.db, clock, ctx.plugins).sent) == 1
    assert reminder_rows(ctx, booking)[60].attempts == 2


def test_a_reminder_left_sending_by_a_dead_scan_is_closed_never_resent(
        ctx: Context, admin: Admin, store: Storefront, shop: ShopRef,
        clock: FixedClock) -> None:
    set_providers(ctx, shop, mail="recording")
    booking = book(admin, store)
    clock.set(START - timedelta(minutes=30))
    assert len(reminders.claim_due(ctx.db, clock.now(), 10)) == 1  # ...and the scan died
    clock.advance(16 * 60)
    assert reminders.recover_stuck(ctx.db, clock.now()) == 1
    assert reminders.run_due(ctx.db, clock, ctx.plugins).claimed == 0
    row = reminder_rows(ctx, booking)[60]
    assert row.status == "failed" and "may not have arrived" in (row.last_error or "")
    assert row.sent_at is None
    # The one right outcome: the mail provider was never asked for anything. The dead
    # scan never reached it, the recovery does not send, and nothing else in this test
    # runs the outbox (the confirmation waits there), so any message at all is wrong.
    assert MAIL.calls == 0 and MAIL.sent == []
    clock.advance(24 * 3600)  # later scans leave a closed reminder closed
    assert reminders.recover_stuck(ctx.db, clock.now()) == 0
    assert reminders.run_due(ctx.db, clock, ctx.plugins).claimed == 0
    assert MAIL.calls == 0 and MAIL.sent == []
    assert reminder_rows(ctx, booking)[60].status == "failed"


# --------------------------------------------------------------------------- racing scans


def seed_due_reminders(ctx: Context, shop: ShopRef, admin: Admin, n: int) -> list[int]:
    """``n`` confirmed bookings (written directly, one expert each slot) with one due
    reminder each."""
    catalog = make_catalog(admin)
    ids = []
    with ctx.db.write() as session:
        for i in range(n):
            start = START + timedelta(minutes=30 * i)
            claim = Claim(id=new_id("bk"), shop_id=shop.id, service_id=catalog["service"],
                          expert_id=catalog["expert"], start_at=start,
                          end_at=start + timedelta(minutes=30), claim_start=start,
                          claim_end=start + timedelta(minutes=30), status="confirmed",
                          order_id=str(5000 + i), line_item_id=str(i),
                          customer_name=f"Customer {i}", customer_email=f"c{i}@example.com",
                          sequence=0, created_at=NOW, updated_at=NOW, confirmed_at=NOW)
            insert_last(session, claim, NOW)
            r = Reminder(shop_id=shop.id, booking_id=claim.id, offset_minutes=60,
                         due_at=NOW - timedelta(seconds=i), status="pending")
            session.add(r)
            session.flush()
            ids.append(r.id)
    return ids


def test_racing_scans_send_each_reminder_once(
        ctx: Context, admin: Admin, shop: ShopRef, clock: FixedClock) -> None:
    set_providers(ctx, shop, mail="recording")
    ids = seed_due_reminders(ctx, shop, admin, 40)
    scanners = 6
    barrier = threading.Barrier(scanners)
    results: list[reminders.ScanResult] = []
    errors: list[BaseException] = []

    def scan() -> None:
        # Each scanner has its own engine and pool, like a separate beat process.
        db = Database(ctx.config.database_url)
        plugins = Plugins.load(ctx.config, db, ctx.keyring, clock, extra=EXTRA)
        try:
            barrier.wait()
            for _ in range(3):
                results.append(reminders.run_due(db, clock, plugins, limit=7))
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=scan) for _ in range(scanners)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    sent = [i for r in results for i in r.sent]
    assert sorted(sent) == sorted(ids)  # every one, each once
    assert MAIL.calls == 40
    assert sorted(a for m in MAIL.sent for a in m.to) == sorted(
        f"c{i}@example.com" for i in range(40))
    with ctx.db.read() as session:
        assert set(session.scalars(select(Reminder.status))) == {"sent"}


def test_racing_scan_processes_send_each_reminder_once(
        ctx: Context, admin: Admin, shop: ShopRef, outbox_dir: Path, tmp_path: Path) -> None:
    """`consultbook reminders run` twice at the same time (the outbox mailer, real time)."""
    ids = seed_due_reminders(ctx, shop, admin, 20)
    # Real clock in the subprocesses: make the reminders due now, the bookings tomorrow.
    real_now = datetime.now(UTC)
    shift = real_now + timedelta(days=1) - START
    with ctx.db.write() as session:
        for claim in session.scalars(select(Claim)):
            claim.start_at, claim.end_at = claim.start_at + shift, claim.end_at + shift
            claim.claim_start = claim.claim_start + shift
            claim.claim_end = claim.claim_end + shift
        session.execute(update(Reminder).values(due_at=real_now - timedelta(minutes=1)))
    env = process_env(ctx.config.database_url, CONSULTBOOK_OUTBOX_DIR=str(outbox_dir))
    procs = [subprocess.Popen([sys.executable, "-m", "engine.cli", "reminders", "run",
                               "--limit", "100"], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    files = eml_files(outbox_dir)
    assert sorted(str(m["To"]) for m in files) == sorted(f"c{i}@example.com"
                                                         for i in range(len(ids)))
    total = sum(int(out.split(":")[1].split()[0]) for out, _ in outs)
    assert total == len(ids)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_the_scan_reads_the_partial_index(ctx: Context) -> None:
    """What the benchmark shows at scale, checked on every run: the claim query can use
    ``ix_reminders_due`` (the planner prefers it whenever the table is not tiny)."""
    from sqlalchemy.dialects import postgresql

    query = (select(Reminder.id).where(Reminder.status == "pending", Reminder.due_at <= NOW)
             .order_by(Reminder.due_at).limit(500).with_for_update(skip_locked=True))
    sql = str(query.compile(dialect=postgresql.dialect(),
                            compile_kwargs={"literal_binds": True}))
    with ctx.db.engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(r[0] for r in conn.execute(text("EXPLAIN " + sql)))
    assert "ix_reminders_due" in plan, plan
