"""Talking to Google with its own libraries: google-auth credentials refreshed by
``google_auth_httplib2.AuthorizedHttp`` (a 401 refreshes the token and retries once), and
google-api-python-client services built from the bundled discovery documents, pointed at
the configured origins (``CONSULTBOOK_GOOGLE_API_ORIGIN``, ``..._TOKEN_URL``...).

:class:`GoogleSession` wraps every call in our retry policy: 429, 5xx and 403 rate-limit
answers back off (honouring ``Retry-After``), timeouts retry, and a refresh token Google
no longer accepts (``invalid_grant``) marks the shop's connection broken.

Part of the plugin contract (it names Google, not a plugin package): the Google
calendar plugin and the Meet video plugin both build on it, and a plugin may not import
another plugin. ``plugins.calendar_google.client`` re-exports it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import google_auth_httplib2
import httplib2
from google.auth.exceptions import RefreshError, TransportError
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from engine.providers import (
    Config,
    ProviderContext,
    ProviderRejected,
    Retry,
    parse_retry_after,
    retrying,
)
from engine.providers.batching import AccountSession

T = TypeVar("T")

API_ORIGIN = "https://www.googleapis.com"
TOKEN_URL = "https://oauth2.googleapis.com/token"
AUTH_URL = "https://accounts.google.com/o/oauth2/auth"
MEET_ORIGIN = "https://meet.googleapis.com"
SCOPES = (
    "openid",
    "email",
    "https://www.googleapis.com/auth/calendar.events",
    "https://www.googleapis.com/auth/calendar.freebusy",
    "https://www.googleapis.com/auth/meetings.space.created",
)
RATE_LIMIT_REASONS = {"rateLimitExceeded", "userRateLimitExceeded"}
BROKEN_GRANT_ERRORS = ("invalid_grant", "unauthorized_client", "invalid_client")


def missing_client(config: Config) -> str | None:
    if not config.google_client_id or not config.google_client_secret:
        return ("CONSULTBOOK_GOOGLE_CLIENT_ID and CONSULTBOOK_GOOGLE_CLIENT_SECRET "
                "are not set")
    return None


def http_status_reason(exc: HttpError) -> tuple[int, str]:
    """The status and Google's error ``reason`` of an HttpError."""
    status = int(exc.resp.status)
    reason = ""
    try:
        doc = json.loads(exc.content.decode("utf-8"))
        err = doc.get("error", {})
        errors = err.get("errors") or [{}]
        reason = errors[0].get("reason") or err.get("status") or ""
    except (ValueError, AttributeError, UnicodeDecodeError):
        pass
    return status, str(reason)


class GoogleSession(AccountSession):
    """Authorized Google API access for one shop's connection."""

    provider = "google"
    account_label = service_label = "Google"

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(ctx)
        assert ctx.connection is not None
        config = ctx.config
        doc = ctx.connection.credentials()
        expiry = None
        if doc.get("expiry"):
            # google-auth compares naive UTC datetimes.
            expiry = datetime.fromisoformat(doc["expiry"]).astimezone(UTC).replace(tzinfo=None)
        self.credentials = Credentials(
            token=doc.get("token"), refresh_token=doc.get("refresh_token"),
            token_uri=ctx.origin("google_token", TOKEN_URL),
            client_id=config.google_client_id, client_secret=config.google_client_secret,
            scopes=doc.get("scopes") or list(SCOPES), expiry=expiry)
        self._saved = (doc.get("token"), doc.get("expiry"))
        self._doc = doc
        http = httplib2.Http(timeout=ctx.retry.timeout,
                             ca_certs=config.provider_ca_bundle or None)
        self.http = google_auth_httplib2.AuthorizedHttp(self.credentials, http=http)
        self._services: dict[str, Any] = {}

    def __enter__(self) -> GoogleSession:
        return self

    def close(self) -> None:
        """Close the pooled connections (no sockets left for the garbage collector)."""
        self.http.close()

    def service(self, api: str, version: str) -> Any:
        key = f"{api}/{version}"
        if key not in self._services:
            if api == "meet":
                endpoint = self.ctx.origin("meet_api", MEET_ORIGIN) + "/"
            else:
                endpoint = f"{self.ctx.origin('google_api', API_ORIGIN)}/{api}/{version}/"
            self._services[key] = build(api, version, http=self.http, cache_discovery=False,
                                        static_discovery=True,
                                        client_options={"api_endpoint": endpoint})
        return self._services[key]

    def _persist(self) -> None:
        """Keep a refreshed access token (encrypted) so the next call needn't refresh."""
        creds = self.credentials
        expiry = creds.expiry.replace(tzinfo=UTC).isoformat() if creds.expiry else None
        if (creds.token, expiry) != self._saved and self.ctx.connection is not None:
            doc = {**self._doc, "token": creds.token, "expiry": expiry}
            if creds.refresh_token and creds.refresh_token != doc.get("refresh_token"):
                doc["refresh_token"] = creds.refresh_token
            self.ctx.connection.save(doc)
            self._doc, self._saved = doc, (creds.token, expiry)

    def call(self, make: Callable[[], Any], *, passthrough: tuple[int, ...] = ()) -> Any:
        """Execute the request ``make()`` builds, with retries. HttpErrors whose status is
        in ``passthrough`` are raised for the caller to handle (409 on insert...)."""

        def attempt() -> Any:
            try:
                return make().execute(num_retries=0)
            except HttpError as exc:
                status, reason = http_status_reason(exc)
                if status in passthrough:
                    raise
                retry_after = parse_retry_after(exc.resp.get("retry-after"))
                if status == 429 or status >= 500 or (
                        status == 403 and reason in RATE_LIMIT_REASONS):
                    raise Retry(f"HTTP {status} {reason}".strip(), retry_after) from None
                if status == 401:
                    raise self._broken("Google refused the refreshed access token") from None
                raise ProviderRejected(f"Google answered HTTP {status} {reason}".strip(),
                                       provider=self.provider) from None
            except RefreshError as exc:
                text = str(exc.args[0] if exc.args else exc)
                if any(code in text for code in BROKEN_GRANT_ERRORS):
                    raise self._broken("Google no longer accepts the refresh token "
                                       "(access was revoked or expired); reconnect "
                                       "Google") from None
                raise Retry(f"token refresh failed: {text[:200]}") from None
            except (TransportError, TimeoutError, OSError, httplib2.HttpLib2Error) as exc:
                raise Retry(f"{type(exc).__name__}") from None

        try:
            return retrying(self.ctx.retry, self.provider, attempt)
        finally:
            self._persist()
