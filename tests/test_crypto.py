"""Secrets at rest: AES-256-GCM tokens bound to their row, with key rotation."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from engine.crypto import CryptoError, Keyring, generate_key, key_id, parse_keys

OLD = bytes(range(32))
NEW = bytes(range(32, 64))
AAD = "shop:123:access_token"
TOKEN_SHAPE = re.compile(r"v1\.[0-9a-f]{8}\.[A-Za-z0-9_-]+")


def b64(key: bytes, *, padded: bool = True) -> str:
    text = base64.urlsafe_b64encode(key).decode()
    return text if padded else text.rstrip("=")


def flip(token: str, index: int) -> str:
    """``token`` with one bit of its decoded data flipped at ``index``."""
    prefix, data = token.rsplit(".", 1)
    blob = bytearray(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    blob[index] ^= 0x01
    return f"{prefix}.{b64(bytes(blob), padded=False)}"


# ------------------------------------------------------------------------------ keys


def test_generate_key_makes_distinct_32_byte_keys_that_parse() -> None:
    first, second = generate_key(), generate_key()
    assert first != second
    assert parse_keys(first) == [base64.urlsafe_b64decode(first)]
    assert len(parse_keys(f"{first},{second}")) == 2


def test_key_id_is_the_sha256_prefix() -> None:
    assert key_id(OLD) == hashlib.sha256(OLD).hexdigest()[:8]
    assert Keyring.key_id(OLD) == key_id(OLD)


def test_parse_keys_keeps_order_and_ignores_whitespace_padding_and_empty_items() -> None:
    value = f"  {b64(NEW, padded=False)} ,\t{b64(OLD)}\n,"
    assert parse_keys(value) == [NEW, OLD]


@pytest.mark.parametrize("value", ["", "   ", ",", " , ,"])
def test_parse_keys_refuses_an_empty_value(value: str) -> None:
    with pytest.raises(ValueError, match="CONSULTBOOK_ENCRYPTION_KEYS is empty"):
        parse_keys(value)


@pytest.mark.parametrize(
    "item",
    [
        "not base64!",
        "a" * 43 + "*",
        base64.b64encode(b"\xfb" * 32).decode(),  # standard alphabet (+ and /)
        b64(OLD)[:10] + " " + b64(OLD)[10:],
        b64(OLD) + "==",  # too much padding
        "=" + b64(OLD, padded=False),
        "A" * 41,  # a length no base64 has
        "é" * 43,
    ],
)
def test_parse_keys_refuses_bad_base64(item: str) -> None:
    with pytest.raises(ValueError, match=r"key 2 of CONSULTBOOK_ENCRYPTION_KEYS .*base64"):
        parse_keys(f"{b64(NEW)},{item}")


@pytest.mark.parametrize("size", [1, 16, 24, 31, 33, 64])
def test_parse_keys_refuses_a_key_that_is_not_32_bytes(size: int) -> None:
    with pytest.raises(ValueError, match=f"key 1 of CONSULTBOOK_ENCRYPTION_KEYS decodes "
                                         f"to {size} bytes"):
        parse_keys(b64(b"k" * size))


def test_parse_errors_never_echo_the_key() -> None:
    secret_ish = b64(b"s" * 31)
    with pytest.raises(ValueError) as caught:
        parse_keys(secret_ish)
    assert secret_ish not in str(caught.value)
    assert "\n" not in str(caught.value)


def test_keyring_refuses_no_keys_and_wrong_sizes() -> None:
    with pytest.raises(ValueError, match="at least one key"):
        Keyring([])
    with pytest.raises(ValueError, match="32 bytes"):
        Keyring([OLD, b"short"])


def test_keyring_repr_shows_ids_not_keys() -> None:
    ring = Keyring([NEW, OLD])
    assert repr(ring) == f"Keyring(key_ids={[key_id(NEW), key_id(OLD)]!r})"
    assert ring.key_ids == (key_id(NEW), key_id(OLD))
    assert ring.current_key_id == key_id(NEW)


def test_keyring_parse_takes_the_variable_or_its_items() -> None:
    assert Keyring.parse(f"{b64(NEW)},{b64(OLD)}").key_ids == (key_id(NEW), key_id(OLD))
    assert Keyring.parse((b64(NEW), b64(OLD))).current_key_id == key_id(NEW)


# ------------------------------------------------------------------------ round trip


def test_round_trip_bytes_and_text() -> None:
    ring = Keyring([OLD])
    token = ring.encrypt(b"\x00secret\xff", aad=AAD)
    assert TOKEN_SHAPE.fullmatch(token)
    assert token.startswith(f"v1.{key_id(OLD)}.")
    assert ring.decrypt(token, aad=AAD) == b"\x00secret\xff"
    text_token = ring.encrypt("shpat_ünïcode", aad=AAD)
    assert ring.decrypt_str(text_token, aad=AAD) == "shpat_ünïcode"


def test_the_plaintext_is_not_in_the_token() -> None:
    token = Keyring([OLD]).encrypt("shpat_abcdef", aad=AAD)
    assert "shpat" not in token
    assert b"shpat" not in base64.urlsafe_b64decode(token.split(".")[2] + "==")


def test_each_encryption_uses_a_fresh_nonce() -> None:
    ring = Keyring([OLD])
    first, second = ring.encrypt("same", aad=AAD), ring.encrypt("same", aad=AAD)
    assert first != second
    assert first.split(".")[2][:16] != second.split(".")[2][:16]


def test_the_format_is_aes_256_gcm_with_the_prefix_as_associated_data() -> None:
    # Pins the wire format so another implementation (or a future version) can read it.
    token = Keyring([OLD]).encrypt(b"hello", aad=AAD)
    _, kid, data = token.split(".")
    blob = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    nonce, sealed = blob[:12], blob[12:]
    assert AESGCM(OLD).decrypt(nonce, sealed, f"v1.{kid}.{AAD}".encode()) == b"hello"


def test_empty_plaintext_round_trips() -> None:
    ring = Keyring([OLD])
    assert ring.decrypt(ring.encrypt(b"", aad=AAD), aad=AAD) == b""


def test_empty_aad_is_refused() -> None:
    with pytest.raises(ValueError, match="aad"):
        Keyring([OLD]).encrypt("x", aad="")


@given(st.binary(max_size=300), st.text(min_size=1, max_size=40))
def test_anything_round_trips(plaintext: bytes, aad: str) -> None:
    ring = Keyring([NEW, OLD])
    assert ring.decrypt(ring.encrypt(plaintext, aad=aad), aad=aad) == plaintext


# ---------------------------------------------------------------------------- damage


@pytest.mark.parametrize("index", [0, 11, 12, 20, -16, -1])
def test_a_flipped_bit_anywhere_fails(index: int) -> None:
    ring = Keyring([OLD])
    token = ring.encrypt("shpat_abcdef", aad=AAD)
    with pytest.raises(CryptoError, match="altered") as caught:
        ring.decrypt(flip(token, index), aad=AAD)
    assert "shpat" not in str(caught.value)


@pytest.mark.parametrize("keep", [0, 1, 10, 27])
def test_truncated_data_fails(keep: int) -> None:
    ring = Keyring([OLD])
    token = ring.encrypt("shpat_abcdef", aad=AAD)
    prefix, data = token.rsplit(".", 1)
    blob = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    truncated = f"{prefix}.{b64(blob[:keep], padded=False)}" if keep else f"{prefix}."
    with pytest.raises(CryptoError, match=r"truncated|not a v1"):
        ring.decrypt(truncated, aad=AAD)


def test_a_dropped_tail_fails() -> None:
    ring = Keyring([OLD])
    token = ring.encrypt("shpat_abcdef", aad=AAD)
    prefix, data = token.rsplit(".", 1)
    blob = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    with pytest.raises(CryptoError, match="altered"):
        ring.decrypt(f"{prefix}.{b64(blob[:-1], padded=False)}", aad=AAD)


def test_a_swapped_row_fails() -> None:
    ring = Keyring([OLD])
    token_a = ring.encrypt("token-of-shop-a", aad="shop:1:access_token")
    with pytest.raises(CryptoError, match="another record"):
        ring.decrypt(token_a, aad="shop:2:access_token")
    with pytest.raises(CryptoError, match="another record"):
        ring.decrypt(token_a, aad="shop:1:refresh_token")


def test_a_wrong_key_id_fails() -> None:
    # Relabelling a token with another key's id: the key is known, but it is the wrong one
    # and the label is authenticated.
    ring = Keyring([NEW, OLD])
    token = ring.encrypt("x", aad=AAD)
    relabelled = token.replace(key_id(NEW), key_id(OLD), 1)
    with pytest.raises(CryptoError, match="altered"):
        ring.decrypt(relabelled, aad=AAD)


def test_an_unknown_key_fails_naming_only_its_id() -> None:
    token = Keyring([NEW]).encrypt("x", aad=AAD)
    with pytest.raises(CryptoError, match=f"key {key_id(NEW)}, which is not in "
                                          "CONSULTBOOK_ENCRYPTION_KEYS"):
        Keyring([OLD]).decrypt(token, aad=AAD)


@pytest.mark.parametrize(
    "token",
    ["", "x", "v1", "v1..", "v2.00000000.AAAA", "v1.0000000.AAAA", "v1.0000000g.AAAA",
     "v1.ABCDEF01.AAAA", "v1.00000000.AA==", "v1.00000000.AA AA", "v1.00000000.AAA+",
     "v1.00000000.A", "v1.00000000.AAAA.x", " v1.00000000.AAAA", "v1.00000000.AAAA\n",
     "v1.00000000.AB"],  # "AB" is not the canonical spelling of its byte
)
def test_malformed_tokens_fail(token: str) -> None:
    with pytest.raises(CryptoError):
        Keyring([OLD]).decrypt(token, aad=AAD)


def test_non_utf8_plaintext_fails_decrypt_str() -> None:
    ring = Keyring([OLD])
    with pytest.raises(CryptoError, match="UTF-8"):
        ring.decrypt_str(ring.encrypt(b"\xff", aad=AAD), aad=AAD)


@given(st.text(max_size=80))
def test_arbitrary_strings_only_ever_raise_crypto_error(token: str) -> None:
    with pytest.raises(CryptoError):
        Keyring([OLD]).decrypt(token, aad=AAD)


# -------------------------------------------------------------------------- rotation


def test_rotation_end_to_end() -> None:
    before = Keyring([OLD])
    token = before.encrypt("shpat_abcdef", aad=AAD)

    # Step 1: the new key goes first; the old one stays to decrypt.
    during = Keyring([NEW, OLD])
    assert during.decrypt_str(token, aad=AAD) == "shpat_abcdef"
    assert during.needs_rotation(token)
    rotated = during.rotate(token, aad=AAD)
    assert rotated.startswith(f"v1.{key_id(NEW)}.")
    assert not during.needs_rotation(rotated)
    assert during.decrypt_str(rotated, aad=AAD) == "shpat_abcdef"

    # Step 2: the old key is dropped; rotated tokens still decrypt, unrotated ones don't.
    after = Keyring([NEW])
    assert after.decrypt_str(rotated, aad=AAD) == "shpat_abcdef"
    with pytest.raises(CryptoError, match="not in CONSULTBOOK_ENCRYPTION_KEYS"):
        after.decrypt(token, aad=AAD)


def test_new_secrets_are_encrypted_with_the_first_key() -> None:
    assert Keyring([NEW, OLD]).encrypt("x", aad=AAD).startswith(f"v1.{key_id(NEW)}.")
    assert Keyring([OLD, NEW]).encrypt("x", aad=AAD).startswith(f"v1.{key_id(OLD)}.")


def test_rotating_a_current_token_changes_nothing() -> None:
    ring = Keyring([NEW, OLD])
    token = ring.encrypt("x", aad=AAD)
    assert ring.rotate(token, aad=AAD) == token


def test_rotate_keeps_the_binding_and_checks_it() -> None:
    ring = Keyring([NEW, OLD])
    token = Keyring([OLD]).encrypt("x", aad=AAD)
    with pytest.raises(CryptoError, match="another record"):
        ring.rotate(token, aad="shop:999:access_token")
    rotated = ring.rotate(token, aad=AAD)
    with pytest.raises(CryptoError, match="another record"):
        ring.decrypt(rotated, aad="shop:999:access_token")


def test_rotate_refuses_a_tampered_token() -> None:
    ring = Keyring([NEW, OLD])
    token = Keyring([OLD]).encrypt("x", aad=AAD)
    with pytest.raises(CryptoError):
        ring.rotate(flip(token, 15), aad=AAD)


def test_needs_rotation_refuses_a_malformed_token() -> None:
    with pytest.raises(CryptoError):
        Keyring([OLD]).needs_rotation("garbage")


def test_a_repeated_key_is_harmless() -> None:
    ring = Keyring([OLD, OLD])
    assert ring.key_ids == (key_id(OLD),)
    assert ring.decrypt(ring.encrypt("x", aad=AAD), aad=AAD) == b"x"
