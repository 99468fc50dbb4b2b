"""Free/busy from the shop's calendar provider, for availability: batched, cached, fail closed.

:class:`FreeBusy` is a ``BusySource`` (``(session, shop_id, {expert_id: email}, start, end)
-> {expert_id: [(start, end)]}`` in POSIX seconds), composed by availability with the database's own
claims. For a remote calendar (Google, Outlook...):

* Busy time is cached per expert in 7-day chunks aligned to the epoch, for
  ``CONSULTBOOK_FREEBUSY_TTL_SECONDS``, in Redis when one is configured
  (``CONSULTBOOK_REDIS_URL``, else a ``redis://`` broker), else in the database.
* Every expert whose chunks are not fresh is fetched in **one** provider call for the
  union of the missing chunks (the provider batches calendars and splits long ranges as
  its API requires), so a page of availability costs at most one call per batch of
  experts per cache period -- never one per slot or per day.
* **Fail closed**: when an expert's busy time cannot be fetched (provider down, grant
  revoked, no calendar for the expert, provider missing), cached busy time no older than
  ``CONSULTBOOK_FREEBUSY_MAX_STALE_SECONDS`` is used; beyond that the expert is reported
  busy for the whole range, so their slots are hidden, never shown as free. The state
  of every expert is kept in ``freebusy_health`` for ``GET /admin/api/connections``.
* **Single flight**: when a chunk has expired and several processes (gunicorn workers,
  Celery) need it at once, exactly one refetches it. Each chunk has a lease in the same
  store as the cache -- a Redis key set with ``SET NX PX`` and a random token, released
  by compare-and-delete; or a ``busy_cache`` row taken by a conditional
  ``INSERT ... ON CONFLICT DO UPDATE ... WHERE expired`` -- that lapses by itself after
  ``lock_ttl`` seconds of real time, so a fetcher that dies is replaced. A process that
  finds a chunk leased uses the cached value while it is within the freshness limit,
  and otherwise waits (up to ``lock_wait``) for the holder's result; a holder that fails
  leaves a short failure note (its token and the reason), so waiters stop waiting and
  fail closed with that reason instead of each calling the provider in turn.
* The shop's provider instance (its decrypted credentials) is reused between requests
  (:class:`~engine.services.provider_cache.ProviderInstances`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from engine.errors import ConsultbookError
from engine.providers.base import CalendarProvider
from engine.providers.retry import deadline as retry_deadline
from engine.providers.types import CalendarBusy
from engine.services.provider_cache import ProviderInstances
from engine.store.models import Expert
from engine.store.providers_models import BusyCacheEntry, FreeBusyHealth

if TYPE_CHECKING:
    from engine.services.providers import Plugins
    from engine.store import Database

log = logging.getLogger("consultbook.freebusy")

CHUNK = 7 * 86400
OK, STALE, HIDDEN = "ok", "stale", "hidden"
Pair = tuple[int, int]


@dataclass(frozen=True)
class CacheEntry:
    fetched_at: float
    intervals: tuple[Pair, ...]


class BusyCache(Protocol):
    """Where fetched busy time is kept between requests (shared by every process), and the
    per-chunk fetch leases that make a refetch single-flight across processes.

    Leases are measured in real time (``time.time()`` or the store's own clock), never in
    the engine's clock: they are about whether a process is still alive."""

    def get_many(self, keys: Sequence[str]) -> dict[str, CacheEntry]: ...

    def put_many(self, shop_id: str, entries: Mapping[str, CacheEntry],
                 keep_seconds: int) -> None: ...

    def forget(self, shop_id: str, expert_ids: Sequence[str]) -> None:
        """Drop every cached chunk of these experts of the shop (push sync: their
        calendar changed), so the next request fetches again."""
        ...

    def acquire(self, shop_id: str, keys: Sequence[str], token: str,
                ttl: float) -> set[str]:
        """Take the fetch lease of each key that nobody holds (or whose lease lapsed) for
        ``ttl`` seconds under ``token``; the keys taken. A store that cannot take leases
        right now returns every key (fetching twice beats not fetching)."""
        ...

    def release(self, shop_id: str, keys: Sequence[str], token: str,
                failures: Mapping[str, str], ttl: float) -> None:
        """Give back the leases still held under ``token`` (compare-and-delete). For the
        keys in ``failures`` first leave a note ``(token, reason)`` for ``ttl`` seconds,
        so processes waiting on this holder stop waiting."""
        ...

    def holders(self, keys: Sequence[str]) -> dict[str, str]:
        """The token holding each leased key (keys with no live lease are left out)."""
        ...

    def failures(self, keys: Sequence[str]) -> dict[str, tuple[str, str]]:
        """The live failure notes: key -> (token of the failed holder, reason)."""
        ...


def _encode(entry: CacheEntry) -> str:
    return json.dumps({"f": entry.fetched_at, "i": [list(p) for p in entry.intervals]})


def _decode(raw: str | bytes) -> CacheEntry | None:
    try:
        doc = json.loads(raw)
        return CacheEntry(float(doc["f"]), tuple((int(s), int(e)) for s, e in doc["i"]))
    except (ValueError, KeyError, TypeError):
        return None


class RedisBusyCache:
    """Busy time in Redis: one key per expert chunk, expiring on its own. A chunk's fetch
    lease is the key ``<lock prefix><chunk key>`` set with ``SET NX PX`` to a random
    token and deleted only by a script that compares the token first."""

    prefix = "consultbook:freebusy:"
    lock_prefix = "consultbook:freebusy-lock:"
    fail_prefix = "consultbook:freebusy-fail:"
    # Compare-and-delete: a holder whose lease lapsed (and was taken over) must not
    # delete the new holder's lease.
    _RELEASE = ("local n = 0 for i, key in ipairs(KEYS) do "
                "if redis.call('get', key) == ARGV[1] then "
                "n = n + redis.call('del', key) end end return n")

    def __init__(self, url: str, *, timeout: float = 2.0) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=timeout,
                                           socket_connect_timeout=timeout)
        self._release = self.client.register_script(self._RELEASE)

    def get_many(self, keys: Sequence[str]) -> dict[str, CacheEntry]:
        if not keys:
            return {}
        import redis

        try:
            values = self.client.mget([self.prefix + k for k in keys])
        except redis.RedisError as exc:
            log.warning("free/busy cache unavailable (%s); fetching", exc)
            return {}
        out = {}
        for key, raw in zip(keys, values, strict=True):
            entry = _decode(raw) if raw is not None else None
            if entry is not None:
                out[key] = entry
        return out

    def forget(self, shop_id: str, expert_ids: Sequence[str]) -> None:
        import redis

        try:
            for expert_id in expert_ids:
                keys = list(self.client.scan_iter(match=f"{self.prefix}*:{expert_id}:*",
                                                  count=500))
                if keys:
                    self.client.delete(*keys)
        except redis.RedisError as exc:
            log.warning("could not invalidate cached free/busy in Redis (%s)", exc)

    def put_many(self, shop_id: str, entries: Mapping[str, CacheEntry],
                 keep_seconds: int) -> None:
        import redis

        try:
            with self.client.pipeline(transaction=False) as pipe:
                for key, entry in entries.items():
                    pipe.set(self.prefix + key, _encode(entry), ex=max(1, keep_seconds))
                pipe.execute()
        except redis.RedisError as exc:
            log.warning("free/busy cache unavailable (%s); not cached", exc)

    def acquire(self, shop_id: str, keys: Sequence[str], token: str,
                ttl: float) -> set[str]:
        if not keys:
            return set()
        import redis

        try:
            with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.set(self.lock_prefix + key, token, nx=True,
                             px=max(1, int(ttl * 1000)))
                taken = pipe.execute()
        except redis.RedisError as exc:
            log.warning("free/busy leases unavailable (%s); fetching without one", exc)
            return set(keys)
        return {key for key, ok in zip(keys, taken, strict=True) if ok}

    def release(self, shop_id: str, keys: Sequence[str], token: str,
                failures: Mapping[str, str], ttl: float) -> None:
        if not keys:
            return
        import redis

        try:
            if failures:
                with self.client.pipeline(transaction=False) as pipe:
                    for key, reason in failures.items():
                        pipe.set(self.fail_prefix + key, f"{token}\n{reason}",
                                 px=max(1, int(ttl * 1000)))
                    pipe.execute()
            self._release(keys=[self.lock_prefix + k for k in keys], args=[token])
        except redis.RedisError as exc:  # the leases lapse on their own
            log.warning("free/busy leases unavailable (%s); left to expire", exc)

    def holders(self, keys: Sequence[str]) -> dict[str, str]:
        return {k: v for k, v in self._mget(self.lock_prefix, keys).items()}

    def failures(self, keys: Sequence[str]) -> dict[str, tuple[str, str]]:
        out = {}
        for key, value in self._mget(self.fail_prefix, keys).items():
            token, _, reason = value.partition("\n")
            out[key] = (token, reason)
        return out

    def _mget(self, prefix: str, keys: Sequence[str]) -> dict[str, str]:
        if not keys:
            return {}
        import redis

        try:
            values = self.client.mget([prefix + k for k in keys])
        except redis.RedisError:
            return {}
        return {k: (v.decode() if isinstance(v, bytes) else str(v))
                for k, v in zip(keys, values, strict=True) if v is not None}

    def close(self) -> None:
        self.client.close()


