"""Hypothesis strategies for hostile HTTP input: texts, query strings, JSON documents,
raw bodies and headers. Shared by the route fuzzers in this package."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

# Texts that broke something once, or that sit on a boundary of some parser.
SPECIAL_TEXTS = [
    "", " ", "\t", "\x00", "a\x00b", "\x07", "\x1b[31m", "\x7f", "\ud800", "x\udfffy",
    "\udbff\udc00", "²", "٣", "9" * 20, "9" * 21, "9" * 400, "-1", "0", "1", "62", "63",
    "1e308", "1e999", "NaN", "Infinity", "-0", "0x10", "any", "null", "true", "false", "[]",
    "{}", "2026-12-01", "2026-02-30", "9999-12-31", "0001-01-01", "1969-12-31",
    "2026-12-01T08:00:00Z", "2026-12-01T08:00:00+99:00", "2026-12-01T08:00:00",
    "99999-01-01T00:00:00Z", "Europe/Berlin", "Nowhere/Zone", "UTC", "../../etc/passwd",
    "<script>alert(1)</script>", "' OR 1=1 --", "%", "%00", "%ED%A0%80", "\u202e", "\uffff",
    "\U0010ffff", "x" * 300, "csv", "ics", "json", "gid://shopify/ProductVariant/1",
    "alpha.myshopify.com", "evil.example", "ALPHA.MYSHOPIFY.COM", "a@example.com",
]

texts = st.one_of(
    st.sampled_from(SPECIAL_TEXTS),
    st.text(max_size=24),
    # any code point, lone surrogates and controls included
    st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()),
            max_size=12),
)

HUGE_INTS = [2 ** 31, 2 ** 63, 2 ** 64, -(2 ** 63) - 1, 10 ** 20, 10 ** 30, 10 ** 200]

json_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from(HUGE_INTS),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e308, -1e308, 5e-324]),
    texts,
)


def json_documents(keys: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """Arbitrary JSON values, objects keyed mostly by names the API knows."""
    return st.recursive(
        json_leaves,
        lambda children: st.one_of(st.lists(children, max_size=4),
                                   st.dictionaries(keys, children, max_size=5)),
        max_leaves=16)


def mutated(template: dict[str, Any], keys: st.SearchStrategy[str],
            values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``template`` (a valid document) with a few fields replaced, added or removed: the
    shape that reaches deepest into a handler."""

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        doc = dict(template)
        for _ in range(draw(st.integers(1, 3))):
            known = sorted(template)
            key = draw(st.one_of(st.sampled_from(known), keys) if known else keys)
            if draw(st.integers(0, 4)) == 0:
                doc.pop(key, None)
            else:
                doc[key] = draw(values)
        return doc

    return build()


def encode_json(doc: Any) -> bytes:
    """``doc`` as a client would send it: NaN/Infinity literals, \\uXXXX escapes (lone
    surrogates survive as escapes)."""
    return json.dumps(doc, allow_nan=True).encode("ascii")


def deep(n: int, kind: str = "[") -> bytes:
    close = "]" if kind == "[" else "}"
    opener = "[" if kind == "[" else '{"a":'
    return (opener * n + "1" + close * n).encode()


RAW_BODIES = [
    b"", b" ", b"null", b"[]", b"{}", b"7", b'"s"', b"not json", b"{", b'{"a": }',
    b"\xff\xfe\xfd", b'{"a": "\xed\xa0\x80"}', b'{"title": "\\u0000"}',
    b'{"title": "\\ud800"}', b'{"\\u0000": 1}', b"[NaN, Infinity, -Infinity]",
    b'{"duration_minutes": 1e999}', b'{"duration_minutes": ' + b"9" * 5000 + b"}",
    b'{"a": 1, "a": 2}', deep(5000), deep(100_000), deep(2000, "{"), b"\x00",
    b'{"service": "svc", "expert": "any", "start": "2026-12-01T08:00:00Z", "seats": 1e400}',
]

raw_bodies = st.one_of(st.sampled_from(RAW_BODIES), st.binary(max_size=64))


def quote_text(text: str) -> str:
    """Percent-encode any text; a lone surrogate becomes its (invalid) UTF-8 bytes,
    e.g. %ED%A0%80, as a hostile client would send it."""
    return quote(text, safe="", errors="surrogatepass")


def query_strings(keys: st.SearchStrategy[str],
                  values: st.SearchStrategy[str]) -> st.SearchStrategy[list[tuple[str, str]]]:
    """Query parameters as (key, value) pairs; keys may repeat."""
    return st.lists(st.tuples(keys, values), max_size=6)


def render_query(pairs: list[tuple[str, str]], tail: str = "") -> str:
    rendered = "&".join(f"{quote_text(k)}={quote_text(v)}" for k, v in pairs)
    return rendered + tail


# Raw fragments appended to a query string after encoding.
QUERY_TAILS = ["", "", "", "&", "&&=", "&=x", "&%00=1", "&x=%00", "&x=%ED%A0%80", "&x=%FF",
               "&x=%", "&x=%zz", "&x", "&days=%C2%B2"]

HEADER_NAMES = ["Content-Type", "X-Forwarded-For", "X-Request-Id", "Accept", "Origin",
                "Cookie", "X-Shopify-Topic", "X-Shopify-Webhook-Id", "Content-Encoding",
                "X-Shopify-Triggered-At", "Authorization", "Referer", "User-Agent"]

HEADER_VALUES = ["application/json", "text/plain", "application/x-www-form-urlencoded",
                 "multipart/form-data; boundary=x", "", " ", "\x00", "203.0.113.7",
                 "1.2.3.4, 5.6.7.8", "garbage, ::1, 300.1.1.1", "x" * 2000, "gzip",
                 "Bearer", "Bearer x.y.z", "Basic Zm9vOmJhcg==", "é", "\xff",
                 "2026-12-01T08:00:00Z", "9999-99-99"]

# WSGI header values are latin-1 text; a server hands over whatever bytes came.
header_values = st.one_of(st.sampled_from(HEADER_VALUES),
                          st.text(st.characters(min_codepoint=0, max_codepoint=255),
                                  max_size=20))

headers = st.dictionaries(st.sampled_from(HEADER_NAMES), header_values, max_size=3)


def hostile_texts(original: str) -> list[str]:
    """Representatives of every class of bad text, derived from a good value: the
    systematic complement of the random strategies above."""
    return [original + "\x00", "\x00", "\ud800" + original, original + "\udfff",
            original + "\x07", original + "\x1b", "²", "٣", "9" * 400, "-" + original, "",
            " ", original * 60, original + "%00", "NaN", "1e999", "\u202e" + original]


def hostile_json(original: Any) -> list[Any]:
    """Representatives of every class of bad JSON value for a field holding ``original``."""
    text = original if isinstance(original, str) else json.dumps(original)
    return [*hostile_texts(text), None, True, 0, -1, 2 ** 31, 2 ** 63, 10 ** 30, 1.5,
            1e308, float("nan"), float("inf"), [], {}, [original], {"a": original},
            [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[original]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]
