"""Push sync for calendar providers: notification channels that mark free/busy stale.

A calendar service (Google's events ``watch`` channels, Microsoft Graph subscriptions)
calls the app when an expert's calendar changes; the app then marks that expert's cached
free/busy stale (``invalidate_busy``), so the next availability request fetches it again
instead of waiting for the cache TTL. Polling stays the fallback: a channel that is down
only means the TTL decides, and the fail-closed freshness limit is untouched.

What is shared here, for any provider plugin:

* :func:`channel_table` -- the columns of a plugin's own channel table (each plugin owns
  its table, in its own ``MetaData`` and migrations);
* :class:`ChannelStore` -- the channels of a shop in that table, read and written through
  the host's :class:`~engine.store.Database` object (passed in, never imported);
* :class:`ChannelBackend` -- what a provider implements: open, renew, close a channel;
* :func:`sync_channels` -- the periodic job's work for one shop: one live channel per
  expert calendar, renewed (or replaced) before it expires, stale ones closed;
* :func:`new_secret` / :func:`secret_matches` -- the per-channel secret (Google's channel
  token, Graph's ``clientState``): only its SHA-256 is stored, compared in constant time;
* :func:`notification_url` -- the public URL the service calls, refused unless https
  (loopback http is allowed for local fakes; both services refuse http).

Notification endpoints never call the provider: they verify the channel, mark busy time
stale or mark a channel for the job (renew, recreate, stop), and answer at once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from engine.providers.base import CalendarProvider, ProviderContext
from engine.providers.errors import ProviderError
from engine.providers.host import JobHost

log = logging.getLogger("consultbook.push")

LIVE, RENEW, RECREATE, ORPHAN = "live", "renew", "recreate", "orphan"
#: At most this many orphan rows (unknown channels to stop) are kept per shop, so that
#: forged notifications cannot grow the table without bound.
MAX_ORPHANS_PER_SHOP = 50


class SessionSource(Protocol):
    """The host's database object (``ctx.db``): sessions as context managers."""

    def read(self) -> AbstractContextManager[Session]: ...

    def write(self) -> AbstractContextManager[Session]: ...


def channel_table(metadata: sa.MetaData, name: str) -> sa.Table:
    """A plugin's channel table named ``name`` in the plugin's own ``metadata``.

    Times are POSIX seconds (the same on SQLite and PostgreSQL). ``state`` is ``live``,
    ``renew`` (the service asked for reauthorization: renew on the next job run),
    ``recreate`` (the service removed it) or ``orphan`` (an unknown channel of this shop
    that called us: the job asks the service to stop it)."""
    return sa.Table(name, metadata, *channel_columns())


