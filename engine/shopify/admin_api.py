"""A small client for Shopify's GraphQL Admin API: what consultbook needs, no more.

``POST {origin}/admin/api/{version}/graphql.json`` with ``X-Shopify-Access-Token``.
``origin`` is ``https://{shop}`` unless configured (``Config.origins["shopify_admin"]``,
``CONSULTBOOK_SHOPIFY_ADMIN_ORIGIN``), so tests run this very client against a local
fake over real HTTP.

Resilience, in the order Shopify asks for it:

* **HTTP 429** waits ``Retry-After`` seconds (1 s when the header is missing or odd).
* **GraphQL ``THROTTLED``** (HTTP 200 with ``errors[].extensions.code == "THROTTLED"``)
  waits for the leaky bucket to hold the query's cost again:
  ``(requestedQueryCost - currentlyAvailable) / restoreRate`` seconds, from
  ``extensions.cost.throttleStatus``.
* **5xx and network errors** retry with exponential backoff and jitter, but only for
  requests that are safe to repeat: queries, naturally idempotent mutations
  (``tagsAdd``), and mutations that carry an ``@idempotent`` key (``refundCreate``).
* **Timeouts** on every request (connect, read).
* **401** calls ``on_unauthorized`` once (if given) for a fresh token, then gives up
  with :class:`AdminApiAuthError`.

Every wait is capped (``max_wait``) and the attempts are bounded (``max_attempts``).
The client never reads the wall clock for its decisions except through ``sleep``,
which tests replace to record the waits.

**Workers never sleep on Shopify.** Inside :func:`no_waiting` (the outbox relay runs
every Shopify action in it) a wait the client would take -- a retry after a 5xx, a
network error, a 429 or ``THROTTLED`` -- is not slept: the call stops at once with
:class:`AdminApiDeferred` (a :class:`ShopifyUnavailable`), and the wait it wanted is kept
on the :class:`Deferral` the context manager yields, so the caller reschedules the work
no sooner than that. Requests in that mode also get short timeouts
(:data:`WORKER_TIMEOUT`): a hanging Admin API holds a worker for seconds, not minutes.
Interactive callers (the web process, the CLI) keep the in-place retries.
"""

from __future__ import annotations

import contextvars
import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import requests

from engine.errors import ConsultbookError, Unauthorized, Unprocessable
from engine.shopify.oauth import ShopifyUnavailable, shop_origin

__all__ = [
    "DEFAULT_API_VERSION",
    "WORKER_TIMEOUT",
    "AdminApi",
    "AdminApiAuthError",
    "AdminApiDeferred",
    "AdminApiError",
    "AdminApiUserError",
    "Deferral",
    "ShopifyUnavailable",
    "no_waiting",
    "order_gid",
]

log = logging.getLogger("consultbook.shopify")

DEFAULT_API_VERSION = "2026-10"
_VERSION = re.compile(r"(?:20[0-9]{2}-(?:01|04|07|10)|unstable)")
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,255}")
_GID = re.compile(r"gid://shopify/[A-Za-z]+/[0-9]+")


class AdminApiError(ConsultbookError):
    """The Admin API answered with an error that retrying will not fix."""

    code = "shopify_api_error"


class AdminApiAuthError(Unauthorized):
    """The access token was refused (HTTP 401), even after one fresh token."""

    code = "shopify_unauthorized"


