"""App Proxy, webhook and OAuth signatures, pinned by Shopify's published examples."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import parse_qsl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import Unauthorized
from engine.shopify import (
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

SECRET = "hush"

# Shopify's App Proxy documentation example.
PROXY_SIGNATURE = "4c68c8624d737112c91818c11017d24d334b524cb5c2b8ba08daa056f7395ddb"
PROXY_QUERY = (
    "extra=1&extra=2&shop=shop-name.myshopify.com&logged_in_customer_id=1"
    "&path_prefix=%2Fapps%2Fawesome_reviews&timestamp=1317327555"
    f"&signature={PROXY_SIGNATURE}"
)
PROXY_MESSAGE = (
    "extra=1,2logged_in_customer_id=1path_prefix=/apps/awesome_reviews"
    "shop=shop-name.myshopify.comtimestamp=1317327555"
)
PROXY_NOW = 1317327555

# Shopify's webhook documentation example.
WEBHOOK_BODY = b'{"id":820982911946154508,"email":"jon@example.com"}'
WEBHOOK_HMAC = "D0UMXmhjwBRi4y66TmhJrDlhQABD7zI2fm3p6/QLMo8="

# Shopify's OAuth documentation example.
OAUTH_HMAC = "4712bf92ffc2917d15a2f5a273e39f0116667419aa4b6ac0b3baaf26fa3c4d20"
OAUTH_QUERY = (
    f"code=0907a61c0c8d55e99db179b68161bc00&hmac={OAUTH_HMAC}"
    "&shop=some-shop.myshopify.com&timestamp=1337178173"
)
OAUTH_MESSAGE = (
    "code=0907a61c0c8d55e99db179b68161bc00&shop=some-shop.myshopify.com&timestamp=1337178173"
)


def proxy_params() -> list[tuple[str, str]]:
    return parse_qsl(PROXY_QUERY, keep_blank_values=True)


def replace(params: list[tuple[str, str]], key: str, value: str) -> list[tuple[str, str]]:
    return [(k, value if k == key else v) for k, v in params]


def without(params: list[tuple[str, str]], key: str) -> list[tuple[str, str]]:
    return [(k, v) for k, v in params if k != key]


def resigned(params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``params`` with a correct signature (so only the other checks can fail)."""
    unsigned = without(params, "signature")
    grouped: dict[str, list[str]] = {}
    for k, v in unsigned:
        grouped.setdefault(k, []).append(v)
    return [*unsigned, ("signature", sign_proxy(grouped, SECRET))]


def verify(params: list[tuple[str, str]], *, now: int = PROXY_NOW) -> dict[str, str]:
    return verify_proxy(params, SECRET, now=now, max_age=300)


# --------------------------------------------------------------------------- App Proxy


def test_proxy_message_matches_shopifys_example() -> None:
    assert proxy_message(proxy_params()) == PROXY_MESSAGE


def test_sign_proxy_matches_shopifys_example() -> None:
    params = {
        "extra": ["1", "2"],
        "shop": "shop-name.myshopify.com",
        "logged_in_customer_id": "1",
        "path_prefix": "/apps/awesome_reviews",
        "timestamp": "1317327555",
    }
    assert sign_proxy(params, SECRET) == PROXY_SIGNATURE


def test_verify_proxy_accepts_shopifys_example_and_returns_signed_params() -> None:
    assert verify(proxy_params()) == {
        "extra": "1,2",
        "shop": "shop-name.myshopify.com",
        "logged_in_customer_id": "1",
        "path_prefix": "/apps/awesome_reviews",
        "timestamp": "1317327555",
    }


def test_proxy_signature_in_uppercase_hex_is_the_same_signature() -> None:
    params = replace(proxy_params(), "signature", PROXY_SIGNATURE.upper())
    assert verify(params)["shop"] == "shop-name.myshopify.com"


