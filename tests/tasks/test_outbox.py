"""The outbox relay in-process: confirmation and cancellation through the shop's providers,
each step once, retries with backoff, permanent failures shown to the merchant."""

from __future__ import annotations

import email
import email.policy
from datetime import timedelta
from pathlib import Path
from typing import Any

import icalendar
import pytest
from sqlalchemy import delete, select

from engine.bootstrap import Context, bootstrap
from engine.clock import FixedClock
from engine.providers import ProviderRejected, ProviderUnavailable
from engine.services import outbox
from engine.services.shops import ShopRef
from engine.store.models import OutboxItem, OutboxStep
from engine.store.providers_models import SentMessage
from engine.tasks import jobs
from engine.tasks.jobs import Deps
from plugins.calendar_local.models import LocalCalendarEvent
from tests.conftest import Admin, Storefront, make_config
from tests.tasks.helpers import (
    MAIL,
    FakeVideo,
    book,
    calendar_part,
    claim_row,
    eml_files,
    set_providers,
)


def eml_of(path: Path) -> Any:
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def items(ctx: Context) -> list[OutboxItem]:
    with ctx.db.read() as session:
        return list(session.scalars(select(OutboxItem).order_by(OutboxItem.id)))


def relay(deps: Deps) -> outbox.RelayResult:
    return jobs.relay_outbox(deps, "test-owner")


def test_confirmation_makes_the_event_and_mails_each_party_once(
        ctx: Context, deps: Deps, admin: Admin, store: Storefront, outbox_dir: Path) -> None:
    booking = book(admin, store)
    assert [i.kind for i in items(ctx)] == ["booking.confirmed"]

    result = relay(deps)
    assert [o.status for o in result.outcomes] == ["done"]

    with ctx.db.read() as session:
        event = session.get(LocalCalendarEvent, booking)
        assert event is not None and event.status == "confirmed"
    assert claim_row(ctx, booking).external["event"]["provider"] == "local"

    messages = eml_files(outbox_dir)
    assert sorted(str(m["To"]) for m in messages) == ["e0@example.com", "jon@example.com"]
    customer = next(m for m in messages if str(m["To"]) == "jon@example.com")
    method, text = calendar_part(customer)
    assert method == "REQUEST"
    cal = icalendar.Calendar.from_ical(text)
    assert cal["METHOD"] == "REQUEST"
    (event_ics,) = cal.walk("VEVENT")
    assert str(event_ics["UID"]) == f"{booking}@consultbook"
    assert int(event_ics["SEQUENCE"]) == 0
    assert str(event_ics["ATTENDEE"]) == "mailto:jon@example.com"
    assert str(event_ics["ORGANIZER"]) == "mailto:e0@example.com"
    assert event_ics.decoded("DTSTART").isoformat() == "2026-12-01T09:00:00+00:00"
    # The invitation is attached too, as a file.
    assert any(p.get_filename() == "invite.ics" for p in customer.walk())

    # Running again finds nothing to do: no second event, no second message.
    assert relay(deps).outcomes == []
    assert len(eml_files(outbox_dir)) == 2
    booking_doc = admin("GET", f"/bookings/{booking}").json
    assert booking_doc["delivery"]["status"] == "done"
    assert booking_doc["delivery"]["last_error"] is None


def test_meeting_url_reaches_the_event_the_invitation_and_the_merchant(
        ctx: Context, deps: Deps, admin: Admin, store: Storefront, shop: ShopRef) -> None:
    set_providers(ctx, shop, video="testvideo", mail="recording")
    booking = book(admin, store)
    relay(deps)
    url = f"https://video.example/{booking}"
    assert FakeVideo.made == [booking]
    assert claim_row(ctx, booking).meeting_url == url
    (customer,) = MAIL.to("jon@example.com")
    assert customer.ics is not None
    (vevent,) = icalendar.Calendar.from_ical(customer.ics).walk("VEVENT")
    assert str(vevent["URL"]) == url and str(vevent["LOCATION"]) == url
    assert url in str(vevent["DESCRIPTION"])
    assert f'href="{url}"' in (customer.html or "")
    assert admin("GET", f"/bookings/{booking}").json["meeting_url"] == url


