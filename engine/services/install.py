"""Installing consultbook on a shop, and keeping its Shopify access token valid.

Three ways to get an offline access token, all *expiring* (an hour) with a single-use
refresh token (Shopify requires expiring tokens for public apps from 2027-01-01):

* OAuth authorization-code grant: :func:`begin_install` (``/auth/install``) and
  :func:`complete_install` (``/auth/callback``) with the query HMAC checked, the shop
  domain validated and a one-time ``state`` stored server-side (hashed, bound to the
  shop, ten minutes, consumed by one conditional update);
* token exchange for the embedded admin: :func:`exchange_session_token` (an App Bridge
  session token for an offline token; also how a shop that needs re-authorization is
  reconnected without leaving the admin);
* refresh: :func:`access_token` refreshes a token that expires within five minutes.

Refresh tokens are single-use, so two processes must never spend the same one. A
refresher first takes the shop's *refresh lease* by a conditional update (``token_lease``
is free or expired); the others wait for it and read the new token. The new pair is
stored by a compare-and-set on the refresh token it replaces. Every token is stored
encrypted (engine.crypto, associated data naming the shop and the purpose).

A refresh that Shopify refuses (``invalid_grant``) marks the shop's Shopify connection as
needing re-authorization (``shops.auth_error``); :func:`shopify_status` shows it to the
merchant, and the next token exchange or OAuth install clears it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from base64 import b64decode
from binascii import Error as Base64Error
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import CursorResult, delete, or_, select, update
from sqlalchemy.orm import Session

from engine.clock import Clock
from engine.config import Config
from engine.crypto import CryptoError, Keyring
from engine.errors import ConsultbookError, Forbidden, NotFound, ValidationError
from engine.services.shops import ShopRef, access_token_aad, install_shop
from engine.services.validation import timezone as parse_timezone
from engine.shopify import decode_session_token, valid_shop_domain, verify_oauth
from engine.shopify.admin_api import AdminApi
from engine.shopify.oauth import OAuthClient, OAuthGrantError, ShopifyUnavailable, TokenSet
from engine.store import Database, new_id
from engine.store.models import Shop
from engine.store.providers_models import SHOPIFY_INSTALL, OAuthState


class Context(Protocol):
    """What the install use cases need (the composition root's Context has it; so does a
    worker's ``engine.tasks.jobs.Deps``): passed in, never imported from the wiring."""

    @property
    def config(self) -> Config: ...

    @property
    def db(self) -> Database: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def keyring(self) -> Keyring: ...


InstallDeps = Context

__all__ = [
    "InvalidShop",
    "InvalidState",
    "ShopifyReauthRequired",
    "ShopifyUnavailable",
    "access_token",
    "admin_client",
    "begin_install",
    "complete_install",
    "embedded_admin_url",
    "exchange_session_token",
    "forget_tokens",
    "refresh_expiring_tokens",
    "refresh_token_aad",
    "shopify_status",
]

log = logging.getLogger("consultbook.install")

STATE_TTL = timedelta(minutes=10)
STATE_KEEP = timedelta(days=1)  # used/expired states kept this long, for clear replay errors
REFRESH_MARGIN = timedelta(minutes=5)
LEASE_TTL = timedelta(minutes=2)  # far beyond one token request's timeout
DEFAULT_TIMEZONE = "UTC"
_ADMIN_HOST = re.compile(r"admin\.shopify\.com/store/[a-z0-9][a-z0-9-]*")


class InvalidShop(ValidationError):
    """The ``shop`` parameter is missing or not ``<name>.myshopify.com`` (400)."""

    code = "invalid_shop"


class InvalidState(Forbidden):
    """The OAuth ``state`` is missing, unknown, used, expired or for another shop (403)."""

    code = "invalid_state"


class ShopifyReauthRequired(Forbidden):
    """The shop's Shopify connection needs the merchant to authorize the app again."""

    code = "shopify_reauth_required"


def refresh_token_aad(shop_id: str) -> str:
    return f"shop:{shop_id}:refresh_token"


def _oauth(ctx: Context) -> OAuthClient:
    return OAuthClient(ctx.config.api_key, ctx.config.api_secret,
                       origin=ctx.config.origins.get("shopify_admin"))


def _rowcount(result: Any) -> int:
    """How many rows an UPDATE matched (the typed Result hides CursorResult's count)."""
    return int(cast(CursorResult[Any], result).rowcount)


def _state_id(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


def _shop_param(values: dict[str, str]) -> str:
    shop = values.get("shop", "")
    if not valid_shop_domain(shop):
        raise InvalidShop("The shop parameter must be a shop domain like "
                          "example.myshopify.com.", field="shop")
    return shop


def _signed(ctx: Context, params: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Verify the query HMAC (SignatureError: 401) and return the query as a dict.

    ``verify_oauth`` already refuses a repeated key, so the dict loses nothing.
    """
    verify_oauth(params, ctx.config.api_secret)
    return dict(params)


# ------------------------------------------------------------------ OAuth install


def begin_install(ctx: Context, params: Sequence[tuple[str, str]]) -> str:
    """``GET /auth/install``: the URL of Shopify's authorization page for this shop.

    ``params`` is the decoded query as pairs. Checks the HMAC, then the shop domain;
    stores a fresh one-time state (hashed) for the shop.
    """
    values = _signed(ctx, params)
    shop = _shop_param(values)
    state = secrets.token_urlsafe(32)
    now = ctx.clock.now()
    with ctx.db.write() as session:
        # Sweep only install states: provider sign-ins have their own lifetime.
        session.execute(delete(OAuthState).where(OAuthState.purpose == SHOPIFY_INSTALL,
                                                 OAuthState.expires_at < now - STATE_KEEP))
        session.add(OAuthState(id=_state_id(state), purpose=SHOPIFY_INSTALL,
                               shop_domain=shop, created_at=now, expires_at=now + STATE_TTL))
    return _oauth(ctx).authorize_url(
        shop, scopes=ctx.config.shopify_scopes,
        redirect_uri=f"{ctx.config.app_url.rstrip('/')}/auth/callback", state=state)


def consume_state(ctx: Context, state: str, shop: str) -> None:
    """Spend ``state`` for ``shop``, exactly once (one conditional update).

    Raises :class:`InvalidState` naming why: unknown, already used, expired, or issued
    for another shop.
    """
    if not state or len(state) > 512:
        raise InvalidState("The state parameter is missing.")
    sid = _state_id(state)
    now = ctx.clock.now()
    with ctx.db.write() as session:
        won = _rowcount(session.execute(
            update(OAuthState)
            .where(OAuthState.id == sid, OAuthState.purpose == SHOPIFY_INSTALL,
                   OAuthState.shop_domain == shop,
                   OAuthState.consumed_at.is_(None), OAuthState.expires_at > now)
            .values(consumed_at=now)
            .execution_options(synchronize_session=False)
        ))
        if won == 1:
            return
        row = session.get(OAuthState, sid)
    if row is None or row.purpose != SHOPIFY_INSTALL:
        raise InvalidState("The state parameter is unknown: start the install again.")
    if row.consumed_at is not None:
        raise InvalidState("The state parameter was already used: start the install again.")
    if row.shop_domain != shop:
        raise InvalidState("The state parameter was issued for another shop.")
    raise InvalidState("The state parameter has expired: start the install again.")


def complete_install(ctx: Context, params: Sequence[tuple[str, str]]) -> str:
    """``GET /auth/callback``: verify, spend the state, get and store the token, and
    return where to send the merchant (the app inside the Shopify admin).

    Order: HMAC (401), shop domain (400), code present (400), state (403), then the
    code grant (a refused code: 401; Shopify unreachable: :class:`ShopifyUnavailable`).
    """
    values = _signed(ctx, params)
    shop = _shop_param(values)
    code = values.get("code", "")
    if not code or len(code) > 512:
        raise ValidationError("The code parameter is missing.", field="code")
    consume_state(ctx, values.get("state", ""), shop)
    tokens = _oauth(ctx).exchange_code(shop, code)
    _save(ctx, shop, tokens)
    return embedded_admin_url(ctx, shop, values.get("host"))


def embedded_admin_url(ctx: Context, shop: str, host: str | None = None) -> str:
    """The app's page inside the Shopify admin: ``https://{host}/apps/{api_key}`` for a
    well-formed ``host`` (base64 of ``admin.shopify.com/store/<name>`` or
    ``<shop>/admin``), else ``https://{shop}/admin/apps/{api_key}``."""
    api_key = ctx.config.api_key
    if host:
        try:
            decoded = b64decode(host + "=" * (-len(host) % 4), validate=False).decode("ascii")
        except (Base64Error, ValueError):
            decoded = ""
        if _ADMIN_HOST.fullmatch(decoded) or decoded == f"{shop}/admin":
            return f"https://{decoded}/apps/{api_key}"
    return f"https://{shop}/admin/apps/{api_key}"


# ------------------------------------------------------------------ token exchange


def exchange_session_token(ctx: Context, session_token: str, *,
                           force: bool = False) -> dict[str, Any]:
    """The embedded admin's token exchange: a session token for an offline token.

    Installs the shop if it is new (or was uninstalled), reconnects one that needs
    re-authorization, and moves a shop off a non-expiring token. A shop whose
    expiring token is healthy is left alone unless ``force``. Returns
    :func:`shopify_status`. Raises ``SessionTokenError`` (401) for a bad session token,
    :class:`OAuthGrantError` (401) when Shopify refuses it.
    """
    claims = decode_session_token(session_token, api_key=ctx.config.api_key,
                                  api_secret=ctx.config.api_secret,
                                  now=int(ctx.clock.now().timestamp()))
    shop = claims.shop
    with ctx.db.read() as session:
        row = session.scalars(select(Shop).where(Shop.domain == shop)).one_or_none()
        healthy = (row is not None and row.installed and row.access_token is not None
                   and row.auth_error is None and row.refresh_token is not None)
    if not healthy or force:
        tokens = _oauth(ctx).exchange_session_token(shop, session_token)
        _save(ctx, shop, tokens)
    with ctx.db.read() as session:
        current = session.scalars(select(Shop).where(Shop.domain == shop)).one()
        return shopify_status(session, current)


# ------------------------------------------------------------------ storing tokens


def _expiry(now: datetime, seconds: int | None) -> datetime | None:
    return None if seconds is None else now + timedelta(seconds=seconds)


def _token_values(ctx: Context, shop_id: str, tokens: TokenSet) -> dict[str, Any]:
    now = ctx.clock.now()
    keyring = ctx.keyring
    refresh = tokens.refresh_token
    return {
        "access_token": keyring.encrypt(tokens.access_token, aad=access_token_aad(shop_id)),
        "access_token_expires_at": _expiry(now, tokens.expires_in),
        "refresh_token": (keyring.encrypt(refresh, aad=refresh_token_aad(shop_id))
                          if refresh else None),
        "refresh_token_expires_at": _expiry(now, tokens.refresh_token_expires_in)
        if refresh else None,
        "scopes": tokens.scope or None,
        "auth_error": None,
        "auth_error_at": None,
        "token_lease": None,
        "token_lease_until": None,
    }


def _fetch_timezone(ctx: Context, shop: str, access: str) -> str | None:
    """The shop's timezone from the Admin API, or None when it cannot be had."""
    try:
        with AdminApi(shop, access, api_version=ctx.config.shopify_api_version,
                      origin=ctx.config.origins.get("shopify_admin"),
                      timeout=(5.0, 10.0), max_attempts=3, max_wait=5.0) as api:
            return parse_timezone("timezone", api.shop_timezone())
    except ConsultbookError as exc:
        log.warning("could not read the timezone of %s (%s); using a default", shop, exc.code)
        return None


def _save(ctx: Context, shop: str, tokens: TokenSet) -> ShopRef:
    """Store a fresh token set for ``shop``, installing the shop first if needed (its
    timezone from the Admin API, else UTC). A shop that stays installed keeps its
    timezone (the merchant may have changed it in settings)."""
    with ctx.db.read() as session:
        row = session.scalars(select(Shop).where(Shop.domain == shop)).one_or_none()
        known = None if row is None else (row.installed, row.timezone)
    if known is None or not known[0]:
        tz = _fetch_timezone(ctx, shop, tokens.access_token)
        tz = tz or (known[1] if known else DEFAULT_TIMEZONE)
        ref = install_shop(ctx.db, ctx.clock, ctx.keyring, shop, tz)
    else:
        with ctx.db.read() as session:
            ref = _ref(session.scalars(select(Shop).where(Shop.domain == shop)).one())
    with ctx.db.write() as session:
        session.execute(update(Shop).where(Shop.id == ref.id)
                        .values(**_token_values(ctx, ref.id, tokens))
                        .execution_options(synchronize_session=False))
    log.info("stored a Shopify token for %s (expiring: %s)", shop,
             tokens.expires_in is not None)
    return ref


def _ref(row: Shop) -> ShopRef:
    return ShopRef(row.id, row.domain, row.timezone)


def forget_tokens(session: Session, shop_id: str) -> None:
    """Drop every Shopify token of the shop (``app/uninstalled``), in the caller's
    transaction."""
    session.execute(update(Shop).where(Shop.id == shop_id).values(
        access_token=None, access_token_expires_at=None, refresh_token=None,
        refresh_token_expires_at=None, auth_error=None, auth_error_at=None,
        token_lease=None, token_lease_until=None,
    ).execution_options(synchronize_session=False))


# ------------------------------------------------------------------ a valid token


def _load(ctx: Context, shop_id: str) -> Shop:
    with ctx.db.read() as session:
        row = session.get(Shop, shop_id)
        if row is None:
            raise NotFound("no such shop")
        session.expunge(row)
        return row


def _decrypt(ctx: Context, token: str, aad: str) -> str | None:
    try:
        return ctx.keyring.decrypt_str(token, aad=aad)
    except CryptoError:
        return None


def _mark_reauth(ctx: Context, shop_id: str, spent: str | None, reason: str) -> None:
    """Flag the connection, unless someone stored a new token pair meanwhile (then the
    stored refresh token is no longer ``spent``)."""
    now = ctx.clock.now()
    cond = Shop.refresh_token.is_(None) if spent is None else Shop.refresh_token == spent
    with ctx.db.write() as session:
        session.execute(update(Shop).where(Shop.id == shop_id, cond).values(
            auth_error=reason[:500], auth_error_at=now, refresh_token=None,
            refresh_token_expires_at=None, token_lease=None, token_lease_until=None,
        ).execution_options(synchronize_session=False))
    log.warning("the Shopify connection of shop %s needs re-authorization: %s",
                shop_id, reason)


def _claim_lease(ctx: Context, shop_id: str, owner: str) -> bool:
    now = ctx.clock.now()
    with ctx.db.write() as session:
        won = _rowcount(session.execute(
            update(Shop)
            .where(Shop.id == shop_id,
                   or_(Shop.token_lease.is_(None), Shop.token_lease_until <= now))
            .values(token_lease=owner, token_lease_until=now + LEASE_TTL)
            .execution_options(synchronize_session=False)
        ))
    return bool(won == 1)


def _release_lease(ctx: Context, shop_id: str, owner: str) -> None:
    with ctx.db.write() as session:
        session.execute(update(Shop).where(Shop.id == shop_id, Shop.token_lease == owner)
                        .values(token_lease=None, token_lease_until=None)
                        .execution_options(synchronize_session=False))


def _usable(row: Shop, now: datetime, margin: timedelta) -> bool:
    expires = row.access_token_expires_at
    return expires is None or expires - now > margin


def access_token(ctx: Context, shop_id: str, *, margin: timedelta = REFRESH_MARGIN,
                 stale: str | None = None, wait_seconds: float = 15.0) -> str:
    """A plain access token for the shop that is valid for at least ``margin`` more.

    Refreshes it (once, across all processes) when it expires sooner. ``stale`` is a
    token the Admin API just refused (401): unless the stored one is already another
    token, it is refreshed whatever its expiry says.

    Raises :class:`ShopifyReauthRequired` when the shop has no usable token and no way
    to get one without the merchant (no token, refused refresh, expired refresh token),
    :class:`ShopifyUnavailable` when Shopify cannot be reached (the current token, if
    any, has then run out), and NotFound for an unknown shop.
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        row = _load(ctx, shop_id)
        now = ctx.clock.now()
        if not row.installed:
            raise ShopifyReauthRequired(f"The shop {row.domain} has uninstalled consultbook.")
        if row.auth_error is not None:
            raise ShopifyReauthRequired(
                f"The Shopify connection of {row.domain} needs re-authorization: "
                f"{row.auth_error}")
        if row.access_token is None:
            raise ShopifyReauthRequired(f"The shop {row.domain} has no Shopify access token.")
        token = _decrypt(ctx, row.access_token, access_token_aad(row.id))
        if token is None:
            _mark_reauth(ctx, row.id, row.refresh_token,
                         "the stored access token cannot be decrypted with the current keys")
            continue
        forced = stale is not None and token == stale
        if not forced and _usable(row, now, margin):
            return token
        if row.refresh_token is None:
            if forced:
                _mark_reauth(ctx, row.id, None, "Shopify refused the access token")
                continue
            if row.access_token_expires_at is not None and row.access_token_expires_at > now:
                return token  # still valid for a moment; nothing to refresh it with
            _mark_reauth(ctx, row.id, None, "the access token expired and there is no "
                                            "refresh token")
            continue
        if row.refresh_token_expires_at is not None and row.refresh_token_expires_at <= now:
            _mark_reauth(ctx, row.id, row.refresh_token, "the refresh token has expired")
            continue

        owner = new_id("lease")
        if _claim_lease(ctx, row.id, owner):
            try:
                return _refresh(ctx, row.id, owner, margin, stale)
            except ShopifyUnavailable:
                # The refresh token was not spent (or Shopify keeps it until the new one
                # is used); the current token still serves while it lasts.
                expires = row.access_token_expires_at
                if not forced and expires is not None and expires > ctx.clock.now():
                    log.warning("could not refresh the Shopify token of %s yet", row.domain)
                    return token
                raise
            finally:
                _release_lease(ctx, row.id, owner)
        # Someone else is refreshing: wait for their new token.
        if time.monotonic() >= deadline:
            if row.access_token_expires_at is not None and row.access_token_expires_at > now \
                    and not forced:
                return token
            raise ShopifyUnavailable("Another process is still refreshing the shop's "
                                     "Shopify token; try again shortly.")
        time.sleep(0.05)


def _refresh(ctx: Context, shop_id: str, owner: str, margin: timedelta,
             stale: str | None) -> str:
    """Refresh under the lease ``owner``: re-read (another refresher may have finished
    between our read and our claim), spend the refresh token, store the new pair by a
    compare-and-set on the refresh token it replaces."""
    row = _load(ctx, shop_id)
    if row.auth_error is not None or row.refresh_token is None or row.access_token is None:
        raise ShopifyReauthRequired(
            f"The Shopify connection of {row.domain} needs re-authorization.")
    current = _decrypt(ctx, row.access_token, access_token_aad(row.id))
    if current is not None and current != stale and _usable(row, ctx.clock.now(), margin):
        return current
    spent = row.refresh_token
    refresh = _decrypt(ctx, spent, refresh_token_aad(row.id))
    if refresh is None:
        _mark_reauth(ctx, row.id, spent,
                     "the stored refresh token cannot be decrypted with the current keys")
        raise ShopifyReauthRequired(
            f"The Shopify connection of {row.domain} needs re-authorization.")
    try:
        tokens = _oauth(ctx).refresh(row.domain, refresh)
    except OAuthGrantError as exc:
        _mark_reauth(ctx, row.id, spent, f"Shopify refused to refresh the token ({exc.error})")
        raise ShopifyReauthRequired(
            f"The Shopify connection of {row.domain} needs re-authorization: Shopify "
            "refused to refresh its token.") from None
    values = _token_values(ctx, row.id, tokens)
    values["scopes"] = tokens.scope or row.scopes
    with ctx.db.write() as session:
        stored = _store_refreshed(ctx, session, row.id, spent, refresh, values)
    if stored != 1:
        # A re-authorization stored another pair meanwhile; it wins, ours is dropped.
        log.info("a newer Shopify token pair for %s was stored during a refresh", row.domain)
        latest = _load(ctx, shop_id)
        if latest.access_token is None:
            raise ShopifyReauthRequired(f"The shop {row.domain} has no Shopify access token.")
        plain = _decrypt(ctx, latest.access_token, access_token_aad(row.id))
        if plain is None:
            raise ShopifyReauthRequired(f"The shop {row.domain} has no usable Shopify token.")
        return plain
    log.info("refreshed the Shopify token of %s", row.domain)
    return tokens.access_token


# A compare-and-set that misses because a key rotation re-encrypted the spent token is
# retried; each retry means someone else committed a write in between, so this bound is
# never reached in practice (it keeps a bug from spinning forever).
_CAS_ATTEMPTS = 50


def _store_refreshed(ctx: Context, session: Session, shop_id: str, spent: str, refresh: str,
                     values: dict[str, Any]) -> int:
    """Store a refreshed pair in place of the refresh token ``spent`` (its ciphertext)
    whose plaintext is ``refresh``; returns 1 when stored, 0 when another pair won.

    The compare is on the ciphertext, and ``consultbook keys rotate`` rewrites the
    ciphertext of the same token: when the stored value is no longer ``spent`` but
    still decrypts to ``refresh``, the token we just spent was only re-encrypted, and
    the new pair must replace it (else the fresh single-use token is lost and the spent
    one kept, and the shop must re-authorize). Only a different plaintext (a
    re-authorization stored another pair, or the connection was reset) wins over ours.
    Runs inside the caller's write transaction: on PostgreSQL each UPDATE re-checks its
    WHERE against the latest committed row, on SQLite the transaction holds the lock.
    """
    expected = spent
    for _ in range(_CAS_ATTEMPTS):
        stored = _rowcount(session.execute(
            update(Shop).where(Shop.id == shop_id, Shop.refresh_token == expected)
            .values(**values).execution_options(synchronize_session=False)
        ))
        if stored == 1:
            return 1
        current = session.scalar(select(Shop.refresh_token).where(Shop.id == shop_id))
        if current is None or current == expected:
            return 0
        if _decrypt(ctx, current, refresh_token_aad(shop_id)) != refresh:
            return 0
        expected = current  # the same token under another key: try again
    raise RuntimeError(f"could not store the refreshed Shopify token of shop {shop_id}: "
                       "the row kept changing")


def refresh_expiring_tokens(ctx: Context, *, within: timedelta = timedelta(minutes=10)) -> int:
    """One beat pass: refresh every installed shop's token that expires within
    ``within``. Returns how many shops were looked at; failures are logged and (for a
    refused refresh) flagged on the shop, never raised."""
    now = ctx.clock.now()
    with ctx.db.read() as session:
        ids = list(session.scalars(select(Shop.id).where(
            Shop.installed.is_(True), Shop.auth_error.is_(None),
            Shop.refresh_token.is_not(None),
            Shop.access_token_expires_at <= now + within)))
    for shop_id in ids:
        try:
            access_token(ctx, shop_id, margin=within, wait_seconds=0)
        except ConsultbookError as exc:
            log.warning("token refresh of shop %s failed: %s", shop_id, exc.code)
    return len(ids)


def admin_client(ctx: Context, shop_id: str, **kwargs: Any) -> AdminApi:
    """An :class:`AdminApi` for the shop with a valid token; a 401 refreshes it once.

    Use it as a context manager: ``with admin_client(ctx, shop.id) as api:
    api.tag_order(order_id, ["consultbook"])``. Raises like :func:`access_token`.
    """
    row = _load(ctx, shop_id)
    token = access_token(ctx, shop_id)
    used = [token]

    def fresh() -> str | None:
        try:
            used[0] = access_token(ctx, shop_id, stale=used[0])
        except ConsultbookError:
            return None
        return used[0]

    kwargs.setdefault("api_version", ctx.config.shopify_api_version)
    kwargs.setdefault("origin", ctx.config.origins.get("shopify_admin"))
    return AdminApi(row.domain, token, on_unauthorized=fresh, **kwargs)


# ------------------------------------------------------------------ status


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def shopify_status(session: Session, shop: ShopRef | Shop | str) -> dict[str, Any]:
    """The shop's Shopify connection as the merchant sees it (``GET
    /admin/api/connections``, entry ``shopify``)::

        {"provider": "shopify", "status": "connected" | "needs_reauth" |
         "not_connected", "connected": bool, "expiring_token": bool,
         "token_expires_at": "…Z" | None, "scopes": [...], "last_error": str | None,
         "last_error_at": "…Z" | None, "reconnect": {"method": "POST",
         "path": "/auth/token-exchange"}}

    ``needs_reauth``: a refresh was refused, or the stored token cannot be used; opening
    the app in the Shopify admin (a token exchange) reconnects it.
    """
    shop_id = shop if isinstance(shop, str) else shop.id
    row = session.get(Shop, shop_id)
    if row is None:
        raise NotFound("no such shop")
    if row.auth_error is not None:
        status = "needs_reauth"
    elif row.access_token is None or not row.installed:
        status = "not_connected"
    else:
        status = "connected"
    return {
        "provider": "shopify",
        "status": status,
        "connected": status == "connected",
        "expiring_token": row.access_token_expires_at is not None,
        "token_expires_at": _iso(row.access_token_expires_at),
        "scopes": [s for s in (row.scopes or "").split(",") if s],
        "last_error": row.auth_error,
        "last_error_at": _iso(row.auth_error_at),
        "reconnect": {"method": "POST", "path": "/auth/token-exchange"},
    }