def test_repeated_keys_keep_their_order_of_appearance() -> None:
    swapped = [("extra", "2") if (k, v) == ("extra", "1") else
               ("extra", "1") if (k, v) == ("extra", "2") else (k, v)
               for k, v in proxy_params()]
    assert "extra=2,1" in proxy_message(swapped)
    with pytest.raises(SignatureError, match="does not match"):
        verify(swapped)


def test_a_comma_joined_value_signs_like_the_repeated_key() -> None:
    # Inherent in Shopify's scheme: "extra=1,2" and "extra=1&extra=2" sign the same
    # string. Harmless, because the signed params we return are the same either way.
    params = [(k, v) for k, v in proxy_params() if k != "extra"] + [("extra", "1,2")]
    assert verify(params)["extra"] == "1,2"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("shop", "other-shop.myshopify.com"),
        ("logged_in_customer_id", "2"),
        ("path_prefix", "/apps/other"),
        ("timestamp", "1317327556"),
        ("extra", "3"),
    ],
)
def test_a_tampered_value_fails(key: str, value: str) -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify(replace(proxy_params(), key, value))


def test_an_added_parameter_fails() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify([*proxy_params(), ("admin", "1")])


def test_a_dropped_parameter_fails() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify(without(proxy_params(), "logged_in_customer_id"))


def test_the_wrong_secret_fails() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify_proxy(proxy_params(), "hush!", now=PROXY_NOW, max_age=300)


def test_a_missing_signature_fails() -> None:
    with pytest.raises(SignatureError, match="no signature"):
        verify(without(proxy_params(), "signature"))


def test_a_duplicate_signature_fails_even_if_both_are_right() -> None:
    params = [*proxy_params(), ("signature", PROXY_SIGNATURE)]
    with pytest.raises(SignatureError, match="more than one signature"):
        verify(params)


@pytest.mark.parametrize(
    "signature",
    ["", "xyz", PROXY_SIGNATURE[:-1], PROXY_SIGNATURE + "0", "g" * 64,
     " " + PROXY_SIGNATURE, "\uff14" * 64, base64.b64encode(b"x" * 32).decode()],
)
def test_a_signature_that_is_not_hex_sha256_fails(signature: str) -> None:
    with pytest.raises(SignatureError, match="not a hex SHA-256 digest"):
        verify(replace(proxy_params(), "signature", signature))


def test_a_signature_key_in_another_case_is_not_a_signature() -> None:
    params = [("Signature" if k == "signature" else k, v) for k, v in proxy_params()]
    with pytest.raises(SignatureError, match="no signature"):
        verify(params)


def test_a_signed_key_in_another_case_is_another_key() -> None:
    params = [("Shop" if k == "shop" else k, v) for k, v in proxy_params()]
    with pytest.raises(SignatureError, match="does not match"):
        verify(params)


def test_timestamp_at_exactly_max_age_either_way_passes() -> None:
    assert verify(proxy_params(), now=PROXY_NOW + 300)
    assert verify(proxy_params(), now=PROXY_NOW - 300)


def test_timestamp_too_old_fails() -> None:
    with pytest.raises(SignatureError, match="too old"):
        verify(proxy_params(), now=PROXY_NOW + 301)


def test_timestamp_in_the_future_fails() -> None:
    with pytest.raises(SignatureError, match="future"):
        verify(proxy_params(), now=PROXY_NOW - 301)


@pytest.mark.parametrize(
    "timestamp", ["", "abc", "1317327555.0", "+1317327555", " 1317327555", "1_317_327_555",
                  "-1", "١٣١٧٣٢٧٥٥٥", "1e9", "9" * 40],
)
def test_a_timestamp_that_is_not_an_integer_fails(timestamp: str) -> None:
    params = resigned(replace(proxy_params(), "timestamp", timestamp))
    with pytest.raises(SignatureError, match="whole number"):
        verify(params)


def test_a_missing_timestamp_fails_even_when_signed() -> None:
    with pytest.raises(SignatureError, match="no timestamp"):
        verify(resigned(without(proxy_params(), "timestamp")))


