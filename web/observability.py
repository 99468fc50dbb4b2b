"""Request ids, one access line per request, JSON logs, and the metrics route.

``install(app, ctx)`` (call it on the app :func:`web.app.create_app` built, before the
first request) adds:

* :class:`RequestObserver`, Falcon middleware that gives every response an
  ``X-Request-Id`` -- the request's own when it sent a sane one (1-128 characters of
  ``A-Z a-z 0-9 . _ : -``), else a new random one -- records the request in the metrics
  (:mod:`web.metrics`) and writes one JSON line on the logger ``consultbook.access``::

      {"request_id": "...", "method": "POST", "route": "/proxy/holds", "status": 201,
       "ms": 3.1}

  Nothing else of the request is logged: no path (ids), no query string (the App Proxy
  signature, manage tokens), no body, no header. ``route`` is the route template
  (``/proxy/holds/{hold_id}``), ``unmatched`` when no route matches;
* ``GET /metrics`` (:mod:`web.metrics`);
* an error handler that counts provider errors reaching a request, then maps them as
  :mod:`web.errors` always has.

:func:`configure_logging` is what ``consultbook serve`` calls: with
``CONSULTBOOK_LOG_FORMAT=json`` every record of every logger (the app's, gunicorn's) is
one JSON object per line on stderr, passed through :class:`RedactFilter`, which masks
email addresses and tokens in messages as a safety net. Unset (or ``text``) leaves
logging exactly as it was.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import falcon
import orjson

from web import metrics

if TYPE_CHECKING:
    from engine.bootstrap import Context

access_log = logging.getLogger("consultbook.access")

REQUEST_ID_HEADER = "X-Request-Id"
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_of(req: falcon.Request) -> str:
    """The request's own id when it is sane (bounded, safe characters: it is echoed and
    logged), else a fresh random one (128 bits, hex)."""
    given = req.get_header(REQUEST_ID_HEADER)
    if given is not None:
        given = given.strip()
        if _SANE_ID.fullmatch(given):
            return given
    return uuid.uuid4().hex


def route_of(app: falcon.App, req: falcon.Request) -> str:
    """The route template that serves ``req``: set by the router when routing ran; when
    a middleware refused the request before routing (a body too large, a control
    character in the query) it is looked up, so that refusal counts under its route."""
    template = req.uri_template
    if template:
        return str(template)
    try:
        found = app._router.find(req.path)
    except Exception:  # a path no route could take; the router owes us no more
        found = None
    if found is not None and len(found) > 3 and found[3]:
        return str(found[3])
    return metrics.UNMATCHED


class RequestObserver:
    """Falcon middleware: request id, metrics and the access line (see the module doc)."""

    def __init__(self, app: falcon.App) -> None:
        self.app = app

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()
        req.context.request_id = request_id_of(req)

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        ended = time.perf_counter()
        # process_request may not have run (a middleware before it refused the request).
        started = getattr(req.context, "started", None) or ended
        request_id = getattr(req.context, "request_id", None) or request_id_of(req)
        resp.set_header(REQUEST_ID_HEADER, request_id)
        status = resp.status_code
        route = route_of(self.app, req)
        seconds = ended - started
        metrics.observe_request(req.method, route, status, seconds)
        if route == "/webhooks" and req.method == "POST":
            metrics.observe_webhook(req.get_header("X-Shopify-Topic"), status, _media(resp))
        elif route == "/proxy/holds" and req.method == "POST":
            metrics.observe_hold(status, _media(resp))
        if access_log.isEnabledFor(logging.INFO):
            fields = {"request_id": request_id, "method": req.method
                      if req.method in metrics.METHODS else "other", "route": route,
                      "status": status, "ms": round(seconds * 1000, 2)}
            # The message is the JSON line itself, so any handler prints it whole; the
            # fields also travel on the record for JsonFormatter (no double encoding).
            access_log.info("%s", orjson.dumps(fields).decode(), extra={"access": fields})


def _media(resp: falcon.Response) -> Any:
    try:
        return resp.media
    except Exception:  # a body set as bytes: no document to read an outcome from
        return None


# --------------------------------------------------------------------------- provider errors


def _count_and_map(req: falcon.Request, resp: falcon.Response, ex: Exception,
                   params: dict[str, Any]) -> None:
    """Count a provider error that reached a request, then answer it as web.errors does."""
    from web import errors

    provider = getattr(ex, "provider", "") or ("shopify" if _is_shopify(ex) else "")
    metrics.count_provider_error(provider, str(getattr(ex, "code", "") or "provider_error"))
    errors._engine_error(req, resp, ex, params)  # type: ignore[arg-type]


def _is_shopify(ex: Exception) -> bool:
    from engine.shopify.oauth import ShopifyUnavailable

    return isinstance(ex, ShopifyUnavailable)


def install(app: falcon.App, ctx: Context) -> None:
    """Add the request observer, ``GET /metrics`` and the provider-error counter to an
    app built by ``create_app`` (before its first request). Idempotent: installing twice
    (a test helper, and create_app once it calls this itself) changes nothing."""
    from engine.providers.errors import ProviderError
    from engine.shopify.oauth import ShopifyUnavailable

    found = app._router.find("/metrics")  # Falcon's App has slots: no flag can be set on it
    if found is not None and isinstance(found[0], metrics.Metrics):
        return
    app.add_middleware(RequestObserver(app))
    metrics.register(app, ctx)
    # Falcon picks the most specific handler: these take precedence over web.errors'
    # ConsultbookError handler for provider errors only, and end in it.
    app.add_error_handler(ProviderError, _count_and_map)
    app.add_error_handler(ShopifyUnavailable, _count_and_map)


# --------------------------------------------------------------------------- JSON logs

# What must never reach a log, masked in any message (a safety net: the code logs ids,
# not customers). Emails; App Bridge session tokens and other JWTs; Shopify tokens and
# secrets (shpat_, shpss_, shpca_, shppa_, shpua_); bearer credentials; a query's
# signature/token/hmac/code/state/password values; hex digests (SHA-1 and longer, e.g.
# the proxy signature) and base64 HMAC-SHA256 (the webhook header); URL userinfo.
_REDACTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"),
     "[email]"),  # RFC 5322 atext in the local part
    (re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "[token]"),
    (re.compile(r"\bshp(?:at|ss|ca|pa|ua)_[A-Za-z0-9]+"), "[token]"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 [token]"),
    (re.compile(r"(?i)\b((?:access_|refresh_|id_)?token|signature|hmac|code|state|password|"
                r"secret|client_secret)(=|\":\s*\"|':\s*')[^\s&\"',;]+"),
     r"\1\2[redacted]"),
    (re.compile(r"\b[0-9a-fA-F]{40,}\b"), "[digest]"),
    (re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{43}=(?![A-Za-z0-9+/=])"), "[digest]"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1[userinfo]@"),
)


def redact(text: str) -> str:
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class RedactFilter(logging.Filter):
    """Masks emails and tokens in a record's message (and the text of its exception):
    the message is rendered once, redacted, and the arguments dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "access", None) is not None:
            return True  # the access line is built from known-safe fields only
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep what can be shown
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
            record.exc_info = None  # the (redacted) text stands in for it
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (ISO-8601 UTC), ``level``, ``logger``,
    ``message``, ``exc`` when there is one; an access record is its fields instead of
    ``message``."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(), "logger": record.name}
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            doc.update(access)
        else:
            doc["message"] = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc"] = record.exc_text
        return orjson.dumps(doc, default=str).decode()


