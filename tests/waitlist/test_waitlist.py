"""The waitlist (issue 12): joining through the App Proxy, the scan that notices a free
slot whatever freed it (a cancellation, a hold that expired -- without the sweeper -- or
was released, new hours), one mail per entry however many frees and crashes, lapsing.
Both databases (the ``db_url`` fixture)."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from typing import Any

import falcon.testing
import pytest
from sqlalchemy import select, update

from engine.bootstrap import Context
from engine.clock import FixedClock
from engine.services import outbox, waitlist
from engine.services.shops import ShopRef
from engine.store.models import HELD, Claim, OutboxItem, OutboxStep, WaitlistEntry
from engine.tasks import jobs
from engine.tasks.jobs import Deps
from tests.conftest import WEEKDAYS_9_17, Admin, Storefront, make_catalog, proxy_query
from tests.tasks.helpers import MAIL, RecordingMailer, book, set_providers

DAY = "2026-12-01"  # Tuesday, the day after NOW, in Berlin (the shop's zone)
SLOT = "2026-12-01T09:00:00Z"  # 10:00 in Berlin
WAITER = "ann@example.com"


def join(store: Storefront, body: dict[str, Any], *, ip: str = "198.51.100.9",
         customer: str | None = None) -> falcon.testing.Result:
    extra = {"logged_in_customer_id": customer} if customer else {}
    return store.client.simulate_post(
        "/proxy/waitlist", query_string=proxy_query(store.ctx, store.domain, {}, **extra),
        json=body, headers={"X-Forwarded-For": ip})


def day_windows(admin: Admin, catalog: dict[str, Any], windows: list[list[str]],
                expert: str | None = None) -> None:
    """The expert works only ``windows`` on DAY (weekdays 9-17 otherwise)."""
    r = admin("PUT", f"/experts/{expert or catalog['expert']}/schedule",
              {"weekly": WEEKDAYS_9_17, "overrides": [{"date": DAY, "windows": windows}]})
    assert r.status_code == 200, r.text


def free_on_day(store: Storefront, catalog: dict[str, Any]) -> list[dict[str, Any]]:
    r = store.get("/availability", {"service": catalog["service"], "start": DAY,
                                    "days": "1"})
    assert r.status_code == 200, r.text
    slots: list[dict[str, Any]] = r.json["slots"]
    return slots


def scan(ctx: Context) -> waitlist.ScanResult:
    return waitlist.scan(ctx.db, ctx.clock, ctx.busy_source)


def entries(ctx: Context) -> dict[str, WaitlistEntry]:
    with ctx.db.read() as session:
        return {e.id: e for e in session.scalars(select(WaitlistEntry))}


def mail_rows(ctx: Context) -> list[OutboxItem]:
    with ctx.db.read() as session:
        return list(session.scalars(select(OutboxItem).where(OutboxItem.kind == waitlist.KIND)
                                    .order_by(OutboxItem.id)))


def relay(deps: Deps) -> outbox.RelayResult:
    return jobs.relay_outbox(deps, "test-owner")


@pytest.fixture
def catalog(ctx: Context, admin: Admin, shop: ShopRef) -> dict[str, Any]:
    set_providers(ctx, shop, mail="recording")
    return make_catalog(admin)


@pytest.fixture
def full_day(admin: Admin, catalog: dict[str, Any], store: Storefront) -> dict[str, Any]:
    """DAY has one slot (10:00-10:30 Berlin)."""
    day_windows(admin, catalog, [["10:00", "10:30"]])
    assert [s["start"] for s in free_on_day(store, catalog)] == [SLOT]
    return catalog


# --------------------------------------------------------------------------- joining


def test_join_answers_201_with_an_id_and_a_repeat_gets_the_same_entry(
        ctx: Context, store: Storefront, catalog: dict[str, Any]) -> None:
    body = {"service": catalog["service"], "date": DAY, "email": WAITER}
    r = join(store, body)
    assert r.status_code == 201, r.text
    entry_id = r.json["waitlist"]
    assert r.json == {"waitlist": entry_id}
    again = join(store, {**body, "expert": "any"})
    assert again.status_code == 201 and again.json["waitlist"] == entry_id
    (entry,) = entries(ctx).values()
    assert (entry.status, entry.email, entry.expert_id, str(entry.date)) == \
        ("waiting", WAITER, None, DAY)
    named = join(store, {**body, "expert": catalog["expert"], "tz": "America/New_York"})
    assert named.status_code == 201 and named.json["waitlist"] != entry_id
    assert entries(ctx)[named.json["waitlist"]].customer_tz == "America/New_York"


@pytest.mark.parametrize(("change", "field"), [
    ({"service": None}, "service"),
    ({"date": None}, "date"),
    ({"email": None}, "email"),
    ({"service": ""}, "service"),
    ({"service": 7}, "service"),
    ({"date": "2026-13-01"}, "date"),
    ({"date": "1.12.2026"}, "date"),
    ({"date": "2026-11-29"}, "date"),  # the day before NOW's date in Berlin: past
    ({"date": "2027-06-01"}, "date"),  # beyond the service's 60-day horizon
    ({"email": "not-an-address"}, "email"),
    ({"email": "a b@example.com"}, "email"),
    ({"expert": ""}, "expert"),
    ({"tz": "Mars/Olympus"}, "tz"),
    ({"colour": "red"}, "colour"),
])
def test_join_validation_names_the_field(store: Storefront, catalog: dict[str, Any],
                                         change: dict[str, Any], field: str) -> None:
    body: dict[str, Any] = {"service": catalog["service"], "date": DAY, "email": WAITER}
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    r = join(store, body)
    assert r.status_code == 400, r.text
    assert r.json["error"]["code"] == "invalid_request"
    assert field in r.json["error"]["message"]


def test_join_today_in_the_shops_zone_and_a_non_object_body(
        store: Storefront, catalog: dict[str, Any], clock: FixedClock) -> None:
    # 23:30 UTC on 30 November is already 1 December in Berlin: "30 November" is past.
    clock.set(datetime(2026, 11, 30, 23, 30, tzinfo=UTC))
    r = join(store, {"service": catalog["service"], "date": "2026-11-30", "email": WAITER})
    assert r.status_code == 400 and "date" in r.json["error"]["message"]
    assert join(store, {"service": catalog["service"], "date": DAY,
                        "email": WAITER}).status_code == 201
    r = store.client.simulate_post("/proxy/waitlist",
                                   query_string=proxy_query(store.ctx, store.domain, {}),
                                   json=["x"])
    assert r.status_code == 400


def test_unknown_service_or_expert_is_404(ctx: Context, admin: Admin, store: Storefront,
                                          catalog: dict[str, Any]) -> None:
    body = {"service": catalog["service"], "date": DAY, "email": WAITER}
    assert join(store, {**body, "service": "svc_nope"}).status_code == 404
    assert join(store, {**body, "expert": "exp_nope"}).status_code == 404
    other = admin("POST", "/experts", {"name": "Other", "email": "o@example.com",
                                       "services": []}).json
    r = join(store, {**body, "expert": other["id"]})  # offers no such service
    assert r.status_code == 404 and r.json["error"]["code"] == "not_found"
    assert entries(ctx) == {}


def test_at_most_three_live_entries_per_visitor(
        ctx: Context, store: Storefront, catalog: dict[str, Any], clock: FixedClock) -> None:
    days = ["2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04"]
    for day in days[:3]:
        assert join(store, {"service": catalog["service"], "date": day,
                            "email": WAITER}).status_code == 201
    r = join(store, {"service": catalog["service"], "date": days[3], "email": WAITER})
    assert r.status_code == 429
    assert r.json["error"]["code"] == "too_many_entries"
    # Another address from the same visitor counts too; another visitor does not.
    assert join(store, {"service": catalog["service"], "date": days[3],
                        "email": "bob@example.com"}).status_code == 429
    assert join(store, {"service": catalog["service"], "date": days[3], "email": WAITER},
                ip="198.51.100.10").status_code == 201
    # A logged-in customer is one visitor wherever they come from.
    cat = "cat@example.com"
    for n, day in enumerate(days[:3]):
        assert join(store, {"service": catalog["service"], "date": day, "email": cat},
                    customer="55", ip=f"203.0.113.{n + 1}").status_code == 201
    assert join(store, {"service": catalog["service"], "date": days[3], "email": cat},
                customer="55", ip="203.0.113.99").status_code == 429
    # An entry that was mailed is not live any more.
    with ctx.db.write() as session:
        session.execute(update(WaitlistEntry).where(WaitlistEntry.visitor == "customer:55",
                                                    WaitlistEntry.date == date(2026, 12, 1))
                        .values(status=waitlist.NOTIFIED))
    assert join(store, {"service": catalog["service"], "date": days[3], "email": cat},
                customer="55").status_code == 201


# --------------------------------------------------------------------------- noticing


def test_a_cancellation_mails_each_waiting_entry_once(
        ctx: Context, deps: Deps, admin: Admin, store: Storefront,
        full_day: dict[str, Any]) -> None:
    booking = book(admin, store, catalog=full_day, start=SLOT)
    assert free_on_day(store, full_day) == []
    first = join(store, {"service": full_day["service"], "date": DAY, "email": WAITER,
                         "tz": "America/New_York"}).json["waitlist"]
    second = join(store, {"service": full_day["service"], "date": DAY,
                          "email": "bob@example.com", "expert": full_day["expert"]},
                  ip="198.51.100.77").json["waitlist"]
    assert scan(ctx).notified == 0 and mail_rows(ctx) == []
    relay(deps)  # the booking's own mails
    MAIL.sent.clear()

    assert admin("POST", f"/bookings/{booking}/cancel").status_code == 200
    result = scan(ctx)
    assert (result.groups, result.free, result.notified) == (2, 2, 2)
    assert sorted(r.payload["entry"] for r in mail_rows(ctx)) == sorted([first, second])
    assert {e.status for e in entries(ctx).values()} == {"notified"}
    assert scan(ctx).notified == 0  # nobody is waiting any more
    relay(deps)
    assert len(MAIL.to(WAITER)) == 1 and len(MAIL.to("bob@example.com")) == 1
    relay(deps)
    assert len(MAIL.to(WAITER)) == 1 and len(MAIL.to("bob@example.com")) == 1

    message = MAIL.to(WAITER)[0]
    link = (f"https://{store.domain}/apps/consult/book?service={full_day['service']}"
            f"&date={DAY}")
    assert link in message.text and message.html is not None
    assert f'href="{link.replace("&", "&amp;")}"' in message.html
    assert "Tuesday 1 December 2026" in message.subject
    # The free time in the customer's zone, with the shop's beside it.
    assert "04:00\u201304:30 (America/New_York)" in message.text
    assert "10:00\u201310:30 in Berlin (Europe/Berlin), the shop's time" in message.text
    assert message.ics is None and message.idempotency_key == f"waitlist:{first}"


def test_an_expired_hold_is_noticed_without_the_sweeper(
        ctx: Context, deps: Deps, store: Storefront, full_day: dict[str, Any],
        clock: FixedClock) -> None:
    r = store.hold(full_day["service"], full_day["expert"], SLOT)
    assert r.status_code == 201
    hold = r.json["hold"]
    assert join(store, {"service": full_day["service"], "date": DAY,
                        "email": WAITER}).status_code == 201
    assert scan(ctx).notified == 0
    clock.advance(ctx.config.hold_ttl_seconds - 1)
    assert scan(ctx).notified == 0
    clock.advance(2)
    assert scan(ctx).notified == 1
    with ctx.db.read() as session:  # no sweeper ran: the hold is still marked held
        assert session.get(Claim, hold).status == HELD  # type: ignore[union-attr]
    relay(deps)
    assert len(MAIL.to(WAITER)) == 1
    # The scan runs often enough to notice it within a minute.
    assert jobs.schedule(ctx.config)["notify_waitlist"] <= 30


def test_a_released_hold_is_noticed(ctx: Context, deps: Deps, store: Storefront,
                                    full_day: dict[str, Any]) -> None:
    hold = store.hold(full_day["service"], full_day["expert"], SLOT).json["hold"]
    join(store, {"service": full_day["service"], "date": DAY, "email": WAITER})
    assert scan(ctx).notified == 0
    assert store.release(hold).status_code == 204
    assert scan(ctx).notified == 1
    relay(deps)
    assert len(MAIL.to(WAITER)) == 1


def test_new_hours_are_noticed(ctx: Context, deps: Deps, admin: Admin, store: Storefront,
                               catalog: dict[str, Any]) -> None:
    day_windows(admin, catalog, [])  # the expert is off that day
    assert free_on_day(store, catalog) == []
    join(store, {"service": catalog["service"], "date": DAY, "email": WAITER})
    assert scan(ctx).notified == 0
    day_windows(admin, catalog, [["14:00", "15:00"]])
    assert scan(ctx).notified == 1
    relay(deps)
    (message,) = MAIL.to(WAITER)
    assert "14:00\u201314:30" in message.text and "14:30\u201315:00" in message.text


def test_several_frees_still_mail_once(ctx: Context, deps: Deps, admin: Admin,
                                       store: Storefront, catalog: dict[str, Any]) -> None:
    day_windows(admin, catalog, [["10:00", "11:00"]])
    first = book(admin, store, catalog=catalog, start=SLOT, order_id=2001)
    second = book(admin, store, catalog=catalog, start="2026-12-01T09:30:00Z",
                  order_id=2002)
    assert free_on_day(store, catalog) == []
    join(store, {"service": catalog["service"], "date": DAY, "email": WAITER})
    admin("POST", f"/bookings/{first}/cancel")
    assert scan(ctx).notified == 1
    admin("POST", f"/bookings/{second}/cancel")
    assert scan(ctx).notified == 0
    relay(deps)
    assert scan(ctx).notified == 0
    relay(deps)
    assert len(MAIL.to(WAITER)) == 1
    assert len(mail_rows(ctx)) == 1


def test_two_scans_at_once_make_one_row_per_entry(
        ctx: Context, admin: Admin, store: Storefront, catalog: dict[str, Any]) -> None:
    for n in range(6):
        join(store, {"service": catalog["service"], "date": DAY,
                     "email": f"w{n}@example.com"}, ip=f"198.51.100.{n + 1}")
    barrier = threading.Barrier(4)
    results: list[waitlist.ScanResult] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(10)
            results.append(scan(ctx))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sum(r.notified for r in results) == 6
    rows = mail_rows(ctx)
    assert len(rows) == 6 and len({r.payload["entry"] for r in rows}) == 6


def test_a_redacted_entry_is_never_mailed(ctx: Context, deps: Deps, store: Storefront,
                                          catalog: dict[str, Any]) -> None:
    entry = join(store, {"service": catalog["service"], "date": DAY,
                         "email": WAITER}).json["waitlist"]
    with ctx.db.write() as session:  # what customers/redact does to it
        session.execute(update(WaitlistEntry).where(WaitlistEntry.id == entry)
                        .values(email=None))
    result = scan(ctx)
    assert (result.groups, result.notified) == (0, 0)
    assert entries(ctx)[entry].status == "waiting" and mail_rows(ctx) == []


def test_an_entry_redacted_after_it_was_queued_is_not_mailed(
        ctx: Context, deps: Deps, store: Storefront, catalog: dict[str, Any]) -> None:
    entry = join(store, {"service": catalog["service"], "date": DAY,
                         "email": WAITER}).json["waitlist"]
    assert scan(ctx).notified == 1
    with ctx.db.write() as session:
        session.execute(update(WaitlistEntry).where(WaitlistEntry.id == entry)
                        .values(email=None))
    assert [o.status for o in relay(deps).outcomes] == ["done"]
    assert MAIL.sent == []


# --------------------------------------------------------------------------- crashes


class Killed(BaseException):
    """The worker process dies (nothing in the relay catches this)."""


def test_a_worker_killed_after_the_send_leaves_exactly_one_mail(
        ctx: Context, deps: Deps, store: Storefront, catalog: dict[str, Any],
        clock: FixedClock, monkeypatch: pytest.MonkeyPatch) -> None:
    join(store, {"service": catalog["service"], "date": DAY, "email": WAITER})
    assert scan(ctx).notified == 1
    (row,) = mail_rows(ctx)
    real = RecordingMailer.send

    def send_then_die(self: RecordingMailer, message: Any) -> str:
        real(self, message)  # the message left ...
        raise Killed()  # ... and the worker died before recording it

    monkeypatch.setattr(RecordingMailer, "send", send_then_die)
    with pytest.raises(Killed):
        outbox.deliver(ctx.db, ctx.clock, ctx.plugins, row.id, "doomed-worker")
    monkeypatch.setattr(RecordingMailer, "send", real)
    assert len(MAIL.to(WAITER)) == 1
    assert relay(deps).outcomes == []  # its lease still holds
    clock.advance(ctx.config.outbox_lease_seconds + 1)
    assert [o.status for o in relay(deps).outcomes] == ["done"]
    relay(deps)
    assert len(MAIL.to(WAITER)) == 1  # never twice
    with ctx.db.read() as session:
        step = session.get(OutboxStep, (row.id, "customer_mail"))
        assert step is not None and step.status == outbox.UNKNOWN


def test_a_mail_step_claimed_by_a_dead_worker_is_not_sent_again(
        ctx: Context, deps: Deps, store: Storefront, catalog: dict[str, Any],
        clock: FixedClock) -> None:
    join(store, {"service": catalog["service"], "date": DAY, "email": WAITER})
    scan(ctx)
    (row,) = mail_rows(ctx)
    now = clock.now()
    assert outbox.claim(ctx.db, row.id, "dead-task", now, ctx.config.outbox_lease_seconds)
    with ctx.db.write() as session:
        session.add(OutboxStep(outbox_id=row.id, step="customer_mail", status="sending",
                               created_at=now, updated_at=now))
    assert relay(deps).outcomes == []
    clock.advance(ctx.config.outbox_lease_seconds + 1)
    assert [o.status for o in relay(deps).outcomes] == ["done"]
    assert MAIL.to(WAITER) == []  # in doubt: never sent twice
    assert scan(ctx).notified == 0


# --------------------------------------------------------------------------- lapsing


def test_entries_lapse_after_their_date(ctx: Context, store: Storefront,
                                        catalog: dict[str, Any], clock: FixedClock,
                                        admin: Admin) -> None:
    day_windows(admin, catalog, [])  # nothing free that day: only lapsing can end it
    today = join(store, {"service": catalog["service"], "date": DAY,
                         "email": WAITER}).json["waitlist"]
    later = join(store, {"service": catalog["service"], "date": "2026-12-05",
                         "email": WAITER}).json["waitlist"]  # a Saturday: no hours
    # An entry redacted before it was mailed (Wednesday: it would have free time).
    redacted = join(store, {"service": catalog["service"], "date": "2026-12-02",
                            "email": "bob@example.com"}, ip="198.51.100.3").json["waitlist"]
    with ctx.db.write() as session:
        session.execute(update(WaitlistEntry).where(WaitlistEntry.id == redacted)
                        .values(email=None))
    # 23:59 on DAY in Berlin: still its date.
    clock.set(datetime(2026, 12, 1, 22, 59, tzinfo=UTC))
    assert scan(ctx).lapsed == 0
    # 00:30 on 2 December in Berlin (23:30 UTC on 1 December): DAY has passed there.
    clock.set(datetime(2026, 12, 1, 23, 30, tzinfo=UTC))
    assert scan(ctx).lapsed == 1
    status = {k: e.status for k, e in entries(ctx).items()}
    assert (status[today], status[redacted], status[later]) == \
        ("lapsed", "waiting", "waiting")
    # An unmailable entry is never scanned; it lapses a day or so after its date.
    clock.set(datetime(2026, 12, 4, 0, 30, tzinfo=UTC))
    scan(ctx)
    assert entries(ctx)[redacted].status == "lapsed"
    assert entries(ctx)[later].status == "waiting"
    clock.set(datetime(2026, 12, 5, 23, 30, tzinfo=UTC))  # 6 December in Berlin
    scan(ctx)
    assert {e.status for e in entries(ctx).values()} == {"lapsed"}
    assert mail_rows(ctx) == []


# --------------------------------------------------------------------------- the job


def test_the_job_is_scheduled_and_runs(ctx: Context, deps: Deps, store: Storefront,
                                       catalog: dict[str, Any]) -> None:
    assert jobs.schedule(ctx.config)["notify_waitlist"] == waitlist.SCAN_EVERY == 30
    join(store, {"service": catalog["service"], "date": DAY, "email": WAITER})
    assert jobs.notify_waitlist(deps) == {"groups": 1, "free": 1, "notified": 1,
                                          "lapsed": 0, "failed": 0}
    assert jobs.notify_waitlist(deps)["notified"] == 0
    relay(deps)
    assert len(MAIL.to(WAITER)) == 1


def test_a_bounded_scan_goes_on_where_it_stopped(ctx: Context, store: Storefront,
                                                 catalog: dict[str, Any]) -> None:
    days = ["2026-12-01", "2026-12-02", "2026-12-03"]
    for n, day in enumerate(days):
        join(store, {"service": catalog["service"], "date": day, "email": WAITER},
             ip=f"198.51.100.{n + 1}")
    scanner = waitlist.Scanner()
    notified = []
    for _ in range(3):
        r = scanner.run(ctx.db, ctx.clock, ctx.busy_source, groups=1)
        notified.append(r.notified)
    assert notified == [1, 1, 1]
    assert {e.status for e in entries(ctx).values()} == {"notified"}
    assert scanner.cursor is not None
    assert scanner.run(ctx.db, ctx.clock, ctx.busy_source, groups=1).groups == 0
    assert scanner.cursor is None  # the end: from the start again


def test_the_scan_costs_the_same_for_one_entry_or_twenty(
        ctx: Context, store: Storefront, catalog: dict[str, Any]) -> None:
    """One availability computation per group and set-based writes: no query per entry."""
    from sqlalchemy import event

    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    join(store, {"service": catalog["service"], "date": "2026-12-01", "email": WAITER})
    assert scan(ctx).notified == 1  # warm: what is cached for any date is cached now
    join(store, {"service": catalog["service"], "date": "2026-12-02", "email": WAITER})
    event.listen(ctx.db.engine, "before_cursor_execute", count)
    try:
        assert scan(ctx).notified == 1
        one = len(statements)
        for n in range(20):
            join(store, {"service": catalog["service"], "date": "2026-12-03",
                         "email": f"w{n}@example.com"}, ip=f"198.51.100.{n + 1}")
        statements.clear()
        assert scan(ctx).notified == 20
        # (+2: a provider-settings lookup cached for a short time may fall in either.)
        assert len(statements) <= one + 2, "\n".join(statements)
        assert sum(st.startswith("INSERT") for st in statements) == 1
    finally:
        event.remove(ctx.db.engine, "before_cursor_execute", count)
    assert len(mail_rows(ctx)) == 22


def test_celery_beat_runs_the_scan(sqlite_url: str) -> None:
    from engine.tasks import celery_settings, make_celery
    from tests.conftest import make_config

    config = make_config(sqlite_url, broker_url="redis://127.0.0.1:6379/5")
    entry = celery_settings(config)["beat_schedule"]["notify_waitlist"]
    assert entry["task"] == "consultbook.notify_waitlist"
    assert entry["schedule"].total_seconds() == 30
    assert "consultbook.notify_waitlist" in make_celery(config).tasks


def test_the_embedded_worker_scans_and_mails(ctx: Context, store: Storefront,
                                            full_day: dict[str, Any],
                                            clock: FixedClock) -> None:
    from engine.embedded import EmbeddedWorker
    from tests.tasks.helpers import EXTRA, wait_for

    store.hold(full_day["service"], full_day["expert"], SLOT)
    join(store, {"service": full_day["service"], "date": DAY, "email": WAITER})
    clock.advance(ctx.config.hold_ttl_seconds + 1)  # the hold expires; no sweeper runs
    worker = EmbeddedWorker(ctx.config, clock=clock, extra_plugins=EXTRA,
                            intervals={"notify_waitlist": 0.05, "relay_outbox": 60.0})
    worker.start()
    try:
        # The relay's interval is a minute: the scan that queued the mail wakes it.
        wait_for(lambda: MAIL.to(WAITER), timeout=15, message="the waitlist mail")
        assert wait_for(lambda: worker.runs["notify_waitlist"] >= 3, timeout=15)
    finally:
        worker.stop()
    assert len(MAIL.to(WAITER)) == 1


def test_killed_after_the_send_with_the_outbox_folder_mailer_one_file(
        ctx: Context, deps: Deps, admin: Admin, store: Storefront, shop: ShopRef,
        clock: FixedClock, monkeypatch: pytest.MonkeyPatch, outbox_dir: Any) -> None:
    """The default mailer (one ``.eml`` per message): whether the takeover leaves the
    step in doubt or asks the folder again under the message's idempotency key, the
    customer has exactly one message."""
    from plugins.mail_outbox import OutboxMailer
    from tests.tasks.helpers import eml_files

    catalog = make_catalog(admin)  # the shop keeps its default mailer: the folder
    join(store, {"service": catalog["service"], "date": DAY, "email": WAITER})
    assert scan(ctx).notified == 1
    (row,) = mail_rows(ctx)
    real = OutboxMailer.send

    def send_then_die(self: OutboxMailer, message: Any) -> str:
        real(self, message)
        raise Killed()

    monkeypatch.setattr(OutboxMailer, "send", send_then_die)
    with pytest.raises(Killed):
        outbox.deliver(ctx.db, ctx.clock, ctx.plugins, row.id, "doomed-worker")
    monkeypatch.setattr(OutboxMailer, "send", real)
    clock.advance(ctx.config.outbox_lease_seconds + 1)
    assert [o.status for o in relay(deps).outcomes] == ["done"]
    relay(deps)
    assert [str(m["To"]) for m in eml_files(outbox_dir)] == [WAITER]