def test_a_repeated_timestamp_fails_even_when_signed() -> None:
    params = resigned([*proxy_params(), ("timestamp", "1317327555")])
    with pytest.raises(SignatureError, match="more than one timestamp"):
        verify(params)


def test_non_ascii_values_are_signed_as_utf8() -> None:
    params = {"shop": "a.myshopify.com", "timestamp": "100", "name": "Zoë ✓"}
    pairs = [*params.items(), ("signature", sign_proxy(params, SECRET))]
    message = "name=Zoë ✓shop=a.myshopify.comtimestamp=100".encode()
    assert sign_proxy(params, SECRET) == hmac.new(b"hush", message, hashlib.sha256).hexdigest()
    assert verify_proxy(pairs, SECRET, now=100, max_age=0)["name"] == "Zoë ✓"


def test_configuration_bugs_are_value_errors_not_bad_requests() -> None:
    with pytest.raises(ValueError, match="secret"):
        verify_proxy(proxy_params(), "", now=PROXY_NOW, max_age=300)
    with pytest.raises(ValueError, match="max_age"):
        verify_proxy(proxy_params(), SECRET, now=PROXY_NOW, max_age=-1)


def test_errors_are_unauthorized_with_a_stable_code_and_no_secrets() -> None:
    with pytest.raises(SignatureError) as caught:
        verify(replace(proxy_params(), "shop", "x.myshopify.com"))
    assert isinstance(caught.value, Unauthorized)
    assert caught.value.code == "invalid_signature"
    assert SECRET not in str(caught.value)
    assert PROXY_SIGNATURE not in str(caught.value)


params_strategy = st.dictionaries(
    # The identity parameters may not repeat (a repeat is refused), so they are left out.
    st.text(min_size=1, max_size=8).filter(
        lambda k: k not in ("signature", "timestamp", "shop", "logged_in_customer_id")),
    st.lists(st.text(max_size=8), min_size=1, max_size=3),
    max_size=5,
)


@given(params_strategy, st.integers(min_value=0, max_value=2**40))
def test_anything_signed_verifies_and_round_trips(
    params: dict[str, list[str]], now: int
) -> None:
    signed: dict[str, str | list[str]] = {**params, "timestamp": str(now)}
    pairs = [(k, v) for k, values in params.items() for v in values]
    pairs += [("timestamp", str(now)), ("signature", sign_proxy(signed, SECRET))]
    result = verify_proxy(pairs, SECRET, now=now, max_age=0)
    assert result == {**{k: ",".join(v) for k, v in params.items()}, "timestamp": str(now)}


@given(st.lists(st.tuples(st.text(max_size=10), st.text(max_size=10)), max_size=6),
       st.integers())
def test_arbitrary_queries_only_ever_raise_signature_error(
    pairs: list[tuple[str, str]], now: int
) -> None:
    with pytest.raises(SignatureError):
        verify_proxy(pairs, SECRET, now=now, max_age=300)


# ---------------------------------------------------------------------------- Webhooks


def test_webhook_hmac_matches_shopifys_example() -> None:
    assert webhook_hmac(WEBHOOK_BODY, SECRET) == WEBHOOK_HMAC


def test_verify_webhook_accepts_shopifys_example() -> None:
    verify_webhook(WEBHOOK_BODY, WEBHOOK_HMAC, SECRET)


def test_webhook_header_with_surrounding_whitespace_is_accepted() -> None:
    verify_webhook(WEBHOOK_BODY, f"  {WEBHOOK_HMAC}\t", SECRET)


def test_webhook_body_is_checked_byte_for_byte() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify_webhook(WEBHOOK_BODY + b"\n", WEBHOOK_HMAC, SECRET)
    reformatted = b'{"id": 820982911946154508, "email": "jon@example.com"}'
    with pytest.raises(SignatureError, match="does not match"):
        verify_webhook(reformatted, WEBHOOK_HMAC, SECRET)


def test_webhook_with_the_wrong_secret_fails() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify_webhook(WEBHOOK_BODY, WEBHOOK_HMAC, "hush2")