def test_cancellation_cancels_the_event_with_the_same_uid(
        ctx: Context, deps: Deps, admin: Admin, store: Storefront, outbox_dir: Path) -> None:
    booking = book(admin, store)
    relay(deps)
    r = admin("POST", f"/bookings/{booking}/cancel")
    assert r.status_code == 200, r.text
    assert [o.status for o in relay(deps).outcomes] == ["done"]

    with ctx.db.read() as session:
        event = session.get(LocalCalendarEvent, booking)
        assert event is not None and event.status == "cancelled"
    cancels = [m for m in eml_files(outbox_dir) if "cancelled" in str(m["Subject"])]
    assert sorted(str(m["To"]) for m in cancels) == ["e0@example.com", "jon@example.com"]
    customer = next(m for m in cancels if str(m["To"]) == "jon@example.com")
    method, text = calendar_part(customer)
    assert method == "CANCEL"
    (vevent,) = icalendar.Calendar.from_ical(text).walk("VEVENT")
    assert str(vevent["UID"]) == f"{booking}@consultbook"
    assert int(vevent["SEQUENCE"]) == 1  # bumped by the cancellation
    assert str(vevent["STATUS"]) == "CANCELLED"


def test_cancel_before_the_relay_runs_makes_no_event_and_waits_its_turn(
        ctx: Context, deps: Deps, admin: Admin, store: Storefront, shop: ShopRef) -> None:
    set_providers(ctx, shop, mail="recording")
    booking = book(admin, store)
    admin("POST", f"/bookings/{booking}/cancel")
    confirm, cancel = items(ctx)
    # The cancellation cannot be taken while the confirmation is pending.
    assert outbox.due_ids(ctx.db, ctx.clock.now()) == [confirm.id]
    assert not outbox.claim(ctx.db, cancel.id, "x", ctx.clock.now(), 60)

    relay(deps)
    with ctx.db.read() as session:
        assert session.get(LocalCalendarEvent, booking) is None
    assert [m.ics_method for m in MAIL.sent] == ["CANCEL", "CANCEL"]
    assert all(i.status == "done" for i in items(ctx))


def test_transient_failures_retry_with_backoff_then_send_once(
        ctx: Context, deps: Deps, admin: Admin, store: Storefront, shop: ShopRef,
        clock: FixedClock) -> None:
    set_providers(ctx, shop, mail="recording")
    booking = book(admin, store)
    MAIL.failures.extend([ProviderUnavailable("smtp is down", provider="recording"),
                          ProviderUnavailable("smtp is down", provider="recording")])
    (first,) = relay(deps).outcomes
    assert first.status == "retry" and first.retry_in is not None
    assert 5.0 <= first.retry_in <= 10.0  # 10 s base, equal jitter
    doc = admin("GET", f"/bookings/{booking}").json["delivery"]
    assert doc["status"] == "retrying" and "smtp is down" in doc["last_error"]
    assert doc["next_attempt_at"] is not None
    # Not due yet: nothing runs.
    assert relay(deps).outcomes == []

    clock.advance(first.retry_in + 0.001)
    (second,) = relay(deps).outcomes
    assert second.status == "retry" and second.retry_in is not None
    assert 10.0 <= second.retry_in <= 20.0  # doubled
    clock.advance(second.retry_in + 0.001)
    assert [o.status for o in relay(deps).outcomes] == ["done"]

    assert len(MAIL.to("jon@example.com")) == 1
    assert len(MAIL.to("e0@example.com")) == 1
    (item,) = items(ctx)
    assert item.attempts == 3 and item.status == "done"
    assert admin("GET", f"/bookings/{booking}").json["delivery"]["status"] == "done"


