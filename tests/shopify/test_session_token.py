"""Session tokens: HS256 only, claims bound to this app and one shop, time from the caller."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import Unauthorized
from engine.shopify import (
    SessionToken,
    SessionTokenError,
    decode_session_token,
    encode_session_token,
)

API_KEY = "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4"
# Long enough that PyJWT itself (used below to make hostile tokens) does not warn.
API_SECRET = "shpss_0123456789abcdef0123456789abcdef"
SHOP = "cool-shop.myshopify.com"
NOW = 1_750_000_000


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**changes: Any) -> dict[str, Any]:
    """Shopify's claim set for SHOP, valid at NOW; ``None`` removes a claim."""
    base: dict[str, Any] = {
        "iss": f"https://{SHOP}/admin",
        "dest": f"https://{SHOP}",
        "aud": API_KEY,
        "sub": "42",
        "exp": NOW + 60,
        "nbf": NOW - 1,
        "iat": NOW - 1,
        "jti": "f8912129-1af6-4cad-9ca3-76b0f7621087",
        "sid": "aaea182f2732d44c23057c0fea584021a4485b2bd25d3eb7fd349313ad24c685",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def forge(
    payload: Any,
    *,
    secret: str = API_SECRET,
    header: dict[str, Any] | None = None,
    digest: Callable[[], Any] = hashlib.sha256,
) -> str:
    """A compact JWS made by hand, so hostile shapes are not limited by a library."""
    head = header if header is not None else {"alg": "HS256", "typ": "JWT"}
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = f"{b64url(json.dumps(head).encode())}.{b64url(body)}"
    signature = hmac.new(secret.encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


def decode(token: str, *, now: int = NOW, leeway: int = 5) -> SessionToken:
    return decode_session_token(
        token, api_key=API_KEY, api_secret=API_SECRET, now=now, leeway=leeway
    )


# ------------------------------------------------------------------------------ valid


def test_a_shopify_shaped_token_decodes() -> None:
    assert decode(forge(claims())) == SessionToken(
        shop=SHOP,
        user_id="42",
        session_id="aaea182f2732d44c23057c0fea584021a4485b2bd25d3eb7fd349313ad24c685",
        expires_at=NOW + 60,
    )


def test_a_token_made_by_pyjwt_decodes() -> None:
    token = jwt.encode(claims(), API_SECRET, algorithm="HS256")
    assert decode(token).shop == SHOP


def test_encode_then_decode_round_trips() -> None:
    token = encode_session_token(
        SHOP, api_key=API_KEY, api_secret=API_SECRET, now=NOW, ttl=60, user_id="7"
    )
    decoded = decode(token, now=NOW + 30)
    assert (decoded.shop, decoded.user_id, decoded.expires_at) == (SHOP, "7", NOW + 60)
    assert decoded.session_id


def test_encode_produces_shopifys_claims() -> None:
    token = encode_session_token(SHOP, api_key=API_KEY, api_secret=API_SECRET, now=NOW)
    header = jwt.get_unverified_header(token)
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert header == {"alg": "HS256", "typ": "JWT"}
    assert payload["iss"] == f"https://{SHOP}/admin"
    assert payload["dest"] == f"https://{SHOP}"
    assert payload["aud"] == API_KEY
    assert payload["sub"] == "1"
    assert (payload["nbf"], payload["iat"], payload["exp"]) == (NOW, NOW, NOW + 60)
    assert set(payload) == {"iss", "dest", "aud", "sub", "exp", "nbf", "iat", "jti", "sid"}
    other = encode_session_token(SHOP, api_key=API_KEY, api_secret=API_SECRET, now=NOW)
    assert json.loads(base64.urlsafe_b64decode(other.split(".")[1] + "=="))["jti"] != (
        payload["jti"]
    )


def test_encode_refuses_a_bad_shop_or_empty_secret() -> None:
    with pytest.raises(ValueError, match="myshopify"):
        encode_session_token("evil.com", api_key=API_KEY, api_secret=API_SECRET, now=NOW)
    with pytest.raises(ValueError, match="secret"):
        encode_session_token(SHOP, api_key=API_KEY, api_secret="", now=NOW)


def test_a_short_secret_works_without_warnings() -> None:
    # The demo secret is shorter than 32 bytes; PyJWT would warn, and warnings are errors.
    token = encode_session_token(SHOP, api_key="k", api_secret="short", now=NOW)
    assert decode_session_token(token, api_key="k", api_secret="short", now=NOW).shop == SHOP


def test_sub_and_sid_are_optional() -> None:
    decoded = decode(forge(claims(sub=None, sid=None)))
    assert (decoded.user_id, decoded.session_id) == (None, None)


def test_the_time_is_the_callers_not_the_clock() -> None:
    # A token from 2001 is valid in 2001, whatever the host clock says.
    old = 1_000_000_000
    token = forge(claims(exp=old + 60, nbf=old, iat=old))
    assert decode(token, now=old).expires_at == old + 60
    with pytest.raises(SessionTokenError, match="expired"):
        decode(token, now=NOW)


# ------------------------------------------------------------------------- signature


def test_the_wrong_secret_fails() -> None:
    with pytest.raises(SessionTokenError, match="signature"):
        decode(forge(claims(), secret=API_SECRET + "x"))


def test_a_tampered_payload_fails() -> None:
    head, _, sig = forge(claims()).split(".")
    other = b64url(json.dumps(claims(dest="https://other.myshopify.com",
                                     iss="https://other.myshopify.com/admin")).encode())
    with pytest.raises(SessionTokenError, match="signature"):
        decode(f"{head}.{other}.{sig}")


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
def test_alg_none_fails(alg: str) -> None:
    head = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims()).encode())
    for token in (f"{head}.{body}.", f"{head}.{body}"):
        with pytest.raises(SessionTokenError):
            decode(token)


