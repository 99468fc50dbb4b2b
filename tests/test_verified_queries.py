"""The App Proxy verification memo (web.auth.VerifiedQueries): a query string verified
once is not parsed and hashed again, but its age is checked on every use, a changed
string is verified afresh, and callers get their own copy."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from engine.shopify import SignatureError, sign_proxy
from web.auth import VerifiedQueries

SECRET = "shpss_" + "a" * 32
NOW = 1_800_000_000


def signed(ts: int = NOW, **params: str) -> str:
    values = {"shop": "alpha.myshopify.com", "path_prefix": "/apps/consult",
              "timestamp": str(ts), **params}
    values["signature"] = sign_proxy(values, SECRET)
    return urlencode(values)


def test_a_remembered_query_still_expires_both_ways() -> None:
    memo = VerifiedQueries()
    query = signed(service="svc_1")
    assert memo.verify(query, SECRET, now=NOW, max_age=300)["service"] == "svc_1"
    assert memo.verify(query, SECRET, now=NOW + 300, max_age=300)["shop"] \
        == "alpha.myshopify.com"
    with pytest.raises(SignatureError, match="expired"):
        memo.verify(query, SECRET, now=NOW + 301, max_age=300)
    with pytest.raises(SignatureError, match="future"):
        memo.verify(query, SECRET, now=NOW - 301, max_age=300)


def test_a_changed_query_is_verified_again() -> None:
    memo = VerifiedQueries()
    query = signed(service="svc_1")
    memo.verify(query, SECRET, now=NOW, max_age=300)
    with pytest.raises(SignatureError):
        memo.verify(query.replace("svc_1", "svc_2"), SECRET, now=NOW, max_age=300)
    with pytest.raises(SignatureError):
        memo.verify(query + "&shop=beta.myshopify.com", SECRET, now=NOW, max_age=300)
    with pytest.raises(SignatureError):  # a refusal is not remembered as a pass
        memo.verify(query.replace("svc_1", "svc_2"), SECRET, now=NOW, max_age=300)


def test_callers_get_their_own_copy_and_the_memo_is_bounded() -> None:
    memo = VerifiedQueries(max_entries=3)
    query = signed()
    memo.verify(query, SECRET, now=NOW, max_age=300)["shop"] = "evil.myshopify.com"
    assert memo.verify(query, SECRET, now=NOW, max_age=300)["shop"] == "alpha.myshopify.com"
    for n in range(10):
        memo.verify(signed(ts=NOW + n), SECRET, now=NOW, max_age=300)
    assert len(memo._entries) <= 3
