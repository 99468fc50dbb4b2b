"""Secrets at rest: AES-256-GCM with key rotation (``CONSULTBOOK_ENCRYPTION_KEYS``).

Shop access tokens and provider credentials are stored only as tokens of the form::

    v1.<kid>.<urlsafe base64, unpadded, of: 12-byte nonce + ciphertext + 16-byte tag>

``kid`` is the first 8 hex characters of SHA-256 of the key, so a token names the key
that made it. Every token is bound to its place by *associated data* (``aad``), such as
``"shop:123:access_token"``: a token copied into another row, or another column of the
same row, no longer decrypts. The ``v1.<kid>.`` prefix is authenticated too.

Rotation: the first key of the keyring encrypts, every key decrypts. Put a new key
first, run ``consultbook keys rotate`` (which calls :meth:`Keyring.rotate` on every
stored token), then drop the old key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from engine.errors import ConsultbookError

__all__ = ["CryptoError", "Keyring", "generate_key", "key_id", "parse_keys"]

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
VERSION = "v1"
ENV_VARIABLE = "CONSULTBOOK_ENCRYPTION_KEYS"

_URLSAFE_B64 = re.compile(r"[A-Za-z0-9_-]*={0,2}")
_TOKEN = re.compile(r"v1\.([0-9a-f]{8})\.([A-Za-z0-9_-]+)")


class CryptoError(ConsultbookError):
    """A stored secret cannot be decrypted: malformed, altered, moved, or its key is gone.

    The message says which of these it is (naming at most the key id), never any
    plaintext or key material.
    """

    code = "crypto_error"


def generate_key() -> str:
    """A new random key: url-safe base64 (padded) of 32 bytes from :mod:`secrets`."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def key_id(key: bytes) -> str:
    """The id a token carries for ``key``: the first 8 hex characters of its SHA-256."""
    return hashlib.sha256(key).hexdigest()[:8]


def parse_keys(value: str) -> list[bytes]:
    """The keys of a ``CONSULTBOOK_ENCRYPTION_KEYS`` value, in order (the first encrypts).

    ``value`` is a comma-separated list of url-safe base64 keys; padding is optional,
    whitespace around items and empty items (a trailing comma) are ignored. Each key
    must decode to exactly 32 bytes.

    Raises ``ValueError`` whose one-line message names ``CONSULTBOOK_ENCRYPTION_KEYS``
    and the position of the bad entry, never the entry itself (it is a secret).
    """
    items = [item.strip() for item in value.split(",")]
    items = [item for item in items if item]
    if not items:
        raise ValueError(f"{ENV_VARIABLE} is empty; it needs at least one key "
                         "(make one with `consultbook keys generate`)")
    keys: list[bytes] = []
    for position, item in enumerate(items, start=1):
        where = f"key {position} of {ENV_VARIABLE}"
        if not _URLSAFE_B64.fullmatch(item):
            raise ValueError(f"{where} is not url-safe base64 (A-Z, a-z, 0-9, - and _)")
        stripped = item.rstrip("=")
        if len(stripped) % 4 == 1:
            raise ValueError(f"{where} is not url-safe base64 (its length is impossible)")
        try:
            key = base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
        except (binascii.Error, ValueError):
            raise ValueError(f"{where} is not url-safe base64") from None
        if len(key) != KEY_BYTES:
            raise ValueError(f"{where} decodes to {len(key)} bytes; a key is {KEY_BYTES} bytes")
        keys.append(key)
    return keys


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes | None:
    """Strict unpadded url-safe base64: the one canonical spelling, else ``None``."""
    if len(text) % 4 == 1:
        return None
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    return data if _b64encode(data) == text else None


