"""The request boundary: what a request may carry before anything reads it.

One place checks every text that comes in, so that no malformed input reaches a service
or the database as something it cannot handle (psycopg refuses a NUL in any text; no
driver can encode a lone surrogate; a deeply nested body exhausts the recursion limit):

* :class:`InputGuard` (Falcon middleware) refuses, for every route, a path or a query
  parameter holding NUL, another C0 control or DEL where they cannot belong, or a lone
  surrogate (``400 invalid_request`` naming the parameter); an over-long query string
  (``414``); a declared body over the route's limit (``413 payload_too_large``, nothing
  read); and a URI template field (an id in the path) longer than any id can be
  (``404 not_found``: it names nothing, like any unknown id).
* :func:`read_body` reads a body up to a limit and no further, with or without a
  ``Content-Length`` (chunked bodies under gunicorn, which marks its input terminated).
* :func:`parse_json` is the strict JSON parser of admin and proxy bodies: UTF-8, no
  ``NaN``/``Infinity``, finite numbers, nesting at most :data:`MAX_DEPTH`, and no NUL,
  C0 control (tab, CR and LF excepted) or lone surrogate in any string or key
  (``400`` naming where).
* :func:`parse_webhook_json` is the lenient parser of Shopify deliveries, which carry a
  valid HMAC and must never be refused for their content (the contract: their
  well-formed lines are still decided): the parsed payload goes through
  :func:`sanitize` -- NUL and other controls stripped, lone surrogates replaced, nesting
  beyond :data:`MAX_WEBHOOK_DEPTH` and numbers beyond 64 bits or non-finite dropped to
  ``null`` -- before anything reads it. :func:`clean_header` does the same for header
  values.

The database layer has a last safety net of its own (``engine.store.db``): a value that
still slips through is a ValidationError (400), never a driver error.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import falcon

from web.errors import ApiError

MAX_BODY = 1 << 20  # 1 MiB (contract): far beyond any legitimate admin or storefront body
MAX_WEBHOOK_BODY = 10 << 20  # 10 MiB (contract)
MAX_QUERY = 16 << 10  # far beyond any signed App Proxy query
MAX_PATH_FIELD = 128  # ids this app makes are ~20 characters; provider names are short
MAX_DEPTH = 32  # the deepest legitimate admin document (a schedule) is 4 levels
MAX_WEBHOOK_DEPTH = 64  # an order's line-item properties sit 5 levels deep
WEBHOOK_PATH = "/webhooks"

# Controls that never belong in a path, a query key or a JSON key: C0 and DEL. Lone
# surrogates are not text at all.
_BAD_STRICT = re.compile("[\\x00-\\x1f\\x7f\\ud800-\\udfff]")
# In values (query values, JSON strings), tab, LF and CR may belong (a textarea answer).
_BAD_VALUE = re.compile("[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f\\ud800-\\udfff]")
# What a webhook's text loses: every control but tab, LF and CR.
_STRIP = re.compile("[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]")
_SURROGATE = re.compile("[\\ud800-\\udfff]")
_INT64_DIGITS = 19


def _invalid(message: str) -> ApiError:
    return ApiError(falcon.HTTP_400, "invalid_request", message)


def _too_large(limit: int) -> ApiError:
    return ApiError(falcon.HTTP_413, "payload_too_large",
                    f"the request body is larger than {limit // (1 << 20)} MiB")


def _shown(name: str) -> str:
    """A parameter name fit for an error message (controls escaped, kept short)."""
    return ascii(name[:40])


class InputGuard:
    """Falcon middleware: refuse malformed paths, queries and declared body sizes before
    any resource (or the auth middleware) sees them. Install it first."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if _BAD_STRICT.search(req.path):
            raise _invalid("the path contains a control character or invalid text")
        if len(req.query_string) > MAX_QUERY:
            raise ApiError(falcon.HTTP_414, "uri_too_long", "the query string is too long")
        for name, value in req.params.items():
            if _BAD_STRICT.search(name):
                raise _invalid(f"the query parameter {_shown(name)} has an invalid name")
            values = value if isinstance(value, list) else (value,)
            for item in values:
                if isinstance(item, str) and _BAD_VALUE.search(item):
                    raise _invalid(f"the query parameter {_shown(name)} contains a control "
                                   "character or invalid text")
        length = req.content_length
        limit = body_limit(req)
        if length is not None and length > limit:
            raise _too_large(limit)

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         params: dict[str, Any]) -> None:
        for value in params.values():
            if isinstance(value, str) and len(value) > MAX_PATH_FIELD:
                raise ApiError(falcon.HTTP_404, "not_found", "there is nothing at this address")


def body_limit(req: falcon.Request) -> int:
    """The largest body the route takes: 10 MiB for Shopify's webhooks, else 1 MiB."""
    return MAX_WEBHOOK_BODY if req.path == WEBHOOK_PATH else MAX_BODY


