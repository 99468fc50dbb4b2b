"""Secrets at rest: every encrypted column, and key rotation over all of them.

Rotation is resumable: rows are re-encrypted in small committed batches, and a row
already under the current key is skipped, so an interrupted run is simply run again.

Rotation runs while the app runs, and other writers replace these columns meanwhile
(a token refresh stores a new single-use refresh token). So rotation never writes back
a value it read earlier: each row is re-encrypted with a compare-and-set
(``UPDATE ... SET col = rotated WHERE pk = id AND col = the ciphertext read``); when
that misses, someone stored a newer value, which is re-read and (if it is not under the
current key already) rotated in turn. A newer value is therefore never overwritten by
an older one, on PostgreSQL (each UPDATE re-checks its WHERE against the latest
committed row version) and on SQLite (writers are serialized) alike. The other side,
a refresh whose own compare-and-set meets a rotated ciphertext of the token it spent,
is handled in :func:`engine.services.install._store_refreshed`.

Plugins declare the encrypted columns of their own tables in
``consultbook_register_secrets``; the composition root hands them to
:func:`register_plugin_columns`, and rotation treats them exactly like the engine's.
Every column is handled through its SQLAlchemy ``Table`` (a row is a plain result row,
its columns as attributes), so a plugin's table needs no engine model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, select, update

from engine.crypto import Keyring
from engine.providers.registry import SecretColumn
from engine.services.install import refresh_token_aad
from engine.services.shops import access_token_aad
from engine.store import Database
from engine.store.models import Shop


@dataclass(frozen=True)
class EncryptedColumn:
    """A column of tokens: ``model`` is an ORM model or a ``Table``; ``aad(row)`` the
    purpose each value was encrypted with."""

    model: Any
    column: str
    aad: Callable[[Any], str]

    @property
    def table(self) -> Table:
        table = self.model if isinstance(self.model, Table) else self.model.__table__
        assert isinstance(table, Table)
        return table


# Later features append their columns here (provider refresh tokens, msal caches, ...).
ENCRYPTED_COLUMNS: list[EncryptedColumn] = [
    EncryptedColumn(Shop, "access_token", lambda row: access_token_aad(row.id)),
    EncryptedColumn(Shop, "refresh_token", lambda row: refresh_token_aad(row.id)),
]


def _provider_columns() -> list[EncryptedColumn]:
    """The provider host's secrets: connection credentials (refresh tokens, msal token
    caches) and pending OAuth flows."""
    from engine.services.connections import credentials_aad, flow_aad
    from engine.store.providers_models import OAuthState, ProviderConnection

    return [
        EncryptedColumn(ProviderConnection, "credentials", lambda row: credentials_aad(row.id)),
        # Provider sign-in states only carry a flow (install states' flow is NULL).
        EncryptedColumn(OAuthState, "flow", lambda row: flow_aad(row.id)),
    ]


ENCRYPTED_COLUMNS.extend(_provider_columns())

_plugin_lock = threading.Lock()
_PLUGIN_COLUMNS: dict[tuple[str, str], EncryptedColumn] = {}


def register_plugin_columns(columns: Iterable[SecretColumn]) -> None:
    """Add plugins' encrypted columns (from ``consultbook_register_secrets``) to what
    :func:`rotate_all` covers in this process. Called by the composition root."""
    with _plugin_lock:
        for col in columns:
            _PLUGIN_COLUMNS[(col.table.name, col.column)] = EncryptedColumn(
                col.table, col.column, col.aad)


def all_columns() -> list[EncryptedColumn]:
    """The engine's encrypted columns, then the registered plugins' ones."""
    with _plugin_lock:
        return [*ENCRYPTED_COLUMNS, *_PLUGIN_COLUMNS.values()]

BATCH = 200


# Each miss means another writer committed a new value of that very cell in between;
# the bound only keeps a bug from spinning forever.
_CAS_ATTEMPTS = 100


class RotationConflict(RuntimeError):
    """A row kept changing under rotation; running the rotation again finishes it."""


def _rotate_cell(session: Any, col: EncryptedColumn, keyring: Keyring, row: Any) -> bool:
    """Re-encrypt one row's cell with the current key by compare-and-set; True when a
    new ciphertext was written. ``row`` is the row as read (its pk and the aad inputs)."""
    table = col.table
    pk = table.primary_key.columns.values()[0]
    column = table.c[col.column]
    ident = getattr(row, pk.key)
    token = getattr(row, col.column)
    for _ in range(_CAS_ATTEMPTS):
        if token is None or not keyring.needs_rotation(token):
            return False
        rotated = keyring.rotate(token, aad=col.aad(row))
        result = session.execute(
            update(table).where(pk == ident, column == token)
            .values({col.column: rotated}).execution_options(synchronize_session=False))
        if getattr(result, "rowcount", 0) == 1:
            return True
        # Someone stored another value since we read it: rotate that one instead.
        token = session.scalar(select(column).where(pk == ident))
    raise RotationConflict(f"{table.name}.{col.column} of {ident} kept changing "
                           "during rotation; run it again")


def rotate_all(db: Database, keyring: Keyring,
               columns: Iterable[EncryptedColumn] | None = None) -> tuple[int, int]:
    """Re-encrypt every stored secret with the current key. Returns (rewritten, total).

    Safe to run while the app runs (see the module docstring): a value another process
    stores meanwhile is never replaced by a re-encryption of an older one. Raises
    CryptoError for a value that no configured key decrypts.
    """
    rewritten = total = 0
    for col in (all_columns() if columns is None else columns):
        table = col.table
        pk = table.primary_key.columns.values()[0]
        last: Any = None
        while True:
            with db.write() as session:
                # Plain rows, not ORM objects: only the compare-and-set UPDATE writes,
                # never a flush of a (possibly stale) object.
                q = select(table).where(table.c[col.column].is_not(None))
                if last is not None:
                    q = q.where(pk > last)
                rows = session.execute(q.order_by(pk).limit(BATCH)).all()
                for row in rows:
                    total += 1
                    if _rotate_cell(session, col, keyring, row):
                        rewritten += 1
                if not rows:
                    break
                last = getattr(rows[-1], pk.key)
    return rewritten, total