def test_retry_after_from_the_provider_is_honoured(
        ctx: Context, deps: Deps, admin: Admin, store: Storefront, shop: ShopRef) -> None:
    set_providers(ctx, shop, mail="recording")
    book(admin, store)
    MAIL.failures.append(ProviderUnavailable("429", provider="recording", retry_after=120))
    (outcome,) = relay(deps).outcomes
    assert outcome.retry_in is not None and outcome.retry_in >= 120


def test_a_permanent_failure_is_recorded_and_shown_to_the_merchant(
        ctx: Context, deps: Deps, admin: Admin, store: Storefront, shop: ShopRef) -> None:
    set_providers(ctx, shop, mail="recording")
    booking = book(admin, store)
    MAIL.failures.append(ProviderRejected("550 mailbox jon@example.com unknown",
                                          provider="recording"))
    (outcome,) = relay(deps).outcomes
    assert outcome.status == "failed"
    doc = admin("GET", f"/bookings/{booking}").json["delivery"]
    assert doc["status"] == "failed"
    assert "550 mailbox" in doc["last_error"]
    assert "jon@example.com" not in doc["last_error"]  # addresses are masked
    # Failed stays failed: nothing is retried behind the merchant's back.
    assert relay(deps).outcomes == []
    assert MAIL.calls == 1


@pytest.mark.parametrize("overrides", [{"outbox_max_attempts": 2}])
def test_gives_up_after_the_maximum_attempts(
        ctx: Context, deps: Deps, admin: Admin, store: Storefront, shop: ShopRef,
        clock: FixedClock) -> None:
    set_providers(ctx, shop, mail="recording")
    booking = book(admin, store)
    MAIL.failures.extend([ProviderUnavailable("down", provider="recording")] * 5)
    assert [o.status for o in relay(deps).outcomes] == ["retry"]
    clock.advance(3600)
    assert [o.status for o in relay(deps).outcomes] == ["failed"]
    doc = admin("GET", f"/bookings/{booking}").json["delivery"]
    assert doc["status"] == "failed" and "gave up after 2 attempts" in doc["last_error"]


def test_a_redelivered_task_takes_its_own_lease_back(
        ctx: Context, admin: Admin, store: Storefront, clock: FixedClock) -> None:
    book(admin, store)
    (item,) = items(ctx)
    now = clock.now()
    assert outbox.claim(ctx.db, item.id, "task-1", now, 300)
    assert not outbox.claim(ctx.db, item.id, "task-2", now, 300)  # held
    assert outbox.claim(ctx.db, item.id, "task-1", now, 300)  # same task id: redelivery
    # A dead worker's lease runs out; then anyone may take the row.
    assert outbox.claim(ctx.db, item.id, "task-2", now + timedelta(seconds=301), 300)


def test_a_mail_claimed_by_a_worker_that_died_is_never_sent_again(
        ctx: Context, deps: Deps, admin: Admin, store: Storefront, shop: ShopRef,
        clock: FixedClock) -> None:
    set_providers(ctx, shop, mail="recording")
    booking = book(admin, store)
    (item,) = items(ctx)
    # A worker claimed the row and the customer mail, then died in the middle of the send.
    now = clock.now()
    assert outbox.claim(ctx.db, item.id, "dead-task", now, ctx.config.outbox_lease_seconds)
    with ctx.db.write() as session:
        session.add(OutboxStep(outbox_id=item.id, step="customer_mail", status="sending",
                               created_at=now, updated_at=now))
    # While the lease holds, nobody else touches it.
    assert relay(deps).outcomes == []
    clock.advance(ctx.config.outbox_lease_seconds + 1)
    assert [o.status for o in relay(deps).outcomes] == ["done"]
    assert MAIL.to("jon@example.com") == []  # in doubt: not sent twice
    assert len(MAIL.to("e0@example.com")) == 1
    doc = admin("GET", f"/bookings/{booking}").json["delivery"]
    assert doc["status"] == "done"
    assert doc["unconfirmed_messages"] == ["customer_mail"]