LOG_FORMATS = ("text", "json")


def log_format(env: Mapping[str, str]) -> str:
    """``CONSULTBOOK_LOG_FORMAT``: ``text`` (default: today's behaviour) or ``json``."""
    from engine.errors import ConfigError

    raw = env.get("CONSULTBOOK_LOG_FORMAT", "").strip().lower() or "text"
    if raw not in LOG_FORMATS:
        raise ConfigError("CONSULTBOOK_LOG_FORMAT must be text or json")
    return raw


def json_handler(stream: Any = None) -> logging.Handler:
    """A stderr handler writing JSON lines, with the redaction filter."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactFilter())
    return handler


def configure_logging(env: Mapping[str, str], stream: Any = None) -> str:
    """Set up the process's logging for ``consultbook serve``; returns the format.

    ``json``: the root logger gets one JSON handler at INFO (so the access lines and
    the app's INFO records appear), SQLAlchemy's statement echo stays off (WARNING);
    gunicorn's error log is JSON too (:func:`gunicorn_logger_class`). ``text``: nothing
    changes."""
    fmt = log_format(env)
    if fmt == "json":
        root = logging.getLogger()
        for old in [h for h in root.handlers if getattr(h, "_consultbook_json", False)]:
            root.removeHandler(old)
        handler = json_handler(stream)
        handler._consultbook_json = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        # SQLAlchemy echoes every statement with its parameters (customers' names and
        # emails) at INFO when its logger is enabled: never in a kept log.
        if logging.getLogger("sqlalchemy").level == logging.NOTSET:
            logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    return fmt


def gunicorn_logger_class() -> type:
    """gunicorn's logger, with its error log (start-up, worker deaths) as JSON lines."""
    from gunicorn.glogging import Logger

    class JsonGunicornLogger(Logger):  # type: ignore[misc]
        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            for handler in self.error_log.handlers:
                handler.setFormatter(JsonFormatter())
                handler.addFilter(RedactFilter())

    return JsonGunicornLogger