def test_empty_webhook_body_has_a_signature_too() -> None:
    expected = base64.b64encode(hmac.new(b"hush", b"", hashlib.sha256).digest()).decode()
    assert webhook_hmac(b"", SECRET) == expected
    verify_webhook(b"", expected, SECRET)
    with pytest.raises(SignatureError, match="does not match"):
        verify_webhook(b"", WEBHOOK_HMAC, SECRET)


@pytest.mark.parametrize("header", [None, "", "   "])
def test_a_missing_webhook_header_fails(header: str | None) -> None:
    with pytest.raises(SignatureError, match="no X-Shopify-Hmac-Sha256"):
        verify_webhook(WEBHOOK_BODY, header, SECRET)


@pytest.mark.parametrize(
    "header",
    [
        "not base64!",
        WEBHOOK_HMAC.replace("/", "_"),  # url-safe alphabet is not what Shopify sends
        WEBHOOK_HMAC[:-1],  # broken padding
        WEBHOOK_HMAC[:10] + " " + WEBHOOK_HMAC[10:],  # whitespace inside
        "D0UMXmhjwBRi4y66TmhJ\u00e9DlhQABD7zI2fm3p6/QLMo8=",  # non-ASCII
        "\uff44" * 44,  # full-width letters
        "\x00" * 44,
    ],
)
def test_a_malformed_webhook_header_fails(header: str) -> None:
    with pytest.raises(SignatureError, match="not base64"):
        verify_webhook(WEBHOOK_BODY, header, SECRET)


@pytest.mark.parametrize(
    "header",
    [base64.b64encode(b"x" * 31).decode(), base64.b64encode(b"x" * 33).decode(), "AAAA",
     hashlib.sha256(WEBHOOK_BODY).hexdigest()],
)
def test_a_webhook_header_of_the_wrong_length_fails(header: str) -> None:
    with pytest.raises(SignatureError, match=r"not a SHA-256 digest|not base64"):
        verify_webhook(WEBHOOK_BODY, header, SECRET)


def test_a_hex_webhook_digest_is_not_accepted_for_base64() -> None:
    hex_digest = hmac.new(b"hush", WEBHOOK_BODY, hashlib.sha256).hexdigest()
    with pytest.raises(SignatureError):
        verify_webhook(WEBHOOK_BODY, hex_digest, SECRET)


@given(st.binary(max_size=200), st.text(max_size=60))
def test_arbitrary_webhook_headers_only_ever_raise_signature_error(
    body: bytes, header: str
) -> None:
    if header.strip() == webhook_hmac(body, SECRET):
        return
    with pytest.raises(SignatureError):
        verify_webhook(body, header, SECRET)


# ------------------------------------------------------------------------------- OAuth


def oauth_params() -> list[tuple[str, str]]:
    return parse_qsl(OAUTH_QUERY, keep_blank_values=True)


def test_oauth_message_matches_shopifys_example() -> None:
    assert oauth_message(oauth_params()) == OAUTH_MESSAGE


def test_sign_oauth_matches_shopifys_example() -> None:
    assert sign_oauth(oauth_params(), SECRET) == OAUTH_HMAC
    assert sign_oauth(dict(oauth_params()), SECRET) == OAUTH_HMAC


def test_verify_oauth_accepts_shopifys_example() -> None:
    verify_oauth(oauth_params(), SECRET)


def test_oauth_ignores_a_signature_parameter() -> None:
    verify_oauth([*oauth_params(), ("signature", "anything")], SECRET)


@pytest.mark.parametrize(
    ("key", "value"),
    [("shop", "evil.myshopify.com"), ("code", "0907a61c0c8d55e99db179b68161bc01"),
     ("timestamp", "1337178174")],
)
def test_oauth_tampered_value_fails(key: str, value: str) -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify_oauth(replace(oauth_params(), key, value), SECRET)


def test_oauth_added_parameter_fails() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify_oauth([*oauth_params(), ("state", "x")], SECRET)


