"""Provider connections and the local calendar, as the merchant drives them.

* ``POST /admin/api/connections/<provider>/start`` (session token in the Authorization
  header, never in a URL) -- ``{"start_url", "expires_at"}``: a one-time start URL,
  good for a minute, that the admin page opens at the top level.
* ``GET /auth/<provider>/start?ticket=...`` -- spends the ticket, binds a new flow to
  this browser (a random nonce in an HttpOnly, SameSite=Lax cookie, Secure when the app
  is served over https, scoped to ``/auth/<provider>/``; its hash is stored with the
  state) and redirects to the provider's consent page.
* ``GET|POST /auth/<provider>/callback`` -- state checked (known, unexpired, single use,
  this browser's cookie), code exchanged, credentials stored encrypted; 302 back to
  ``/admin`` with the outcome. A ``form_post`` answer is a cross-site POST, which a
  SameSite=Lax cookie does not ride along with: it is bounced once through a
  same-origin auto-submitting form, which does carry the cookie.
* ``GET /admin/api/connections`` -- connections, chosen providers, problems, and which
  experts' slots are hidden because their busy time cannot be read (and why).
* ``POST /admin/api/connections/<provider>`` -- for a form connector
  (:class:`~engine.providers.FormConnector`), ``{"values": {...}}`` connects the account
  (201 with the connection); for an OAuth connector, a start URL (as ``.../start``).
  ``DELETE`` disconnects.
* ``GET|PUT /admin/api/providers/<kind>/<name>/settings`` -- the shop's values of a
  provider's declared settings (``{"values": {...}}``).

Plugins' own routes (the local calendar's busy blocks and feeds...) are registered by
the plugins through ``consultbook_register_routes`` (web.app); nothing here names one.
"""

from __future__ import annotations

import html
import secrets
from urllib.parse import parse_qsl

import falcon

from engine.bootstrap import Context
from engine.services import connections
from web.common import query_params, read_json
from web.errors import ApiError

MAX_FORM = 64 * 1024


def _redirect(resp: falcon.Response, url: str) -> None:
    resp.status = falcon.HTTP_302
    resp.location = url
    resp.set_header("Cache-Control", "no-store")
    resp.set_header("Referrer-Policy", "no-referrer")


class _Admin:
    auth = "admin"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx


COOKIE = "consultbook_oauth"
BOUNCE_FIELD = "_consultbook_bounce"


def _cookie_path(provider: str) -> str:
    return f"/auth/{provider}/"


def _secure(ctx: Context) -> bool:
    return ctx.config.app_url.startswith("https://")