def test_hs512_fails_even_with_the_right_secret() -> None:
    token = forge(claims(), header={"alg": "HS512", "typ": "JWT"}, digest=hashlib.sha512)
    with pytest.raises(SessionTokenError, match="HS256"):
        decode(token)
    token = jwt.encode(claims(), API_SECRET + "-padding-for-hs512-" * 3, algorithm="HS512")
    with pytest.raises(SessionTokenError, match="HS256"):
        decode(token)


def test_a_header_alg_that_differs_from_the_signature_fails() -> None:
    # Signed with HS256 but labelled HS384: refused on the label alone.
    token = forge(claims(), header={"alg": "HS384", "typ": "JWT"})
    with pytest.raises(SessionTokenError, match="HS256"):
        decode(token)


def test_rs256_fails() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(SessionTokenError, match="HS256"):
        decode(jwt.encode(claims(), pem, algorithm="RS256"))


@pytest.mark.parametrize("alg", [["HS256"], {"HS256": 1}, 256, None])
def test_a_non_string_alg_fails(alg: Any) -> None:
    with pytest.raises(SessionTokenError):
        decode(forge(claims(), header={"alg": alg}))


def test_detached_payload_headers_fail() -> None:
    header = {"alg": "HS256", "b64": False, "crit": ["b64"]}
    with pytest.raises(SessionTokenError):
        decode(forge(claims(), header=header))


# ------------------------------------------------------------------------------ time


def test_expired_within_leeway_passes() -> None:
    token = forge(claims(exp=NOW))
    assert decode(token, now=NOW + 4, leeway=5).shop == SHOP


def test_expired_beyond_leeway_fails() -> None:
    token = forge(claims(exp=NOW))
    with pytest.raises(SessionTokenError, match="expired"):
        decode(token, now=NOW + 5, leeway=5)
    with pytest.raises(SessionTokenError, match="expired"):
        decode(token, now=NOW, leeway=0)


def test_nbf_within_leeway_passes() -> None:
    assert decode(forge(claims(nbf=NOW + 5)), leeway=5).shop == SHOP


def test_nbf_in_the_future_fails() -> None:
    with pytest.raises(SessionTokenError, match="not valid yet"):
        decode(forge(claims(nbf=NOW + 6)), leeway=5)


@pytest.mark.parametrize("value", ["1750000060", True, None, [NOW], {"t": NOW}, 1e400])
def test_non_numeric_exp_or_nbf_fails(value: Any) -> None:
    for name in ("exp", "nbf"):
        token = forge(claims(**{name: value}))
        with pytest.raises(SessionTokenError):
            decode(token)


def test_fractional_times_are_accepted() -> None:
    assert decode(forge(claims(exp=NOW + 0.5, nbf=NOW - 0.5)), leeway=0).expires_at == NOW


