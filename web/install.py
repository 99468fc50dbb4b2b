"""Installing the app on a shop: Shopify OAuth and the embedded admin's token exchange.

* ``GET /auth/install?shop=…&hmac=…`` → 302 to Shopify's authorization page.
* ``GET /auth/callback?code=…&state=…&shop=…&hmac=…`` → 302 to the app in the admin.
* ``POST /auth/token-exchange`` (``Authorization: Bearer <session token>``, optional
  ``?force=1``) → 200 with the shop's Shopify connection status. The embedded admin calls
  it when it loads (Shopify-managed installs arrive with no token) and to reconnect a
  shop whose connection needs re-authorization.

Errors: bad HMAC 401 ``invalid_signature``; bad shop 400 ``invalid_shop``; state
unknown, used, expired or for another shop 403 ``invalid_state``; a code or session
token Shopify refuses 401; Shopify unreachable 502 ``shopify_unavailable``.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import falcon

from engine.bootstrap import Context
from engine.services import install
from engine.shopify.oauth import ShopifyUnavailable
from web.auth import bearer_token
from web.errors import ApiError


def _pairs(req: falcon.Request) -> list[tuple[str, str]]:
    return parse_qsl(req.query_string, keep_blank_values=True)


def _redirect(resp: falcon.Response, url: str) -> None:
    resp.status = falcon.HTTP_302
    resp.location = url
    resp.set_header("Cache-Control", "no-store")
    resp.set_header("Referrer-Policy", "no-referrer")


def _unavailable(exc: ShopifyUnavailable) -> ApiError:
    return ApiError(falcon.HTTP_502, exc.code, str(exc))


class Install:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _redirect(resp, install.begin_install(self.ctx, _pairs(req)))


class Callback:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            url = install.complete_install(self.ctx, _pairs(req))
        except ShopifyUnavailable as exc:
            raise _unavailable(exc) from None
        _redirect(resp, url)


class TokenExchange:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        token = bearer_token(req)
        if not token:
            raise ApiError(falcon.HTTP_401, "unauthorized",
                           "an App Bridge session token is required (Authorization: Bearer)",
                           headers={"WWW-Authenticate": "Bearer"})
        force = (req.get_param("force") or "") in {"1", "true"}
        try:
            resp.media = install.exchange_session_token(self.ctx, token, force=force)
        except ShopifyUnavailable as exc:
            raise _unavailable(exc) from None
        resp.set_header("Cache-Control", "no-store")


def register(app: falcon.App, ctx: Context) -> None:
    app.add_route("/auth/install", Install(ctx))
    app.add_route("/auth/callback", Callback(ctx))
    app.add_route("/auth/token-exchange", TokenExchange(ctx))
