"""Celery on Redis: the app, its thin tasks and the beat schedule.

``make_celery(config)`` builds the app for ``CONSULTBOOK_BROKER_URL``. Delivery is
at-least-once at the broker (``task_acks_late``, ``task_reject_on_worker_lost``: a task
whose worker dies is delivered again) and exactly-once where it matters thanks to the
database (claims, leases and step markers in :mod:`engine.services.outbox` and
:mod:`engine.services.reminders`). Periodic work is a beat scan over the database, never
per-booking ETA tasks (Redis would redeliver those after the visibility timeout).

Tasks:

``consultbook.relay_outbox``      kick after a commit, and every few seconds (a third of the
                                  outbox lease, at most 10 s): hand due outbox rows to the
                                  delivery tasks (picks up rows whose kick was lost, and rows
                                  whose worker died once their lease ran out)
``consultbook.deliver_outbox``    do one customer-facing outbox row (lease owned by the
                                  task id), queue ``consultbook``
``consultbook.deliver_shopify``   do one Shopify action (order.tag, order.refund), queue
                                  ``consultbook.shopify``: never in front of customer mail
``consultbook.send_reminders``    every minute: the reminder scan
``consultbook.sweep``             every minute: expire stale holds, purge old ones
``consultbook.refresh_freebusy``  every free/busy TTL: warm the busy-time cache
``consultbook.refresh_shopify_tokens``  every 5 minutes: expiring Shopify offline tokens
``consultbook.notify_waitlist``   every 30 s: the waitlist scan (mail whoever waits for a
                                  date that has a free slot now; lapse past dates)
``consultbook.plugin_job``  each plugin job (``plugin:<name>``) at its own interval
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from engine.services import outbox
from engine.tasks import jobs

if TYPE_CHECKING:
    from celery import Celery

    from engine.clock import Clock
    from engine.config import Config

log = logging.getLogger("consultbook.worker")

#: Customer-facing work (and the periodic jobs).
CUSTOMER_QUEUE = "consultbook"
#: Shopify Admin API actions: a queue of their own, so a slow or failing Admin API never
#: stands between a customer and their confirmation.
SHOPIFY_QUEUE = "consultbook.shopify"
#: What a worker consumes, in Celery's ``-Q`` syntax (``consultbook worker`` passes it).
#: The Redis transport takes from the two queues in turn, so customer tasks are never
#: stuck behind a backlog of Shopify ones.
QUEUE = f"{CUSTOMER_QUEUE},{SHOPIFY_QUEUE}"
#: Retries shorter than this are scheduled as a countdown task; longer ones wait for
#: the periodic relay (keeps ETA messages well inside the visibility timeout).
MAX_COUNTDOWN = 300.0


def celery_settings(config: Config, *,
                    extra_plugins: Iterable[tuple[str, object]] = ()) -> dict[str, Any]:
    """The Celery configuration for ``config`` (a function so tests can read it). Plugin
    jobs (``consultbook_register_jobs``) are beat entries ``plugin:<name>`` of the one
    task ``consultbook.plugin_job``."""
    from engine.plugins import load_plugins

    every = jobs.schedule(config)
    beat = {
        name: {"task": f"consultbook.{name}", "schedule": timedelta(seconds=seconds),
               # A beat tick nobody ran before the next one is useless: let it expire.
               "options": {"expires": seconds}}
        for name, seconds in every.items()
    }
    for job in load_plugins(config, extra=extra_plugins).jobs:
        beat[jobs.PLUGIN_JOB_PREFIX + job.name] = {
            "task": "consultbook.plugin_job", "schedule": timedelta(seconds=job.every_seconds),
            "args": (job.name,), "options": {"expires": job.every_seconds}}
    return {
        "broker_url": config.broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 4,
        # Redis: a task not acknowledged within this is delivered again. Longer than the
        # longest task (a delivery with all provider retries), shorter than forever.
        "broker_transport_options": {"visibility_timeout": config.broker_visibility_timeout},
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "result_backend": None,
        "task_default_queue": CUSTOMER_QUEUE,
        "task_routes": {"consultbook.deliver_shopify": {"queue": SHOPIFY_QUEUE}},
        "task_publish_retry": True,
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0,
                                      "interval_step": 0.2, "interval_max": 0.5},
        "timezone": "UTC",
        "enable_utc": True,
        "beat_schedule": beat,
        "worker_hijack_root_logger": False,
    }


def make_celery(config: Config, *, extra_plugins: Iterable[tuple[str, object]] = (),
                clock: Clock | None = None) -> Celery:
    """The Celery app with consultbook's tasks, for ``config.broker_url``.

    ``extra_plugins`` are registered next to the installed plugins (tests, embedding
    applications); ``clock`` replaces the system clock (tests).
    """
    if not config.broker_url:
        from engine.errors import ConfigError

        raise ConfigError("CONSULTBOOK_BROKER_URL is required for the Celery worker and beat "
                          "(without it, `consultbook serve` runs the worker in-process)")
    from celery import Celery  # here, not at import: web processes only need the kick

    app = Celery("consultbook", set_as_current=False)
    app.conf.update(celery_settings(config, extra_plugins=extra_plugins))
    runtime = jobs.Runtime(config, extra_plugins=extra_plugins, clock=clock)
    app.consultbook_runtime = runtime

    @app.task(name="consultbook.relay_outbox", bind=True)  # type: ignore[untyped-decorator]
    def relay_outbox(self: Any) -> int:
        deps = runtime.deps()
        # Customer work first; Shopify actions go to their own queue (one per shop: the
        # next of that shop follows when it is done).
        customer = jobs.due_outbox(deps, lane=outbox.CUSTOMER)
        for item_id in customer:
            deliver_outbox.delay(item_id)
        shopify = jobs.due_outbox(deps, lane=outbox.SHOPIFY)
        for item_id in shopify:
            deliver_shopify.delay(item_id)
        return len(customer) + len(shopify)

    def run(task: Any, item_id: int) -> str:
        # The task id owns the row's lease: a redelivery of this very message (its worker
        # child died) takes the lease back at once.
        outcome = jobs.deliver(runtime.deps(), int(item_id), owner=str(task.request.id))
        if outcome.status == "retry" and outcome.retry_in is not None \
                and outcome.retry_in <= MAX_COUNTDOWN:
            task.apply_async((item_id,), countdown=outcome.retry_in)
        return outcome.status

    @app.task(name="consultbook.deliver_outbox", bind=True)  # type: ignore[untyped-decorator]
    def deliver_outbox(self: Any, item_id: int) -> str:
        return run(self, item_id)

    @app.task(name="consultbook.deliver_shopify", bind=True)  # type: ignore[untyped-decorator]
    def deliver_shopify(self: Any, item_id: int) -> str:
        status = run(self, item_id)
        if status != "skipped":
            # This shop's Admin API slot is free again: hand on its next due action.
            deps = runtime.deps()
            shop_id = outbox.shop_of(deps.db, int(item_id))
            if shop_id is not None:
                for next_id in outbox.due_ids(deps.db, deps.clock.now(), 1, outbox.SHOPIFY,
                                              shop_id=shop_id):
                    deliver_shopify.delay(next_id)
        return status

    @app.task(name="consultbook.send_reminders")  # type: ignore[untyped-decorator]
    def send_reminders() -> dict[str, int]:
        r = jobs.send_reminders(runtime.deps())
        return {"claimed": r.claimed, "sent": len(r.sent), "skipped": len(r.skipped),
                "retried": len(r.retried), "failed": len(r.failed)}

    @app.task(name="consultbook.sweep")  # type: ignore[untyped-decorator]
    def sweep() -> dict[str, int]:
        return jobs.sweep_holds(runtime.deps())

    @app.task(name="consultbook.refresh_freebusy")  # type: ignore[untyped-decorator]
    def refresh_freebusy() -> dict[str, int]:
        return jobs.refresh_freebusy(runtime.deps())

    @app.task(name="consultbook.refresh_shopify_tokens")  # type: ignore[untyped-decorator]
    def refresh_shopify_tokens() -> dict[str, int]:
        return jobs.refresh_shopify_tokens(runtime.deps())

    @app.task(name="consultbook.notify_waitlist")  # type: ignore[untyped-decorator]
    def notify_waitlist() -> dict[str, int]:
        result = jobs.notify_waitlist(runtime.deps())
        if result["notified"]:
            relay_outbox.delay()  # the mail it queued goes out now, not at the next tick
        return result

    @app.task(name="consultbook.plugin_job", bind=True)  # type: ignore[untyped-decorator]
    def plugin_job(self: Any, name: str) -> dict[str, Any]:
        return jobs.run_plugin_job(runtime.deps(), str(name), owner=str(self.request.id))

    return app
