"""The periodic and triggered work, shared by Celery tasks and the embedded worker.

Each job is a few lines over a service. :class:`Deps` is what a worker process holds:
settings, its own database engine, the clock and the plugins. A Celery prefork child
builds its own (``Runtime.deps`` checks the pid), so no connection crosses a fork.
Everything a job needs is built once per :class:`Deps` -- once per process -- and reused
by every run (plugins are discovered once, not on each tick).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from engine.services import outbox, reminders, waitlist
from engine.services.claims import sweep

if TYPE_CHECKING:
    from engine.clock import Clock
    from engine.config import Config
    from engine.crypto import Keyring
    from engine.services.providers import Plugins
    from engine.store import Database

log = logging.getLogger("consultbook.worker")

#: Seconds between runs of each periodic job (beat and the embedded scheduler alike).
#: The outbox relay's interval follows the lease (outbox.relay_interval, at most this):
#: it is what takes over a delivery whose worker died once its lease ran out.
RELAY_EVERY = outbox.RELAY_MAX_INTERVAL
REMINDERS_EVERY = 60.0
SWEEP_EVERY = 60.0
FREEBUSY_DAYS = 14
SHOPIFY_TOKENS_EVERY = 300.0  # expiring offline tokens are refreshed 10 minutes ahead
#: Plugin jobs (``consultbook_register_jobs``) are scheduled as ``plugin:<name>``.
PLUGIN_JOB_PREFIX = "plugin:"


def schedule(config: Config) -> dict[str, float]:
    """Job name -> interval in seconds."""
    return {
        "relay_outbox": outbox.relay_interval(config.outbox_lease_seconds),
        "send_reminders": REMINDERS_EVERY,
        "sweep": SWEEP_EVERY,
        "refresh_freebusy": float(max(30, config.freebusy_ttl_seconds)),
        "refresh_shopify_tokens": SHOPIFY_TOKENS_EVERY,
        "notify_waitlist": waitlist.SCAN_EVERY,
        }


@dataclass
class Deps:
    config: Config
    db: Database
    clock: Clock
    plugins: Plugins
    #: Where this process's waitlist scan goes on (a scan position, nothing more).
    waitlist_scanner: waitlist.Scanner = field(default_factory=waitlist.Scanner)

    @property
    def keyring(self) -> Keyring:
        return self.plugins.keyring

    def context(self) -> Deps:
        """What the use cases take (``install.InstallDeps``): these deps themselves, built
        once per process -- a periodic job never rebuilds a context (and so never
        rediscovers plugins). The tasks layer does not import the composition root."""
        return self


def build_deps(config: Config, *, clock: Clock | None = None, db: Database | None = None,
               extra_plugins: Iterable[tuple[str, object]] = ()) -> Deps:
    from engine.clock import SystemClock
    from engine.crypto import Keyring, parse_keys
    from engine.services import freebusy
    from engine.services.providers import Plugins
    from engine.services.secrets import register_plugin_columns
    from engine.store import Database as _Database

    database = db or _Database.of(config)
    clk = clock or SystemClock()
    keyring = Keyring(parse_keys(",".join(config.encryption_keys)))
    plugins = Plugins.load(config, database, keyring, clk, extra=list(extra_plugins))
    register_plugin_columns(plugins.loaded.secrets)
    # Plugin jobs run here: their busy-time invalidations reach the shared cache, as the
    # web process's do (the same wiring as engine.bootstrap's).
    freebusy.wire(plugins)
    return Deps(config=config, db=database, clock=clk, plugins=plugins)


class Runtime:
    """Lazily built :class:`Deps`, one per process (safe across prefork's fork)."""

    def __init__(self, config: Config, *, extra_plugins: Iterable[tuple[str, object]] = (),
                 clock: Clock | None = None) -> None:
        self.config = config
        self.extra_plugins = list(extra_plugins)
        self.clock = clock
        self._deps: Deps | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def deps(self) -> Deps:
        with self._lock:
            if self._deps is None or self._pid != os.getpid():
                self._deps = build_deps(self.config, clock=self.clock,
                                        extra_plugins=self.extra_plugins)
                self._pid = os.getpid()
            return self._deps

    def close(self) -> None:
        """Release this process's database connections (worker shutdown, tests)."""
        with self._lock:
            deps, self._deps = self._deps, None
        if deps is not None and self._pid == os.getpid():
            deps.db.dispose()


# --------------------------------------------------------------------------- jobs


def _resendable(deps: Deps) -> Callable[[str], bool]:
    """Whether a shop's mail provider delivers an idempotency key once (a send that
    died half-way is then sent again, not marked in doubt)."""
    def check(shop_id: str) -> bool:
        try:
            return deps.plugins.mailer_for(shop_id).idempotent
        except Exception:  # no provider to be had: the safe answer (in doubt)
            return False
    return check


def relay_outbox(deps: Deps, owner: str, limit: int = 100, lane: str | None = None
                 ) -> outbox.RelayResult:
    """Deliver every due outbox row in this process (embedded mode, CLI); ``lane``
    (``outbox.CUSTOMER`` / ``outbox.SHOPIFY``) limits it to one lane."""
    outbox.recover_stuck_steps(deps.db, deps.clock.now(), deps.config.outbox_lease_seconds,
                               _resendable(deps))
    return outbox.relay(deps.db, deps.clock, deps.plugins, owner, limit, lane)


def due_outbox(deps: Deps, limit: int = 200, lane: str | None = None) -> list[int]:
    """Outbox rows to hand to delivery tasks (Celery's dispatcher), in that lane."""
    outbox.recover_stuck_steps(deps.db, deps.clock.now(), deps.config.outbox_lease_seconds,
                               _resendable(deps))
    return outbox.due_ids(deps.db, deps.clock.now(), limit, lane)


def deliver(deps: Deps, item_id: int, owner: str) -> outbox.Outcome:
    return outbox.deliver(deps.db, deps.clock, deps.plugins, item_id, owner)


def send_reminders(deps: Deps, limit: int = 500) -> reminders.ScanResult:
    return reminders.run_due(deps.db, deps.clock, deps.plugins, limit)


def refresh_shopify_tokens(deps: Deps) -> dict[str, int]:
    """Refresh the expiring Shopify offline tokens that run out soon
    (engine.services.install; a refused refresh is flagged for the merchant)."""
    from engine.services.install import refresh_expiring_tokens

    return {"shops": refresh_expiring_tokens(deps.context())}


def plugin_schedule(deps: Deps) -> dict[str, float]:
    """``plugin:<name>`` -> interval, for every job the plugins registered."""
    return {PLUGIN_JOB_PREFIX + job.name: job.every_seconds for job in deps.plugins.jobs}


def run_plugin_job(deps: Deps, name: str, owner: str) -> dict[str, Any]:
    """Run the plugin job ``name`` if this process wins its period (a compare-and-set
    claim in ``plugin_job_runs``: once per period across beat and embedded workers)."""
    from engine.services.providers import run_plugin_job as run

    name = name.removeprefix(PLUGIN_JOB_PREFIX)
    job = next((j for j in deps.plugins.jobs if j.name == name), None)
    if job is None:
        return {"unknown": 1}
    return dict(run(deps.plugins, job, owner) or {})


def sweep_holds(deps: Deps) -> dict[str, int]:
    """Expire stale holds, purge old ones, and close reminders a dead scan left behind."""
    now = deps.clock.now()
    with deps.db.write() as session:
        expired, deleted = sweep(session, now)
    stuck = reminders.recover_stuck(deps.db, now)
    return {"expired": expired, "deleted": deleted, "stuck_reminders": stuck}


def notify_waitlist(deps: Deps) -> dict[str, int]:
    """One waitlist scan (engine.services.waitlist): lapse past entries, and queue the
    mail of every entry whose date has a free slot now, with the same busy time the
    storefront sees."""
    from engine.services.freebusy import FreeBusy

    freebusy = FreeBusy(deps.plugins)
    try:
        r = deps.waitlist_scanner.run(deps.db, deps.clock, freebusy)
    finally:
        close: Any = getattr(freebusy.cache, "close", None)
        if callable(close):
            close()
    return {"groups": r.groups, "free": r.free, "notified": r.notified, "lapsed": r.lapsed,
            "failed": r.failed}


def refresh_freebusy(deps: Deps, days: int = FREEBUSY_DAYS) -> dict[str, int]:
    """Warm the free/busy cache of every installed shop whose calendar is remote, for
    the next ``days`` days, so storefront requests rarely wait on a provider. Fetches
    only what is stale (engine.services.freebusy); one shop's failure skips that shop."""
    from engine.services.freebusy import FreeBusy
    from engine.store.models import Expert, Shop, ShopSettings

    plugins = deps.plugins
    with deps.db.read() as session:
        shops = session.execute(
            select(Shop.id, ShopSettings.calendar_provider)
            .join(ShopSettings, ShopSettings.shop_id == Shop.id)
            .where(Shop.installed.is_(True))).all()
        remote = [s.id for s in shops
                  if getattr(plugins.registry.get("calendar", s.calendar_provider),
                             "remote", False)]
        experts: dict[str, dict[str, str | None]] = {}
        if remote:
            for e in session.execute(select(Expert.id, Expert.shop_id, Expert.email)
                                     .where(Expert.shop_id.in_(remote),
                                            Expert.deleted_at.is_(None))):
                experts.setdefault(e.shop_id, {})[e.id] = e.email
    if not experts:
        return {"shops": 0, "failed": 0}
    now = deps.clock.now()
    start = int(now.timestamp())
    end = int((now + timedelta(days=days)).timestamp())
    freebusy = FreeBusy(plugins)
    failed = 0
    try:
        for shop_id, shop_experts in experts.items():
            try:
                freebusy.shop_busy(shop_id, shop_experts, start, end)
            except Exception:
                failed += 1
                log.exception("free/busy refresh failed for shop %s", shop_id)
    finally:
        close: Any = getattr(freebusy.cache, "close", None)
        if callable(close):
            close()
    return {"shops": len(experts), "failed": failed}
