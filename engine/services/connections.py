"""Account connections (Google, Microsoft, ...): the OAuth web flow, encrypted storage of
credentials, broken-grant bookkeeping, and what the merchant sees of it all.

Credentials are one JSON document per connection, stored only as an ``engine.crypto``
token bound to ``connection:<id>:credentials``. Pending OAuth flows live in
``provider_oauth_states`` keyed by the SHA-256 of the ``state`` parameter, encrypted,
single use and short-lived.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from sqlalchemy import delete, select

from engine.errors import NotFound, ValidationError
from engine.providers.base import Grant
from engine.providers.errors import ConnectionBroken, ProviderError, ProviderNotConfigured
from engine.services.shops import ShopRef
from engine.store import new_id
from engine.store.models import Expert
from engine.store.providers_models import FreeBusyHealth, OAuthState, ProviderConnection

if TYPE_CHECKING:
    from engine.plugins import Plugins

log = logging.getLogger("consultbook.connections")

STATE_TTL = timedelta(minutes=10)
CONNECTED, BROKEN = "connected", "broken"


def iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def credentials_aad(connection_id: str) -> str:
    return f"connection:{connection_id}:credentials"


def flow_aad(state_hash: str) -> str:
    return f"oauth_state:{state_hash}:flow"


def _hash_state(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


def callback_uri(plugins: Plugins, provider: str) -> str:
    """The redirect URI registered with the provider: ``<app url>/auth/<name>/callback``."""
    return f"{plugins.config.app_url}/auth/{provider}/callback"


class StoredConnection:
    """A :class:`~engine.providers.ConnectionHandle` over one ``provider_connections`` row."""

    def __init__(self, plugins: Plugins, shop: ShopRef, row: ProviderConnection) -> None:
        self._plugins, self.shop = plugins, shop
        self.id, self.provider, self.account = row.id, row.provider, row.account
        token = row.credentials
        self._credentials: dict[str, Any] = (
            json.loads(plugins.keyring.decrypt_str(token, aad=credentials_aad(row.id)))
            if token else {})

    def credentials(self) -> dict[str, Any]:
        return dict(self._credentials)

    def save(self, credentials: dict[str, Any]) -> None:
        if credentials == self._credentials:
            return
        token = self._plugins.keyring.encrypt(json.dumps(credentials, sort_keys=True),
                                              aad=credentials_aad(self.id))
        with self._plugins.db.write() as session:
            row = session.get(ProviderConnection, self.id)
            if row is None:  # disconnected meanwhile: nothing to keep
                return
            row.credentials = token
            row.updated_at = self._plugins.clock.now()
        self._credentials = dict(credentials)

    def mark_broken(self, reason: str) -> None:
        mark_broken(self._plugins, self.shop, self.provider, reason)


def open_connection(plugins: Plugins, shop: ShopRef, provider: str) -> StoredConnection:
    """The shop's working connection to ``provider``.

    Raises ProviderNotConfigured when the shop never connected, ConnectionBroken when the
    grant was revoked (the merchant must reconnect).
    """
    with plugins.db.read() as session:
        row = session.scalars(select(ProviderConnection).where(
            ProviderConnection.shop_id == shop.id,
            ProviderConnection.provider == provider)).one_or_none()
    if row is None:
        raise ProviderNotConfigured(f"the shop has not connected its {provider} account "
                                    "(connect it in the app's settings)")
    if row.status != CONNECTED:
        raise ConnectionBroken(f"the {provider} connection is broken: {row.error} "
                               "(reconnect it in the app's settings)", provider=provider)
    return StoredConnection(plugins, shop, row)


def mark_broken(plugins: Plugins, shop: ShopRef, provider: str, reason: str) -> None:
    """Record that the shop's grant no longer works; the merchant sees ``reason``."""
    now = plugins.clock.now()
    changed = False
    with plugins.db.write() as session:
        row = session.scalars(select(ProviderConnection).where(
            ProviderConnection.shop_id == shop.id,
            ProviderConnection.provider == provider)).one_or_none()
        if row is not None and (row.status != BROKEN or row.error != reason):
            changed = row.status != BROKEN
            row.status, row.error, row.updated_at = BROKEN, reason[:2000], now
            row.broken_at = row.broken_at or now
    if changed:
        log.warning("the %s connection of %s is broken: %s", provider, shop.domain, reason)
        plugins.connection_changed(shop.domain, provider, BROKEN, reason)


# --- the OAuth web flow ----------------------------------------------------------------


def start_oauth(plugins: Plugins, shop: ShopRef, provider: str) -> str:
    """Begin connecting ``provider``: returns the URL to send the merchant's browser to."""
    connector = plugins.connector(provider)
    state = secrets.token_urlsafe(32)
    state_hash = _hash_state(state)
    url, flow = connector.start(state=state, redirect_uri=callback_uri(plugins, provider))
    now = plugins.clock.now()
    with plugins.db.write() as session:
        # Old, unfinished flows of anyone are garbage by now.
        session.execute(delete(OAuthState).where(OAuthState.expires_at < now))
        session.add(OAuthState(
            state_hash=state_hash, shop_id=shop.id, provider=provider,
            flow=plugins.keyring.encrypt(json.dumps(flow), aad=flow_aad(state_hash)),
            created_at=now, expires_at=now + STATE_TTL))
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


def finish_oauth(plugins: Plugins, provider: str, params: dict[str, str]) -> Connected:
    """The callback: check ``state`` (known, unexpired, single use, this provider), then
    exchange the code and store the credentials encrypted.

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
        if row is None or row.provider != provider:
            raise InvalidState("this sign-in link is unknown or was already used; start again")
        taken = session.execute(delete(OAuthState).where(OAuthState.state_hash == state_hash))
        if getattr(taken, "rowcount", 1) != 1:
            raise InvalidState("this sign-in link was already used; start again")
        expired = row.expires_at <= now
        flow = json.loads(plugins.keyring.decrypt_str(row.flow, aad=flow_aad(state_hash)))
        shop_row = session.get(Shop, row.shop_id)
        if shop_row is None:
            raise InvalidState("the shop of this sign-in is gone")
        shop = ShopRef(shop_row.id, shop_row.domain, shop_row.timezone)
    if expired:
        raise InvalidState("this sign-in link has expired; start again")
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
            "connect_url": f"/auth/{name}/start",
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
