"""Strict parsing of JSON documents into field values, shared by every admin use case.

A document is checked against a table of :class:`Field` s. ``mode`` says how fields
left out are treated: ``create`` and ``replace`` (PUT) give them their defaults,
``update`` (PATCH) leaves them alone. Unknown fields and wrong types are errors
naming the field; bools are never accepted as numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from engine.errors import ValidationError

Mode = Literal["create", "replace", "update"]
MISSING: Any = object()

EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f<>,;:\"()\[\]\\]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Field:
    parse: Callable[[str, Any], Any]
    default: Any = MISSING  # MISSING: required on create/replace
    nullable: bool = False


def parse_document(doc: Any, fields: Mapping[str, Field], mode: Mode) -> dict[str, Any]:
    """The parsed values of `doc`; raises ValidationError on the first problem."""
    if not isinstance(doc, dict):
        raise ValidationError("the request body must be a JSON object")
    unknown = sorted(set(doc) - set(fields))
    if unknown:
        raise ValidationError(f"unknown field {unknown[0]!r}", field=unknown[0])
    out: dict[str, Any] = {}
    for name, spec in fields.items():
        if name in doc:
            value = doc[name]
            if value is None:
                if not spec.nullable:
                    raise ValidationError(f"{name} may not be null", field=name)
                out[name] = None
            else:
                out[name] = spec.parse(name, value)
        elif mode != "update":
            if spec.default is MISSING:
                raise ValidationError(f"{name} is required", field=name)
            out[name] = spec.default() if callable(spec.default) else spec.default
    return out


def integer(lo: int, hi: int) -> Callable[[str, Any], int]:
    def parse(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError(f"{name} must be a whole number", field=name)
        if isinstance(value, float):
            if not value.is_integer():
                raise ValidationError(f"{name} must be a whole number", field=name)
            value = int(value)
        if not lo <= value <= hi:
            raise ValidationError(f"{name} must be between {lo} and {hi}", field=name)
        return int(value)

    return parse


def text(max_length: int, *, min_length: int = 1) -> Callable[[str, Any], str]:
    def parse(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise ValidationError(f"{name} must be a string", field=name)
        value = value.strip()
        if len(value) < min_length:
            raise ValidationError(f"{name} may not be empty", field=name)
        if len(value) > max_length:
            raise ValidationError(f"{name} is longer than {max_length} characters", field=name)
        if CONTROL.search(value):
            raise ValidationError(f"{name} may not contain control characters", field=name)
        return str(value)

    return parse


def email(name: str, value: Any) -> str:
    from engine.domain.mail import valid_address

    address = text(320)(name, value)
    # The same test the mailer applies (engine.domain.mail): an address accepted here is
    # one that mail can actually be sent to.
    if not EMAIL.match(address) or valid_address(address) is None:
        raise ValidationError(f"{name} is not a valid email address", field=name)
    return address


_ZONES: frozenset[str] | None = None
# Names in the zone folder that are not zones of the tz database: ``localtime`` is a
# link to the host's own zone (/etc/localtime), so it would mean whatever the machine
# running the app is set to.
_NOT_ZONES = frozenset({"localtime"})


def iana_zones() -> frozenset[str]:
    """Every zone name :func:`timezone` accepts: the tz database's, never the host's."""
    global _ZONES
    if _ZONES is None:
        _ZONES = frozenset(available_timezones()) - _NOT_ZONES
    return _ZONES


def timezone(name: str, value: Any) -> str:
    """An IANA zone name as the tz database spells it (``Europe/Berlin``, ``UTC``)."""
    if not isinstance(value, str) or value not in iana_zones():
        raise ValidationError(f"{name} must be an IANA timezone such as 'Europe/Berlin'",
                              field=name)
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"{name} {value!r} is not a known timezone", field=name) from None
    return value


SHOPIFY_ID_DIGITS = 20
_SHOPIFY_NUMBER = re.compile(r"[1-9][0-9]{0,19}")
_SHOPIFY_GID = re.compile(r"gid://shopify/[A-Za-z]{1,64}/[1-9][0-9]{0,19}")


def shopify_id(name: str, value: Any) -> str:
    """A Shopify id: a decimal string of at most 20 digits (a positive JSON integer of
    that size is accepted too), or a ``gid://shopify/<Type>/<digits>`` id. Always kept
    and returned as a string (see :func:`render_shopify_id`)."""
    if isinstance(value, bool):
        raise ValidationError(f"{name} must be a Shopify id", field=name)
    if isinstance(value, int) and 0 < value < 10 ** SHOPIFY_ID_DIGITS:
        return str(value)
    # fullmatch with [0-9] (not \d): only ASCII digits, never "²" or Arabic-Indic digits.
    if isinstance(value, str) and (_SHOPIFY_NUMBER.fullmatch(value)
                                   or _SHOPIFY_GID.fullmatch(value)):
        return value
    raise ValidationError(f"{name} must be a Shopify id (a decimal string of at most "
                          f"{SHOPIFY_ID_DIGITS} digits, or a gid://shopify/... id)",
                          field=name)


def render_shopify_id(value: str | None) -> str | None:
    """Shopify ids go back out as the strings they are stored as (the contract: decimal
    strings of at most 20 digits, returned as strings -- a 20-digit id does not fit a
    64-bit JSON number)."""
    return value


def id_list(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError(f"{name} must be a list of ids", field=name)
    if len(value) > 500:
        raise ValidationError(f"{name} has more than 500 ids", field=name)
    return list(dict.fromkeys(value))


def one_of(*choices: str) -> Callable[[str, Any], str]:
    """One of a few fixed words (``assignment``: ``least_booked`` | ``priority``)."""

    def parse(name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise ValidationError(f"{name} must be one of {', '.join(choices)}", field=name)
        return value

    return parse


PERIODS = ("day", "week", "month")
MAX_LIMIT = 10_000


def limits(name: str, value: Any) -> dict[str, int]:
    """``{"day": n, "week": n, "month": n}``, each optional, n from 1 to
    :data:`MAX_LIMIT`: sessions per local day, ISO week and calendar month
    (engine.services.capacity). ``{}`` is no limit; unknown periods are refused, so a
    typo (``"days"``) never silently means "unlimited"."""
    if not isinstance(value, dict):
        raise ValidationError(f"{name} must be an object such as {{\"day\": 3}}", field=name)
    unknown = sorted(str(k) for k in set(value) - set(PERIODS))
    if unknown:
        raise ValidationError(f"{name}: unknown period {unknown[0]!r} (day, week, month)",
                              field=f"{name}.{unknown[0]}")
    count = integer(1, MAX_LIMIT)
    return {p: count(f"{name}.{p}", value[p]) for p in PERIODS if p in value}


MAX_URL = 2000
_URL_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
URL_PATTERN = r"^https://[^\s/?#@\\]+(?:[/?#][^\s\\]*)?$"


def https_url(name: str, value: Any) -> str:
    """An absolute ``https://`` URL of at most :data:`MAX_URL` characters with a host
    name and no user info, white space, backslashes or control characters: it goes into
    the storefront's ``<img src>``, so nothing that could leave the attribute, point at
    the shop's own credentials (``user@``) or load over plain HTTP."""
    from urllib.parse import urlsplit

    if not isinstance(value, str) or not value.startswith("https://"):
        raise ValidationError(f"{name} must be an https:// URL", field=name)
    if len(value) > MAX_URL:
        raise ValidationError(f"{name} is longer than {MAX_URL} characters", field=name)
    if not value.isascii() or not re.fullmatch(URL_PATTERN, value) \
            or any(c in value for c in "\"'<>`"):
        raise ValidationError(f"{name} must be a plain https:// URL (ASCII, no spaces, "
                              "quotes or user info)", field=name)
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValidationError(f"{name} is not a valid URL", field=name) from None
    host = parts.hostname or ""
    if "@" in parts.netloc or not _URL_HOST.fullmatch(host) or "." not in host \
            or port == 0:
        raise ValidationError(f"{name} must name a host such as https://example.com/",
                              field=name)
    return value


MULTILINE_PATTERN = r"^[^\u0000-\u0008\u000b-\u001f\u007f]*$"


def plain_text(max_length: int) -> Callable[[str, Any], str | None]:
    """Free text of at most ``max_length`` characters that may span lines (newlines and
    tabs kept, ``\\r\\n`` becomes ``\\n``; no other control characters). Stripped; empty
    text is None (nothing to show)."""

    def parse(name: str, value: Any) -> str | None:
        if not isinstance(value, str):
            raise ValidationError(f"{name} must be a string", field=name)
        value = re.sub(r"\r\n?", "\n", value).strip()
        if len(value) > max_length:
            raise ValidationError(f"{name} is longer than {max_length} characters",
                                  field=name)
        if re.search(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]", value):
            raise ValidationError(f"{name} may not contain control characters", field=name)
        return value or None

    return parse
