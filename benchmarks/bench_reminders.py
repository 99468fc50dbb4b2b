"""Benchmark of the reminder scan on PostgreSQL.

Run: ``python benchmarks/bench_reminders.py`` (``--postgres URL``, default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``; ``--bookings 100000``,
``--due 100``, ``--passes 7``). It creates a fresh database (dropped at the end),
migrates it, and writes ``--bookings`` confirmed future bookings with two reminders each
(24 h and 1 h before; 200,000 reminder rows), of which ``--due`` are due now. Then:

* ``EXPLAIN (ANALYZE, BUFFERS)`` of the scan's claim query, to show it reads the
  partial index ``ix_reminders_due`` and only the due rows;
* the **scan pass** (:func:`engine.services.reminders.claim_due`: find what is due and
  claim it with one conditional update), timed ``--passes`` times (the claimed rows are
  put back to ``pending`` between passes). Target: <= 100 ms per pass;
* for reference, one **full pass** (:func:`engine.services.reminders.run_due`: claim,
  load the bookings, build each reminder with its ``.ics``, hand it to a no-op mail
  provider, mark it sent), whose time is mostly the per-reminder bookkeeping that makes
  each reminder go out at most once.

Exits 1 if the scan pass misses the target or the plan does not use the index.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import hookimpl
from engine.clock import FixedClock
from engine.config import Config
from engine.crypto import Keyring, generate_key, parse_keys
from engine.providers import MailMessage, MailProvider, ProviderRegistry
from engine.services import reminders
from engine.services.providers import Plugins
from engine.store import Database
from engine.store.migrate import upgrade
from engine.store.models import (
    Claim,
    Expert,
    Reminder,
    Service,
    Shop,
    ShopSettings,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
TARGET_MS = 100.0


class NullMailer(MailProvider):
    name = "bench_null"
    label = "Benchmark: drops every message"
    sent = 0

    def send(self, message: MailMessage) -> str:
        NullMailer.sent += 1
        return f"<{uuid.uuid4().hex}@bench>"


class BenchPlugin:
    @hookimpl
    def consultbook_register_providers(self, registry: ProviderRegistry) -> None:
        registry.add_mail(NullMailer)


def seed(db: Database, bookings: int, due: int) -> None:
    experts = max(1, bookings // 500)
    with db.write() as session:
        session.add(Shop(id="shop_bench", domain="bench.myshopify.com",
                         timezone="Europe/Berlin", installed=True, installed_at=NOW))
        session.flush()
        session.add(ShopSettings(shop_id="shop_bench", calendar_provider="local",
                                 video_provider="none", mail_provider="bench_null",
                                 reminders=[1440, 60]))
        session.add(Service(id="svc_bench", shop_id="shop_bench", title="Consultation",
                            duration_minutes=30, buffer_before_minutes=0,
                            buffer_after_minutes=0, min_notice_minutes=0, max_days_ahead=60,
                            created_at=NOW))
        for e in range(experts):
            session.add(Expert(id=f"exp_{e:05d}", shop_id="shop_bench", name=f"Expert {e}",
                               email=f"expert{e}@example.com", created_at=NOW))
    claims, rows = [], []
    for i in range(bookings):
        expert, n = divmod(i, 500)
        if i < due:  # due now: the 1 h reminder of bookings starting within the hour
            start = NOW + timedelta(minutes=30 + i % 30)
            expert, n = experts + i, 0  # their own experts, so nothing overlaps
        else:
            start = NOW + timedelta(days=2, hours=n)
        bid = f"bk_{i:08d}"
        claims.append({"id": bid, "shop_id": "shop_bench", "service_id": "svc_bench",
                       "expert_id": f"exp_{expert:05d}", "start_at": start,
                       "end_at": start + timedelta(minutes=30), "claim_start": start,
                       "claim_end": start + timedelta(minutes=30), "status": "confirmed",
                       "order_id": str(100000 + i), "line_item_id": "1",
                       "customer_name": f"Customer {i}",
                       "customer_email": f"c{i}@example.com", "sequence": 0,
                       "created_at": NOW, "updated_at": NOW, "confirmed_at": NOW})
        for offset in (1440, 60):
            due_at = start - timedelta(minutes=offset)
            status = "pending"
            if i < due and offset == 1440:
                status = "skipped"  # past at confirmation
            rows.append({"shop_id": "shop_bench", "booking_id": bid,
                         "offset_minutes": offset, "due_at": due_at, "status": status,
                         "attempts": 0})
    with db.write() as session:
        for e in range(experts, experts + due):
            session.add(Expert(id=f"exp_{e:05d}", shop_id="shop_bench", name=f"Expert {e}",
                               email=f"expert{e}@example.com", created_at=NOW))
    with db.engine.begin() as conn:
        for chunk in range(0, len(claims), 10000):
            conn.execute(insert(Claim.__table__), claims[chunk:chunk + 10000])
        for chunk in range(0, len(rows), 20000):
            conn.execute(insert(Reminder.__table__), rows[chunk:chunk + 20000])
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE reminders"))
        conn.execute(text("VACUUM ANALYZE claims"))


def claim_sql(limit: int) -> str:
    from sqlalchemy import select

    query = (select(Reminder.id).where(Reminder.status == "pending", Reminder.due_at <= NOW)
             .order_by(Reminder.due_at).limit(limit).with_for_update(skip_locked=True))
    return str(query.compile(dialect=postgresql.dialect(),
                             compile_kwargs={"literal_binds": True}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres",
                        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--bookings", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=100)
    parser.add_argument("--passes", type=int, default=7)
    parser.add_argument("--limit", type=int, default=500)
    args = parser.parse_args(argv)

    server = make_url(args.postgres)
    name = f"consultbook_bench_reminders_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    ok = True
    try:
        db = Database(url)
        upgrade(db.engine)
        t0 = time.perf_counter()
        seed(db, args.bookings, args.due)
        with db.read() as session:
            total = session.scalar(text("SELECT count(*) FROM reminders"))
            pending = session.scalar(text("SELECT count(*) FROM reminders "
                                          "WHERE status = 'pending'"))
        print(f"seeded {args.bookings} confirmed bookings, {total} reminders "
              f"({pending} pending, {args.due} due) in {time.perf_counter() - t0:.1f}s")

        with db.engine.connect() as conn:
            plan = [r[0] for r in conn.execute(
                text("EXPLAIN (ANALYZE, BUFFERS) " + claim_sql(args.limit)))]
            conn.rollback()
        print("\nEXPLAIN (ANALYZE, BUFFERS) of the scan's claim query:")
        for line in plan:
            print("  " + line)
        if not any("ix_reminders_due" in line for line in plan):
            print("FAIL: the scan does not use ix_reminders_due")
            ok = False

        clock = FixedClock(NOW)
        times = []
        for _ in range(args.passes):
            t = time.perf_counter()
            claimed = reminders.claim_due(db, clock.now(), args.limit)
            times.append((time.perf_counter() - t) * 1000)
            assert len(claimed) == args.due, len(claimed)
            with db.write() as session:
                session.execute(update(Reminder).where(Reminder.status == "sending")
                                .values(status="pending", claimed_at=None))
        print(f"\nscan pass (find + claim {args.due} of {total}): "
              f"median {statistics.median(times):.1f} ms, min {min(times):.1f} ms, "
              f"max {max(times):.1f} ms over {args.passes} passes "
              f"(target <= {TARGET_MS:.0f} ms)")
        if statistics.median(times) > TARGET_MS:
            print("FAIL: the scan pass is over target")
            ok = False

        config = Config(database_url=url, encryption_keys=(generate_key(),))
        keyring = Keyring(parse_keys(",".join(config.encryption_keys)))
        plugins = Plugins.load(config, db, keyring, clock, extra=[("bench", BenchPlugin())])
        t = time.perf_counter()
        result = reminders.run_due(db, clock, plugins, args.limit)
        full = (time.perf_counter() - t) * 1000
        print(f"full pass (claim, build {len(result.sent)} reminders with .ics, send through "
              f"a no-op mailer, mark each sent): {full:.0f} ms "
              f"({full / max(1, len(result.sent)):.2f} ms per reminder)")
        assert len(result.sent) == args.due == NullMailer.sent, (result, NullMailer.sent)
        again = reminders.run_due(db, clock, plugins, args.limit)
        print(f"next pass: {again.claimed} claimed (each reminder at most once)")
        db.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    print("\nOK" if ok else "\nFAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
