"""Manage links: the token in a customer's link to their booking, and the link itself.

**The token.** ``T = base64url(HMAC-SHA256(K, "manage:" + shop id + ":" + booking id))``
(43 characters, 256 bits) where ``K`` is derived from an encryption key of
``CONSULTBOOK_ENCRYPTION_KEYS`` (:func:`_link_key`): nobody without that key can compute
it, and the database holds only ``sha256(T)`` (``claims.manage_token_hash``). A request is
let in when ``sha256(T)`` equals the stored hash (``hmac.compare_digest`` of the two
digests: timing-safe), and the booking is not redacted.

Why derived, not random: the confirmation mail, every reschedule mail and "my bookings"
all need the *same* link, and a random token stored only as a hash could be shown once
only (minting a new one for "my bookings" would kill the link in the mail). A derived
token is recomputed whenever a link is needed, so it never has to be stored or kept in a
queue payload, and the link in the first mail keeps working after any reschedule.

The hash is written the first time a link is made (:func:`link_for`; the worker does it
when it renders the confirmation). ``customers/redact`` sets it to None and stamps
``redacted_at``; a link is never made again for a redacted booking (the conditional
update below), so the token dies with the redaction. Key rotation: the stored hash
still matches a mailed token whatever the keys are now (verification needs no key);
making a link tries every configured key and, only when none produces the stored hash
(its key was retired), issues a new token with the first key.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import urlencode

from sqlalchemy import update
from sqlalchemy.orm import Session

from engine.config import Config
from engine.crypto import parse_keys
from engine.store import Database
from engine.store.models import Claim, Shop

_LINK_KEY_LABEL = b"consultbook/manage-link/v1"
# Longer than any token we make, short enough to hash cheaply whatever is sent.
MAX_TOKEN_LENGTH = 128


def _link_key(key: bytes) -> bytes:
    """The manage-link key derived from an encryption key: the encryption key itself is
    never used for two purposes."""
    return hmac.new(key, _LINK_KEY_LABEL, hashlib.sha256).digest()


def _keys(config: Config) -> list[bytes]:
    return [_link_key(k) for k in parse_keys(",".join(config.encryption_keys))]


def token_of(key: bytes, shop_id: str, booking_id: str) -> str:
    """The manage token of one booking under one (derived) key."""
    mac = hmac.new(key, f"manage:{shop_id}:{booking_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def token_hash(token: str) -> str:
    """What is stored: the sha256 hex of the token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_matches(claim: Claim, token: object) -> bool:
    """Whether ``token`` opens this booking: its sha256 equals the stored hash (compared
    in constant time) and the booking is not redacted. Anything that is not a sensible
    string is simply wrong."""
    stored = claim.manage_token_hash
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        # Still compare something, so that a missing token costs what a wrong one does.
        hmac.compare_digest(token_hash("-"), stored or token_hash(""))
        return False
    ok = hmac.compare_digest(token_hash(token), stored or token_hash(""))
    return ok and stored is not None and claim.redacted_at is None


def manage_token(session: Session, config: Config, claim: Claim) -> str | None:
    """The booking's manage token, issuing it (its hash written, in ``session``'s
    transaction) if it has none yet; None for a redacted booking, which never gets one
    again."""
    if claim.redacted_at is not None:
        return None
    keys = _keys(config)
    if claim.manage_token_hash is not None:
        for key in keys:
            token = token_of(key, claim.shop_id, claim.id)
            if hmac.compare_digest(token_hash(token), claim.manage_token_hash):
                return token
    token = token_of(keys[0], claim.shop_id, claim.id)
    digest = token_hash(token)
    # Conditional: a redaction committed meanwhile wins (nothing is issued).
    result = session.execute(update(Claim)
                             .where(Claim.id == claim.id, Claim.redacted_at.is_(None))
                             .values(manage_token_hash=digest)
                             .execution_options(synchronize_session=False))
    if not getattr(result, "rowcount", 0):
        return None
    claim.manage_token_hash = digest
    return token


def manage_url(config: Config, shop_domain: str, booking_id: str, token: str) -> str:
    """``https://{shop}{CONSULTBOOK_PROXY_PREFIX}/manage?booking=ID&token=T``."""
    query = urlencode({"booking": booking_id, "token": token})
    return f"https://{shop_domain}{config.proxy_prefix}/manage?{query}"


def link_for(session_or_db: Session | Database, config: Config, claim: Claim) -> str | None:
    """The booking's manage link, for the confirmation and reschedule mails (and my
    bookings): the same link every time. Issues the token on first use -- with a
    ``Session`` in the caller's transaction (commit it), with a ``Database`` in a write
    transaction of its own. None when the booking is redacted (no link may exist) or its
    shop is gone: the mail then goes without one."""
    if isinstance(session_or_db, Session):
        return link_in_session(session_or_db, config, claim)
    if claim.redacted_at is not None:
        return None
    with session_or_db.write(keep_cache=True) as session:
        fresh = session.get(Claim, claim.id)
        if fresh is None:
            return None
        link = link_in_session(session, config, fresh)
        claim.manage_token_hash = fresh.manage_token_hash
        return link


def link_in_session(session: Session, config: Config, claim: Claim) -> str | None:
    shop = session.get(Shop, claim.shop_id)
    if shop is None:
        return None
    token = manage_token(session, config, claim)
    return None if token is None else manage_url(config, shop.domain, claim.id, token)