class AdminApiDeferred(ShopifyUnavailable):
    """A retry the client would have slept for, handed back instead (:func:`no_waiting`).

    ``retry_after`` is the wait it wanted, in seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


#: (connect, read) timeouts of requests made inside :func:`no_waiting`. tagsAdd and
#: refundCreate answer in well under a second when Shopify is well; a call that has not
#: answered in 10 s is retried later rather than held on to.
WORKER_TIMEOUT: tuple[float, float] = (3.0, 10.0)


@dataclass
class Deferral:
    """What :func:`no_waiting` learned: the longest wait the client asked for (seconds),
    or ``None`` when it never wanted to wait."""

    timeout: tuple[float, float] = WORKER_TIMEOUT
    retry_after: float | None = None

    def want(self, seconds: float) -> None:
        self.retry_after = seconds if self.retry_after is None else max(self.retry_after,
                                                                         seconds)


_deferral: contextvars.ContextVar[Deferral | None] = contextvars.ContextVar(
    "consultbook_admin_api_deferral", default=None)


@contextmanager
def no_waiting(timeout: tuple[float, float] | None = None) -> Iterator[Deferral]:
    """Within this block (this thread / context only), :class:`AdminApi` never sleeps:
    a wait becomes :class:`AdminApiDeferred`, recorded on the yielded :class:`Deferral`,
    and requests use ``timeout`` (default :data:`WORKER_TIMEOUT`). For workers, which
    reschedule instead of waiting."""
    deferral = Deferral(timeout=WORKER_TIMEOUT if timeout is None else timeout)
    token = _deferral.set(deferral)
    try:
        yield deferral
    finally:
        _deferral.reset(token)


class AdminApiUserError(Unprocessable):
    """A mutation ran but Shopify reported ``userErrors`` (``errors`` holds them)."""

    code = "shopify_user_error"

    def __init__(self, message: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.errors = errors


def order_gid(order_id: str | int) -> str:
    """``gid://shopify/Order/123`` for ``123``, ``"123"`` or the gid itself."""
    text = str(order_id)
    if _GID.fullmatch(text):
        return text
    if text.isascii() and text.isdigit():
        return f"gid://shopify/Order/{text}"
    raise ValueError("an order id is digits or a gid://shopify/Order/<digits>")


def _line_item_gid(line_item_id: str | int) -> str:
    text = str(line_item_id)
    if _GID.fullmatch(text):
        return text
    if text.isascii() and text.isdigit():
        return f"gid://shopify/LineItem/{text}"
    raise ValueError("a line item id is digits or a gid://shopify/LineItem/<digits>")


def retry_after_seconds(value: str | None, default: float = 1.0) -> float:
    """The wait a ``Retry-After`` header asks for, in seconds (a number; HTTP dates and
    nonsense fall back to ``default``)."""
    if value is None:
        return default
    try:
        seconds = float(value.strip())
    except ValueError:
        return default
    if seconds != seconds or seconds < 0:  # NaN or negative
        return default
    return seconds


def throttle_wait(extensions: Any, default: float = 1.0) -> float:
    """Seconds until the bucket holds the query's cost again, from ``extensions.cost``."""
    try:
        cost = extensions["cost"]
        status = cost["throttleStatus"]
        requested = float(cost["requestedQueryCost"])
        available = float(status["currentlyAvailable"])
        rate = float(status["restoreRate"])
    except (KeyError, TypeError, ValueError):
        return default
    if rate <= 0:
        return default
    return max((requested - available) / rate, 0.1)


