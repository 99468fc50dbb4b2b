"""Account connections (Google, Microsoft, ...): the OAuth web flow, encrypted storage of
credentials, broken-grant bookkeeping, and what the merchant sees of it all.

Credentials are one JSON document per connection, stored only as an ``engine.crypto``
token bound to ``connection:<id>:credentials``. Pending OAuth flows live in
``oauth_states`` (purpose: the provider's name) keyed by the SHA-256 of the ``state``
parameter, encrypted, single use and short-lived.

A flow is bound to the browser that started it, and no session token ever travels in
a URL:

1. the admin page asks ``POST /admin/api/connections/<provider>/start`` (session token
   in the Authorization header) for a start URL: :func:`issue_start` stores the SHA-256
   of a random one-time ticket (``START_TTL``) and returns ``/auth/<provider>/start?
   ticket=...``;
2. the browser opens it: :func:`redeem_start` spends the ticket (first use only) and
   :func:`start_oauth` stores the flow with the SHA-256 of a fresh random browser nonce;
   the web layer puts the nonce in an HttpOnly cookie and redirects to the provider;
3. the callback (:func:`finish_oauth`) spends the state and requires the cookie's nonce
   to hash to the stored value. A callback from another browser (a link an attacker
   sends, to connect the attacker's account to the victim's shop), without the cookie,
   or replayed, is refused and stores nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import delete, select

from engine.errors import NotFound, ValidationError
from engine.providers.base import Connector, FormConnector, Grant
from engine.providers.errors import ConnectionBroken, ProviderError, ProviderNotConfigured
from engine.services.providers import (
    BROKEN,
    CONNECTED,
    Plugins,
    StoredConnection,
    credentials_aad,
    describe_fields,
    mark_broken,
    open_connection,
    validate_form,
)
from engine.services.shops import ShopRef
from engine.store import new_id
from engine.store.models import Expert
from engine.store.providers_models import (
    SHOPIFY_INSTALL,
    FreeBusyHealth,
    OAuthStart,
    OAuthState,
    ProviderConnection,
)

__all__ = [
    "BROKEN",
    "CONNECTED",
    "StoredConnection",
    "credentials_aad",
    "mark_broken",
    "open_connection",
]

log = logging.getLogger("consultbook.connections")

STATE_TTL = timedelta(minutes=10)
START_TTL = timedelta(seconds=60)  # a start URL is opened right after it is issued


def iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def flow_aad(state_hash: str) -> str:
    return f"oauth_state:{state_hash}:flow"


def _hash_state(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


def callback_uri(plugins: Plugins, provider: str) -> str:
    """The redirect URI registered with the provider: ``<app url>/auth/<name>/callback``."""
    return f"{plugins.config.app_url}/auth/{provider}/callback"


# --- the OAuth web flow ----------------------------------------------------------------


def issue_start(plugins: Plugins, shop: ShopRef, provider: str) -> dict[str, str]:
    """A one-time start URL for connecting ``provider`` (``{"start_url", "expires_at"}``).

    Raises NotFound for an unknown provider (before anything is stored)."""
    plugins.connector(provider)
    ticket = secrets.token_urlsafe(32)
    now = plugins.clock.now()
    with plugins.db.write() as session:
        session.execute(delete(OAuthStart).where(OAuthStart.expires_at < now))
        session.add(OAuthStart(ticket_hash=_hash_state(ticket), shop_id=shop.id,
                               provider=provider, created_at=now,
                               expires_at=now + START_TTL))
    query = urlencode({"ticket": ticket})
    return {"start_url": f"{plugins.config.app_url}/auth/{provider}/start?{query}",
            "expires_at": iso(now + START_TTL)}


def redeem_start(plugins: Plugins, provider: str, ticket: str) -> ShopRef:
    """Spend a start ticket (first use only, unexpired, this provider); its shop.

    Raises InvalidState otherwise; a ticket is dead after any use, even a refused one."""
    if not ticket or len(ticket) > 512:
        raise InvalidState("this connect link is not valid; start again from the app")
    ticket_hash = _hash_state(ticket)
    now = plugins.clock.now()
    from engine.store.models import Shop

    with plugins.db.write() as session:
        row = session.get(OAuthStart, ticket_hash)
        if row is None:
            raise InvalidState("this connect link is unknown or was already used; "
                               "start again from the app")
        taken = session.execute(delete(OAuthStart).where(OAuthStart.ticket_hash == ticket_hash))
        if getattr(taken, "rowcount", 1) != 1:
            raise InvalidState("this connect link was already used; start again from the app")
        if row.provider != provider or row.expires_at <= now:
            failure = "is for another provider" if row.provider != provider else "has expired"
            shop_row = None
        else:
            failure = ""
            shop_row = session.get(Shop, row.shop_id)
        shop = ShopRef(shop_row.id, shop_row.domain, shop_row.timezone) if shop_row else None
    if failure:
        raise InvalidState(f"this connect link {failure}; start again from the app")
    if shop is None:
        raise InvalidState("the shop of this connect link is gone")
    return shop


def new_browser_nonce() -> tuple[str, str]:
    """(nonce for the browser's cookie, its hash to store with the state)."""
    nonce = secrets.token_urlsafe(32)
    return nonce, _hash_state(nonce)


def start_oauth(plugins: Plugins, shop: ShopRef, provider: str, *, browser_hash: str) -> str:
    """Begin connecting ``provider``: returns the URL to send the merchant's browser to.

    ``browser_hash`` is the SHA-256 of the nonce the browser will present at the
    callback (:func:`new_browser_nonce`); it must not be empty."""
    if not browser_hash:
        raise ValueError("an OAuth flow must be bound to a browser")
    connector = plugins.connector(provider)
    state = secrets.token_urlsafe(32)
    state_hash = _hash_state(state)
    url, flow = connector.start(state=state, redirect_uri=callback_uri(plugins, provider))
    now = plugins.clock.now()
    with plugins.db.write() as session:
        # Old, unfinished flows of anyone are garbage by now.
        # (Install states are kept longer by their own sweep, for clear replay errors.)
        session.execute(delete(OAuthState).where(OAuthState.purpose != SHOPIFY_INSTALL,
                                                 OAuthState.expires_at < now))
        session.add(OAuthState(
            id=state_hash, purpose=provider, shop_id=shop.id,
            flow=plugins.keyring.encrypt(json.dumps(flow), aad=flow_aad(state_hash)),
            browser_hash=browser_hash, created_at=now, expires_at=now + STATE_TTL))
    return url


class InvalidState(ValidationError):
    code = "invalid_state"


class OAuthDenied(ValidationError):
    """The merchant declined, or the provider refused the code. ``shop`` is known (the
    state was valid), so the browser can be sent back to that shop's admin."""

    code = "oauth_denied"

    def __init__(self, message: str, *, shop: ShopRef | None = None) -> None:
        super().__init__(message)
        self.shop = shop


@dataclass(frozen=True)
class Connected:
    shop: ShopRef
    provider: str
    account: str | None


def finish_oauth(plugins: Plugins, provider: str, params: dict[str, str], *,
                 browser_nonce: str | None) -> Connected:
    """The callback: check ``state`` (known, unexpired, single use, this provider, and
    started by this browser: ``browser_nonce`` is the cookie's value and must hash to the
    stored one), then exchange the code and store the credentials encrypted. The state
    is spent by any use, also a refused one.

    Raises InvalidState, OAuthDenied (the merchant declined, or the provider refused
    the code) or NotFound (an unknown provider).
    """
    connector = plugins.connector(provider)
    state = params.get("state", "")
    if not state or len(state) > 512:
        raise InvalidState("the sign-in answer has no valid state; start again")
    state_hash = _hash_state(state)
    now = plugins.clock.now()
    from engine.store.models import Shop

    with plugins.db.write() as session:
        row = session.get(OAuthState, state_hash)
        if row is None or row.purpose != provider or row.flow is None or row.shop_id is None:
            raise InvalidState("this sign-in link is unknown or was already used; start again")
        taken = session.execute(delete(OAuthState).where(OAuthState.id == state_hash,
                                                      OAuthState.purpose == provider))
        if getattr(taken, "rowcount", 1) != 1:
            raise InvalidState("this sign-in link was already used; start again")
        expired = row.expires_at <= now
        same_browser = bool(browser_nonce) and bool(row.browser_hash) and hmac.compare_digest(
            _hash_state(browser_nonce or ""), row.browser_hash)
        flow = json.loads(plugins.keyring.decrypt_str(row.flow, aad=flow_aad(state_hash)))
        shop_row = session.get(Shop, row.shop_id)
        if shop_row is None:
            raise InvalidState("the shop of this sign-in is gone")
        shop = ShopRef(shop_row.id, shop_row.domain, shop_row.timezone)
    if expired:
        raise InvalidState("this sign-in link has expired; start again")
    if not same_browser:
        raise InvalidState("this sign-in was not started in this browser; start again "
                           "from the app")
    if params.get("error"):
        reason = params.get("error_description") or params["error"]
        raise OAuthDenied(f"{provider} sign-in was not completed: {reason[:300]}", shop=shop)
    try:
        grant = connector.finish(flow=flow, params=params,
                                 redirect_uri=callback_uri(plugins, provider))
    except ProviderError as exc:
        raise OAuthDenied(f"{provider} refused the sign-in: {exc.message}", shop=shop) from None
    store_connection(plugins, shop, provider, grant)
    return Connected(shop, provider, grant.account)


def store_connection(plugins: Plugins, shop: ShopRef, provider: str, grant: Grant) -> str:
    """Create or replace the shop's connection to ``provider`` with ``grant`` (encrypted);
    returns the connection id. Clears any broken state and the experts' free/busy
    health, so what failed before is tried again at once."""
    now = plugins.clock.now()
    with plugins.db.write() as session:
        conn = session.scalars(select(ProviderConnection).where(
            ProviderConnection.shop_id == shop.id,
            ProviderConnection.provider == provider)).one_or_none()
        if conn is None:
            conn = ProviderConnection(id=new_id("conn"), shop_id=shop.id, provider=provider,
                                      connected_at=now)
            session.add(conn)
        conn.account = grant.account
        conn.status, conn.error, conn.broken_at = CONNECTED, None, None
        conn.scopes = " ".join(grant.scopes) or None
        conn.credentials = plugins.keyring.encrypt(json.dumps(grant.credentials, sort_keys=True),
                                                   aad=credentials_aad(conn.id))
        conn.connected_at = conn.updated_at = now
        session.execute(delete(FreeBusyHealth).where(FreeBusyHealth.shop_id == shop.id))
        conn_id = conn.id
    plugins.connection_changed(shop.domain, provider, CONNECTED, None)
    return conn_id


def disconnect(plugins: Plugins, shop: ShopRef, provider: str) -> None:
    """Forget the shop's connection to ``provider`` (NotFound if there is none)."""
    with plugins.db.write() as session:
        result = session.execute(delete(ProviderConnection).where(
            ProviderConnection.shop_id == shop.id, ProviderConnection.provider == provider))
        if not getattr(result, "rowcount", 0):
            raise NotFound(f"the shop has no {provider} connection")
    plugins.connection_changed(shop.domain, provider, "disconnected", None)


def admin_redirect(plugins: Plugins, shop: ShopRef | None, provider: str, status: str,
                   message: str | None = None) -> str:
    """Where the browser goes after a callback: the embedded admin, with the outcome."""
    query = {"connection": provider, "status": status}
    if shop is not None:
        query["shop"] = shop.domain
    if message:
        query["message"] = message[:300]
    return f"{plugins.config.app_url}/admin?{urlencode(query)}"


# --- form connectors -------------------------------------------------------------------


def is_form_connector(plugins: Plugins, provider: str) -> bool:
    return isinstance(plugins.registry.connector(provider), type) and issubclass(
        plugins.registry.connector(provider) or Connector, FormConnector)


def connect_form(plugins: Plugins, shop: ShopRef, provider: str, values: Any) -> dict[str, Any]:
    """``POST /admin/api/connections/<provider>`` for a form connector: check ``values``
    against its fields (ValidationError naming the field), let the connector check the
    account (``connect``: ProviderRejected -> 422 with its sentence, ProviderUnavailable
    -> 503), then store the grant encrypted exactly like an OAuth one."""
    connector = plugins.connector(provider)
    if not isinstance(connector, FormConnector):
        raise ValidationError(f"{provider} connects through its sign-in page, not a form")
    clean = validate_form(connector.fields, values)
    try:
        grant = connector.connect(values=clean)
    except ProviderError as exc:
        raise ValidationError(f"{connector.label or provider}: {exc.message}",
                              code="connection_refused") from None
    store_connection(plugins, shop, provider, grant)
    return {"provider": provider, "status": CONNECTED, "account": grant.account}


def provider_settings(plugins: Plugins, shop: ShopRef, kind: str, name: str) -> dict[str, Any]:
    """A provider's declared settings (fields) and the shop's values of them."""
    cls = plugins.registry.get(kind, name) if kind in ("calendar", "video", "mail") else None
    if cls is None:
        raise NotFound(f"no {kind} provider {name!r}")
    return {"kind": kind, "provider": name, "label": cls.label or name,
            "fields": describe_fields(cls.settings),
            "values": dict(plugins.settings_of(shop.id, cls))}


# --- what the merchant sees --------------------------------------------------------------


def overview(plugins: Plugins, shop: ShopRef) -> dict[str, Any]:
    """``GET /admin/api/connections``: connections, the providers in use and whether each
    expert's busy time can be read (and if not, why their slots are hidden)."""
    sp = plugins.shop_providers(shop)
    with plugins.db.read() as session:
        rows = {r.provider: r for r in session.scalars(select(ProviderConnection).where(
            ProviderConnection.shop_id == shop.id))}
        health = session.execute(
            select(FreeBusyHealth, Expert.name)
            .join(Expert, Expert.id == FreeBusyHealth.expert_id)
            .where(FreeBusyHealth.shop_id == shop.id, Expert.deleted_at.is_(None))
            .order_by(Expert.name, Expert.id)).all()
    connections = []
    for name in plugins.registry.connector_names():
        cls = plugins.registry.connector(name)
        assert cls is not None
        row = rows.get(name)
        reason = cls.check_config(plugins.config)
        connections.append({
            "provider": name,
            "label": cls.label or name,
            "status": row.status if row else "not_connected",
            "account": row.account if row else None,
            "error": row.error if row else None,
            "connected_at": iso(row.connected_at) if row else None,
            "broken_at": iso(row.broken_at) if row and row.broken_at else None,
            "available": reason is None,
            "unavailable_reason": reason,
            # OAuth: POST it (session token in the header) for a one-time start URL.
            # Form: POST {"values": {...}} to it to connect.
            "connect": "form" if issubclass(cls, FormConnector) else "oauth",
            "fields": describe_fields(getattr(cls, "fields", ())),
            "help": str(getattr(cls, "help", "") or ""),
            "connect_url": (f"/admin/api/connections/{name}" if issubclass(cls, FormConnector)
                            else f"/admin/api/connections/{name}/start"),
        })
    problems = []
    for choice_kind, choice in (("calendar", sp.choice.calendar), ("video", sp.choice.video),
                                ("mail", sp.choice.mail)):
        problem = _problem(plugins, sp, choice_kind, choice)
        if problem:
            problems.append({"kind": choice_kind, "provider": choice, "message": problem})
    from engine.services.install import shopify_status

    with plugins.db.read() as session:
        shopify = shopify_status(session, shop)
    return {
        "shopify": shopify,
        "calendar_provider": sp.choice.calendar,
        "video_provider": sp.choice.video,
        "mail_provider": sp.choice.mail,
        "providers": {k: plugins.registry.names(k) for k in ("calendar", "video", "mail")},
        # What the admin renders for each chosen provider: its label and settings form.
        "provider_settings": [
            provider_settings(plugins, shop, kind, name)
            for kind, name in (("calendar", sp.choice.calendar), ("video", sp.choice.video),
                               ("mail", sp.choice.mail))
            if (chosen := plugins.registry.get(kind, name)) is not None and chosen.settings],
        "connections": connections,
        "problems": problems,
        "experts": [{
            "id": h.expert_id, "name": name, "provider": h.provider, "status": h.status,
            "reason": h.reason,
            "last_synced_at": iso(h.last_success_at) if h.last_success_at else None,
        } for h, name in health],
    }


def _problem(plugins: Plugins, sp: Any, kind: str, name: str) -> str | None:
    """Why the shop's chosen provider cannot work right now, or None."""
    if kind == "video" and name == "none":
        return None
    cls = plugins.registry.get(kind, name)
    if cls is None:
        return f"the {kind} provider {name!r} is not installed"
    reason = cls.check_config(plugins.config)
    if reason:
        return reason
    if kind == "video":
        calendar = plugins.registry.get("calendar", sp.choice.calendar)
        if calendar is not None and name in getattr(calendar, "embeds_video", ()):
            return None
    if cls.connection:
        try:
            open_connection(plugins, sp.shop, cls.connection)
        except (ProviderNotConfigured, ConnectionBroken) as exc:
            return exc.message
    return None
