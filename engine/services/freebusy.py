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
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from engine.errors import ConsultbookError
from engine.providers.base import CalendarProvider
from engine.providers.types import CalendarBusy
from engine.store.providers_models import BusyCacheEntry, FreeBusyHealth

if TYPE_CHECKING:
    from engine.plugins import Plugins
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
    """Where fetched busy time is kept between requests (shared by every process)."""

    def get_many(self, keys: Sequence[str]) -> dict[str, CacheEntry]: ...

    def put_many(self, shop_id: str, entries: Mapping[str, CacheEntry],
                 keep_seconds: int) -> None: ...


def _encode(entry: CacheEntry) -> str:
    return json.dumps({"f": entry.fetched_at, "i": [list(p) for p in entry.intervals]})


def _decode(raw: str | bytes) -> CacheEntry | None:
    try:
        doc = json.loads(raw)
        return CacheEntry(float(doc["f"]), tuple((int(s), int(e)) for s, e in doc["i"]))
    except (ValueError, KeyError, TypeError):
        return None


class RedisBusyCache:
    """Busy time in Redis: one key per expert chunk, expiring on its own."""

    prefix = "consultbook:freebusy:"

    def __init__(self, url: str, *, timeout: float = 2.0) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=timeout,
                                           socket_connect_timeout=timeout)

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

    def close(self) -> None:
        self.client.close()


class DatabaseBusyCache:
    """Busy time in the ``busy_cache`` table (the embedded default, no Redis)."""

    def __init__(self, db: Database) -> None:
        self.db = db

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
        with self.db.write(keep_cache=True) as session:  # cache rows are not read-cached
            now = max(e.fetched_at for e in entries.values())
            session.execute(delete(BusyCacheEntry).where(
                BusyCacheEntry.key.in_(list(entries))
                | (BusyCacheEntry.expires_at < datetime.fromtimestamp(now, UTC))))
            session.add_all(BusyCacheEntry(
                key=key, shop_id=shop_id, fetched_at=datetime.fromtimestamp(e.fetched_at, UTC),
                expires_at=datetime.fromtimestamp(e.fetched_at + keep_seconds, UTC),
                intervals=[list(p) for p in e.intervals]) for key, e in entries.items())


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


def _clip(intervals: Iterable[Pair], start: int, end: int) -> list[Pair]:
    return [(max(s, start), min(e, end)) for s, e in intervals if s < end and e > start]


HEALTH_MEMO_SECONDS = 30.0


class FreeBusy:
    """The provider-backed ``BusySource`` (see the module docstring)."""

    def __init__(self, plugins: Plugins, cache: BusyCache | None = None) -> None:
        self.plugins = plugins
        self.cache = cache if cache is not None else make_cache(plugins)
        self._health_memo: dict[str, tuple[tuple[str, str | None, str], float]] = {}

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
            provider = plugins.instantiate(cls, sp)
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
        cached = self.cache.get_many([k for keys in wanted.values() for k in keys])
        stale_experts = [eid for eid, keys in wanted.items()
                         if any(k not in cached or now - cached[k].fetched_at >= ttl
                                for k in keys)]
        fetched: dict[str, CalendarBusy] = {}
        fetch_error: str | None = None
        if stale_experts:
            missing = sorted({c for eid in stale_experts for c, k in zip(chunks, wanted[eid],
                                                                       strict=True)
                              if k not in cached or now - cached[k].fetched_at >= ttl})
            f_start, f_end = missing[0], missing[-1] + CHUNK
            if provider is None:
                fetch_error = provider_error or "the calendar provider is not available"
            else:
                calendars = sorted({address for eid in stale_experts
                                    if (address := mapping[eid].calendar) is not None})
                try:
                    answer = provider.busy(calendars, datetime.fromtimestamp(f_start, UTC),
                                           datetime.fromtimestamp(f_end, UTC))
                    by_calendar = dict(answer)
                    for eid in stale_experts:
                        cal = mapping[eid].calendar
                        assert cal is not None
                        fetched[eid] = by_calendar.get(cal) or CalendarBusy(
                            error=f"{name} did not answer for {cal}")
                except ConsultbookError as exc:
                    fetch_error = exc.message
                except Exception as exc:  # a plugin bug must not show slots as free
                    log.exception("calendar provider %s failed", name)
                    fetch_error = f"the {name} calendar failed ({type(exc).__name__})"
            fresh_entries: dict[str, CacheEntry] = {}
            for eid, answer_ in fetched.items():
                if answer_.error:
                    continue
                got = [(int(s.timestamp()), int(e.timestamp())) for s, e in answer_.busy]
                for c, k in zip(chunks, wanted[eid], strict=True):
                    if f_start <= c < f_end:
                        entry = CacheEntry(now, tuple(_clip(got, c, c + CHUNK)))
                        fresh_entries[k] = entry
                        cached[k] = entry
            self.cache.put_many(shop_id, fresh_entries, ttl + max_stale)

        for eid, e in mapping.items():
            if not e.calendar:
                hide(eid, f"{eid} has no calendar address for {name} (set the expert's email)")
                continue
            error = fetch_error if eid in stale_experts else None
            if eid in fetched and fetched[eid].error:
                error = fetched[eid].error
            pairs: list[Pair] = []
            oldest = now
            usable = True
            for k in wanted[eid]:
                hit = cached.get(k)
                if hit is None or (now - hit.fetched_at >= ttl and
                                   now - hit.fetched_at > max_stale):
                    usable = False
                    break
                oldest = min(oldest, hit.fetched_at)
                pairs.extend(hit.intervals)
            if not usable:
                hide(eid, error or f"the busy time of {eid} is unknown")
                continue
            result[eid] = _clip(pairs, start, end)
            status[eid] = (STALE, error, oldest) if error else (OK, None, oldest)
        self._record(shop_id, name, status, now)
        return result

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
            with db.write(keep_cache=True) as session:  # health is not read-cached
                for eid, (state, reason, success) in changed.items():
                    row = session.get(FreeBusyHealth, eid)
                    if row is None:
                        row = FreeBusyHealth(expert_id=eid, shop_id=shop_id)
                        session.add(row)
                    row.provider, row.status, row.reason = provider, state, reason
                    if success is not None:
                        row.last_success_at = datetime.fromtimestamp(success, UTC)
                    row.updated_at = at
            for eid, (state, reason, _success) in changed.items():
                memo[eid] = ((state, reason, provider), now)
        except Exception:  # health is advisory: never fail availability over it
            log.exception("could not record free/busy health")


def _calendar_of(cls: type[CalendarProvider], expert_id: str, email: str | None) -> str | None:
    """calendar_for_expert without an instance (when the provider could not be made)."""
    if cls.calendar_for_expert is CalendarProvider.calendar_for_expert:
        return email
    return email or expert_id


__all__ = ["CHUNK", "BusyCache", "DatabaseBusyCache", "FreeBusy", "RedisBusyCache",
           "make_cache"]
