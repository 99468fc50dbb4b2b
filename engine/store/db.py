"""Engines, sessions and transactions for SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def new_id(prefix: str) -> str:
    """A random, unguessable id such as ``svc_k3j9x0q2m4d7p1a8`` (ids never reveal counts)."""
    raw = base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()
    return f"{prefix}_{raw}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Autocommit at the driver level: SQLAlchemy emits BEGIN itself (see `begin` below),
    # so write transactions can take the database lock up front with BEGIN IMMEDIATE.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`. SQLite gets WAL, foreign keys and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    ping_when_idle = "pool_pre_ping" not in kwargs
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    engine = create_engine(url, **kwargs)
    if ping_when_idle:
        _ping_idle_connections(engine)
    return engine


# A pooled connection unused for this long is pinged before it is handed out (a database
# restart or an idle timeout may have closed it). Pinging on every checkout, as
# ``pool_pre_ping`` does, costs a round trip per unit of work -- several per request.
PING_AFTER_IDLE_SECONDS = 5.0


def _ping_idle_connections(engine: Engine) -> None:
    def _fresh(_dbapi_connection: Any, record: Any) -> None:
        record.info["consultbook_idle_since"] = time.monotonic()

    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("consultbook_idle_since")
        if since is not None and time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # e.g. AdminShutdown: the server closed it
            raise exc.DisconnectionError("the pooled connection is gone") from error
        if not alive:
            raise exc.DisconnectionError("the pooled connection is gone")  # pool retries

    event.listen(engine, "connect", _fresh)
    event.listen(engine, "checkin", _fresh)
    event.listen(engine, "checkout", _checkout)


class ReadCache:
    """A small process-local cache of read-mostly rows (a service's rules, its experts'
    hours, a shop's provider choice) for the storefront's hot path.

    An entry is used only while (a) no write transaction of this process has committed
    since it was stored -- any commit through :meth:`Database.write` clears the cache, so
    a process always sees its own writes at once -- and (b) it is younger than ``ttl``
    seconds, which bounds how long another process's change (another gunicorn worker's
    admin edit) can go unseen. Never used for what decides a booking: holds, claims and
    webhooks read the database inside their transactions.
    """

    def __init__(self, ttl: float = 1.0, max_entries: int = 512) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry[0] >= self.ttl:
            return None
        return entry[1]

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (time.monotonic(), value)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class Database:
    """One database: the engine and its sessions. Transaction boundaries live in services."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.dialect = self.engine.dialect.name
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(
            self.engine.execution_options(sqlite_begin="IMMEDIATE"), expire_on_commit=False)
        self._lookup_sessions = sessionmaker(
            self.engine.execution_options(isolation_level="AUTOCOMMIT"),
            expire_on_commit=False)
        self.cache = ReadCache()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only unit of work (rolled back at the end)."""
        with self._sessions() as session:
            yield session

    @contextmanager
    def lookup(self) -> Iterator[Session]:
        """Like :meth:`read`, for reads only, without the BEGIN/ROLLBACK round trips on
        PostgreSQL: the connection runs in autocommit, so each statement sees its own
        snapshot -- what READ COMMITTED gives a read transaction anyway. Never write in it.
        On SQLite it is :meth:`read`."""
        if self.dialect != "postgresql":
            with self.read() as session:
                yield session
            return
        with self._lookup_sessions() as session:
            yield session

    @contextmanager
    def write(self, *, keep_cache: bool = False) -> Iterator[Session]:
        """A unit of work that commits when the block ends without an exception.

        On SQLite it starts with ``BEGIN IMMEDIATE``: writers are serialized by the
        database lock for the whole transaction, so a check made inside it still holds
        at commit.
        """
        try:
            with self._write_sessions() as session, session.begin():
                yield session
        finally:
            # Whatever this process wrote (or tried to), its cached reads are void --
            # unless the caller writes only rows the cache never holds (claims).
            if not keep_cache:
                self.cache.clear()

    def dispose(self) -> None:
        self.engine.dispose()