def channel_columns() -> list[sa.Column[Any]]:
    """The columns of a channel table (also what a plugin's migration creates)."""
    return [
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("shop_id", sa.String(64), nullable=False, index=True),
        sa.Column("expert_id", sa.String(64), nullable=False),
        sa.Column("calendar", sa.String(320), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(255), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    ]


@dataclass(frozen=True)
class Channel:
    """One notification channel of one expert's calendar."""

    id: str
    shop_id: str
    expert_id: str
    calendar: str
    secret_hash: str
    expires_at: int
    created_at: int
    resource_id: str | None = None
    state: str = LIVE


@dataclass(frozen=True)
class Opened:
    """What a service answered when a channel was opened or renewed."""

    id: str
    expires_at: int
    resource_id: str | None = None


def new_secret() -> str:
    """A fresh per-channel secret (URL-safe, 43 characters; fits Google and Graph)."""
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_matches(channel: Channel, presented: str | None) -> bool:
    """Whether ``presented`` is the channel's secret (constant-time comparison)."""
    if not presented:
        return False
    return hmac.compare_digest(channel.secret_hash, hash_secret(presented))


def notification_url(app_url: str, path: str) -> str | None:
    """The public URL for ``path`` under the app URL, or ``None`` when it cannot receive
    notifications: Google and Graph call https only. Plain http is accepted for loopback
    hosts (local fakes in tests and development), never for a public host."""
    parts = urlsplit(app_url)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        return None
    return f"{app_url.rstrip('/')}/{path.lstrip('/')}"


class ChannelStore:
    """The channels in one plugin's table (see :func:`channel_table`)."""

    def __init__(self, db: SessionSource, table: sa.Table) -> None:
        self.db = db
        self.table = table

    @staticmethod
    def _row(row: Any) -> Channel:
        return Channel(id=row.id, shop_id=row.shop_id, expert_id=row.expert_id,
                       calendar=row.calendar, secret_hash=row.secret_hash,
                       expires_at=int(row.expires_at), created_at=int(row.created_at),
                       resource_id=row.resource_id, state=row.state)

    def get(self, channel_id: str) -> Channel | None:
        with self.db.read() as session:
            row = session.execute(sa.select(self.table).where(
                self.table.c.id == channel_id)).first()
        return self._row(row) if row is not None else None

    def for_shop(self, shop_id: str) -> list[Channel]:
        t = self.table
        with self.db.read() as session:
            rows = session.execute(sa.select(t).where(t.c.shop_id == shop_id)
                                   .order_by(t.c.created_at, t.c.id)).all()
        return [self._row(r) for r in rows]

    def shops(self) -> list[str]:
        """Shops that have any channel row (for stopping channels of shops that left)."""
        with self.db.read() as session:
            return list(session.execute(sa.select(self.table.c.shop_id).distinct()).scalars())

    def _insert(self, session: Session) -> Any:
        dialect = session.get_bind().dialect.name
        return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(self.table)

    def add(self, channel: Channel) -> None:
        """Store ``channel``, replacing a row of the same id. One upsert: the service's
        first notification may reach the endpoint before this commits (Google's ``sync``
        right after ``watch``), and the endpoint then records the id as unknown
        (:meth:`add_orphan`) in a transaction of its own; the channel stored here wins
        whichever commits first."""
        values = {**channel.__dict__}
        with self.db.write() as session:
            stmt = self._insert(session).values(**values)
            session.execute(stmt.on_conflict_do_update(
                index_elements=[self.table.c.id],
                set_={k: stmt.excluded[k] for k in values if k != "id"}))

    def set_state(self, channel_id: str, state: str, *, only_from: Sequence[str] = ()) -> bool:
        """Set a channel's state (optionally only from one of ``only_from``)."""
        t = self.table
        stmt = sa.update(t).where(t.c.id == channel_id)
        if only_from:
            stmt = stmt.where(t.c.state.in_(list(only_from)))
        with self.db.write() as session:
            result: Any = session.execute(stmt.values(state=state))
            return bool(result.rowcount)

    def remove(self, channel_id: str) -> None:
        with self.db.write() as session:
            session.execute(sa.delete(self.table).where(self.table.c.id == channel_id))

    def add_orphan(self, shop_id: str, channel_id: str, resource_id: str | None,
                   now: int, until: int) -> bool:
        """Remember an unknown channel of ``shop_id`` so that the job asks the service to
        stop it (until ``until``, when it has expired anyway). Only for a shop that has
        channels here, and bounded per shop: forged notifications cannot grow the table.
        Returns whether it was recorded."""
        t = self.table
        with self.db.write() as session:
            if session.execute(sa.select(t.c.id).where(t.c.id == channel_id)).first():
                return False
            if not session.execute(sa.select(t.c.id).where(t.c.shop_id == shop_id)
                                   .limit(1)).first():
                return False
            count = session.execute(sa.select(sa.func.count()).select_from(t).where(
                t.c.shop_id == shop_id, t.c.state == ORPHAN)).scalar_one()
            if count >= MAX_ORPHANS_PER_SHOP:
                return False
            # A channel the job is storing right now wins (see :meth:`add`).
            result: Any = session.execute(self._insert(session).values(
                id=channel_id, shop_id=shop_id, expert_id="", calendar="",
                secret_hash="", resource_id=resource_id, state=ORPHAN, expires_at=until,
                created_at=now).on_conflict_do_nothing(index_elements=[t.c.id]))
        return bool(result.rowcount)


class ChannelBackend(Protocol):
    """A provider's side of push sync (one shop's connection)."""

    #: How long a channel asks to live (the service may answer less).
    lifetime_seconds: int
    #: Renew (or replace) a channel once less than this is left.
    renew_before_seconds: int

    def open(self, calendar: str, secret: str, now: int) -> Opened:
        """Open a channel on ``calendar``'s events; raises ProviderError on failure."""
        ...

    def renew(self, channel: Channel, now: int) -> Opened | None:
        """Extend ``channel`` in place; ``None`` when the service cannot (then a new
        channel replaces it). Raises ProviderError (a gone channel: ProviderRejected)."""
        ...

    def close(self, channel: Channel) -> None:
        """Stop ``channel`` at the service; a channel already gone is success."""
        ...


@dataclass
class SyncReport:
    opened: int = 0
    renewed: int = 0
    closed: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _open(store: ChannelStore, backend: ChannelBackend, shop_id: str, expert_id: str,
          calendar: str, now: int) -> Channel:
    secret = new_secret()
    got = backend.open(calendar, secret, now)
    channel = Channel(id=got.id, shop_id=shop_id, expert_id=expert_id, calendar=calendar,
                      secret_hash=hash_secret(secret), expires_at=got.expires_at,
                      created_at=now, resource_id=got.resource_id)
    store.add(channel)
    return channel


def _close(store: ChannelStore, backend: ChannelBackend, channel: Channel,
           report: SyncReport, now: int) -> None:
    try:
        backend.close(channel)
    except ProviderError as exc:
        if channel.expires_at > now:
            # Try again on the next run; once it has expired the service stops it anyway.
            log.warning("could not stop push channel %s: %s", channel.id, exc)
            store.set_state(channel.id, ORPHAN)
            report.failed += 1
            return
    store.remove(channel.id)
    report.closed += 1


def sync_channels(store: ChannelStore, backend: ChannelBackend, shop_id: str,
                  calendars: Mapping[str, str | None], now: int) -> SyncReport:
    """Make the shop's channels match its experts (``expert_id -> calendar``).

    * every expert with a calendar ends with one live channel that has more than
      ``renew_before_seconds`` left: renewed in place where the service can, else a new
      one is opened before the old one is stopped (no gap);
    * channels the service removed (``recreate``) are replaced; ones it asked to
      reauthorize (``renew``) are renewed now;
    * channels of experts that left (or whose calendar changed), duplicates, expired
      channels and orphans are stopped and deleted.

    A provider failure for one expert is counted and logged, never raised: polling
    covers that expert until the next run."""
    report = SyncReport()
    keep: dict[str, Channel] = {}
    rest: list[Channel] = []
    for channel in sorted(store.for_shop(shop_id), key=lambda c: -c.created_at):
        wanted = calendars.get(channel.expert_id)
        usable = (channel.state in (LIVE, RENEW) and wanted == channel.calendar
                  and channel.expires_at > now and channel.expert_id not in keep)
        if usable:
            keep[channel.expert_id] = channel
        else:
            rest.append(channel)
    for expert_id, calendar in sorted(calendars.items()):
        if not calendar:
            continue
        current = keep.get(expert_id)
        try:
            if current is None:
                _open(store, backend, shop_id, expert_id, calendar, now)
                report.opened += 1
            elif (current.state == RENEW
                  or current.expires_at - now < backend.renew_before_seconds):
                renewed = None
                try:
                    renewed = backend.renew(current, now)
                except ProviderError as exc:
                    log.info("renewing push channel %s failed (%s); replacing it",
                             current.id, exc)
                if renewed is not None:
                    store.add(replace(current, expires_at=renewed.expires_at, state=LIVE,
                                      resource_id=renewed.resource_id or current.resource_id))
                    report.renewed += 1
                else:
                    _open(store, backend, shop_id, expert_id, calendar, now)
                    report.opened += 1
                    rest.append(current)
        except ProviderError as exc:
            log.warning("push channel for %s of shop %s not opened: %s (polling covers it)",
                        expert_id, shop_id, exc)
            report.failed += 1
    for channel in rest:
        _close(store, backend, channel, report, now)
    return report


def run_push_job(host: JobHost, store: ChannelStore, provider: type[CalendarProvider],
                 path: str, backend: Callable[[ProviderContext, str],
                                              AbstractContextManager[ChannelBackend]]
                 ) -> dict[str, Any]:
    """The periodic job of a push-sync plugin: :func:`sync_channels` for every shop whose
    calendar is ``provider``, then closing the channels of shops that chose another
    calendar since (or left). ``backend(ctx, address)`` opens the provider's side for one
    shop. Without a usable notification URL (an http app URL that is not loopback)
    nothing is opened: polling alone keeps free/busy fresh."""
    address = notification_url(str(host.option("app_url", "") or ""), path)
    if address is None:
        return {"disabled": "the app URL is not https; push sync needs https"}
    now = int(host.clock.now().timestamp())
    totals = SyncReport()
    seen: set[str] = set()

    def add(report: SyncReport) -> None:
        for key, value in report.as_dict().items():
            setattr(totals, key, getattr(totals, key) + value)

    for ctx in host.contexts(kind="calendar", name=provider.name):
        seen.add(ctx.shop.id)
        instance = provider(ctx)
        calendars = {e.id: instance.calendar_for_expert(e.id, e.email)
                     for e in host.experts(ctx.shop.id)}
        try:
            with backend(ctx, address) as side:
                add(sync_channels(store, side, ctx.shop.id, calendars, now))
        except ProviderError as exc:  # no session (broken grant...): polling covers it
            log.warning("push sync for shop %s skipped: %s", ctx.shop.id, exc)
            totals.failed += 1
    for shop_id in sorted(set(store.shops()) - seen):
        try:
            ctx = host.context_for(shop_id, "calendar", provider.name)
            with backend(ctx, address) as side:
                add(sync_channels(store, side, shop_id, {}, now))
        except (LookupError, ProviderError) as exc:
            # Gone or disconnected: the channels cannot be stopped; they expire by themselves.
            log.info("dropping push channels of shop %s: %s", shop_id, exc)
            for channel in store.for_shop(shop_id):
                store.remove(channel.id)
    return totals.as_dict()


@dataclass(frozen=True)
class PushSync:
    """A plugin's push sync in one place: its channel table, notification path, calendar
    provider class (a loader, so the plugin's modules need not import each other at
    load time) and backend factory. Gives the periodic job and the endpoint base."""

    table: sa.Table
    path: str
    provider: Callable[[], type[CalendarProvider]]
    backend: Callable[[ProviderContext, str], AbstractContextManager[ChannelBackend]]

    def store(self, db: SessionSource) -> ChannelStore:
        return ChannelStore(db, self.table)

    def run_job(self, host: JobHost) -> dict[str, Any]:
        """The periodic job (register it with ``jobs.add(name, seconds, sync.run_job)``)."""
        return run_push_job(host, self.store(host.db), self.provider(), self.path,
                            self.backend)


class NotificationEndpoint:
    """Base of a notification resource (the factory of ``routes.add(path, factory,
    auth="none")``): ``self.host`` (the RouteHost) and ``self.store`` (the channels in
    :attr:`table`). Subclasses set ``table`` and implement ``on_post``. Only the table is
    needed here, so a plugin's endpoint module need not import its provider class."""

    table: ClassVar[sa.Table]

    def __init__(self, host: Any) -> None:
        self.host = host
        self.store = ChannelStore(host.db, self.table)

    def now(self) -> int:
        return int(self.host.clock.now().timestamp())


__all__ = [
    "LIVE",
    "ORPHAN",
    "RECREATE",
    "RENEW",
    "Channel",
    "ChannelBackend",
    "ChannelStore",
    "NotificationEndpoint",
    "Opened",
    "PushSync",
    "SyncReport",
    "channel_columns",
    "channel_table",
    "hash_secret",
    "new_secret",
    "notification_url",
    "run_push_job",
    "secret_matches",
    "sync_channels",
]
