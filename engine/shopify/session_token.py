"""Shopify App Bridge session tokens: the ``Authorization: Bearer`` of ``/admin/api/*``.

A session token is a JWT signed with HS256 and the app's API secret. Its claims::

    iss  https://<shop>.myshopify.com/admin   the shop's admin
    dest https://<shop>.myshopify.com         the shop (the tenant)
    aud  <API key>                            this app
    sub  <user id>, sid <session id>          the admin user and their session
    exp, nbf, iat                             POSIX seconds (a token lives about a minute)
    jti                                       a random id

Verification never reads the clock: ``now`` comes from the caller and is the only
time the checks use (PyJWT only verifies the signature here; its own clock-reading
claim checks are not used).
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.algorithms import HMACAlgorithm

from engine.errors import Unauthorized
from engine.shopify.signatures import valid_shop_domain

__all__ = ["SessionToken", "SessionTokenError", "decode_session_token", "encode_session_token"]

_ALGORITHM = "HS256"
_REQUIRED = ("exp", "nbf", "aud", "dest", "iss")


class SessionTokenError(Unauthorized):
    """A session token is malformed, badly signed, expired, or not meant for this app.

    ``str(exc)`` is a human sentence safe to return to the caller; it never contains
    the secret or the token.
    """

    code = "invalid_session_token"


@dataclass(frozen=True)
class SessionToken:
    """The verified facts of a session token.

    ``shop`` is the ``<name>.myshopify.com`` host from ``dest``: the only shop the
    request may touch. ``user_id`` (``sub``) and ``session_id`` (``sid``) are ``None``
    when the token has none. ``expires_at`` is ``exp`` in POSIX seconds.
    """

    shop: str
    user_id: str | None
    session_id: str | None
    expires_at: int


class _ShopifyHS256(HMACAlgorithm):
    """HS256 without PyJWT's short-key warning.

    Shopify, not this app, chooses the API secret's length, so a warning could only
    be noise (and under ``filterwarnings = error`` it would be a failure).
    """

    def __init__(self) -> None:
        super().__init__(HMACAlgorithm.SHA256)

    def check_key_length(self, key: bytes) -> str | None:
        return None


# HS256 is the only algorithm this instance knows, so "none", RS256, HS512 and any
# other header "alg" are refused before a signature is even computed.
_JWS = jwt.PyJWS(algorithms=[])
_JWS.register_algorithm(_ALGORITHM, _ShopifyHS256())


def _shop_from_dest(dest: Any) -> str:
    prefix = "https://"
    if isinstance(dest, str) and dest.startswith(prefix):
        shop = dest[len(prefix):]
        if valid_shop_domain(shop):
            return shop
    raise SessionTokenError("The session token's dest is not a shop's https origin.")


def _numeric_date(claims: dict[str, Any], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SessionTokenError(f"The session token's {name} claim is not a timestamp.")
    return value


def _optional_str(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None or isinstance(value, str):
        return value
    raise SessionTokenError(f"The session token's {name} claim is not a string.")


def decode_session_token(
    token: str, *, api_key: str, api_secret: str, now: int, leeway: int = 5
) -> SessionToken:
    """Verify a session token and return who it speaks for.

    Accepted only when all of these hold:

    * it is a compact JWS whose header ``alg`` is ``HS256`` and whose signature is
      HMAC-SHA256 with ``api_secret`` (any other ``alg``, ``none`` included, fails);
    * the payload is a JSON object with ``exp``, ``nbf``, ``aud``, ``dest`` and ``iss``;
    * ``aud`` is the string ``api_key``;
    * ``dest`` is ``https://<shop>`` for a :func:`valid_shop_domain` shop, with no port,
      path or trailing slash, and ``iss`` is exactly ``dest + "/admin"``;
    * ``now < exp + leeway`` and ``now >= nbf - leeway``;
    * ``sub`` and ``sid``, when present, are strings.

    Raises :class:`SessionTokenError` (a human message) on any failure, and
    ``ValueError`` when ``api_secret`` or ``api_key`` is empty or ``leeway`` negative.
    """
    if not api_secret or not api_key:
        raise ValueError("the Shopify API key and secret must not be empty")
    if leeway < 0:
        raise ValueError("leeway must not be negative")
    if not isinstance(token, str) or not token:
        raise SessionTokenError("The session token is missing.")
    try:
        decoded = _JWS.decode_complete(token, key=api_secret, algorithms=[_ALGORITHM])
        claims = json.loads(decoded["payload"])
    except jwt.InvalidSignatureError:
        raise SessionTokenError("The session token's signature is not valid.") from None
    except jwt.InvalidAlgorithmError:
        raise SessionTokenError("The session token is not signed with HS256.") from None
    except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
        # ValueError covers bad JSON and bad UTF-8 in the payload; TypeError and
        # RecursionError only odd shapes a hostile token might take.
        raise SessionTokenError("The session token is malformed.") from None
    if decoded["header"].get("alg") != _ALGORITHM:  # belt and braces: PyJWS checked it
        raise SessionTokenError("The session token is not signed with HS256.")
    if not isinstance(claims, dict):
        raise SessionTokenError("The session token's payload is not a JSON object.")

    missing = [name for name in _REQUIRED if claims.get(name) is None]
    if missing:
        raise SessionTokenError(
            "The session token lacks the claim(s) " + ", ".join(missing) + "."
        )
    exp = _numeric_date(claims, "exp")
    nbf = _numeric_date(claims, "nbf")
    if claims["aud"] != api_key:
        raise SessionTokenError("The session token was issued for another app.")
    shop = _shop_from_dest(claims["dest"])
    if claims["iss"] != f"https://{shop}/admin":
        raise SessionTokenError("The session token's issuer is not the shop in its dest.")
    if now >= exp + leeway:
        raise SessionTokenError("The session token has expired.")
    if now < nbf - leeway:
        raise SessionTokenError("The session token is not valid yet.")
    return SessionToken(
        shop=shop,
        user_id=_optional_str(claims, "sub"),
        session_id=_optional_str(claims, "sid"),
        expires_at=math.floor(exp),
    )


def encode_session_token(
    shop: str, *, api_key: str, api_secret: str, now: int, ttl: int = 60, user_id: str = "1"
) -> str:
    """A session token as Shopify would issue it for ``shop`` (the demo admin and tests).

    Claims: ``iss`` ``https://<shop>/admin``, ``dest`` ``https://<shop>``, ``aud``
    ``api_key``, ``sub`` ``user_id``, ``iat`` = ``nbf`` = ``now``, ``exp`` = ``now + ttl``,
    and random ``jti`` and ``sid``. Raises ``ValueError`` for an invalid shop domain or an
    empty secret.
    """
    if not valid_shop_domain(shop):
        raise ValueError("shop must be a <name>.myshopify.com domain")
    if not api_secret:
        raise ValueError("the Shopify API secret must not be empty")
    claims = {
        "iss": f"https://{shop}/admin",
        "dest": f"https://{shop}",
        "aud": api_key,
        "sub": user_id,
        "exp": now + ttl,
        "nbf": now,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "sid": uuid.uuid4().hex,
    }
    payload = json.dumps(claims, separators=(",", ":")).encode("utf-8")
    return _JWS.encode(payload, api_secret, algorithm=_ALGORITHM, headers={"typ": "JWT"})
