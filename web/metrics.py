"""``GET /metrics``: the Prometheus instruments an operator scrapes.

What is measured, and where:

* every request, by method, **route template** (``/proxy/holds/{hold_id}``, never the raw
  path: ids would make a series per booking) and status, with a latency histogram --
  observed by :class:`web.observability.RequestObserver`;
* Shopify webhook outcomes by topic (``processed``, ``duplicate``, ``ignored`` from the
  engine's answer, ``refused`` for a 4xx such as a bad HMAC, ``failed`` for a 5xx such as
  a database outage), and holds won (``201``) or refused by error code -- read from the
  response the web layer already built, so neither resource changes;
* provider call errors that reach a request (a busy read that fails, a Shopify call in
  an admin action), by provider and error code -- :func:`count_provider_error`, from an
  error handler installed by :func:`web.observability.install`;
* at scrape time, with one cheap query each (:class:`DatabaseCollector`): the outbox
  backlog and the age of its oldest pending row, outbox rows whose last attempt failed
  (by kind: ``pending`` are being retried, ``failed`` were given up), and free/busy
  freshness (experts by health status, the oldest last successful read).

Multiprocess mode: with ``PROMETHEUS_MULTIPROC_DIR`` set (it must be set before the
process starts, as ``prometheus_client`` reads it at import), the counters and histograms
live in memory-mapped files in that directory, and a scrape answered by any gunicorn
worker adds up every worker's values (``MultiProcessCollector``); ``web.server`` marks a
dead worker's files. The database collector is not per-process state at all: it is
registered only on the registry of the one scrape, so its values are read once, never
summed over workers.

The route answers only with ``Authorization: Bearer $CONSULTBOOK_METRICS_TOKEN``
(compared in constant time); a wrong or missing token is ``401``. With no token
configured the route does not exist: ``404 not_found``, exactly like an unknown path.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import falcon
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from web.errors import ApiError

if TYPE_CHECKING:
    from engine.bootstrap import Context

log = logging.getLogger("consultbook.metrics")

# No ``*_created`` series beside every counter: they double the scrape for a value
# (the process start) that Prometheus derives from resets anyway.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: The process's own instruments (in multiprocess mode their values are in files; this
#: registry is then never scraped directly).
REGISTRY = CollectorRegistry(auto_describe=True)

#: Seconds. Availability answers in a few ms, webhooks in tens, a slow provider in seconds.
LATENCY_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "consultbook_http_requests", "HTTP requests answered, by method, route template and status.",
    ("method", "route", "status"), registry=REGISTRY)
LATENCY = Histogram(
    "consultbook_http_request_duration_seconds",
    "Time from the request reaching the app to its response, by method and route template.",
    ("method", "route"), buckets=LATENCY_BUCKETS, registry=REGISTRY)
WEBHOOKS = Counter(
    "consultbook_webhooks", "Shopify webhook deliveries by topic and outcome "
    "(processed, duplicate, ignored, refused, failed).", ("topic", "outcome"),
    registry=REGISTRY)
HOLDS = Counter(
    "consultbook_holds", "Hold requests by result: won, or the refusal's error code.",
    ("result",), registry=REGISTRY)
PROVIDER_ERRORS = Counter(
    "consultbook_provider_errors", "Provider calls that failed while answering a request, by "
    "provider and error code.", ("provider", "kind"), registry=REGISTRY)

#: Label values taken from requests are bounded: these, else "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
TOPICS = frozenset({"orders/create", "orders/paid", "orders/cancelled", "app/uninstalled",
                    "customers/data_request", "customers/redact", "shop/redact"})
WEBHOOK_OUTCOMES = frozenset({"processed", "duplicate", "ignored"})
_NAME = re.compile(r"[a-z0-9_]{1,64}")
UNMATCHED = "unmatched"  # no route: one series for every unknown path


def label(value: Any, allowed: frozenset[str] | None = None) -> str:
    """A label value that cannot grow without bound: a known value, or a short
    snake_case name (error codes, provider names), else ``other``."""
    if not isinstance(value, str):
        return "other"
    if allowed is not None:
        return value if value in allowed else "other"
    return value if _NAME.fullmatch(value) else "other"


def multiprocess_dir() -> str | None:
    """``PROMETHEUS_MULTIPROC_DIR`` when set (gunicorn's workers then add up)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


# --------------------------------------------------------------------------- recording


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    method = method if method in METHODS else "other"
    REQUESTS.labels(method, route, str(status)).inc()
    LATENCY.labels(method, route).observe(seconds)


def observe_webhook(topic: str | None, status: int, media: Any) -> None:
    """One delivery's outcome, from what ``POST /webhooks`` answered."""
    if status >= 500:
        outcome = "failed"
    elif status >= 400:
        outcome = "refused"
    else:
        answered = media.get("status") if isinstance(media, dict) else None
        outcome = label(answered, WEBHOOK_OUTCOMES)
    WEBHOOKS.labels(label(topic, TOPICS), outcome).inc()


def observe_hold(status: int, media: Any) -> None:
    """``POST /proxy/holds``: ``won`` on 201, else the error code it answered."""
    if status == 201:
        HOLDS.labels("won").inc()
        return
    code = None
    if isinstance(media, dict) and isinstance(media.get("error"), dict):
        code = media["error"].get("code")
    HOLDS.labels(label(code)).inc()


def count_provider_error(provider: str, kind: str) -> None:
    """A provider call failed (``kind``: the error's code, e.g. ``provider_unavailable``).

    The hook point for provider errors: the web layer calls it for errors that reach a
    request; the worker's own retries are counted at scrape time from the outbox rows
    (``consultbook_outbox_errors``)."""
    PROVIDER_ERRORS.labels(label(provider or "unknown"), label(kind)).inc()


# --------------------------------------------------------------------------- at scrape


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class DatabaseCollector(Collector):
    """Gauges read from the database when scraped, one query each:

    * ``consultbook_outbox_backlog`` and ``consultbook_outbox_oldest_pending_age_seconds``
      (``SELECT count(*), min(created_at) FROM outbox WHERE status = 'pending'``);
    * ``consultbook_outbox_errors{kind,status}``: rows whose last attempt failed --
      ``pending`` are waiting for a retry, ``failed`` were given up (a provider kept
      refusing): the worker's provider call errors;
    * ``consultbook_freebusy_experts{status}`` and
      ``consultbook_freebusy_oldest_success_age_seconds``: experts whose busy time is
      ``ok``, ``stale`` or ``hidden``, and how long ago the least recently refreshed one
      was last read successfully;
    * ``consultbook_database_up``: 0 when those queries failed (the rest is then absent,
      and the scrape still answers: a dashboard should show the outage, not a gap).
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def describe(self) -> Iterable[Any]:
        return []  # read at scrape time only; nothing to check at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from sqlalchemy import func, select
        from sqlalchemy.exc import SQLAlchemyError

        from engine.store.models import OutboxItem
        from engine.store.providers_models import FreeBusyHealth

        now = self.ctx.clock.now()
        try:
            with self.ctx.db.read() as session:
                backlog, oldest = session.execute(
                    select(func.count(), func.min(OutboxItem.created_at))
                    .where(OutboxItem.status == "pending")).one()
                errors = session.execute(
                    select(OutboxItem.kind, OutboxItem.status, func.count())
                    .where(OutboxItem.status.in_(("pending", "failed")),
                           OutboxItem.last_error.is_not(None))
                    .group_by(OutboxItem.kind, OutboxItem.status)).all()
                health = session.execute(
                    select(FreeBusyHealth.status, func.count(),
                           func.min(FreeBusyHealth.last_success_at))
                    .group_by(FreeBusyHealth.status)).all()
        except SQLAlchemyError as exc:
            log.warning("metrics: the database could not be read: %s", type(exc).__name__)
            yield GaugeMetricFamily("consultbook_database_up",
                                    "1 when the scrape could read the database.", value=0)
            return
        yield GaugeMetricFamily("consultbook_database_up",
                                "1 when the scrape could read the database.", value=1)
        yield GaugeMetricFamily("consultbook_outbox_backlog",
                                "Outbox rows waiting to be delivered.", value=int(backlog))
        oldest_at = _aware(oldest)
        yield GaugeMetricFamily(
            "consultbook_outbox_oldest_pending_age_seconds",
            "Age of the oldest outbox row still pending (0 when none is).",
            value=max(0.0, (now - oldest_at).total_seconds()) if oldest_at else 0.0)
        failing = GaugeMetricFamily(
            "consultbook_outbox_errors", "Outbox rows whose last attempt failed, by kind and "
            "status (pending: to be retried; failed: given up).", labels=("kind", "status"))
        for kind, status, count in errors:
            failing.add_metric((label(kind.replace(".", "_")), status), int(count))
        yield failing
        experts = GaugeMetricFamily(
            "consultbook_freebusy_experts", "Experts by free/busy health (ok, stale, hidden).",
            labels=("status",))
        least_recent: datetime | None = None
        for status, count, last_success in health:
            experts.add_metric((label(status),), int(count))
            seen = _aware(last_success)
            if seen is not None and (least_recent is None or seen < least_recent):
                least_recent = seen
        yield experts
        yield GaugeMetricFamily(
            "consultbook_freebusy_oldest_success_age_seconds",
            "Seconds since the least recently refreshed expert's busy time was last read "
            "(0 when no expert has a calendar connected).",
            value=max(0.0, (now - least_recent).total_seconds()) if least_recent else 0.0)


def scrape_registry(ctx: Context) -> CollectorRegistry:
    """The registry one scrape renders: every worker's instruments in multiprocess mode
    (else this process's), and the database gauges read once."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Forward(REGISTRY))
    registry.register(DatabaseCollector(ctx))
    return registry


class _Forward(Collector):
    """This process's instruments, on a scrape's registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterable[Any]:
        return self.source.collect()


# --------------------------------------------------------------------------- the route


def token_matches(given: str, expected: str) -> bool:
    """Constant-time comparison of the bearer token (any text: bytes, never str, so a
    non-ASCII header cannot make ``compare_digest`` raise)."""
    return hmac.compare_digest(given.encode("utf-8", "replace"),
                               expected.encode("utf-8", "replace"))


class Metrics:
    """``GET /metrics``: the Prometheus text exposition format."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        expected = self.ctx.config.metrics_token
        if not expected:
            # Off: the same answer as an address nothing is served at.
            raise falcon.HTTPNotFound()
        scheme, _, given = (req.get_header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token_matches(given.strip(), expected):
            raise ApiError(falcon.HTTP_401, "unauthorized",
                           "the metrics token is required (Authorization: Bearer)",
                           headers={"WWW-Authenticate": "Bearer"})
        resp.data = generate_latest(scrape_registry(self.ctx))
        resp.content_type = CONTENT_TYPE_LATEST
        resp.cache_control = ["no-store"]


def register(app: falcon.App, ctx: Context) -> None:
    app.add_route("/metrics", Metrics(ctx))
