"""Shopify's HMAC signatures: App Proxy queries, webhook bodies, OAuth redirects.

Every check here is pure: it never reads the clock (the caller passes ``now`` as an
integer POSIX timestamp), never logs, and compares digests in constant time with
:func:`hmac.compare_digest`. A failed check raises :class:`SignatureError` whose
message is a human sentence that names what was wrong, never a secret or a digest.

The three schemes sign different strings with the app's API secret (HMAC-SHA256):

* **App Proxy** (``signature``, hex): the query without ``signature``, repeated keys
  grouped (values joined by ``,`` in order of appearance), each written ``key=value``,
  those strings sorted (as strings, not by key: ``id-x=1`` sorts before ``id=1``
  because ``-`` < ``=``), concatenated with no separator. This is Shopify's reference
  (``query.map { |k, v| "#{k}=#{Array(v).join(',')}" }.sort.join``).
* **Webhooks** (``X-Shopify-Hmac-Sha256``, base64): the raw request body, byte for byte.
* **OAuth / admin links** (``hmac``, hex): the query without ``hmac`` and ``signature``,
  sorted by key, ``key=value`` joined by ``&``, with Shopify's escaping (see
  :func:`oauth_message`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence

from engine.errors import Unauthorized

__all__ = [
    "PROXY_IDENTITY_PARAMS",
    "SignatureError",
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

_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
# A POSIX timestamp as Shopify writes it: plain ASCII digits. ``int()`` alone would also
# take "+1", " 1", "1_000" and non-ASCII digits, none of which Shopify ever sends.
_TIMESTAMP = re.compile(r"[0-9]{1,15}")
_SHOP_DOMAIN = re.compile(r"[a-z0-9][a-z0-9-]*\.myshopify\.com")


class SignatureError(Unauthorized):
    """A Shopify signature is missing, malformed, wrong, or outside its time window.

    ``str(exc)`` is a human sentence safe to show a caller: it never contains the
    secret or any digest.
    """

    code = "invalid_signature"


def _hmac_sha256(secret: str, message: bytes) -> bytes:
    if not secret:
        # An empty secret would make every signature forgeable; that is a
        # configuration bug, not a bad request.
        raise ValueError("the Shopify API secret must not be empty")
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()


def _single(params: Sequence[tuple[str, str]], name: str) -> str:
    """The one value of ``name``; SignatureError when it is absent or repeated."""
    values = [value for key, value in params if key == name]
    if not values:
        raise SignatureError(f"The request has no {name} parameter.")
    if len(values) > 1:
        raise SignatureError(f"The request has more than one {name} parameter.")
    return values[0]


def _check_hex_digest(params: Sequence[tuple[str, str]], name: str, expected: bytes) -> None:
    given = _single(params, name)
    if not _HEX_DIGEST.fullmatch(given):
        raise SignatureError(f"The {name} parameter is not a hex SHA-256 digest.")
    # ``given`` is ASCII hex here, so compare_digest accepts it.
    if not hmac.compare_digest(given.lower(), expected.hex()):
        raise SignatureError(f"The {name} parameter does not match the request.")


# --------------------------------------------------------------------------- App Proxy


def _grouped(params: Sequence[tuple[str, str]], drop: frozenset[str]) -> dict[str, str]:
    """Keys to their values joined by ``,`` in order of appearance, without ``drop``."""
    grouped: dict[str, list[str]] = {}
    for key, value in params:
        if key not in drop:
            grouped.setdefault(key, []).append(value)
    return {key: ",".join(values) for key, values in grouped.items()}


def proxy_message(params: Sequence[tuple[str, str]]) -> str:
    """The string Shopify signs for an App Proxy request.

    ``params`` is the decoded query as ``(key, value)`` pairs, in the order they came.
    ``signature`` is dropped; a key given several times becomes one ``key=v1,v2`` with
    its values in order of appearance; the ``key=value`` strings are sorted as strings
    (code point order, which is UTF-8 byte order, as Ruby's ``sort`` compares them) and
    concatenated with no separator. Sorting the strings differs from sorting the keys
    when one key is a prefix of another (``id`` and ``id-x``).
    """
    grouped = _grouped(params, frozenset({"signature"}))
    return "".join(sorted(f"{key}={value}" for key, value in grouped.items()))


def sign_proxy(params: Mapping[str, str | Sequence[str]], secret: str) -> str:
    """The hex ``signature`` Shopify would attach to an App Proxy request with ``params``.

    A value that is a sequence of strings stands for a repeated key (``extra=1&extra=2``
    is ``{"extra": ["1", "2"]}``). A ``signature`` key, if present, is ignored. Used by
    the storefront simulator and by tests.
    """
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if isinstance(value, str):
            pairs.append((key, value))
        else:
            pairs.extend((key, item) for item in value)
    return _hmac_sha256(secret, proxy_message(pairs).encode("utf-8")).hex()


# Parameters that say who is asking: a repeat would be signed as "v1,v2", and whoever
# reads them could then take either value, so a request that repeats one is refused.
PROXY_IDENTITY_PARAMS = ("shop", "logged_in_customer_id")


def check_age(timestamp: int, *, now: int, max_age: int) -> None:
    """SignatureError unless ``abs(now - timestamp) <= max_age``."""
    age = now - timestamp
    if age > max_age:
        raise SignatureError("The request has expired: its timestamp is too old.")
    if -age > max_age:
        raise SignatureError("The request's timestamp is too far in the future.")


def verify_proxy(
    params: Sequence[tuple[str, str]], secret: str, *, now: int, max_age: int
) -> dict[str, str]:
    """Check an App Proxy request and return its signed parameters.

    ``params`` is the raw decoded query as ``(key, value)`` pairs, so repeated keys
    survive (``urllib.parse.parse_qsl(query, keep_blank_values=True)``). The request is
    accepted when

    * there is exactly one ``signature`` and it is a hex SHA-256 digest (either case);
    * it equals HMAC-SHA256(``secret``, :func:`proxy_message` of ``params``), compared in
      constant time;
    * there is exactly one ``timestamp``, written as ASCII digits, and
      ``abs(now - timestamp) <= max_age`` (too old and too far in the future both fail);
    * neither ``shop`` nor ``logged_in_customer_id`` appears more than once (each
      :data:`PROXY_IDENTITY_PARAMS`; absent is allowed here, the caller decides).

    Returns the signed parameters as a dict (repeated values joined by ``,``), without
    ``signature``. Only these values may be trusted, the ``shop`` above all.

    Raises :class:`SignatureError` on any failure, and ``ValueError`` when ``secret`` is
    empty or ``max_age`` is negative (configuration bugs, not bad requests).
    """
    if max_age < 0:
        raise ValueError("max_age must not be negative")
    expected = _hmac_sha256(secret, proxy_message(params).encode("utf-8"))
    _check_hex_digest(params, "signature", expected)

    timestamp = _single(params, "timestamp")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise SignatureError("The timestamp parameter is not a whole number of seconds.")
    check_age(int(timestamp), now=now, max_age=max_age)
    for name in PROXY_IDENTITY_PARAMS:
        if sum(1 for key, _ in params if key == name) > 1:
            raise SignatureError(f"The request has more than one {name} parameter.")
    return _grouped(params, frozenset({"signature"}))


# ---------------------------------------------------------------------------- Webhooks


def webhook_hmac(body: bytes, secret: str) -> str:
    """The base64 HMAC-SHA256 of the raw ``body``: the ``X-Shopify-Hmac-Sha256`` value."""
    return base64.b64encode(_hmac_sha256(secret, body)).decode("ascii")


def verify_webhook(body: bytes, header: str | None, secret: str) -> None:
    """Check ``X-Shopify-Hmac-Sha256`` (``header``) against the raw request ``body``.

    ``body`` must be the bytes as received, before any JSON parsing. Whitespace around
    the header value is ignored (HTTP allows it); the rest must be standard base64 of
    exactly 32 bytes. The digests are compared in constant time.

    Raises :class:`SignatureError` when the header is missing, malformed or wrong, and
    ``ValueError`` when ``secret`` is empty.
    """
    expected = _hmac_sha256(secret, body)
    if header is None or not header.strip():
        raise SignatureError("The webhook has no X-Shopify-Hmac-Sha256 header.")
    try:
        given = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError):
        # ValueError: b64decode refuses str with non-ASCII characters.
        raise SignatureError("The X-Shopify-Hmac-Sha256 header is not base64.") from None
    if len(given) != len(expected):
        raise SignatureError("The X-Shopify-Hmac-Sha256 header is not a SHA-256 digest.")
    if not hmac.compare_digest(given, expected):
        raise SignatureError("The X-Shopify-Hmac-Sha256 header does not match the body.")


# ------------------------------------------------------------------------------- OAuth


def _escape_key(key: str) -> str:
    return key.replace("%", "%25").replace("&", "%26").replace("=", "%3D")


def _escape_value(value: str) -> str:
    return value.replace("%", "%25").replace("&", "%26")


def _array_literal(values: Sequence[str]) -> str:
    """``["1", "2"]``: how Shopify renders an array parameter in the signed string.

    It is Ruby's ``Array#inspect``; ``\\`` and ``"`` are escaped the way it escapes
    them (Shopify only sends arrays of ids, which need neither).
    """
    quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return "[" + ", ".join(quoted) + "]"


def oauth_message(params: Sequence[tuple[str, str]]) -> str:
    """The string Shopify signs with ``hmac`` on OAuth redirects and admin links.

    ``params`` is the decoded query as ``(key, value)`` pairs. ``hmac`` and
    ``signature`` are dropped; the rest are sorted by key and written ``key=value``,
    joined by ``&``. In keys ``%``, ``&`` and ``=`` become ``%25``, ``%26`` and ``%3D``;
    in values ``%`` and ``&`` become ``%25`` and ``%26``.

    Array parameters (``ids[]=1&ids[]=2``, from bulk-action admin links) are signed as
    one item ``ids=["1", "2"]``: the key without ``[]`` and the values in order of
    appearance. Any other key given more than once, or a key given both as ``ids`` and
    ``ids[]``, makes the query ambiguous and raises :class:`SignatureError`.
    """
    scalars: dict[str, str] = {}
    arrays: dict[str, list[str]] = {}
    for key, value in params:
        if key in ("hmac", "signature"):
            continue
        if key.endswith("[]"):
            arrays.setdefault(key[:-2], []).append(value)
        elif key in scalars:
            raise SignatureError(f"The request repeats the {key!r} parameter.")
        else:
            scalars[key] = value
    clash = scalars.keys() & arrays.keys()
    if clash:
        name = min(clash)
        raise SignatureError(f"The request gives {name!r} both as a value and as a list.")
    rendered = dict(scalars)
    rendered.update((key, _array_literal(values)) for key, values in arrays.items())
    return "&".join(
        f"{_escape_key(key)}={_escape_value(rendered[key])}" for key in sorted(rendered)
    )


def sign_oauth(params: Sequence[tuple[str, str]] | Mapping[str, str], secret: str) -> str:
    """The hex ``hmac`` Shopify would attach to a query with ``params`` (for tests and demos).

    ``hmac`` and ``signature`` keys, if present, are ignored.
    """
    pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
    return _hmac_sha256(secret, oauth_message(pairs).encode("utf-8")).hex()


def verify_oauth(params: Sequence[tuple[str, str]], secret: str) -> None:
    """Check the ``hmac`` of an OAuth redirect (``/auth/install``, ``/auth/callback``).

    ``params`` is the decoded query as ``(key, value)`` pairs. There must be exactly one
    ``hmac``, a hex SHA-256 digest equal (in constant time) to HMAC-SHA256(``secret``,
    :func:`oauth_message` of ``params``). This says nothing about freshness or the
    shop: callers also check the one-time ``state`` and :func:`valid_shop_domain`.

    Raises :class:`SignatureError` on any failure, ``ValueError`` when ``secret`` is empty.
    """
    message = oauth_message(params)
    _check_hex_digest(params, "hmac", _hmac_sha256(secret, message.encode("utf-8")))


# -------------------------------------------------------------------------------- Shops


def valid_shop_domain(domain: str) -> bool:
    """Whether ``domain`` is a shop's own ``<name>.myshopify.com`` host name.

    Lowercase letters, digits and hyphens, not starting with a hyphen, then
    ``.myshopify.com``; nothing else (no scheme, port, path, trailing dot or
    whitespace), at most 255 characters. Callers lowercase nothing on our behalf:
    ``Shop.myshopify.com`` is refused rather than silently mapped to another tenant.
    """
    return (
        isinstance(domain, str)
        and len(domain) <= 255
        and _SHOP_DOMAIN.fullmatch(domain) is not None
    )