#: Prefixes of the lease and failure-note rows in ``busy_cache`` ("!" is never in a
#: provider name, so they never collide with a chunk's key).
LEASE, FAILED = "!lease:", "!failed:"


class DatabaseBusyCache:
    """Busy time in the ``busy_cache`` table (the embedded default, no Redis).

    A chunk's fetch lease is a row ``!lease:<chunk key>`` of the same table (its
    ``intervals`` hold the token, ``expires_at`` the end of the lease in real time),
    taken by ``INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE expires_at <= now``, so
    two processes never both hold it: on PostgreSQL the conflicting insert waits for the
    other transaction and re-checks the condition against its committed row; on SQLite
    writers are serialized (``BEGIN IMMEDIATE``)."""

    def __init__(self, db: Database, *, wall: Callable[[], float] = time.time) -> None:
        self.db = db
        self.wall = wall

    def forget(self, shop_id: str, expert_ids: Sequence[str]) -> None:
        if not expert_ids:
            return
        with self.db.write(keep_cache=True) as session:
            for expert_id in expert_ids:
                session.execute(delete(BusyCacheEntry).where(
                    BusyCacheEntry.shop_id == shop_id,
                    BusyCacheEntry.key.like(f"%:{expert_id}:%")))

    def _insert(self) -> Any:
        return (postgresql.insert if self.db.dialect == "postgresql" else sqlite.insert)(
            BusyCacheEntry)

    def get_many(self, keys: Sequence[str]) -> dict[str, CacheEntry]:
        if not keys:
            return {}
        with self.db.read() as session:
            rows = session.scalars(select(BusyCacheEntry).where(
                BusyCacheEntry.key.in_(list(keys)))).all()
            return {r.key: CacheEntry(r.fetched_at.timestamp(),
                                      tuple((int(s), int(e)) for s, e in r.intervals))
                    for r in rows}

    def put_many(self, shop_id: str, entries: Mapping[str, CacheEntry],
                 keep_seconds: int) -> None:
        if not entries:
            return
        now = max(e.fetched_at for e in entries.values())
        rows = [{"key": key, "shop_id": shop_id,
                 "fetched_at": datetime.fromtimestamp(e.fetched_at, UTC),
                 "expires_at": datetime.fromtimestamp(e.fetched_at + keep_seconds, UTC),
                 "intervals": [list(p) for p in e.intervals]} for key, e in entries.items()]
        stmt = self._insert().values(rows)
        # An upsert: two processes writing one chunk (a lease that lapsed mid-fetch) must
        # not fail the second with a duplicate key.
        stmt = stmt.on_conflict_do_update(
            index_elements=[BusyCacheEntry.key],
            set_={"fetched_at": stmt.excluded.fetched_at,
                  "expires_at": stmt.excluded.expires_at,
                  "intervals": stmt.excluded.intervals})
        with self.db.write(keep_cache=True) as session:  # cache rows are not read-cached
            session.execute(delete(BusyCacheEntry).where(
                (BusyCacheEntry.expires_at < datetime.fromtimestamp(now, UTC))
                & ~BusyCacheEntry.key.startswith("!")))
            session.execute(stmt)

    def acquire(self, shop_id: str, keys: Sequence[str], token: str,
                ttl: float) -> set[str]:
        if not keys:
            return set()
        wall = self.wall()
        at, until = datetime.fromtimestamp(wall, UTC), datetime.fromtimestamp(wall + ttl, UTC)
        stmt = self._insert().values([
            {"key": LEASE + k, "shop_id": shop_id, "fetched_at": at, "expires_at": until,
             "intervals": [token]} for k in sorted(keys)])
        stmt = stmt.on_conflict_do_update(
            index_elements=[BusyCacheEntry.key],
            set_={"fetched_at": stmt.excluded.fetched_at,
                  "expires_at": stmt.excluded.expires_at,
                  "intervals": stmt.excluded.intervals},
            where=BusyCacheEntry.expires_at <= at)  # only a lapsed lease is taken over
        with self.db.write(keep_cache=True) as session:
            session.execute(stmt)
            rows = session.execute(select(BusyCacheEntry.key, BusyCacheEntry.intervals).where(
                BusyCacheEntry.key.in_([LEASE + k for k in keys]))).all()
        return {r.key[len(LEASE):] for r in rows if r.intervals == [token]}

    def release(self, shop_id: str, keys: Sequence[str], token: str,
                failures: Mapping[str, str], ttl: float) -> None:
        if not keys:
            return
        wall = self.wall()
        at = datetime.fromtimestamp(wall, UTC)
        with self.db.write(keep_cache=True) as session:
            if failures:
                stmt = self._insert().values([
                    {"key": FAILED + k, "shop_id": shop_id, "fetched_at": at,
                     "expires_at": datetime.fromtimestamp(wall + ttl, UTC),
                     "intervals": [token, reason[:500]]}
                    for k, reason in sorted(failures.items())])
                stmt = stmt.on_conflict_do_update(
                    index_elements=[BusyCacheEntry.key],
                    set_={"fetched_at": stmt.excluded.fetched_at,
                          "expires_at": stmt.excluded.expires_at,
                          "intervals": stmt.excluded.intervals})
                session.execute(stmt)
            # Compare-and-delete: the rows are locked (PostgreSQL) or the database is
            # (SQLite), so a lease taken over meanwhile is not ours to delete.
            held = session.execute(
                select(BusyCacheEntry.key, BusyCacheEntry.intervals)
                .where(BusyCacheEntry.key.in_([LEASE + k for k in keys]))
                .with_for_update()).all()
            mine = [r.key for r in held if r.intervals == [token]]
            if mine:
                session.execute(delete(BusyCacheEntry).where(BusyCacheEntry.key.in_(mine)))
            # Leases and notes left by processes that died: garbage once lapsed.
            session.execute(delete(BusyCacheEntry).where(
                BusyCacheEntry.key.startswith("!") & (BusyCacheEntry.expires_at < at)))

    def _live(self, prefix: str, keys: Sequence[str]) -> dict[str, list[Any]]:
        if not keys:
            return {}
        at = datetime.fromtimestamp(self.wall(), UTC)
        with self.db.read() as session:
            rows = session.execute(select(BusyCacheEntry.key, BusyCacheEntry.intervals).where(
                BusyCacheEntry.key.in_([prefix + k for k in keys]),
                BusyCacheEntry.expires_at > at)).all()
        return {r.key[len(prefix):]: list(r.intervals) for r in rows}

    def holders(self, keys: Sequence[str]) -> dict[str, str]:
        return {k: str(v[0]) for k, v in self._live(LEASE, keys).items() if v}

    def failures(self, keys: Sequence[str]) -> dict[str, tuple[str, str]]:
        return {k: (str(v[0]), str(v[1])) for k, v in self._live(FAILED, keys).items()
                if len(v) == 2}


