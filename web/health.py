"""Liveness and readiness probes for load balancers and orchestrators.

``GET /healthz``: the process answers (touches nothing else).

``GET /readyz``: the database and, when one is configured, the broker answer. Ready:
``200 {"status": "ready", "checks": {"database": "ok", "broker": "ok" | "embedded"}}``.
Not ready: ``503`` with ``Retry-After`` and
``{"error": {"code": "service_unavailable", "message": "not ready: the database is
unavailable"}, "unavailable": ["database"], "checks": {...}}`` -- the failing parts named
in the message, listed in ``unavailable``, and explained in ``checks``.

The probe fails fast: each check has a deadline of :data:`PROBE_TIMEOUT_SECONDS`,
whatever the driver's connect timeout or the pool's wait, so a load balancer learns
within that time that this process should get no traffic. A check that hangs keeps at
most one thread busy: while it is still waiting, later probes report it unavailable at
once instead of starting another.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import falcon
from sqlalchemy import text

from engine.bootstrap import Context
from web.errors import RETRY_AFTER_SECONDS

#: Longest a readiness check may take before its part counts as unavailable.
PROBE_TIMEOUT_SECONDS = 2.0


class Healthz:
    """The process is up and answering; touches nothing else."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


class Probe:
    """One dependency check run with a deadline, at most one attempt in flight.

    ``check`` raises when the dependency does not answer. :meth:`run` returns ``"ok"`` or
    ``"unavailable: <why>"`` within ``timeout`` seconds (plus scheduling), never raises.
    Concurrent callers share the attempt in flight and its answer (under load a load
    balancer's probes overlap; each must not read "unavailable" just because another is
    asking at the same time); only an attempt still stuck after ``timeout`` says so.
    """

    def __init__(self, check: Callable[[], None], timeout: float = PROBE_TIMEOUT_SECONDS
                 ) -> None:
        self.check, self.timeout = check, timeout
        self._lock = threading.Lock()
        self._pending: _Attempt | None = None

    def run(self) -> str:
        with self._lock:
            attempt = self._pending
            if attempt is None or attempt.done.is_set():
                attempt = self._pending = _Attempt(self.check)
            elif time.monotonic() - attempt.started >= self.timeout:
                # Stuck past its deadline (a driver that never answers): say so at once
                # rather than pile another wait onto it.
                return (f"unavailable: no answer within {self.timeout:g} s "
                        "(an earlier check is still waiting)")
        remaining = self.timeout - (time.monotonic() - attempt.started)
        if not attempt.done.wait(max(0.0, remaining)):
            return f"unavailable: no answer within {self.timeout:g} s"
        return attempt.result


class _Attempt:
    """One run of a check in a daemon thread (a check stuck in a driver never holds the
    process open); ``result`` is set before ``done``."""

    def __init__(self, check: Callable[[], None]) -> None:
        self.done = threading.Event()
        self.result = ""
        self.started = time.monotonic()
        self._check = check
        threading.Thread(target=self._run, name="readyz-probe", daemon=True).start()

    def _run(self) -> None:
        try:
            self._check()
            self.result = "ok"
        except Exception as exc:
            # The exception's class, never its text: a driver's message can carry host
            # names or credentials, and the probe answers anyone.
            self.result = f"unavailable: {type(exc).__name__}"
        finally:
            self.done.set()


class Readyz:
    """The database and (when configured) the broker answer; see the module docstring."""

    def __init__(self, ctx: Context, timeout: float = PROBE_TIMEOUT_SECONDS) -> None:
        self.ctx = ctx
        self.database = Probe(self._check_database, timeout)
        broker = ctx.config.broker_url
        self.broker = Probe(lambda: _ping_broker(broker, timeout), timeout) if broker else None

    def _check_database(self) -> None:
        with self.ctx.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        # Both parts are checked side by side, so a dead database and a dead broker
        # together still answer within one deadline.
        checks = {"database": "", "broker": "embedded"}  # no broker: in-process worker
        side: threading.Thread | None = None
        if self.broker is not None:
            broker = self.broker
            side = threading.Thread(target=lambda: checks.__setitem__("broker", broker.run()))
            side.start()
        checks["database"] = self.database.run()
        if side is not None:
            side.join()
        failing = [part for part, state in checks.items() if state not in {"ok", "embedded"}]
        resp.cache_control = ["no-store"]
        if not failing:
            resp.media = {"status": "ready", "checks": checks}
            return
        parts = " and the ".join(failing)
        verb = "is" if len(failing) == 1 else "are"
        resp.status = falcon.HTTP_503
        resp.set_header("Retry-After", str(RETRY_AFTER_SECONDS))
        resp.media = {"error": {"code": "service_unavailable",
                                "message": f"not ready: the {parts} {verb} unavailable"},
                      "unavailable": failing, "checks": checks}


def _ping_broker(url: str, timeout: float) -> None:
    """Raise unless the broker answers a PING (only Redis brokers can be checked)."""
    if not url.startswith(("redis://", "rediss://")):
        return
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    finally:
        client.close()


def register(app: falcon.App, ctx: Context) -> None:
    app.add_route("/healthz", Healthz())
    app.add_route("/readyz", Readyz(ctx))
