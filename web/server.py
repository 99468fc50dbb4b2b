"""`consultbook serve`: the app under gunicorn, a production-grade WSGI server."""

from __future__ import annotations

import errno
import socket
import sys
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.util import is_ipv6

from engine.config import Config
from engine.errors import ConsultbookError

#: Each worker binds its own listening socket with SO_REUSEPORT (Linux): the kernel
#: spreads new connections over the workers, instead of one worker accepting most
#: keep-alive connections and pinning them to its single core.
REUSE_PORT = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


class AddressInUse(ConsultbookError):
    """The address cannot be served: another server listens there, or it is not ours."""

    code = "address_in_use"


def claim_address(host: str, port: int) -> socket.socket:
    """Make sure no other server listens on ``host:port`` and keep it that way; returns
    the guard socket, to be held (open) for as long as this server runs.

    SO_REUSEPORT lets any socket of the same user that also sets it bind the address, so
    a second ``consultbook serve`` on a busy port would start silently and take half the
    traffic. The guard closes that door without a race:

    1. it binds and listens *without* SO_REUSEPORT -- the kernel's atomic claim:
       it fails (EADDRINUSE) if anything listens there, or if another guard holds it;
    2. then it sets SO_REUSEPORT, so this server's own workers (same user, SO_REUSEPORT)
       may bind beside it, stops listening (``shutdown``: it stays bound and never
       accepts a connection), and clears SO_REUSEADDR, so that nothing without
       SO_REUSEPORT -- another server, another guard -- can bind the port while it is
       held, not even in the moment before the workers listen.

    SO_REUSEADDR is on while claiming, so connections of a server that just stopped
    (TIME_WAIT) do not block a restart. Raises :class:`AddressInUse` with one line.
    """
    family = socket.AF_INET6 if is_ipv6(host) else socket.AF_INET
    guard = socket.socket(family, socket.SOCK_STREAM)
    try:
        guard.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        guard.bind((host, port))
        guard.listen(1)
        if REUSE_PORT:
            guard.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            guard.shutdown(socket.SHUT_RD)
            guard.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
    except OSError as exc:
        guard.close()
        where = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            reason = "another server already listens there"
        elif exc.errno == errno.EACCES:
            reason = "permission denied (ports below 1024 need privileges)"
        elif exc.errno == errno.EADDRNOTAVAIL:
            reason = "that is not an address of this machine"
        else:
            reason = exc.strerror or str(exc)
        raise AddressInUse(f"cannot serve on {where}: {reason}") from None
    if not REUSE_PORT:
        # Without SO_REUSEPORT gunicorn's master binds the one socket itself, and a busy
        # port makes that fail; the check above was all that is needed.
        guard.close()
    return guard


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, config: Config, options: dict[str, Any]) -> None:
        self.config_ = config
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from web.app import get_app

        app = get_app(self.config_)
        if not self.config_.broker_url and self.config_.embedded_worker:
            # No broker: this process also runs the worker and the scheduler (a thread;
            # every gunicorn worker runs one, the database claims keep work single).
            from engine import embedded

            embedded.start(self.config_)
        return app


def _stop_embedded_worker(server: Any, worker: Any) -> None:
    """Let the embedded worker finish the job it is on before the process goes."""
    from engine import embedded

    embedded.stop(timeout=5.0)


#: The ``code`` of each answer gunicorn itself gives to a request it cannot parse
#: (before the app sees it); anything else is ``bad_request``.
_PARSER_CODES = {403: "forbidden", 414: "uri_too_long", 417: "expectation_failed",
                 431: "headers_too_large", 500: "internal_error", 501: "not_implemented"}


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's answer to a request it refuses before the app (a malformed request
    line or header, a request line or header over its limits, a bad chunk), in the
    contract's error shape instead of gunicorn's HTML page. Installed in each worker as
    ``gunicorn.util.write_error`` (:func:`_json_error_pages`), which gunicorn calls for
    exactly those answers."""
    import json
    import uuid

    from gunicorn.util import write_nonblock

    body = json.dumps({"error": {"code": _PARSER_CODES.get(status_int, "bad_request"),
                                 "message": mesg or reason}}).encode("ascii")
    # A request-id of its own, as every answer has (the request's could not be read).
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"X-Request-Id: {uuid.uuid4().hex}\r\n\r\n")
    write_nonblock(sock, head.encode("latin-1") + body)


def _json_error_pages(worker: Any) -> None:
    import gunicorn.util

    gunicorn.util.write_error = write_json_error


def _mark_metrics_dead(server: Any, worker: Any) -> None:
    """Multiprocess metrics (``PROMETHEUS_MULTIPROC_DIR``): a worker that exits leaves its
    counters in the directory (they keep adding up) but its live gauges are dropped."""
    import os

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def serve(config: Config, *, host: str, port: int, workers: int) -> None:
    """Run until interrupted. Each worker process builds its own app (engine, pool).

    Refuses (:class:`AddressInUse`, one line) when another server listens on the
    address, before anything starts; see :func:`claim_address`."""
    import os

    from web.observability import configure_logging, gunicorn_logger_class

    # CONSULTBOOK_LOG_FORMAT=json: every logger as JSON lines (web.observability); unset
    # or text leaves logging as it always was. Set here, before the workers fork.
    json_logs = configure_logging(os.environ) == "json"
    guard = claim_address(host, port)
    options = {
        "bind": f"[{host}]:{port}" if is_ipv6(host) else f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread" if workers > 0 else "sync",
        "threads": 4,
        # The workers of this one server share the port (see REUSE_PORT); the guard
        # keeps every other server out.
        "reuse_port": REUSE_PORT,
        "accesslog": None,  # per-request logging halves throughput; errors still log
        "errorlog": "-",
        "loglevel": "warning",
        "timeout": 30,
        "graceful_timeout": 10,
        "keepalive": 5,
        "proc_name": "consultbook",
        # The app is never mounted under a prefix: SCRIPT_NAME and PATH_INFO come from
        # the request line only, never from a request header (gunicorn maps those from
        # forwarded_allow_ips, 127.0.0.1 by default, and a SCRIPT_NAME the path does not
        # start with was a 500).
        "forwarder_headers": "",
        "post_worker_init": _json_error_pages,
        "worker_exit": _stop_embedded_worker,
        "child_exit": _mark_metrics_dead,
    }
    if json_logs:
        options["logger_class"] = gunicorn_logger_class()
    try:
        _Gunicorn(config, options).run()
    finally:
        guard.close()
