"""The two request-authentication schemes, as Falcon middleware.

A resource declares ``auth = "proxy"`` (Shopify App Proxy signature; the shop comes only
from the signed ``shop`` parameter) or ``auth = "admin"`` (App Bridge session token;
the shop comes only from its ``dest``). Either way the shop lands in ``req.context.shop``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import falcon

from engine.bootstrap import Context
from engine.services.availability import MAX_ID_LENGTH
from engine.services.shops import ShopRef, lookup_shop
from engine.shopify import (
    SessionTokenError,
    SignatureError,
    decode_session_token,
    verify_proxy,
)
from engine.shopify.signatures import check_age
from engine.store.db import unstorable_text
from web.errors import ApiError


class VerifiedQueries:
    """App Proxy query strings whose signature this process has verified, with what they
    signed and their timestamp: the storefront repeats the same signed URL (a calendar
    page, its retries, a month switched back), and parsing and hashing it again was a
    tenth of a cached availability answer's CPU. Whether a query string's signature is
    right depends on nothing but the string (and the app's one secret), so only its age
    is checked again on each use. Bounded: full, it starts over."""

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._entries: dict[str, tuple[dict[str, str], int]] = {}

    def verify(self, query: str, secret: str, *, now: int, max_age: int) -> dict[str, str]:
        found = self._entries.get(query)
        if found is None:
            signed = verify_proxy(parse_qsl(query, keep_blank_values=True), secret, now=now,
                                  max_age=max_age)
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[query] = found = (signed, int(signed["timestamp"]))
        else:
            check_age(found[1], now=now, max_age=max_age)
        return dict(found[0])  # the caller's own copy


class AuthMiddleware:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.verified = VerifiedQueries()

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         params: dict[str, Any]) -> None:
        scheme = getattr(resource, "auth", None)
        if scheme == "proxy":
            self._proxy(req)
        elif scheme == "admin":
            self._admin(req)

    def _now(self) -> int:
        return int(self.ctx.clock.now().timestamp())

    def _proxy(self, req: falcon.Request) -> None:
        try:
            signed = self.verified.verify(req.query_string, self.ctx.config.api_secret,
                                          now=self._now(),
                                          max_age=self.ctx.config.proxy_max_age_seconds)
        except SignatureError as exc:
            raise ApiError(falcon.HTTP_401, "invalid_signature", str(exc)) from None
        domain = signed.get("shop", "")
        if not domain:
            raise ApiError(falcon.HTTP_401, "invalid_signature",
                           "the signed parameters do not name a shop")
        # One statement: the shop, its catalog version and, when the request names a
        # service (availability), the claim versions of its experts -- all that a
        # cached availability answer is checked against.
        named = signed.get("service", "").strip()
        # (Not an id: nothing to read; the resource says what is wrong with it.)
        service = named if named and len(named) <= MAX_ID_LENGTH \
            and not unstorable_text(named) else None
        shop = lookup_shop(self.ctx.db, domain, service=service)
        self._observe(shop)
        req.context.shop = shop
        req.context.signed = signed

    def _admin(self, req: falcon.Request) -> None:
        token = bearer_token(req)
        if not token:
            raise ApiError(falcon.HTTP_401, "unauthorized",
                           "an App Bridge session token is required (Authorization: Bearer)",
                           headers={"WWW-Authenticate": "Bearer"})
        claims = session_claims(self.ctx, token)
        shop = lookup_shop(self.ctx.db, claims.shop, admin=True)
        self._observe(shop)
        req.context.shop = shop
        req.context.session_token = claims

    def _observe(self, shop: ShopRef) -> None:
        # Another process's catalog write (a new version) voids this process's
        # unversioned read-cache entries too (engine.store.db.ReadCache.observe).
        if shop.catalog_version is not None:
            self.ctx.db.cache.observe(shop.id, shop.catalog_version)


def bearer_token(req: falcon.Request) -> str:
    """The token of an ``Authorization: Bearer`` header, or ``""``."""
    scheme, _, token = (req.get_header("Authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def session_claims(ctx: Context, token: str) -> Any:
    """The verified claims of an App Bridge session token, else a 401."""
    try:
        return decode_session_token(token, api_key=ctx.config.api_key,
                                    api_secret=ctx.config.api_secret,
                                    now=int(ctx.clock.now().timestamp()))
    except SessionTokenError as exc:
        raise ApiError(falcon.HTTP_401, "unauthorized", str(exc),
                       headers={"WWW-Authenticate": "Bearer"}) from None