def test_a_redelivery_after_the_event_step_does_not_repeat_it(
        ctx: Context, deps: Deps, admin: Admin, store: Storefront, shop: ShopRef) -> None:
    set_providers(ctx, shop, mail="recording", video="testvideo")
    book(admin, store)
    MAIL.failures.append(ProviderUnavailable("down", provider="recording"))
    relay(deps)
    (item,) = items(ctx)
    with ctx.db.read() as session:
        steps = {s.step: s.status for s in session.scalars(
            select(OutboxStep).where(OutboxStep.outbox_id == item.id))}
    assert steps == {"meeting": "done", "event": "done"}  # the mail claim was given back
    ctx.clock.advance(3600)  # type: ignore[attr-defined]
    relay(deps)
    assert len(FakeVideo.made) == 1
    assert len(MAIL.sent) == 2


def test_after_commit_kicks_the_worker(db_url: str) -> None:
    from engine import embedded

    plain = bootstrap(make_config(db_url))
    assert plain.after_commit is embedded.wake
    plain.db.dispose()
    with_broker = bootstrap(make_config(db_url, broker_url="redis://127.0.0.1:1/0"))
    assert callable(with_broker.after_commit)
    with_broker.after_commit()  # an unreachable broker is logged, never raised
    with_broker.db.dispose()


def test_a_send_that_died_half_way_is_sent_exactly_once_through_the_outbox_folder(
        ctx: Context, deps: Deps, admin: Admin, store: Storefront, clock: FixedClock,
        outbox_dir: Path) -> None:
    """The outbox folder delivers one idempotency key once (MailProvider.idempotent): a
    step a dead worker left ``sending`` is sent again by the next delivery -- whether or
    not the dead worker's file was written, exactly one message results. (SMTP and other
    providers: in doubt, never resent -- the test above.)"""
    book(admin, store)
    (item,) = items(ctx)
    now = clock.now()
    # The dead worker got as far as writing the file, then died before recording it.
    deps_first = jobs.relay_outbox(deps, "first")
    assert [o.status for o in deps_first.outcomes] == ["done"]
    sent = len(eml_files(outbox_dir))
    with ctx.db.write() as session:
        step = session.get(OutboxStep, (item.id, "customer_mail"))
        assert step is not None and step.status == "done"
        step.status, step.updated_at = "sending", now
        row = session.get(OutboxItem, item.id)
        assert row is not None
        row.status, row.done_at = "pending", None
    clock.advance(ctx.config.outbox_lease_seconds + 1)
    # The sweeping recovery leaves it for the delivery (the provider is idempotent)...
    assert outbox.recover_stuck_steps(ctx.db, clock.now(), ctx.config.outbox_lease_seconds,
                                      lambda shop: True) == 0
    assert [o.status for o in relay(deps).outcomes] == ["done"]
    # ...which asks the folder again: the same key, the same file, no second message.
    assert len(eml_files(outbox_dir)) == sent
    with ctx.db.read() as session:
        step = session.get(OutboxStep, (item.id, "customer_mail"))
        assert step is not None and step.status == "done"
    # And a send that died before writing anything is written now, once.
    with ctx.db.write() as session:
        step = session.get(OutboxStep, (item.id, "customer_mail"))
        assert step is not None
        step.status, step.updated_at = "sending", clock.now()
        row = session.get(OutboxItem, item.id)
        assert row is not None
        row.status, row.done_at = "pending", None
        # (the dead worker never got an answer from the folder, so nothing was recorded)
        session.execute(delete(SentMessage))
    for path in outbox_dir.glob("*.eml"):
        if str(eml_of(path)["To"]) == "jon@example.com":
            path.unlink()
    assert len(eml_files(outbox_dir)) == sent - 1
    clock.advance(ctx.config.outbox_lease_seconds + 1)
    assert [o.status for o in relay(deps).outcomes] == ["done"]
    assert len(eml_files(outbox_dir)) == sent
    assert sum(str(m["To"]) == "jon@example.com" for m in eml_files(outbox_dir)) == 1
