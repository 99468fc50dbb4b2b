"""The embedded worker: the same jobs on the same schedule, in a thread of the web process.

With no ``CONSULTBOOK_BROKER_URL``, ``consultbook serve`` (and ``demo``) start one
:class:`EmbeddedWorker` in each web process. It runs the outbox relay when a request
commits work (``Context.after_commit`` -> :func:`wake`) and when a retry falls due, and
the reminder scan, the hold sweeper and the free/busy refresh on the beat intervals
(:func:`engine.tasks.jobs.schedule`). Several web processes each run one: the database
claims (conditional updates, leases, step markers) make every piece of work happen
once, whichever process gets there first.

Shopify Admin API actions (order tagging, refunds) run on a second thread, the
*Shopify lane*: a slow, hanging or failing Admin API delays only them, never the
customer's confirmation or cancellation mail, which the main thread relays
(``outbox.CUSTOMER``). A failing Shopify call is rescheduled with backoff by the outbox,
never slept on.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from engine.services import outbox
from engine.tasks import jobs

if TYPE_CHECKING:
    from engine.clock import Clock
    from engine.config import Config

log = logging.getLogger("consultbook.embedded")

_current: EmbeddedWorker | None = None
_current_lock = threading.Lock()


class EmbeddedWorker:
    """A daemon thread running :mod:`engine.tasks.jobs` on the beat schedule."""

    def __init__(self, config: Config, *, clock: Clock | None = None,
                 extra_plugins: Iterable[tuple[str, object]] = (),
                 intervals: dict[str, float] | None = None) -> None:
        self.config = config
        self.runtime = jobs.Runtime(config, extra_plugins=extra_plugins, clock=clock)
        # Plugin jobs (``plugin:<name>``) join when the loop starts and plugins are loaded.
        self._plugin_jobs = intervals is None
        self.intervals = intervals or jobs.schedule(config)
        self.owner = f"embedded-{uuid.uuid4().hex}"
        self._wake = threading.Event()
        self._shopify_wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shopify_thread: threading.Thread | None = None
        self.runs: dict[str, int] = dict.fromkeys(self.intervals, 0)

    # -- control ------------------------------------------------------------------------

    def start(self) -> EmbeddedWorker:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="consultbook-worker",
                                            daemon=True)
            self._thread.start()
        if self._shopify_thread is None:
            self._shopify_thread = threading.Thread(
                target=self._shopify_loop, name="consultbook-worker-shopify", daemon=True)
            self._shopify_thread.start()
        return self

    def wake(self) -> None:
        """Run the outbox relay now (work was just committed), in both lanes."""
        self._wake.set()
        self._shopify_wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._shopify_wake.set()
        deadline = time.monotonic() + timeout
        for attr in ("_thread", "_shopify_thread"):
            thread = getattr(self, attr)
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
                if thread.is_alive():  # still finishing a job: leave it its connections
                    return
                setattr(self, attr, None)
        self.runtime.close()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- work ---------------------------------------------------------------------------

    def _jobs(self) -> dict[str, Callable[[], object]]:
        deps = self.runtime.deps()
        return {
            "relay_outbox": lambda: jobs.relay_outbox(deps, self.owner, lane=outbox.CUSTOMER),
            "relay_shopify": lambda: jobs.relay_outbox(deps, f"{self.owner}-shopify",
                                                       lane=outbox.SHOPIFY),
            "send_reminders": lambda: jobs.send_reminders(deps),
            "sweep": lambda: jobs.sweep_holds(deps),
            "refresh_freebusy": lambda: jobs.refresh_freebusy(deps),
            "refresh_shopify_tokens": lambda: jobs.refresh_shopify_tokens(deps),
            "notify_waitlist": lambda: self._then_relay(jobs.notify_waitlist(deps)),
            **{name: self._plugin_job(deps, name) for name in jobs.plugin_schedule(deps)},
        }

    def _then_relay(self, result: dict[str, int]) -> dict[str, int]:
        """After a waitlist scan queued mail: relay it now, not at the next interval."""
        if result.get("notified"):
            self._wake.set()
        return result

    def _plugin_job(self, deps: jobs.Deps, name: str) -> Callable[[], object]:
        return lambda: jobs.run_plugin_job(deps, name, self.owner)

    def run_job(self, name: str) -> object:
        """Run one job now, in the calling thread (tests, the CLI)."""
        return self._jobs()[name]()

    def _run(self, name: str) -> object:
        try:
            result = self.run_job(name)
        except Exception:
            log.exception("embedded worker: %s failed", name)
            return None
        self.runs[name] = self.runs.get(name, 0) + 1
        return result

    def _loop(self) -> None:
        if self._plugin_jobs:
            try:
                for name, every in jobs.plugin_schedule(self.runtime.deps()).items():
                    self.intervals.setdefault(name, every)
                    self.runs.setdefault(name, 0)
            except Exception:
                log.exception("embedded worker: could not load the plugins' jobs")
        now = time.monotonic()
        # First runs: relay at once (work may have waited while the process was down),
        # the rest spread over their first interval.
        next_at = {name: now + (0 if name == "relay_outbox" else min(5.0, every))
                   for name, every in self.intervals.items()}
        while not self._stop.is_set():
            woken = self._wake.is_set()
            self._wake.clear()
            now = time.monotonic()
            for name in list(next_at):
                if self._stop.is_set():
                    return
                if now >= next_at[name] or (woken and name == "relay_outbox"):
                    result = self._run(name)
                    next_at[name] = time.monotonic() + self.intervals[name]
                    if name == "relay_outbox":
                        next_at[name] = self._next_relay(result, next_at[name])
            timeout = max(0.05, min(next_at.values()) - time.monotonic())
            self._wake.wait(timeout)

    def _shopify_loop(self) -> None:
        """The Shopify lane: relay Shopify actions when woken, when a retry falls due,
        and on the relay's interval."""
        every = self.intervals.get("relay_outbox", jobs.RELAY_EVERY)
        next_at = time.monotonic()
        while not self._stop.is_set():
            woken = self._shopify_wake.is_set()
            self._shopify_wake.clear()
            if woken or time.monotonic() >= next_at:
                result = self._run("relay_shopify")
                next_at = self._next_relay(result, time.monotonic() + every)
            self._shopify_wake.wait(max(0.05, next_at - time.monotonic()))

    def _next_relay(self, result: object, default: float) -> float:
        """Sooner than the interval when a retry falls due before it."""
        due = getattr(result, "next_due", None)
        if due is None:
            return default
        clock = self.runtime.deps().clock
        seconds: float = (due - clock.now()).total_seconds()
        return min(default, time.monotonic() + max(0.5, seconds))


def start(config: Config, **kwargs: object) -> EmbeddedWorker:
    """Start this process's embedded worker (once); :func:`wake` then reaches it."""
    global _current
    with _current_lock:
        if _current is None or not _current.alive:
            _current = EmbeddedWorker(config, **kwargs).start()  # type: ignore[arg-type]
        return _current


def stop(timeout: float = 10.0) -> None:
    global _current
    with _current_lock:
        worker, _current = _current, None
    if worker is not None:
        worker.stop(timeout)


def wake() -> None:
    """Wake this process's embedded worker, if it runs one (``after_commit``)."""
    worker = _current
    if worker is not None:
        worker.wake()