def make_cache(plugins: Plugins) -> BusyCache:
    """Redis when configured (``CONSULTBOOK_REDIS_URL``, else a Redis broker), else the DB."""
    config = plugins.config
    url = config.redis_url or (config.broker_url if config.broker_url and
                               config.broker_url.startswith(("redis://", "rediss://")) else None)
    if url:
        return RedisBusyCache(url)
    return DatabaseBusyCache(plugins.db)


@dataclass
class _Expert:
    id: str
    calendar: str | None


def _chunks(start: int, end: int) -> list[int]:
    first = start - start % CHUNK
    return list(range(first, end, CHUNK))


def _key(provider: str, expert: _Expert, chunk: int) -> str:
    calendar = hashlib.sha256((expert.calendar or "").encode()).hexdigest()[:12]
    return f"{provider}:{expert.id}:{calendar}:{chunk}"


def _fresh(hit: CacheEntry | None, now: float, ttl: int) -> bool:
    return hit is not None and now - hit.fetched_at < ttl


def _usable(hit: CacheEntry | None, now: float, ttl: int, max_stale: int) -> bool:
    """Fresh, or stale but within the freshness limit (fail closed beyond it)."""
    return hit is not None and (now - hit.fetched_at < ttl or now - hit.fetched_at <= max_stale)