def read_body(req: falcon.Request, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes, else ``413 payload_too_large`` having
    read no more than ``limit + 1`` bytes.

    Without a ``Content-Length`` (a chunked body), the body is read only when the server
    marks its input terminated (gunicorn does: it de-chunks and ends the stream);
    otherwise reading could block, and the body counts as empty, as Falcon has it.
    """
    length = req.content_length
    if length is not None:
        if length > limit:
            raise _too_large(limit)
        raw: bytes = req.bounded_stream.read(limit + 1)
    elif req.env.get("wsgi.input_terminated"):
        raw = req.stream.read(limit + 1)
    else:
        raw = b""
    if len(raw) > limit:
        raise _too_large(limit)
    return raw


# --------------------------------------------------------------------------- strict JSON


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number out of range")
    return value


def _where(path: tuple[str | int, ...]) -> str:
    if not path:
        return "the request body"
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return _shown(out).strip("'\"")


def check_document(doc: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Refuse (400) a parsed JSON document nested deeper than ``max_depth`` or holding a
    control character (tab, CR and LF excepted in values) or a lone surrogate in any key
    or string. Iterative: no document can exhaust the stack."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(doc, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if _BAD_VALUE.search(item):
                raise _invalid(f"{_where(path)} contains a control character or invalid text")
        elif isinstance(item, dict | list):
            if len(path) >= max_depth:
                raise _invalid(f"the request body is nested more than {max_depth} levels deep")
            if isinstance(item, dict):
                for key, value in item.items():
                    if _BAD_STRICT.search(key):
                        raise _invalid(f"{_where(path)} has a key with a control character "
                                       "or invalid text")
                    stack.append((value, (*path, key)))
            else:
                stack.extend((value, (*path, i)) for i, value in enumerate(item))


def parse_json(raw: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """``raw`` as a strict JSON document (see the module docstring); ``400 invalid_json``
    when it is not UTF-8 JSON, ``400 invalid_request`` when it holds what no field takes."""
    if not raw.strip():
        raise ApiError(falcon.HTTP_400, "invalid_json", "the request body must be JSON")
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant,
                         parse_float=_finite_float)
    except RecursionError:
        raise _invalid(f"the request body is nested more than {max_depth} levels deep"
                       ) from None
    except (UnicodeDecodeError, ValueError):
        raise ApiError(falcon.HTTP_400, "invalid_json",
                       "the request body is not valid UTF-8 JSON") from None
    check_document(doc, max_depth=max_depth)
    return doc


# --------------------------------------------------------------------------- webhooks


def clean_text(value: str) -> str:
    """``value`` without NUL and other controls (tab, CR, LF kept), lone surrogates
    replaced by U+FFFD: text any column can store."""
    if _BAD_VALUE.search(value) is None:
        return value
    return _SURROGATE.sub("\ufffd", _STRIP.sub("", value))


def clean_header(value: str | None, max_length: int) -> str | None:
    """A header value as text fit to store: cleaned, stripped, at most ``max_length``
    characters; ``None`` when nothing is left."""
    if value is None:
        return None
    cleaned = clean_text(value).strip()[:max_length]
    return cleaned or None


def _webhook_int(text: str) -> int | None:
    # Shopify's numbers (ids, quantities) fit in 64 bits; a longer run of digits is
    # dropped rather than allowed to fail the whole delivery (int() refuses over 4300).
    digits = len(text) - (text[0] == "-")
    return int(text) if digits <= _INT64_DIGITS else None


def _webhook_float(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


def sanitize(doc: Any, *, max_depth: int = MAX_WEBHOOK_DEPTH) -> Any:
    """A copy of a parsed webhook payload that anything may read and store: every string
    and key through :func:`clean_text`, containers deeper than ``max_depth`` replaced by
    ``None``, integers beyond 64 bits replaced by ``None``. Iterative."""

    def leaf(value: Any) -> Any:
        if isinstance(value, str):
            return clean_text(value)
        if type(value) is int and not -(1 << 63) <= value < (1 << 63):
            return None
        return value

    if not isinstance(doc, dict | list):
        return leaf(doc)
    root: Any = {} if isinstance(doc, dict) else []
    stack: list[tuple[Any, Any, int]] = [(doc, root, 1)]
    while stack:
        source, target, depth = stack.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, value in items:
            if isinstance(value, dict | list):
                if depth >= max_depth:
                    copy: Any = None
                else:
                    copy = {} if isinstance(value, dict) else []
                    stack.append((value, copy, depth + 1))
            else:
                copy = leaf(value)
            if isinstance(target, dict):
                target[clean_text(str(key))] = copy
            else:
                target.append(copy)
    return root


# A JSON string token or a bracket: what a depth-capping scan has to look at.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def cap_depth(text: str, max_depth: int) -> str:
    """``text`` (JSON) with every array or object that opens deeper than ``max_depth``
    replaced by ``null``, so that it parses without deep recursion. Used only for a body
    that ``json.loads`` could not parse for its nesting."""
    out: list[str] = []
    depth = 0
    cut_from = -1  # where the subtree being dropped began, or -1
    last = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > max_depth and cut_from < 0:
                out.append(text[last:match.start()])
                cut_from = match.start()
        elif token in "]}":
            depth -= 1
            if cut_from >= 0 and depth == max_depth:
                out.append("null")
                last = match.end()
                cut_from = -1
    if cut_from >= 0:  # unbalanced: leave it as it is, json will say it is not JSON
        return text
    out.append(text[last:])
    return "".join(out)


def parse_webhook_json(raw: bytes) -> Any:
    """A webhook body (its HMAC already verified) as a sanitized document; ``400
    invalid_json`` only when it is not JSON at all."""
    text = raw.decode("utf-8", errors="replace")
    options: dict[str, Any] = {"parse_int": _webhook_int, "parse_float": _webhook_float,
                               "parse_constant": lambda _name: None}
    try:
        try:
            doc = json.loads(text, **options)
        except RecursionError:
            doc = json.loads(cap_depth(text, MAX_WEBHOOK_DEPTH), **options)
    except (ValueError, RecursionError):
        raise ApiError(falcon.HTTP_400, "invalid_json",
                       "the webhook body is not valid JSON") from None
    return sanitize(doc)