class Keyring:
    """The app's encryption keys: the first encrypts, all of them decrypt.

    Thread-safe and free of I/O; build one per process from the configuration, e.g.
    ``Keyring(parse_keys(os.environ["CONSULTBOOK_ENCRYPTION_KEYS"]))``.
    """

    key_id = staticmethod(key_id)

    def __init__(self, keys: Sequence[bytes]) -> None:
        """Raises ``ValueError`` for no keys, a key that is not 32 bytes, or two
        different keys that share an id (a 1 in 4 billion accident; refused rather
        than guessed around)."""
        if not keys:
            raise ValueError(f"{ENV_VARIABLE} needs at least one key")
        self._ciphers: dict[str, AESGCM] = {}
        self._keys: dict[str, bytes] = {}
        for position, key in enumerate(keys, start=1):
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise ValueError(f"key {position} of {ENV_VARIABLE} is not {KEY_BYTES} bytes")
            kid = key_id(key)
            if kid in self._keys:
                if self._keys[kid] != key:
                    raise ValueError(f"two keys of {ENV_VARIABLE} share the id {kid}; "
                                     "replace one of them")
                continue
            self._keys[kid] = key
            self._ciphers[kid] = AESGCM(key)
        self._current = key_id(keys[0])

    @classmethod
    def parse(cls, value: str | Sequence[str]) -> Keyring:
        """A keyring from a ``CONSULTBOOK_ENCRYPTION_KEYS`` value, or from its items.

        Raises ``ValueError`` as :func:`parse_keys` does.
        """
        text = value if isinstance(value, str) else ",".join(value)
        return cls(parse_keys(text))

    @property
    def current_key_id(self) -> str:
        """The id of the key that encrypts (the first one)."""
        return self._current

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of every key that decrypts, the current one first."""
        return tuple(self._keys)

    def __repr__(self) -> str:
        # Never the keys themselves.
        return f"Keyring(key_ids={list(self._keys)!r})"

    @staticmethod
    def _aad(kid: str, aad: str) -> bytes:
        if not aad:
            raise ValueError("aad must name the row and purpose the secret belongs to")
        return f"{VERSION}.{kid}.{aad}".encode()

    def encrypt(self, plaintext: bytes | str, *, aad: str) -> str:
        """Encrypt ``plaintext`` (``str`` is UTF-8 encoded) with the current key.

        ``aad`` names where the token will live (e.g. ``"shop:123:access_token"``); the
        same ``aad`` must be given to decrypt it. A fresh random 96-bit nonce is used for
        every call, so encrypting the same plaintext twice gives different tokens.
        Raises ``ValueError`` for an empty ``aad``.
        """
        data = plaintext.encode("utf-8") if isinstance(plaintext, str) else plaintext
        kid = self._current
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._ciphers[kid].encrypt(nonce, data, self._aad(kid, aad))
        return f"{VERSION}.{kid}.{_b64encode(nonce + sealed)}"

    def _split(self, token: str) -> tuple[str, bytes]:
        match = _TOKEN.fullmatch(token) if isinstance(token, str) else None
        if match is None:
            raise CryptoError("The stored secret is not a v1.<key id>.<data> token.")
        blob = _b64decode(match.group(2))
        if blob is None:
            raise CryptoError("The stored secret's data is not valid base64.")
        if len(blob) < NONCE_BYTES + TAG_BYTES:
            raise CryptoError("The stored secret is truncated.")
        return match.group(1), blob

    def decrypt(self, token: str, *, aad: str) -> bytes:
        """The plaintext of ``token``, which must have been made with this ``aad``.

        Raises :class:`CryptoError` when the token is malformed or truncated, when its
        key is not in the keyring, or when authentication fails (altered data, or a
        token that belongs to another row or purpose). Nothing is returned unless the
        whole token authenticates.
        """
        kid, blob = self._split(token)
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise CryptoError(
                f"The stored secret was encrypted with key {kid}, which is not in "
                f"{ENV_VARIABLE}."
            )
        try:
            return cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], self._aad(kid, aad))
        except InvalidTag:
            raise CryptoError(
                "The stored secret does not authenticate: it was altered, or it belongs "
                "to another record."
            ) from None

    def decrypt_str(self, token: str, *, aad: str) -> str:
        """:meth:`decrypt` for text: the plaintext decoded as UTF-8 (CryptoError if not)."""
        data = self.decrypt(token, aad=aad)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise CryptoError("The stored secret is not UTF-8 text.") from None

    def needs_rotation(self, token: str) -> bool:
        """Whether ``token`` was made with a key other than the current one.

        Looks only at the key id (no decryption); raises :class:`CryptoError` for a
        malformed token.
        """
        kid, _ = self._split(token)
        return kid != self._current

    def rotate(self, token: str, *, aad: str) -> str:
        """``token`` re-encrypted with the current key (same plaintext, same ``aad``).

        The token is always decrypted first, so a bad token raises :class:`CryptoError`
        as :meth:`decrypt` does. A token already under the current key is returned
        unchanged, so rotating twice writes nothing the second time.
        """
        plaintext = self.decrypt(token, aad=aad)
        if not self.needs_rotation(token):
            return token
        return self.encrypt(plaintext, aad=aad)
