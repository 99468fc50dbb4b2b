"""Tables of the provider host: account connections, OAuth states (of provider sign-ins
and of the Shopify install alike), per-shop provider
settings, idempotency records for meetings and mail, the free/busy cache and health, and
the plugin jobs' run claims. (A plugin's own tables live in the plugin.)

Every secret column holds an ``engine.crypto`` token bound to its row and purpose
(see the ``*_aad`` functions in :mod:`engine.services.connections`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from engine.store.base import ID, Base


class ProviderConnection(Base):
    """A shop's connection to an account (one per shop and connector)."""

    __tablename__ = "provider_connections"
    __table_args__ = (UniqueConstraint("shop_id", "provider"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    shop_id: Mapped[str] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(64))
    account: Mapped[str | None] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(16))  # connected | broken
    # Encrypted JSON document (refresh token, msal cache...): aad connection:<id>:credentials
    credentials: Mapped[str | None] = mapped_column(Text)
    scopes: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    connected_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    broken_at: Mapped[datetime | None]


# ``OAuthState.purpose`` of a Shopify install state; any other value is the name of the
# provider connector whose sign-in the state belongs to.
SHOPIFY_INSTALL = "shopify_install"


class OAuthState(Base):
    """A pending OAuth flow, of the Shopify install or of a provider sign-in: the one
    mechanism for one-time ``state`` values.

    Keyed by the SHA-256 of the state parameter (a database reader cannot replay it).
    ``purpose`` says whose flow it is: :data:`SHOPIFY_INSTALL` (bound to ``shop_domain``,
    spent by one conditional update of ``consumed_at`` and kept a while after, so a
    replay gets a clear error) or a provider connector's name (bound to ``shop_id`` and
    to the starting browser by ``browser_hash``, carrying the encrypted ``flow``, spent
    by deleting the row). Each service reads and sweeps only rows of its own purpose.
    """

    __tablename__ = "oauth_states"

    # hex SHA-256 of the state value sent to Shopify or the provider.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(64))
    # The shop being installed (install states only).
    shop_domain: Mapped[str | None] = mapped_column(String(255))
    # The installed shop connecting an account (provider states only).
    shop_id: Mapped[str | None] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    # Encrypted JSON flow data (PKCE verifier, msal flow), provider states only:
    # aad oauth_state:<id>:flow
    flow: Mapped[str | None] = mapped_column(Text)
    # SHA-256 of the nonce in the starting browser's cookie; a provider callback must
    # match it. Empty for install states (Shopify's install has no such cookie).
    browser_hash: Mapped[str] = mapped_column(String(64), server_default="", default="")
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    consumed_at: Mapped[datetime | None]


class OAuthStart(Base):
    """A one-time ticket to open ``/auth/<provider>/start`` (keyed by its SHA-256).

    Issued to the admin page over an authenticated API call, so the browser's start URL
    carries no session token; spent on first use, dead after a minute."""

    __tablename__ = "provider_oauth_starts"

    ticket_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    shop_id: Mapped[str] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class ProviderMeeting(Base):
    """The video meeting made for a booking, so a retried task reuses it."""

    __tablename__ = "provider_meetings"

    booking_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(64), primary_key=True)
    shop_id: Mapped[str] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"),
                                         index=True)
    meeting_id: Mapped[str] = mapped_column(Text)
    url: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class SentMessage(Base):
    """A message sent under an idempotency key (a repeat with the same key is a no-op)."""

    __tablename__ = "sent_messages"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    shop_id: Mapped[str] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"),
                                         index=True)
    provider: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(255))
    sent_at: Mapped[datetime]


class BusyCacheEntry(Base):
    """Free/busy cache when no Redis is configured: one row per expert and range chunk."""

    __tablename__ = "busy_cache"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    shop_id: Mapped[str] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"),
                                         index=True)
    fetched_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    intervals: Mapped[list[Any]] = mapped_column(JSON)


class FreeBusyHealth(Base):
    """Whether an expert's busy time can currently be read (what the merchant sees)."""

    __tablename__ = "freebusy_health"

    expert_id: Mapped[str] = mapped_column(ForeignKey("experts.id", ondelete="CASCADE"),
                                           primary_key=True)
    shop_id: Mapped[str] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"),
                                         index=True)
    provider: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # ok | stale | hidden
    reason: Mapped[str | None] = mapped_column(Text)
    last_success_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class ProviderSettings(Base):
    """A shop's values of one provider's declared settings (``Provider.settings``)."""

    __tablename__ = "provider_settings"

    shop_id: Mapped[str] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"),
                                         primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    provider: Mapped[str] = mapped_column(String(64), primary_key=True)
    values: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime]


class PluginJobRun(Base):
    """When a plugin's periodic job last started: the one row every process's scheduler
    claims by compare-and-set, so each period runs the job once across processes."""

    __tablename__ = "plugin_job_runs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime]
    owner: Mapped[str] = mapped_column(String(128))
