"""Shopify's token endpoint: ``POST https://{shop}/admin/oauth/access_token``.

Three grants, all answered with the same JSON shape (:class:`TokenSet`):

* **authorization code** (``/auth/callback``): ``client_id``, ``client_secret``, ``code``;
* **token exchange** (embedded apps): an App Bridge session token (an ``id_token``) for
  an offline access token, ``grant_type=urn:ietf:params:oauth:grant-type:token-exchange``;
* **refresh** (expiring offline tokens): ``grant_type=refresh_token``. Shopify issues a
  new refresh token with every refresh; the one just used must not be used again.

Every grant asks for an *expiring* offline token (``expiring=1``): it lives about an
hour (``expires_in``) and comes with a ``refresh_token`` that lives longer
(``refresh_token_expires_in``). Public apps must use these from 2027-01-01.

This module only speaks HTTP: no database, no clock. Tests and the demo point it at a
local server with ``origin`` (``Config.origins["shopify_admin"]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests

from engine.errors import ConsultbookError, Unauthorized
from engine.shopify.signatures import valid_shop_domain

__all__ = [
    "GRANT_TOKEN_EXCHANGE",
    "OAuthClient",
    "OAuthGrantError",
    "ShopifyUnavailable",
    "TokenSet",
    "shop_origin",
]

GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
TOKEN_TYPE_ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
TOKEN_TYPE_OFFLINE = "urn:shopify:params:oauth:token-type:offline-access-token"

DEFAULT_TIMEOUT = (5.0, 20.0)  # (connect, read) seconds


class OAuthGrantError(Unauthorized):
    """Shopify refused the grant (``invalid_grant``, ``invalid_subject_token``, ...).

    Not transient: retrying with the same code or refresh token cannot succeed. For a
    refresh this means the merchant has to authorize the app again.
    """

    code = "invalid_grant"

    def __init__(self, message: str, *, error: str = "invalid_grant") -> None:
        super().__init__(message)
        self.error = error


class ShopifyUnavailable(ConsultbookError):
    """Shopify could not be reached, timed out, or answered 5xx / something unparseable.

    Transient: the same request may succeed later (the web layer answers 502).
    """

    code = "shopify_unavailable"


@dataclass(frozen=True)
class TokenSet:
    """What the token endpoint returns. Lifetimes are seconds from the response;
    ``None`` when Shopify issued a non-expiring token (no ``expires_in``)."""

    access_token: str
    scope: str
    expires_in: int | None = None
    refresh_token: str | None = None
    refresh_token_expires_in: int | None = None

    def __repr__(self) -> str:  # never the tokens themselves
        return (f"TokenSet(scope={self.scope!r}, expires_in={self.expires_in!r}, "
                f"refresh_token_expires_in={self.refresh_token_expires_in!r})")


def shop_origin(shop: str, override: str | None = None) -> str:
    """``https://{shop}``, or the configured override (a local fake Shopify)."""
    if not valid_shop_domain(shop):
        raise ValueError("shop must be a <name>.myshopify.com domain")
    return override.rstrip("/") if override else f"https://{shop}"


def _lifetime(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ShopifyUnavailable(f"Shopify's token response has an invalid {name}.")
    return int(value)


class OAuthClient:
    """The app's side of Shopify OAuth for one configuration (API key and secret)."""

    def __init__(self, api_key: str, api_secret: str, *, origin: str | None = None,
                 timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> None:
        if not api_key or not api_secret:
            raise ValueError("the Shopify API key and secret must not be empty")
        self.api_key = api_key
        self._secret = api_secret
        self.origin = origin
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"OAuthClient(api_key={self.api_key!r}, origin={self.origin!r})"

    def authorize_url(self, shop: str, *, scopes: str, redirect_uri: str, state: str) -> str:
        """Where to send the merchant to approve the app (offline access: no
        ``grant_options[]``)."""
        query = urlencode({"client_id": self.api_key, "scope": scopes,
                           "redirect_uri": redirect_uri, "state": state})
        return f"{shop_origin(shop, self.origin)}/admin/oauth/authorize?{query}"

    def exchange_code(self, shop: str, code: str) -> TokenSet:
        """Authorization-code grant: the ``code`` of ``/auth/callback`` for an expiring
        offline token."""
        return self._grant(shop, {"code": code, "expiring": "1"})

    def exchange_session_token(self, shop: str, session_token: str) -> TokenSet:
        """Token exchange: an App Bridge session token for an expiring offline token."""
        return self._grant(shop, {
            "grant_type": GRANT_TOKEN_EXCHANGE,
            "subject_token": session_token,
            "subject_token_type": TOKEN_TYPE_ID_TOKEN,
            "requested_token_type": TOKEN_TYPE_OFFLINE,
            "expiring": "1",
        })

    def refresh(self, shop: str, refresh_token: str) -> TokenSet:
        """A new access token and a new refresh token for ``refresh_token``.

        The refresh token is single-use: after a successful call the caller must store
        the new one and never send this one again.
        """
        return self._grant(shop, {"grant_type": "refresh_token",
                                  "refresh_token": refresh_token})

    def _grant(self, shop: str, fields: dict[str, str]) -> TokenSet:
        url = f"{shop_origin(shop, self.origin)}/admin/oauth/access_token"
        body = {"client_id": self.api_key, "client_secret": self._secret, **fields}
        with requests.Session() as http:
            http.trust_env = False  # never a proxy or .netrc from the environment
            try:
                resp = http.post(url, json=body, timeout=self.timeout,
                                 headers={"Accept": "application/json"},
                                 allow_redirects=False)
            except requests.RequestException as exc:
                raise ShopifyUnavailable(
                    f"Shopify's token endpoint could not be reached ({type(exc).__name__})."
                ) from None
        try:
            data = resp.json()
        except ValueError:
            data = None
        if 400 <= resp.status_code < 500:
            error = "invalid_grant"
            description = ""
            if isinstance(data, dict):
                error = str(data.get("error") or error)[:100]
                description = str(data.get("error_description") or "")[:300]
            if resp.status_code == 429:
                raise ShopifyUnavailable("Shopify's token endpoint is rate limiting us.")
            message = f"Shopify refused the grant ({error})"
            raise OAuthGrantError(f"{message}: {description}" if description else message + ".",
                                  error=error)
        if resp.status_code != 200 or not isinstance(data, dict):
            raise ShopifyUnavailable(
                f"Shopify's token endpoint answered HTTP {resp.status_code}.")
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise ShopifyUnavailable("Shopify's token response has no access_token.")
        refresh = data.get("refresh_token")
        if refresh is not None and (not isinstance(refresh, str) or not refresh):
            raise ShopifyUnavailable("Shopify's token response has an invalid refresh_token.")
        scope = data.get("scope")
        return TokenSet(
            access_token=token,
            scope=scope if isinstance(scope, str) else "",
            expires_in=_lifetime(data, "expires_in"),
            refresh_token=refresh,
            refresh_token_expires_in=_lifetime(data, "refresh_token_expires_in"),
        )

