"""Hygiene for what goes into mail headers and invitations: names, addresses, URLs, ids.

Pure functions. Customer names and addresses arrive from Shopify orders, expert names
from the admin; any of them may carry line breaks, control characters or bidi tricks
meant to forge a header, an iCalendar property or a misleading display name. Names are
cleaned (never rejected: a booking must still go out); addresses and URLs are validated
and dropped when invalid, so a bad one never reaches a header.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from email.errors import HeaderParseError
from email.headerregistry import Address
from urllib.parse import urlsplit

# Bidi embeddings/overrides/isolates: they make "moc.elpmaxe@" read as an address.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")
_SPACES = re.compile(r"\s+")
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# The shape MailMessage accepts (engine.providers.types), checked again here so a value
# that passes this module never makes a provider refuse the message.
_EMAIL_SHAPE = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+")


def clean_text(value: object, limit: int | None = 200) -> str:
    """``value`` as one line of plain text: control characters (C0 and C1, including CR,
    LF, NUL; Unicode line/paragraph separators) become a space, bidi controls and lone
    surrogates are removed, runs of whitespace collapse to one space, the ends are
    trimmed, and at most ``limit`` characters are kept (``None``: no limit).

    The one text-cleaning function of the engine: mail headers and bodies, invitations,
    the iCalendar export (:mod:`engine.services.export`) and the text stored from
    Shopify orders (:mod:`engine.services.orders`) all go through it."""
    if value is None:
        return ""
    text = str(value)
    kept = []
    for ch in text:
        if ch in _BIDI:
            continue
        category = unicodedata.category(ch)
        if category in ("Cc", "Zl", "Zp"):
            kept.append(" ")
        elif category == "Cs":  # lone surrogates cannot be encoded
            continue
        else:
            kept.append(ch)
    cleaned = _SPACES.sub(" ", "".join(kept)).strip()
    return cleaned if limit is None else cleaned[:limit].strip()


def clean_name(value: object, limit: int = 120) -> str | None:
    """A display name safe for a ``From``/``To`` phrase or an iCalendar ``CN``; ``None``
    when nothing printable is left. Double quotes and angle brackets go too: a name is
    never allowed to look like an address."""
    text = clean_text(value, limit * 2).replace('"', "'").replace("<", "(").replace(">", ")")
    text = text.strip()[:limit].strip()
    return text or None


def valid_address(value: object) -> str | None:
    """The address as a plain ``local@domain`` if it is one, else ``None``.

    Rejects anything with whitespace or control characters (no header injection through
    an address), display-name forms (``Name <a@b>``), several addresses, and domains
    without a dot. Parsed with :class:`email.headerregistry.Address`.
    """
    if not isinstance(value, str):
        return None
    raw = value.strip()
    if not raw or len(raw) > 254 or any(unicodedata.category(c) in ("Cc", "Zl", "Zp", "Zs")
                                        or c in _BIDI for c in raw):
        return None
    if not _EMAIL_SHAPE.fullmatch(raw):
        return None
    try:
        address = Address(addr_spec=raw)
    except (ValueError, IndexError, HeaderParseError):
        return None
    if not address.username or "." not in address.domain or address.addr_spec != raw:
        return None
    if len(address.username) > 64:
        return None
    return address.addr_spec


def safe_url(value: object) -> str | None:
    """An ``http(s)`` URL with a host and nothing that could break a line, else ``None``."""
    if not isinstance(value, str):
        return None
    raw = value.strip()
    if not raw or len(raw) > 2000 or any(unicodedata.category(c) in ("Cc", "Zl", "Zp", "Zs")
                                         or c in _BIDI or c in "<>\"'\\" for c in raw):
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return raw


def safe_uid(booking_id: str, domain: str = "consultbook") -> str:
    """The iCalendar ``UID`` of a booking: ``<booking id>@consultbook``, stable across
    every message about that booking. An id outside ``[A-Za-z0-9_-]`` is hashed, so the
    UID never carries anything a calendar client could misread."""
    local = booking_id if _SAFE_ID.fullmatch(booking_id or "") else \
        "h" + hashlib.sha256(str(booking_id).encode("utf-8")).hexdigest()[:32]
    return f"{local}@{domain}"