def test_oauth_missing_duplicate_and_malformed_hmac_fail() -> None:
    with pytest.raises(SignatureError, match="no hmac"):
        verify_oauth(without(oauth_params(), "hmac"), SECRET)
    with pytest.raises(SignatureError, match="more than one hmac"):
        verify_oauth([*oauth_params(), ("hmac", OAUTH_HMAC)], SECRET)
    with pytest.raises(SignatureError, match="not a hex SHA-256"):
        verify_oauth(replace(oauth_params(), "hmac", "zz"), SECRET)


def test_oauth_escapes_keys_and_values_the_way_shopify_does() -> None:
    params = [("a%b&c=d", "x%y&z=w"), ("hmac", "ignored")]
    assert oauth_message(params) == "a%25b%26c%3Dd=x%25y%26z=w"


def test_oauth_escaping_stops_a_value_from_forging_another_parameter() -> None:
    # Without escaping, {"a": "1&b=2"} and {"a": "1", "b": "2"} would sign the same string.
    assert oauth_message([("a", "1&b=2")]) != oauth_message([("a", "1"), ("b", "2")])


def test_oauth_array_parameters_are_signed_as_shopify_renders_them() -> None:
    params = [("shop", "a.myshopify.com"), ("ids[]", "2"), ("ids[]", "3"),
              ("timestamp", "1")]
    message = 'ids=["2", "3"]&shop=a.myshopify.com&timestamp=1'
    assert oauth_message(params) == message
    digest = hmac.new(b"hush", message.encode(), hashlib.sha256).hexdigest()
    assert sign_oauth(params, SECRET) == digest
    verify_oauth([*params, ("hmac", digest)], SECRET)
    with pytest.raises(SignatureError, match="does not match"):
        verify_oauth([*params[:1], ("ids[]", "3"), ("ids[]", "2"), params[3], ("hmac", digest)],
                     SECRET)


def test_oauth_single_element_array_and_escaped_quotes() -> None:
    assert oauth_message([("ids[]", "7")]) == 'ids=["7"]'
    assert oauth_message([("v[]", 'a"b\\c&')]) == 'v=["a\\"b\\\\c%26"]'


def test_oauth_ambiguous_repeats_fail() -> None:
    with pytest.raises(SignatureError, match="repeats"):
        oauth_message([("shop", "a.myshopify.com"), ("shop", "b.myshopify.com")])
    with pytest.raises(SignatureError, match="both"):
        oauth_message([("ids", "1"), ("ids[]", "2")])


# -------------------------------------------------------------------------------- Shops


@pytest.mark.parametrize(
    "domain",
    ["shop-name.myshopify.com", "a.myshopify.com", "0.myshopify.com", "a-b-c1.myshopify.com",
     "x" * 241 + ".myshopify.com"],
)
def test_valid_shop_domains(domain: str) -> None:
    assert valid_shop_domain(domain)


@pytest.mark.parametrize(
    "domain",
    [
        "",
        "myshopify.com",
        ".myshopify.com",
        "Shop.myshopify.com",
        "SHOP.MYSHOPIFY.COM",
        "shop.myshopify.COM",
        "evil.com",
        "x.myshopify.com.evil.com",
        "x.myshopify.com:443",
        "-x.myshopify.com",
        "x.myshopify.com/admin",
        "x.myshopify.com/",
        "https://x.myshopify.com",
        "x.myshopify.com.",
        "x.myshopify.com\n",
        " x.myshopify.com",
        "a.b.myshopify.com",
        "x_y.myshopify.com",
        "x.myshopifyxcom",
        "xmyshopify.com",
        "x.shopify.com",
        "user@x.myshopify.com",
        "x.myshopify.com?shop=y",
        "x.myshopify.com#y",
        "\uff58.myshopify.com",  # full-width x
        "é.myshopify.com",
        "x" * 242 + ".myshopify.com",
    ],
)
def test_invalid_shop_domains(domain: str) -> None:
    assert not valid_shop_domain(domain)
