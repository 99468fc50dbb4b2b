"""Wiring: the one composition root that turns a Config into the objects every entry
point needs. Nothing in engine/services imports it: use cases take what they need as
arguments (the Context satisfies their small protocols, e.g. ``install.InstallDeps``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from engine.clock import Clock, SystemClock
from engine.config import Config
from engine.crypto import Keyring, parse_keys
from engine.services import freebusy
from engine.services.availability import BusySource, no_busy
from engine.services.providers import Plugins
from engine.services.secrets import register_plugin_columns
from engine.store import Database


@dataclass
class Context:
    """What a web process or a worker holds: settings, the database, the clock, the keyring."""

    config: Config
    db: Database
    clock: Clock = field(default_factory=SystemClock)
    # Where availability learns what already claims an expert's time.
    busy_source: BusySource = no_busy
    # Called after a web request committed work for the worker (outbox rows): the worker
    # wiring sets it to wake the relay; None means the periodic relay picks it up.
    after_commit: Callable[[], None] | None = None
    keyring: Keyring = field(init=False)
    # Provider plugins (engine.plugins): calendar_for / video_for / mailer_for.
    plugins: Plugins = field(init=False)

    def __post_init__(self) -> None:
        self.keyring = Keyring(parse_keys(",".join(self.config.encryption_keys)))
        self.plugins = Plugins.load(self.config, self.db, self.keyring, self.clock)
        # Plugins' encrypted columns join the engine's for `consultbook keys rotate`.
        register_plugin_columns(self.plugins.loaded.secrets)


def bootstrap(config: Config, *, db: Database | None = None, clock: Clock | None = None) -> Context:
    ctx = Context(config=config, db=db or Database.of(config),
                  clock=clock or SystemClock())
    # Busy time from each shop's calendar provider (cached, fail closed); availability
    # combines it with the database's claims.
    # Push sync (plugins) invalidates through the cache free/busy actually uses.
    ctx.busy_source = freebusy.wire(ctx.plugins)
    # After a commit that wrote outbox rows: kick the Celery relay, or wake this
    # process's embedded worker (engine.tasks.kick); best effort either way.
    from engine.tasks.kick import kicker

    ctx.after_commit = kicker(config)
    return ctx
