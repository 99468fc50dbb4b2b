"""Talking to Zoom's REST API v2 with a Server-to-Server OAuth app, with ``requests``.

:class:`ZoomSession` owns one account's access: it gets a token from
``POST <oauth>/oauth/token?grant_type=account_credentials&account_id=...`` (HTTP Basic
``client_id:client_secret``), keeps it until five minutes before it expires (Zoom's live
an hour), and maps every answer onto the provider errors the engine understands:

* 429 and 5xx, timeouts and refused connections are transient: :class:`Retry` inside
  the context's retry policy, which sleeps a short ``Retry-After`` in the call and
  hands a long one (Zoom's daily limits say "tomorrow, 00:00 UTC") straight back as
  :class:`ProviderUnavailable` with ``retry_after`` so the outbox reschedules the task
  instead of a worker sleeping on it.
* 401 refreshes the token once and repeats the request; a second 401, a token endpoint
  that refuses the app's credentials (secret regenerated, app deactivated), or a token
  without the scopes the call needs (Zoom code 4711) is :class:`ConnectionBroken`.
* Other 4xx are :class:`ProviderRejected` with Zoom's own code and message.

Only the plugin contract is imported (``engine.providers``); origins, TLS verification,
the retry policy and the clock come in as arguments, from the provider's context.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import requests

from engine.providers import (
    ConnectionBroken,
    ProviderRejected,
    Retry,
    RetryPolicy,
    parse_retry_after,
    retrying,
)

T = TypeVar("T")

API_ORIGIN = "https://api.zoom.us"
OAUTH_ORIGIN = "https://zoom.us"
PROVIDER = "zoom"
#: Refresh this long before Zoom's stated expiry, so a token never dies mid-task.
REFRESH_MARGIN = timedelta(minutes=5)
#: Zoom's "Invalid access token, does not contain scopes" (the app lacks a scope).
MISSING_SCOPES = 4711
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?")


class TokenRefused(Exception):
    """The token endpoint refused the app's credentials (a permanent answer)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class AppCredentials:
    """A Server-to-Server OAuth app's three values."""

    account_id: str
    client_id: str
    client_secret: str


@dataclass(frozen=True)
class Token:
    value: str
    expires_at: datetime