class Start:
    """``GET /auth/<provider>/start?ticket=...``: a top-level navigation, authorized by
    the one-time ticket (never by a session token in the URL)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        plugins = self.ctx.plugins
        try:
            shop = connections.redeem_start(plugins, item_id, req.get_param("ticket") or "")
        except connections.InvalidState as exc:
            raise ApiError(falcon.HTTP_400, exc.code, exc.message) from None
        nonce, browser_hash = connections.new_browser_nonce()
        url = connections.start_oauth(plugins, shop, item_id, browser_hash=browser_hash)
        resp.set_cookie(COOKIE, nonce, max_age=int(connections.STATE_TTL.total_seconds()),
                        path=_cookie_path(item_id), secure=_secure(self.ctx),
                        http_only=True, same_site="Lax")
        _redirect(resp, url)


def _bounce_page(action: str, params: dict[str, str]) -> tuple[str, str]:
    """(HTML, CSP nonce): a form that re-POSTs ``params`` to ``action`` from our origin."""
    nonce = secrets.token_urlsafe(16)
    fields = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in [*params.items(), (BOUNCE_FIELD, "1")])
    page = ("<!doctype html><meta charset=utf-8><title>Connecting…</title>"
            f'<form method="post" action="{html.escape(action)}">{fields}'
            "<noscript><button type=submit>Continue</button></noscript></form>"
            f'<script nonce="{nonce}">document.forms[0].submit()</script>')
    return page, nonce


class Callback:
    """The provider's answer: a GET with the code in the query, or (``response_mode =
    form_post``, as Microsoft's is configured) a POST of a url-encoded form."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        self._finish(req, resp, item_id, query_params(req))

    def on_post(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        raw = req.bounded_stream.read(MAX_FORM + 1)
        if len(raw) > MAX_FORM:
            raise ApiError(falcon.HTTP_413, "payload_too_large", "the form is too large")
        try:
            params = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            raise ApiError(falcon.HTTP_400, "invalid_form", "the form is not UTF-8") from None
        bounced = params.pop(BOUNCE_FIELD, None) is not None
        if not _browser_nonce(req) and not bounced:
            # A cross-site form_post: SameSite=Lax kept the cookie back. Re-post the form
            # from our own origin, once; that request carries the cookie.
            page, nonce = _bounce_page(connections.callback_uri(self.ctx.plugins, item_id),
                                       params)
            resp.content_type = falcon.MEDIA_HTML
            resp.text = page
            resp.set_header("Cache-Control", "no-store")
            resp.set_header("Referrer-Policy", "no-referrer")
            resp.set_header("Content-Security-Policy",
                            f"default-src 'none'; script-src 'nonce-{nonce}'; "
                            "form-action 'self'; frame-ancestors 'none'")
            return
        self._finish(req, resp, item_id, params)

    def _finish(self, req: falcon.Request, resp: falcon.Response, item_id: str,
                params: dict[str, str]) -> None:
        plugins = self.ctx.plugins
        # The flow is over either way: the cookie has done its job.
        resp.unset_cookie(COOKIE, path=_cookie_path(item_id))
        try:
            done = connections.finish_oauth(plugins, item_id, params,
                                            browser_nonce=_browser_nonce(req))
        except connections.InvalidState as exc:
            raise ApiError(falcon.HTTP_400, exc.code, exc.message) from None
        except connections.OAuthDenied as exc:
            _redirect(resp, connections.admin_redirect(plugins, exc.shop, item_id, "error",
                                                       exc.message))
            return
        _redirect(resp, connections.admin_redirect(plugins, done.shop, item_id, "connected"))


def _browser_nonce(req: falcon.Request) -> str | None:
    values = req.get_cookie_values(COOKIE) or []
    # Several cookies of that name (another path, a planted one): try none of them
    # blindly; only a single, well-formed value counts.
    if len(values) != 1 or not 16 <= len(values[0]) <= 128:
        return None
    return values[0]


class Connections(_Admin):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = connections.overview(self.ctx.plugins, req.context.shop)


class Connection(_Admin):
    def on_post(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        """A form connector: connect with ``{"values"}``. An OAuth connector: the same as
        ``POST .../start`` (kept for clients of the first release)."""
        resp.set_header("Cache-Control", "no-store")
        if connections.is_form_connector(self.ctx.plugins, item_id):
            doc = read_json(req)
            values = doc.get("values") if isinstance(doc, dict) else None
            resp.media = connections.connect_form(self.ctx.plugins, req.context.shop, item_id,
                                                  values)
            resp.status = falcon.HTTP_201
            return
        resp.media = connections.issue_start(self.ctx.plugins, req.context.shop, item_id)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        connections.disconnect(self.ctx.plugins, req.context.shop, item_id)
        resp.status = falcon.HTTP_204


class ConnectionStart(_Admin):
    """``POST /admin/api/connections/<provider>/start``: a one-time start URL."""

    def on_post(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        resp.media = connections.issue_start(self.ctx.plugins, req.context.shop, item_id)
        resp.set_header("Cache-Control", "no-store")


class ProviderSettingsResource(_Admin):
    """``GET|PUT /admin/api/providers/<kind>/<name>/settings``."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, kind: str, name: str) -> None:
        resp.media = connections.provider_settings(self.ctx.plugins, req.context.shop, kind,
                                                   name)

    def on_put(self, req: falcon.Request, resp: falcon.Response, kind: str, name: str) -> None:
        doc = read_json(req)
        values = doc.get("values") if isinstance(doc, dict) else None
        self.ctx.plugins.save_settings(req.context.shop, kind, name, values)
        resp.media = connections.provider_settings(self.ctx.plugins, req.context.shop, kind,
                                                   name)


def register(app: falcon.App, ctx: Context) -> None:
    app.add_route("/auth/{item_id}/start", Start(ctx))
    app.add_route("/auth/{item_id}/callback", Callback(ctx))
    app.add_route("/admin/api/connections", Connections(ctx))
    app.add_route("/admin/api/connections/{item_id}", Connection(ctx))
    app.add_route("/admin/api/connections/{item_id}/start", ConnectionStart(ctx))
    app.add_route("/admin/api/providers/{kind}/{name}/settings", ProviderSettingsResource(ctx))
