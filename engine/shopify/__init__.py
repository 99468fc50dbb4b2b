"""Shopify's trust boundary: request signatures, session tokens, shop domains.

Everything here is pure (no I/O, no clock reads): callers pass ``now``.
"""

from __future__ import annotations

from engine.shopify.session_token import (
    SessionToken,
    SessionTokenError,
    decode_session_token,
    encode_session_token,
)
from engine.shopify.signatures import (
    SignatureError,
    oauth_message,
    proxy_message,
    sign_oauth,
    sign_proxy,
    valid_shop_domain,
    verify_oauth,
    verify_proxy,
    verify_webhook,
    webhook_hmac,
)

__all__ = [
    "SessionToken",
    "SessionTokenError",
    "SignatureError",
    "decode_session_token",
    "encode_session_token",
    "oauth_message",
    "proxy_message",
    "sign_oauth",
    "sign_proxy",
    "valid_shop_domain",
    "verify_oauth",
    "verify_proxy",
    "verify_webhook",
    "webhook_hmac",
]