def _clip(intervals: Iterable[Pair], start: int, end: int) -> list[Pair]:
    return [(max(s, start), min(e, end)) for s, e in intervals if s < end and e > start]


HEALTH_MEMO_SECONDS = 30.0


def lease_timing(plugins: Plugins) -> tuple[float, float]:
    """(lease TTL, longest wait for another process's fetch) in seconds, from the retry
    settings: a lease long enough for one provider call with its retries (so a slow fetch
    is not duplicated), within bounds that keep a dead holder from hiding slots for long.
    Where the retries could take longer than the bound (60 s), the holder stops retrying
    before its lease ends (engine.providers.retry.deadline, in :meth:`FreeBusy._refresh`)."""
    config = plugins.config
    attempts = max(1, config.provider_attempts)
    fetch = (config.provider_timeout_seconds * attempts
             + config.provider_max_backoff_seconds * (attempts - 1))
    ttl = min(max(fetch + 1.0, 2.0), 60.0)
    return ttl, min(ttl + 0.5, 15.0)


class FreeBusy:
    """The provider-backed ``BusySource`` (see the module docstring).

    ``lock_ttl``/``lock_wait`` override :func:`lease_timing`; ``wall``/``sleep`` are the
    real-time clock and sleep the leases use (never the engine's clock, which tests
    freeze); ``providers`` caches the built provider instances."""

    def __init__(self, plugins: Plugins, cache: BusyCache | None = None, *,
                 lock_ttl: float | None = None, lock_wait: float | None = None,
                 poll_seconds: float = 0.05, wall: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 providers: ProviderInstances | None = None) -> None:
        self.plugins = plugins
        self.cache = cache if cache is not None else make_cache(plugins)
        ttl, wait = lease_timing(plugins)
        self.lock_ttl = lock_ttl if lock_ttl is not None else ttl
        self.lock_wait = lock_wait if lock_wait is not None else wait
        self.poll_seconds = poll_seconds
        self.wall, self.sleep = wall, sleep
        self.providers = providers if providers is not None else ProviderInstances(plugins)
        self._health_memo: dict[str, tuple[tuple[str, str | None, str], float]] = {}

    def invalidate(self, shop_id: str, expert_id: str | None = None) -> None:
        """Forget the cached busy time of one expert of the shop, or of all its experts,
        in whichever cache this process uses (Redis or the database)."""
        if expert_id is not None:
            experts = [expert_id]
        else:
            with self.plugins.db.read() as session:
                experts = list(session.scalars(
                    select(Expert.id).where(Expert.shop_id == shop_id)))
        self.cache.forget(shop_id, experts)

    def __call__(self, session: Session, shop_id: str, experts: Mapping[str, str | None],
                 start: int, end: int) -> dict[str, list[Pair]]:
        if not experts or end <= start:
            return {}
        return self.shop_busy(shop_id, experts, start, end, session=session)

    def shop_busy(self, shop_id: str, experts: Mapping[str, str | None], start: int,
                  end: int, *, session: Session | None = None) -> dict[str, list[Pair]]:
        """Busy time of one shop's experts (id -> email) within ``[start, end)``.

        With the caller's ``session``, the shop's settings (and, for a provider that can,
        its busy time) are read in it rather than in sessions of their own."""
        plugins = self.plugins
        now = plugins.clock.now().timestamp()
        sp = plugins.shop_providers(shop_id, session)
        name = sp.choice.calendar
        status: dict[str, tuple[str, str | None, float | None]] = {}
        result: dict[str, list[Pair]] = {}

        def hide(expert_id: str, reason: str) -> None:
            result[expert_id] = [(start, end)]
            status[expert_id] = (HIDDEN, reason, None)

        try:
            cls = cast(type[CalendarProvider], plugins._class("calendar", name))
        except ConsultbookError as exc:
            for eid in experts:
                hide(eid, exc.message)
            self._record(shop_id, name, status, now)
            return result
        provider: CalendarProvider | None = None
        provider_error: str | None = None
        try:
            provider = self.providers.get(cls, sp)
        except ConsultbookError as exc:
            provider_error = exc.message
        mapping = {eid: _Expert(eid, provider.calendar_for_expert(eid, email) if provider
                                else _calendar_of(cls, eid, email))
                   for eid, email in experts.items()}

        if not cls.remote:
            self._local(provider, provider_error, mapping, start, end, result, status, hide,
                        session)
            self._record(shop_id, name, status, now)
            return result

        ttl = plugins.config.freebusy_ttl_seconds
        max_stale = plugins.config.freebusy_max_stale_seconds
        chunks = _chunks(start, end)
        wanted = {eid: [_key(name, e, c) for c in chunks] for eid, e in mapping.items()
                  if e.calendar}
        owner = {k: (eid, c) for eid, keys in wanted.items()
                 for c, k in zip(chunks, keys, strict=True)}
        cached = self.cache.get_many(list(owner))
        errors: dict[str, str] = {}  # chunk key -> why it could not be refreshed
        todo = [k for k in owner if not _fresh(cached.get(k), now, ttl)]
        if todo and provider is None:
            for k in todo:
                errors[k] = provider_error or "the calendar provider is not available"
        elif todo:
            assert provider is not None
            self._refresh(shop_id, name, provider, mapping, owner, todo, cached, errors,
                          now, ttl, max_stale)

        for eid, e in mapping.items():
            if not e.calendar:
                hide(eid, f"{eid} has no calendar address for {name} (set the expert's email)")
                continue
            error = next((errors[k] for k in wanted[eid] if k in errors), None)
            pairs: list[Pair] = []
            oldest = now
            usable = True
            for k in wanted[eid]:
                hit = cached.get(k)
                if not _usable(hit, now, ttl, max_stale):
                    usable = False
                    break
                assert hit is not None
                oldest = min(oldest, hit.fetched_at)
                pairs.extend(hit.intervals)
            if not usable:
                hide(eid, error or f"the busy time of {eid} is unknown")
                continue
            result[eid] = _clip(pairs, start, end)
            status[eid] = (STALE, error, oldest) if error else (OK, None, oldest)
        self._record(shop_id, name, status, now)
        return result

    def _refresh(self, shop_id: str, name: str, provider: CalendarProvider,
                 mapping: Mapping[str, _Expert], owner: Mapping[str, tuple[str, int]],
                 todo: list[str], cached: dict[str, CacheEntry], errors: dict[str, str],
                 now: float, ttl: int, max_stale: int) -> None:
        """Bring the chunks ``todo`` up to date in ``cached`` (or name why not in
        ``errors``), calling the provider only for the chunks this process holds the
        lease of; for the others wait for their holder unless a usable value serves."""
        token = secrets.token_hex(16)
        deadline: float | None = None
        seen: dict[str, str] = {}  # key -> the token of the holder we waited on
        while todo:
            leased_at = self.wall()
            mine = self.cache.acquire(shop_id, todo, token, self.lock_ttl)
            if mine:
                # Double-checked: the previous holder may have stored the chunk between
                # our read and our lease; fetching it again would be the second call.
                cached.update(self.cache.get_many(sorted(mine)))
                stale = sorted(k for k in mine if not _fresh(cached.get(k), now, ttl))
                failed: dict[str, str] = {}
                try:
                    if stale:
                        # The call with its retries ends while the lease lasts (with
                        # time to store the answer): past it another process would take
                        # the lease over and call the provider a second time.
                        left = self.lock_ttl - (self.wall() - leased_at)
                        with retry_deadline(left - min(1.0, self.lock_ttl / 4)):
                            self._fetch(shop_id, name, provider, mapping, owner, stale,
                                        cached, failed, now, ttl + max_stale)
                finally:
                    errors.update(failed)
                    self.cache.release(shop_id, sorted(mine), token, failed, self.lock_ttl)
            # Another process is fetching the rest: a value within the freshness limit
            # serves meanwhile; without one, wait for that process's result.
            todo = [k for k in todo if k not in mine and k not in errors
                    and not _usable(cached.get(k), now, ttl, max_stale)]
            if not todo:
                return
            if deadline is None:
                deadline = self.wall() + self.lock_wait
            retry = False
            while todo and not retry:
                if self.wall() >= deadline:
                    for k in todo:
                        errors[k] = (f"the {name} busy time is being read by another "
                                     "process, which did not finish in time")
                    return
                held = self.cache.holders(todo)
                seen.update(held)
                self.sleep(self.poll_seconds)
                cached.update(self.cache.get_many(todo))
                todo = [k for k in todo if not _fresh(cached.get(k), now, ttl)]
                for k, (holder, reason) in self.cache.failures(todo).items():
                    if seen.get(k) == holder:  # the holder we waited on gave up
                        errors[k] = reason
                todo = [k for k in todo if k not in errors]
                # A lease that is gone without a result (released or lapsed: its
                # holder died) is ours to take: back to acquire.
                retry = any(k not in held for k in todo)

    def _fetch(self, shop_id: str, name: str, provider: CalendarProvider,
               mapping: Mapping[str, _Expert], owner: Mapping[str, tuple[str, int]],
               keys: list[str], cached: dict[str, CacheEntry], errors: dict[str, str],
               now: float, keep_seconds: int) -> None:
        """One provider call for the experts and chunk range of ``keys``; results go to
        the cache and ``cached``, failures to ``errors`` (per key)."""
        experts = sorted({owner[k][0] for k in keys})
        chunk_of = {k: owner[k][1] for k in keys}
        f_start, f_end = min(chunk_of.values()), max(chunk_of.values()) + CHUNK
        calendars = sorted({address for eid in experts
                            if (address := mapping[eid].calendar) is not None})
        answers: dict[str, CalendarBusy] = {}
        try:
            by_calendar = dict(provider.busy(calendars, datetime.fromtimestamp(f_start, UTC),
                                             datetime.fromtimestamp(f_end, UTC)))
            for eid in experts:
                cal = mapping[eid].calendar
                assert cal is not None
                answers[eid] = by_calendar.get(cal) or CalendarBusy(
                    error=f"{name} did not answer for {cal}")
        except ConsultbookError as exc:
            for k in keys:
                errors[k] = exc.message
            return
        except Exception as exc:  # a plugin bug must not show slots as free
            log.exception("calendar provider %s failed", name)
            for k in keys:
                errors[k] = f"the {name} calendar failed ({type(exc).__name__})"
            return
        fresh_entries: dict[str, CacheEntry] = {}
        by_expert: dict[str, list[str]] = {}
        for k in keys:
            by_expert.setdefault(owner[k][0], []).append(k)
        for eid, answer in answers.items():
            if answer.error:
                for k in by_expert[eid]:
                    errors[k] = answer.error
                continue
            got = [(int(s.timestamp()), int(e.timestamp())) for s, e in answer.busy]
            for k in by_expert[eid]:
                c = chunk_of[k]
                entry = CacheEntry(now, tuple(_clip(got, c, c + CHUNK)))
                fresh_entries[k] = entry
                cached[k] = entry
        self.cache.put_many(shop_id, fresh_entries, keep_seconds)

    def _local(self, provider: CalendarProvider | None, provider_error: str | None,
               mapping: Mapping[str, _Expert], start: int, end: int,
               result: dict[str, list[Pair]], status: dict[str, Any], hide: Any,
               session: Session | None = None) -> None:
        if provider is None:
            for eid in mapping:
                hide(eid, provider_error or "the calendar provider is not available")
            return
        calendars = {eid: e.calendar for eid, e in mapping.items() if e.calendar}
        in_session = getattr(provider, "busy_in_session", None)
        try:
            if session is not None and in_session is not None:
                # A provider whose busy time is in our own database reads it in the
                # caller's session (one connection per storefront request).
                answer = in_session(session, sorted(set(calendars.values())),
                                    datetime.fromtimestamp(start, UTC),
                                    datetime.fromtimestamp(end, UTC))
            else:
                answer = provider.busy(sorted(set(calendars.values())),
                                       datetime.fromtimestamp(start, UTC),
                                       datetime.fromtimestamp(end, UTC))
        except ConsultbookError as exc:
            for eid in mapping:
                hide(eid, exc.message)
            return
        for eid in mapping:
            cal = calendars.get(eid)
            got = answer.get(cal) if cal else None
            if got is None or got.error:
                hide(eid, (got.error if got else None) or f"no calendar for {eid}")
                continue
            result[eid] = [(int(s.timestamp()), int(e.timestamp())) for s, e in got.busy]
            # Read just now: healthy again (a once-hidden expert does not stay "hidden").
            status[eid] = (OK, None, self.plugins.clock.now().timestamp())

    def _record(self, shop_id: str, provider: str,
                status: Mapping[str, tuple[str, str | None, float | None]], now: float) -> None:
        """Write the experts' health where it changed (reads are the common case)."""
        if not status:
            return
        # What this process last recorded, for a short while: the common case (nothing
        # changed) then costs no database read. Another process's different record is
        # seen again within HEALTH_MEMO_SECONDS.
        memo = self._health_memo
        if all(memo.get(eid, (None, 0.0))[0] == (s[0], s[1], provider)
               and now - memo[eid][1] < HEALTH_MEMO_SECONDS for eid, s in status.items()):
            return
        db = self.plugins.db
        with db.read() as session:
            current = {h.expert_id: (h.status, h.reason, h.provider) for h in session.scalars(
                select(FreeBusyHealth).where(FreeBusyHealth.expert_id.in_(list(status))))}
        changed = {eid: s for eid, s in status.items()
                   if current.get(eid) != (s[0], s[1], provider)}
        for eid, s in status.items():
            if eid not in changed:
                memo[eid] = ((s[0], s[1], provider), now)
        if not changed:
            return
        at = datetime.fromtimestamp(now, UTC)
        try:
            insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
            with db.write(keep_cache=True) as session:  # health is not read-cached
                for eid, (state, reason, success) in changed.items():
                    # An upsert: two web workers may record one expert's health at once.
                    values: dict[str, Any] = {"provider": provider, "status": state,
                                              "reason": reason, "updated_at": at}
                    if success is not None:
                        values["last_success_at"] = datetime.fromtimestamp(success, UTC)
                    stmt = insert(FreeBusyHealth).values(expert_id=eid, shop_id=shop_id,
                                                         **values)
                    session.execute(stmt.on_conflict_do_update(
                        index_elements=["expert_id"], set_=values))
            for eid, (state, reason, _success) in changed.items():
                memo[eid] = ((state, reason, provider), now)
        except Exception:  # health is advisory: never fail availability over it
            log.exception("could not record free/busy health")


def wire(plugins: Plugins) -> FreeBusy:
    """This process's free/busy over ``plugins``, with the plugins' "this expert's busy
    time changed" (``ProviderContext.invalidate_busy``, ``host.invalidate_busy`` in
    routes and jobs) wired to the cache it reads. Every process that runs plugin code --
    a web process, a Celery worker, the embedded worker -- is wired by this one call, so
    a plugin's periodic job invalidates as its route does."""
    busy = FreeBusy(plugins)
    plugins.busy_invalidator = busy.invalidate
    return busy


def _calendar_of(cls: type[CalendarProvider], expert_id: str, email: str | None) -> str | None:
    """calendar_for_expert without an instance (when the provider could not be made)."""
    if cls.calendar_for_expert is CalendarProvider.calendar_for_expert:
        return email
    return email or expert_id


__all__ = ["CHUNK", "BusyCache", "DatabaseBusyCache", "FreeBusy", "RedisBusyCache",
           "lease_timing", "make_cache", "wire"]
