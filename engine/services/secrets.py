"""Secrets at rest: every encrypted column, and key rotation over all of them.

Rotation is resumable: rows are re-encrypted in small committed batches, and a row
already under the current key is skipped, so an interrupted run is simply run again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from engine.crypto import Keyring
from engine.services.install import refresh_token_aad
from engine.services.shops import access_token_aad
from engine.store import Database
from engine.store.models import Shop


@dataclass(frozen=True)
class EncryptedColumn:
    model: Any
    column: str
    aad: Callable[[Any], str]


# Later features append their columns here (provider refresh tokens, msal caches, ...).
ENCRYPTED_COLUMNS: list[EncryptedColumn] = [
    EncryptedColumn(Shop, "access_token", lambda row: access_token_aad(row.id)),
    EncryptedColumn(Shop, "refresh_token", lambda row: refresh_token_aad(row.id)),
]


def _provider_columns() -> list[EncryptedColumn]:
    """Provider plugins' secrets: connection credentials (refresh tokens, msal token
    caches), pending OAuth flows, and private ICS feed URLs."""
    from engine.services.connections import credentials_aad, flow_aad
    from engine.store.providers_models import IcsFeed, OAuthState, ProviderConnection
    from plugins.calendar_local.service import feed_url_aad

    return [
        EncryptedColumn(ProviderConnection, "credentials", lambda row: credentials_aad(row.id)),
        EncryptedColumn(OAuthState, "flow", lambda row: flow_aad(row.state_hash)),
        EncryptedColumn(IcsFeed, "url", lambda row: feed_url_aad(row.id)),
    ]


ENCRYPTED_COLUMNS.extend(_provider_columns())

BATCH = 200


def rotate_all(db: Database, keyring: Keyring) -> tuple[int, int]:
    """Re-encrypt every stored secret with the current key. Returns (rewritten, total)."""
    rewritten = total = 0
    for col in ENCRYPTED_COLUMNS:
        pk = col.model.__mapper__.primary_key[0]
        last: Any = None
        while True:
            with db.write() as session:
                q = select(col.model).where(getattr(col.model, col.column).is_not(None))
                if last is not None:
                    q = q.where(pk > last)
                rows = session.scalars(q.order_by(pk).limit(BATCH)).all()
                for row in rows:
                    total += 1
                    token = getattr(row, col.column)
                    if keyring.needs_rotation(token):
                        setattr(row, col.column, keyring.rotate(token, aad=col.aad(row)))
                        rewritten += 1
                if not rows:
                    break
                last = getattr(rows[-1], pk.key)
    return rewritten, total