def test_negative_leeway_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="leeway"):
        decode(forge(claims()), leeway=-1)


# ---------------------------------------------------------------------------- claims


@pytest.mark.parametrize("aud", [API_KEY + "x", "", [API_KEY], API_KEY.upper(), 1])
def test_wrong_aud_fails(aud: Any) -> None:
    with pytest.raises(SessionTokenError, match="another app"):
        decode(forge(claims(aud=aud)))


@pytest.mark.parametrize(
    "dest",
    [
        "https://evil.com",
        "https://cool-shop.myshopify.com.evil.com",
        "https://cool-shop.myshopify.com:443",
        "https://cool-shop.myshopify.com/",
        "https://cool-shop.myshopify.com/admin",
        "http://cool-shop.myshopify.com",
        "cool-shop.myshopify.com",
        "https://Cool-Shop.myshopify.com",
        "https://-x.myshopify.com",
        "https://user@cool-shop.myshopify.com",
        123,
        ["https://cool-shop.myshopify.com"],
    ],
)
def test_dest_that_is_not_a_shop_origin_fails(dest: Any) -> None:
    iss = f"{dest}/admin" if isinstance(dest, str) else "https://cool-shop.myshopify.com/admin"
    with pytest.raises(SessionTokenError, match="dest"):
        decode(forge(claims(dest=dest, iss=iss)))


@pytest.mark.parametrize(
    "iss",
    [
        "https://other-shop.myshopify.com/admin",
        "https://cool-shop.myshopify.com",
        "https://cool-shop.myshopify.com/admin/",
        "http://cool-shop.myshopify.com/admin",
        "https://cool-shop.myshopify.com/admin?x",
        42,
    ],
)
def test_iss_that_does_not_match_dest_fails(iss: Any) -> None:
    with pytest.raises(SessionTokenError, match="issuer"):
        decode(forge(claims(iss=iss)))


@pytest.mark.parametrize("name", ["exp", "nbf", "aud", "dest", "iss"])
def test_a_missing_required_claim_fails(name: str) -> None:
    with pytest.raises(SessionTokenError, match=f"lacks the claim.*{name}"):
        decode(forge(claims(**{name: None})))


@pytest.mark.parametrize("name", ["sub", "sid"])
def test_a_non_string_sub_or_sid_fails(name: str) -> None:
    with pytest.raises(SessionTokenError, match=name):
        decode(forge(claims(**{name: 42})))


@pytest.mark.parametrize("payload", [b"[]", b'"x"', b"null", b"42", b"{", b"\xff\xfe", b""])
def test_a_payload_that_is_not_a_json_object_fails(payload: bytes) -> None:
    with pytest.raises(SessionTokenError):
        decode(forge(payload))


# --------------------------------------------------------------------------- garbage


@pytest.mark.parametrize(
    "token",
    ["", "x", "a.b", "a.b.c", "a.b.c.d", "...", "Bearer x.y.z", "\x00", "é.é.é",
     "eyJhbGciOiJIUzI1NiJ9.e30.!!!!", "eyJhbGciOiJIUzI1NiJ9.!!!.sig",
     b64url(b"[]") + "." + b64url(b"{}") + ".sig", "e30.e30.e30" * 50],
)
def test_garbage_fails(token: str) -> None:
    with pytest.raises(SessionTokenError):
        decode(token)


@given(st.text(max_size=200))
def test_arbitrary_strings_only_ever_raise_session_token_error(token: str) -> None:
    with pytest.raises(SessionTokenError):
        decode(token)


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=10,
))
def test_arbitrary_well_signed_payloads_only_ever_raise_session_token_error(
    payload: Any,
) -> None:
    with pytest.raises(SessionTokenError):
        decode(forge(payload))


def test_errors_are_unauthorized_with_a_stable_code_and_no_secrets() -> None:
    token = forge(claims(), secret="other-secret")
    with pytest.raises(SessionTokenError) as caught:
        decode(token)
    assert isinstance(caught.value, Unauthorized)
    assert caught.value.code == "invalid_session_token"
    assert API_SECRET not in str(caught.value)
    assert token not in str(caught.value)


def test_empty_key_or_secret_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        decode_session_token(forge(claims()), api_key=API_KEY, api_secret="", now=NOW)
    with pytest.raises(ValueError):
        decode_session_token(forge(claims()), api_key="", api_secret=API_SECRET, now=NOW)
