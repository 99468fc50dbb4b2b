"""Engines, sessions and transactions for SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import re
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple, Protocol, cast

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from engine.errors import ValidationError

# Fail fast while the database is unreachable (the contract: 503 at once, not a request
# hanging for the OS's TCP timeout): a PostgreSQL connection attempt gives up after
# this many seconds, and a request waiting for a pooled connection after POOL_TIMEOUT.
CONNECT_TIMEOUT_SECONDS = 3
POOL_TIMEOUT_SECONDS = 5.0


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


def make_engine(url: str, *, prepared_statements: bool = False, **kwargs: Any) -> Engine:
    """An engine for `url`. SQLite gets WAL, foreign keys and a busy timeout; PostgreSQL
    server-side prepared statements only with ``prepared_statements``."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        guard_parameters(engine)

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    ping_when_idle = "pool_pre_ping" not in kwargs
    if parsed.get_backend_name() == "postgresql":
        connect_args = dict(kwargs.pop("connect_args", None) or {})
        if "connect_timeout" not in parsed.query:
            connect_args.setdefault("connect_timeout", CONNECT_TIMEOUT_SECONDS)
        # No server-side prepared statements unless asked for: psycopg prepares a query
        # after its fifth run on a connection, and behind PgBouncer in transaction
        # pooling the next transaction may run on another server connection that never
        # saw it ("prepared statement does not exist"). Nothing else here depends on
        # session state (docs/operations.md, PgBouncer); tests/faults/test_pgbouncer.py
        # holds it. Talking to PostgreSQL directly, they save parsing and planning.
        connect_args.setdefault("prepare_threshold", 5 if prepared_statements else None)
        kwargs["connect_args"] = connect_args
    if kwargs.get("poolclass") is None:
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
        kwargs.setdefault("pool_timeout", POOL_TIMEOUT_SECONDS)
    engine = create_engine(url, **kwargs)
    guard_parameters(engine)
    if ping_when_idle:
        _ping_idle_connections(engine)
    return engine


# --------------------------------------------------------------------------- bind guard
#
# The last line of defence for text that reaches the database. PostgreSQL refuses a NUL
# in any text (psycopg raises DataError), and a lone surrogate cannot be encoded as UTF-8
# by either driver; both used to surface as a 500. Requests are checked at the web
# boundary (web/guard.py); this guard makes any value that still slips through -- from
# any caller, on either database, the same way -- a ValidationError (400) before the
# statement is sent. Cost: one C-level regex scan per bound string, a few microseconds
# per request on the availability hot path (measured in tests/test_no_5xx_db_guard.py).

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_INT64 = (-(1 << 63), (1 << 63) - 1)


def unstorable_text(value: str) -> bool:
    """Whether ``value`` holds a character no database column can store (NUL, a lone
    surrogate)."""
    return _UNSTORABLE.search(value) is not None


def _refuse(what: str) -> ValidationError:
    return ValidationError(f"a value contains {what}, which cannot be stored",
                           code="invalid_request")


def _check_value(value: Any) -> None:
    kind = type(value)
    if kind is str:
        if _UNSTORABLE.search(value) is not None:
            raise _refuse("a NUL character or an unpaired surrogate")
    elif kind is int:
        if not _INT64[0] <= value <= _INT64[1]:
            raise _refuse("a number beyond 64 bits")
    elif kind is not float and kind is not bool and value is not None:
        # JSON wrappers (psycopg's Json/Jsonb keep the document in ``obj``) and plain
        # containers: walk them without recursion. Everything else (datetimes, bytes,
        # decimals) is storable as is.
        inner = getattr(value, "obj", value)
        if isinstance(inner, dict | list | tuple):
            _check_document(inner)


def _check_document(doc: Any) -> None:
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, val in item.items():
                if isinstance(key, str) and _UNSTORABLE.search(key) is not None:
                    raise _refuse("a NUL character or an unpaired surrogate")
                stack.append(val)
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, str):
            if _UNSTORABLE.search(item) is not None:
                raise _refuse("a NUL character or an unpaired surrogate")
        elif type(item) is int and not _INT64[0] <= item <= _INT64[1]:
            raise _refuse("a number beyond 64 bits")


