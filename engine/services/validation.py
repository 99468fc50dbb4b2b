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


def timezone(name: str, value: Any) -> str:
    """An IANA zone name as the tz database spells it (``Europe/Berlin``, ``UTC``)."""
    global _ZONES
    if _ZONES is None:
        _ZONES = frozenset(available_timezones())
    if not isinstance(value, str) or value not in _ZONES:
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