def retry_after_seconds(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds until Zoom lets us try again, from ``Retry-After`` (delta seconds, an HTTP
    date, or the ISO 8601 instant Zoom sends with daily limits). A daily limit without a
    usable header resets at the next 00:00 UTC."""
    raw = (headers.get("Retry-After") or "").strip()
    if raw:
        if _ISO.fullmatch(raw):
            try:
                when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            except ValueError:
                when = None
            if when is not None:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                return max(0.0, (when - now).total_seconds())
        seconds = parse_retry_after(raw, now=now.timestamp())
        if seconds is not None:
            return seconds
    if (headers.get("X-RateLimit-Type") or "").lower().startswith("daily"):
        midnight = (now.astimezone(UTC) + timedelta(days=1)).replace(
            hour=0, minute=0, second=0, microsecond=0)
        return (midnight - now).total_seconds()
    return None


def _zoom_error(response: requests.Response) -> tuple[int | None, str]:
    """Zoom's ``{"code", "message"}`` (API) or ``{"error", "reason"}`` (OAuth) body."""
    try:
        doc = response.json()
    except ValueError:
        return None, response.text[:200].strip()
    if not isinstance(doc, dict):
        return None, ""
    code = doc.get("code")
    message = doc.get("message") or doc.get("reason") or doc.get("error") or ""
    return (code if isinstance(code, int) else None), str(message)[:300]


class ZoomSession:
    """Authorized access to one Zoom account.

    ``token`` is a cached token to start from (or ``None``); ``on_token`` is called with
    every new token so the caller can keep it (the provider stores it, encrypted, in the
    connection); ``on_broken`` is called with the reason before :class:`ConnectionBroken`
    is raised. ``now`` is the clock. Use as a context manager (pooled sockets are closed).
    """

    def __init__(self, app: AppCredentials, *, api_origin: str, oauth_origin: str,
                 verify: str | bool, retry: RetryPolicy, now: Callable[[], datetime],
                 token: Token | None = None,
                 on_token: Callable[[Token], None] | None = None,
                 on_broken: Callable[[str], None] | None = None) -> None:
        self.app = app
        self.api_origin = api_origin.rstrip("/")
        self.oauth_origin = oauth_origin.rstrip("/")
        self.retry = retry
        self.now = now
        self._token = token
        self._on_token = on_token
        self._on_broken = on_broken
        self.http = requests.Session()
        self.http.verify = verify
        self.http.headers["User-Agent"] = "consultbook-zoom/1"

    def __enter__(self) -> ZoomSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # --- tokens -------------------------------------------------------------------------

    def fetch_token(self) -> Token:
        """A new access token (one attempt). Raises :class:`TokenRefused` when Zoom refuses
        the account id / client id / secret, :class:`Retry` when Zoom could not answer."""
        basic = base64.b64encode(
            f"{self.app.client_id}:{self.app.client_secret}".encode()).decode("ascii")
        try:
            response = self.http.post(
                f"{self.oauth_origin}/oauth/token",
                params={"grant_type": "account_credentials", "account_id": self.app.account_id},
                headers={"Authorization": f"Basic {basic}"}, timeout=self.retry.timeout)
        except requests.RequestException as exc:
            raise Retry(f"token request failed: {type(exc).__name__}") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise Retry(f"token endpoint answered HTTP {status}",
                        retry_after_seconds(response.headers, self.now()))
        if status != 200:
            _, reason = _zoom_error(response)
            raise TokenRefused(reason or f"HTTP {status}")
        try:
            doc = response.json()
            value = str(doc["access_token"])
            lifetime = float(doc.get("expires_in") or 3600)
        except (ValueError, KeyError, TypeError):
            raise Retry("the token endpoint answered without a token") from None
        token = Token(value, self.now() + timedelta(seconds=lifetime))
        self._token = token
        if self._on_token is not None:
            self._on_token(token)
        return token

    def token(self, *, force: bool = False) -> str:
        """The cached token unless it is due for refresh (or ``force``), else a new one.
        A refused refresh is :class:`ConnectionBroken`."""
        current = self._token
        if not force and current is not None and \
                current.expires_at - REFRESH_MARGIN > self.now():
            return current.value
        try:
            return self.fetch_token().value
        except TokenRefused as exc:
            raise self.broken(f"Zoom refused the app's credentials ({exc.reason}); "
                              "check the Server-to-Server OAuth app and connect again") from None

    def broken(self, reason: str) -> ConnectionBroken:
        if self._on_broken is not None:
            self._on_broken(reason)
        return ConnectionBroken(f"the Zoom connection is broken: {reason}", provider=PROVIDER)

    # --- requests -----------------------------------------------------------------------

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                json: Any = None, missing_ok: bool = False) -> Any:
        """One API request (a 401 refreshes the token and repeats it once). Returns the
        decoded JSON body (``None`` when empty, or for a 404 when ``missing_ok``). Raises
        :class:`Retry` for transient failures: call it inside :func:`retrying`, or use
        :meth:`call`."""
        url = f"{self.api_origin}/v2{path}"
        refreshed = False
        while True:
            token = self.token(force=refreshed)
            try:
                response = self.http.request(
                    method, url, params=params, json=json, timeout=self.retry.timeout,
                    headers={"Authorization": f"Bearer {token}"})
            except requests.RequestException as exc:
                raise Retry(f"{method} {path} failed: {type(exc).__name__}") from None
            status = response.status_code
            if status == 401 and not refreshed:
                refreshed = True
                continue
            break
        if status < 300:
            if not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                raise Retry(f"{method} {path}: Zoom answered HTTP {status} without JSON") \
                    from None
        code, message = _zoom_error(response)
        detail = f"HTTP {status}" + (f" code {code}" if code is not None else "") + \
            (f": {message}" if message else "")
        if status == 429 or status >= 500:
            raise Retry(f"{method} {path}: {detail}",
                        retry_after_seconds(response.headers, self.now()))
        if status == 401:
            raise self.broken("Zoom refused a freshly issued access token "
                              f"({message or 'HTTP 401'})")
        if code == MISSING_SCOPES:
            raise self.broken(f"the Zoom app lacks a scope this needs ({message}); add it "
                              "to the Server-to-Server OAuth app")
        if status == 404 and missing_ok:
            return None
        raise ProviderRejected(f"Zoom refused {method} {path}: {detail}", provider=PROVIDER)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """:meth:`request` within the retry policy."""
        return self.run(lambda: self.request(method, path, **kwargs))

    def run(self, operation: Callable[[], T]) -> T:
        """``operation`` (made of :meth:`request` calls) within the retry policy. Raises
        :class:`ProviderUnavailable` (with Zoom's ``retry_after``) when it stays
        unavailable or asks for a longer wait than the policy allows."""
        return retrying(self.retry, PROVIDER, operation)