def _check_parameters(parameters: Any) -> None:
    if isinstance(parameters, dict):
        for value in parameters.values():
            _check_value(value)
    elif isinstance(parameters, list | tuple):
        for value in parameters:
            _check_value(value)


def _before_cursor_execute(_conn: Any, _cursor: Any, _statement: str, parameters: Any,
                           _context: Any, executemany: bool) -> None:
    if not parameters:
        return
    if executemany:
        for row in parameters:
            _check_parameters(row)
    else:
        _check_parameters(parameters)


def guard_parameters(engine: Engine) -> None:
    """Refuse unstorable bound values on ``engine`` with a ValidationError (see above)."""
    event.listen(engine, "before_cursor_execute", _before_cursor_execute)


# --------------------------------------------------------------------------- unreachable

# SQLSTATEs that mean "the server cannot serve this right now, try again": connection
# exceptions (class 08), operator intervention (57P01-57P03: shutdown, crash, starting
# up), insufficient resources (class 53: too many connections, disk full), and the
# transient refusals of a busy server (class 40: deadlock or serialization failure,
# 55P03 lock not available, 57014 statement timeout). None of them is the request's
# fault, and a retry may well succeed.
_UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03", "53", "40", "55P03", "57014")
# SQLite: the file cannot be opened, or another writer held the lock past the busy
# timeout (30 s) -- like PostgreSQL's lock timeout above, a refusal for the moment.
_SQLITE_UNAVAILABLE = ("unable to open database file", "disk i/o error", "database is locked")


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` says the database cannot be reached (so the request should be
    answered 503 and retried later), as opposed to a fault of the statement or the data.

    Connection failures (``OperationalError`` from psycopg with a connection SQLSTATE or
    none at all, ``InterfaceError``, a lost connection, the pool timing out) count, and
    so do a busy server's transient refusals (a deadlock, a lock not granted in time --
    SQLite's "database is locked" after its busy timeout among them): a retry may pass.
    """
    if isinstance(error, exc.TimeoutError | exc.DisconnectionError):
        return True
    if not isinstance(error, exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    if isinstance(error, exc.InterfaceError):
        return True
    if not isinstance(error, exc.OperationalError):
        return False
    orig = error.orig
    module = type(orig).__module__
    if module.startswith("sqlite3"):
        text = str(orig).lower()
        return any(marker in text for marker in _SQLITE_UNAVAILABLE)
    state = getattr(orig, "sqlstate", None)
    if state is None:
        # psycopg's client-side failures (connection refused, timed out, server closed
        # the connection) carry no SQLSTATE.
        return True
    return any(state.startswith(prefix) for prefix in _UNAVAILABLE_STATES)


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

    A *versioned* entry (``put(key, value, version=v)``) has no age limit instead: it is
    used while the caller's version is ``v`` (``get(key, version=v)``), i.e. while what
    it was read from is unchanged -- the shop's catalog version (``catalog_versions``,
    bumped by the database in every transaction that writes the catalog: migration
    0016), read with the shop on each request. The reader reads the version before the
    rows it caches, so an entry is never older than its version says.

    :meth:`observe` is told each shop's catalog version as requests read it; when it
    moves past the last one seen, the unversioned entries are dropped too (another
    process changed something of the catalog: a shop's settings, say), so they also see
    the change with the next request -- unless an older request stores one after that,
    which the TTL still bounds.
    """

    def __init__(self, ttl: float = 1.0, max_entries: int = 512,
                 max_scopes: int = 4096) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_scopes = max_scopes
        # key -> (stored at, value, version or None)
        self._entries: dict[Any, tuple[float, Any, Any]] = {}
        self._seen: dict[Any, int] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, *, version: Any = None) -> Any:
        """The entry's value, or None: a versioned entry when ``version`` is its version,
        an unversioned one while younger than the TTL."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[2] is not None:
            return entry[1] if version is not None and entry[2] == version else None
        if version is not None or time.monotonic() - entry[0] >= self.ttl:
            return None
        return entry[1]

    def put(self, key: Any, value: Any, *, version: Any = None) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries and key not in self._entries:
                self._entries.clear()
            self._entries[key] = (time.monotonic(), value, version)

    def observe(self, scope: Any, version: int) -> None:
        """``scope`` (a shop id) is at catalog ``version`` (versions only go up): on the
        first sight of it in this process, or a version above the last one seen, drop
        every unversioned entry."""
        last = self._seen.get(scope)
        if last is not None and version <= last:
            return
        with self._lock:
            last = self._seen.get(scope)
            if last is not None and version <= last:
                return
            if len(self._seen) >= self.max_scopes:
                self._seen.clear()
            self._seen[scope] = version
            self._entries = {k: e for k, e in self._entries.items() if e[2] is not None}

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class Answer(NamedTuple):
    """A cached availability answer (engine.services.availability.availability_json): what
    it was computed from, the clock readings it is valid between, and its JSON body."""

    catalog: Any
    versions: tuple[Any, ...]
    external: tuple[Any, ...]
    since: float
    until: float
    body: bytes


class AnswerCache:
    """Availability answers of this process, by (shop, query). Unlike :class:`ReadCache`
    an entry has no age limit and survives writes: the caller uses it only when every
    input it was computed from (:class:`Answer`) is unchanged, which the caller checks
    against the database on each request."""

    def __init__(self, max_entries: int = 2048) -> None:
        self.max_entries = max_entries
        self._entries: dict[Any, Answer] = {}
        self._lock = threading.Lock()

    def get(self, key: Any) -> Answer | None:
        return self._entries.get(key)

    def put(self, key: Any, answer: Answer) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries and key not in self._entries:
                self._entries.clear()
            self._entries[key] = answer

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class DatabaseSettings(Protocol):
    """What :meth:`Database.of` reads of a configuration (engine.config.Config)."""

    @property
    def database_url(self) -> str: ...
    @property
    def database_prepared_statements(self) -> bool: ...


class Database:
    """One database: the engine and its sessions. Transaction boundaries live in services."""

    def __init__(self, url: str, *, prepared_statements: bool = False,
                 **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, prepared_statements=prepared_statements,
                                  **engine_kwargs)
        self.dialect = self.engine.dialect.name
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(
            self.engine.execution_options(sqlite_begin="IMMEDIATE"), expire_on_commit=False)
        self._lookup_sessions = sessionmaker(
            self.engine.execution_options(isolation_level="AUTOCOMMIT"),
            expire_on_commit=False)
        self.cache = ReadCache()
        self.answers = AnswerCache()
        self._sql: dict[ClauseElement, tuple[str, tuple[str, ...] | None, dict[str, Any]]] = {}
        self._driver_error: type[Exception] = self.engine.dialect.loaded_dbapi.Error

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

    @classmethod
    def of(cls, config: DatabaseSettings) -> Database:
        """The database a process's configuration names, with its settings."""
        return cls(config.database_url,
                   prepared_statements=config.database_prepared_statements)

    def rows(self, statement: ClauseElement, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The rows of one read-only ``statement`` as the driver returns them (tuples of
        plain values: no ORM, no result type processing), for the per-request lookups of
        the storefront's hot path (engine.services.shops.lookup_shop).

        It runs on a pooled connection without the ORM and Core connection layers, which
        cost more CPU than the round trip itself: the statement is compiled once per
        dialect, the engine's ``before_cursor_execute`` listeners see it as they see every
        other statement (the bind guard, :func:`guard_parameters`, and anything that
        counts statements), on PostgreSQL the connection runs the statement in
        autocommit (one round trip, as in :meth:`lookup`), and a driver error comes out
        as SQLAlchemy's DBAPIError -- with a connection the server dropped invalidated,
        not returned to the pool -- so that it maps (503, 400) like any other. Only
        plain bind parameters: no expanding (IN) ones."""
        with self._driver(autocommit=True, write=False) as tx:
            return tx.rows(statement, params)

    @contextmanager
    def _driver(self, *, autocommit: bool, write: bool) -> Iterator[Transaction]:
        """A pooled driver connection and its cursor, for :meth:`rows` and
        :meth:`transaction`: a failure to connect comes out as Core would say it, and on
        PostgreSQL the connection runs in ``autocommit`` until it goes back to the pool.
        Listeners see a ``write``'s statements with the cursor, a read's without."""
        try:
            fairy = self.engine.raw_connection()  # the pool's checkout events still run
        except self._driver_error as error:
            raise exc.DBAPIError.instance("connect", None, error, self._driver_error,
                                          dialect=self.engine.dialect,
                                          connection_invalidated=True) from error
        dbapi: Any = fairy.dbapi_connection
        postgres = self.dialect == "postgresql"
        cursor = None
        try:
            if postgres:
                dbapi.autocommit = autocommit
            cursor = fairy.cursor()
            yield Transaction(self, fairy, cursor, write)
        finally:
            if cursor is not None:
                cursor.close()
            if postgres and autocommit and not dbapi.closed:
                dbapi.autocommit = False
            fairy.close()

    @contextmanager
    def transaction(self, *, autocommit: bool = False) -> Iterator[Transaction]:
        """A PostgreSQL write transaction on one pooled connection without the ORM and
        Core connection layers (:meth:`rows`, but several statements, committed when the
        block ends without an exception and rolled back otherwise): for a write path
        whose few statements are all prebuilt and whose CPU the session's unit of work
        and Core's execution context would double (a hold: engine.services.holds).
        Statements are seen by the engine's ``before_cursor_execute`` listeners (with
        the cursor, no Connection); a driver error -- the commit's too -- comes out as
        SQLAlchemy's DBAPIError subclass (IntegrityError, OperationalError), a dropped
        connection invalidated. Like :meth:`write` with ``keep_cache``: the read cache
        is left alone, so write only rows it never holds. PostgreSQL only (SQLite's
        writers need ``BEGIN IMMEDIATE``: use :meth:`write`). With ``autocommit`` each
        statement is a transaction of its own (no BEGIN and COMMIT round trips): for a
        write that is one statement."""
        assert self.dialect == "postgresql", "Database.transaction is for PostgreSQL"
        with self._driver(autocommit=autocommit, write=True) as tx:
            dbapi: Any = tx._fairy.dbapi_connection
            try:
                yield tx
                if not autocommit:  # (without autocommit psycopg sent BEGIN first)
                    tx.run("COMMIT", None, dbapi.commit)
            except BaseException:
                if not dbapi.closed and not autocommit:
                    try:
                        dbapi.rollback()
                    except self._driver_error as error:
                        tx._fairy.invalidate(error)
                raise

    def _compiled(self, statement: ClauseElement
                  ) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
        """``statement``'s SQL for this database's driver, the order of its parameter
        names when the driver binds by position (SQLite), and the values the statement
        itself binds (literals in it) -- compiled once."""
        found = self._sql.get(statement)
        if found is None:
            compiled = cast(SQLCompiler, statement.compile(dialect=self.engine.dialect))
            names = tuple(compiled.positiontup) if compiled.positional \
                and compiled.positiontup is not None else None
            defaults = {k: v for k, v in compiled.params.items() if v is not None}
            found = self._sql[statement] = (str(compiled), names, defaults)
        return found

    def dispose(self) -> None:
        self.engine.dispose()


class Transaction:
    """The statements of one :meth:`Database.transaction`."""

    def __init__(self, db: Database, fairy: Any, cursor: Any, write: bool = True) -> None:
        self._db, self._fairy, self._cursor, self._write = db, fairy, cursor, write

    def rows(self, statement: ClauseElement, params: Mapping[str, Any]
             ) -> list[tuple[Any, ...]]:
        """Run one prebuilt statement (plain bind parameters, no result type processing:
        as :meth:`Database.rows`); its rows, if it returns any."""
        sql, names, defaults = self._db._compiled(statement)
        given = {**defaults, **params} if defaults else params
        args: Any = given if names is None else tuple(given[n] for n in names)
        listeners = self._db.engine.dispatch.before_cursor_execute
        if listeners:
            listeners(None, self._cursor if self._write else None, sql, args, None, False)
        cursor = self._cursor
        self.run(sql, args, lambda: cursor.execute(sql, args))
        return list(cursor.fetchall()) if cursor.description is not None else []

    def run(self, sql: str, args: Any, call: Any) -> None:
        """``call()``, its driver error as SQLAlchemy's (a dropped connection invalidated)."""
        db = self._db
        try:
            call()
        except db._driver_error as error:
            if db.engine.dialect.is_disconnect(cast(Any, error), self._fairy.dbapi_connection,
                                               self._cursor):
                self._fairy.invalidate(error)
            raise exc.DBAPIError.instance(sql, args, error, db._driver_error,
                                          dialect=db.engine.dialect) from error