class AdminApi:
    """One shop's GraphQL Admin API. Use as a context manager (it owns an HTTP session).

    ``access_token`` is the plain offline token; ``on_unauthorized`` (optional) returns a
    fresh one after a 401, or ``None`` to give up. ``sleep`` is how waits happen
    (tests pass a recorder).
    """

    def __init__(
        self,
        shop: str,
        access_token: str,
        *,
        api_version: str = DEFAULT_API_VERSION,
        origin: str | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        max_attempts: int = 5,
        max_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        on_unauthorized: Callable[[], str | None] | None = None,
    ) -> None:
        if not _VERSION.fullmatch(api_version):
            raise ValueError("api_version must look like 2026-10")
        if not access_token:
            raise ValueError("access_token must not be empty")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.shop = shop
        self.url = f"{shop_origin(shop, origin)}/admin/api/{api_version}/graphql.json"
        self._token = access_token
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_wait = max_wait
        self._sleep = sleep
        self._on_unauthorized = on_unauthorized
        self._http = requests.Session()
        self._http.trust_env = False

    def __repr__(self) -> str:
        return f"AdminApi(shop={self.shop!r}, url={self.url!r})"

    def __enter__(self) -> AdminApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ----------------------------------------------------------------------- transport

    def _wait(self, seconds: float, why: str) -> None:
        seconds = min(max(seconds, 0.0), self.max_wait)
        deferral = _deferral.get()
        if deferral is not None:
            # A worker: hand the wait back to be rescheduled, never sleep on it.
            deferral.want(seconds)
            log.info("shopify admin api: %s, deferring the call %.2fs (%s)", why, seconds,
                     self.shop)
            raise AdminApiDeferred(f"Shopify's Admin API is not answering ({why}); "
                                   "the call is retried later.", seconds)
        log.info("shopify admin api: %s, waiting %.2fs (%s)", why, seconds, self.shop)
        self._sleep(seconds)

    def _backoff(self, attempt: int) -> float:
        return float(min(0.5 * 2.0 ** (attempt - 1), 8.0) * (0.8 + 0.4 * random.random()))

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None, *,
                retry_unsafe: bool = True) -> dict[str, Any]:
        """Run ``query`` and return its ``data``.

        ``retry_unsafe`` says whether the request may be repeated after an ambiguous
        failure (5xx, timeout, dropped connection); pass ``False`` for a mutation that is
        neither naturally idempotent nor keyed. Throttling (429, ``THROTTLED``) is always
        retried: Shopify did not run a throttled request.

        Raises :class:`ShopifyUnavailable` (transient, retries exhausted),
        :class:`AdminApiAuthError` (401), :class:`AdminApiError` (anything else).
        """
        payload: dict[str, Any] = {"query": query, "variables": dict(variables or {})}
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= self.max_attempts
            try:
                deferral = _deferral.get()
                resp = self._http.post(
                    self.url, json=payload, allow_redirects=False,
                    timeout=self.timeout if deferral is None else deferral.timeout,
                    headers={"X-Shopify-Access-Token": self._token,
                             "Accept": "application/json"})
            except requests.ConnectTimeout:
                # Nothing was sent: always safe to try again.
                if last:
                    raise ShopifyUnavailable("Shopify's Admin API could not be reached.") \
                        from None
                self._wait(self._backoff(attempt), "connect timeout")
                continue
            except requests.RequestException as exc:
                if last or not retry_unsafe:
                    raise ShopifyUnavailable(
                        f"Shopify's Admin API did not answer ({type(exc).__name__})."
                    ) from None
                self._wait(self._backoff(attempt), type(exc).__name__)
                continue

            status = resp.status_code
            if status == 401:
                if not refreshed and self._on_unauthorized is not None:
                    refreshed = True
                    fresh = self._on_unauthorized()
                    if fresh:
                        self._token = fresh
                        attempt -= 1  # the retry with a new token is not a new attempt
                        continue
                raise AdminApiAuthError("Shopify refused the shop's access token.")
            if status == 429:
                if last:
                    raise ShopifyUnavailable("Shopify's Admin API kept rate limiting us.")
                self._wait(retry_after_seconds(resp.headers.get("Retry-After")),
                           "HTTP 429")
                continue
            if status >= 500:
                if last or not retry_unsafe:
                    raise ShopifyUnavailable(f"Shopify's Admin API answered HTTP {status}.")
                self._wait(self._backoff(attempt), f"HTTP {status}")
                continue
            if status != 200:
                # 402 (shop frozen), 403 (missing scope), 404 (shop gone), 423 (locked)...
                raise AdminApiError(f"Shopify's Admin API answered HTTP {status}.")
            try:
                body = resp.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise AdminApiError("Shopify's Admin API answered with something not JSON.")

            errors = body.get("errors")
            if errors:
                if _throttled(errors):
                    if last:
                        raise ShopifyUnavailable("Shopify's Admin API kept throttling us.")
                    self._wait(throttle_wait(body.get("extensions")), "THROTTLED")
                    continue
                raise AdminApiError(_first_message(errors))
            data = body.get("data")
            if not isinstance(data, dict):
                raise AdminApiError("Shopify's Admin API answer has no data.")
            return data

    # ---------------------------------------------------------------------- operations

    def shop_timezone(self) -> str:
        """The shop's IANA timezone (``shop { ianaTimezone }``)."""
        data = self.graphql("query consultbookShopTimezone { shop { ianaTimezone } }")
        tz = (data.get("shop") or {}).get("ianaTimezone")
        if not isinstance(tz, str) or not tz:
            raise AdminApiError("Shopify did not say which timezone the shop is in.")
        return tz

    def tag_order(self, order_id: str | int, tags: Sequence[str]) -> None:
        """Add ``tags`` to the order (``tagsAdd``; adding a tag twice is harmless)."""
        tags = [t for t in tags if isinstance(t, str) and t.strip()]
        if not tags:
            raise ValueError("tags must name at least one tag")
        data = self.graphql(
            "mutation consultbookTagOrder($id: ID!, $tags: [String!]!) {"
            " tagsAdd(id: $id, tags: $tags) { node { id } userErrors { field message } } }",
            {"id": order_gid(order_id), "tags": tags})
        _user_errors(data.get("tagsAdd"), "tagsAdd")

    def refund_line_items(
        self,
        order_id: str | int,
        line_items: Sequence[Mapping[str, Any]],
        currency: str,
        *,
        idempotency_key: str,
        note: str | None = None,
        notify: bool = True,
    ) -> dict[str, Any]:
        """Refund ``line_items`` (``[{"line_item_id": ..., "quantity": n}]``) of an order.

        Shopify computes what to give back (``suggestedRefund``: the lines' prices with
        their taxes and discounts, split across the order's payments); ``refundCreate``
        then refunds exactly that, without restocking, in ``currency`` (the order's
        presentment currency). ``idempotency_key`` (``@idempotent``, required by Shopify
        from 2026-04) makes a repeat of the same refund return the first one: derive it
        from the order and the lines, e.g. ``consultbook-refund-<order>-<line>``.

        Returns ``{"refund_id": gid, "amount": "12.50", "currency": "EUR"}``.
        """
        if not _IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            raise ValueError("idempotency_key must be 1-255 of A-Z a-z 0-9 _ . : -")
        if not re.fullmatch(r"[A-Z]{3}", currency):
            raise ValueError("currency must be an ISO 4217 code such as EUR")
        items = []
        for item in line_items:
            quantity = item.get("quantity", 1)
            if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
                raise ValueError("a refunded line's quantity is a whole number of at least 1")
            items.append({"lineItemId": _line_item_gid(item["line_item_id"]),
                          "quantity": quantity})
        if not items:
            raise ValueError("line_items must name at least one line")
        gid = order_gid(order_id)

        suggested = self.graphql(
            "query consultbookSuggestedRefund($id: ID!, $items: [RefundLineItemInput!]) {"
            " order(id: $id) { suggestedRefund(refundLineItems: $items) {"
            " suggestedTransactions { gateway kind"
            " amountSet { presentmentMoney { amount currencyCode } }"
            " parentTransaction { id } } } } }",
            {"id": gid, "items": items})
        order = suggested.get("order")
        if not isinstance(order, dict):
            raise AdminApiError("Shopify does not know that order.")
        transactions = []
        for tx in ((order.get("suggestedRefund") or {}).get("suggestedTransactions") or []):
            money = ((tx.get("amountSet") or {}).get("presentmentMoney") or {})
            parent = (tx.get("parentTransaction") or {}).get("id")
            transactions.append({"orderId": gid, "gateway": tx.get("gateway"),
                                 "kind": "REFUND", "amount": money.get("amount"),
                                 "parentId": parent})

        refund_input: dict[str, Any] = {
            "orderId": gid,
            "currency": currency,
            "notify": notify,
            "refundLineItems": [{**i, "restockType": "NO_RESTOCK"} for i in items],
            "transactions": transactions,
        }
        if note:
            refund_input["note"] = note[:500]
        data = self.graphql(
            "mutation consultbookRefund($input: RefundInput!) {"
            f" refundCreate(input: $input) @idempotent(key: {json.dumps(idempotency_key)}) {{"
            " refund { id totalRefundedSet { presentmentMoney { amount currencyCode } } }"
            " userErrors { field message } } }",
            {"input": refund_input})
        payload = _user_errors(data.get("refundCreate"), "refundCreate")
        refund = payload.get("refund") or {}
        money = ((refund.get("totalRefundedSet") or {}).get("presentmentMoney") or {})
        return {"refund_id": refund.get("id"), "amount": _decimal_text(money.get("amount")),
                "currency": money.get("currencyCode") or currency}


def _throttled(errors: Any) -> bool:
    if not isinstance(errors, list):
        return False
    return any(isinstance(e, dict) and isinstance(e.get("extensions"), dict)
               and e["extensions"].get("code") == "THROTTLED" for e in errors)


def _first_message(errors: Any) -> str:
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        message = str(errors[0].get("message") or "an error")
    elif isinstance(errors, str):
        message = errors
    else:
        message = "an error"
    return f"Shopify's Admin API reported: {message[:300]}"


def _user_errors(payload: Any, name: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise AdminApiError(f"Shopify's answer to {name} is empty.")
    errors = payload.get("userErrors") or []
    if errors:
        first = errors[0] if isinstance(errors[0], dict) else {}
        raise AdminApiUserError(
            f"Shopify refused {name}: {str(first.get('message') or 'user error')[:300]}",
            [e for e in errors if isinstance(e, dict)])
    return payload


def _decimal_text(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return str(Decimal(str(value)))
    except InvalidOperation:
        return None
