"""App Proxy signatures sort the ``key=value`` strings, as Shopify's reference does.

Shopify's reference (shopify_app's ``ShopifyApp::AppProxyVerification``)::

    sorted_params = query.collect { |k, v| "#{k}=#{Array(v).join(',')}" }.sort.join
    OpenSSL::HMAC.hexdigest("sha256", secret, sorted_params)

Sorting the strings is not sorting the keys when one key is a prefix of another:
``id-x=2`` < ``id=1`` (``-`` is 0x2D, ``=`` is 0x3D) although ``id`` < ``id-x``. The
expected digests below are computed here from hand-written strings, not through the
module under test.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.shopify import SignatureError, proxy_message, sign_proxy, verify_proxy

SECRET = "hush"
NOW = 1_700_000_000


def reference_hmac(message: str) -> str:
    return hmac.new(SECRET.encode(), message.encode("utf-8"), hashlib.sha256).hexdigest()


# The string Shopify signs, written out by hand: the "key=value" strings in string order.
VECTOR_MESSAGE = "id-x=2id=1shop=a.myshopify.comtimestamp=1700000000"
# What a by-key sort would sign instead (the old, wrong behaviour).
BY_KEY_MESSAGE = "id=1id-x=2shop=a.myshopify.comtimestamp=1700000000"


def vector_params() -> dict[str, str]:
    return {"shop": "a.myshopify.com", "timestamp": str(NOW), "id": "1", "id-x": "2"}


def test_the_vector_distinguishes_the_two_orders() -> None:
    assert VECTOR_MESSAGE != BY_KEY_MESSAGE
    assert reference_hmac(VECTOR_MESSAGE) != reference_hmac(BY_KEY_MESSAGE)


def test_proxy_message_sorts_the_key_value_strings() -> None:
    assert proxy_message(list(vector_params().items())) == VECTOR_MESSAGE


def test_sign_proxy_matches_the_reference_digest() -> None:
    assert sign_proxy(vector_params(), SECRET) == reference_hmac(VECTOR_MESSAGE)


def test_verify_accepts_the_reference_signature_and_refuses_the_by_key_one() -> None:
    pairs = list(vector_params().items())
    good = verify_proxy([*pairs, ("signature", reference_hmac(VECTOR_MESSAGE))], SECRET,
                        now=NOW, max_age=300)
    assert good["id"] == "1" and good["id-x"] == "2"
    with pytest.raises(SignatureError):
        verify_proxy([*pairs, ("signature", reference_hmac(BY_KEY_MESSAGE))], SECRET,
                     now=NOW, max_age=300)


def test_repeated_values_are_joined_before_sorting() -> None:
    # "a=2,1" (values in order of appearance) then sorted with the other strings:
    # "a-b=x" < "a=2,1" < "b=" < "timestamp=...".
    pairs = [("a", "2"), ("b", ""), ("a-b", "x"), ("a", "1"), ("timestamp", str(NOW))]
    message = "a-b=xa=2,1b=timestamp=1700000000"
    assert proxy_message(pairs) == message
    verify_proxy([*pairs, ("signature", reference_hmac(message))], SECRET, now=NOW,
                 max_age=0)


@pytest.mark.parametrize("name", ["shop", "logged_in_customer_id"])
def test_a_repeated_identity_parameter_is_refused_even_when_signed(name: str) -> None:
    params: dict[str, str | list[str]] = {
        "shop": "a.myshopify.com", "timestamp": str(NOW), "logged_in_customer_id": "7"}
    params[name] = ["1", "2"] if name != "shop" else ["a.myshopify.com", "b.myshopify.com"]
    pairs = [(k, v) for k, vs in params.items() for v in ([vs] if isinstance(vs, str) else vs)]
    pairs.append(("signature", sign_proxy(params, SECRET)))
    with pytest.raises(SignatureError, match=f"more than one {name}"):
        verify_proxy(pairs, SECRET, now=NOW, max_age=300)


keys = st.text(alphabet="ab-=_x", min_size=1, max_size=4).filter(lambda k: k not in (
    "signature", "timestamp", "shop", "logged_in_customer_id"))


@given(st.dictionaries(keys, st.lists(st.text(max_size=4), min_size=1, max_size=3),
                       max_size=6))
def test_any_query_signs_like_the_reference(params: dict[str, list[str]]) -> None:
    # The reference, restated independently: build each string, sort the strings.
    strings = [f"{k}={','.join(v)}" for k, v in params.items()] + [f"timestamp={NOW}"]
    expected = reference_hmac("".join(sorted(strings)))
    signed: dict[str, str | list[str]] = {**params, "timestamp": str(NOW)}
    assert sign_proxy(signed, SECRET) == expected
    pairs = [(k, v) for k, vs in params.items() for v in vs] + [("timestamp", str(NOW))]
    verify_proxy([*pairs, ("signature", expected)], SECRET, now=NOW, max_age=0)
