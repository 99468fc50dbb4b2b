"""Push sync for Google Calendar: an events ``watch`` channel per expert calendar.

* The periodic job (``google_push``, every :data:`JOB_SECONDS`; the plugin's
  ``PUSH.run_job``) opens a channel on each
  expert's calendar (``events.watch``, ``type=web_hook``, our channel id, a random
  per-channel ``token``, ``params.ttl`` a week). Google channels cannot be extended, so a
  channel with less than a day left is replaced: the new one is opened, then the old one
  stopped (``channels.stop``).
* Google calls :data:`NOTIFY_PATH` with ``X-Goog-Channel-ID``/``-Token``/
  ``-Resource-ID``/``-Resource-State``. An unknown channel answers 404 and is remembered
  for the job to stop; a wrong token or resource id answers 403 and changes nothing; the
  ``sync`` handshake answers 200; ``exists``/``not_exists`` mark the expert's free/busy
  stale. No Google call is made inside the request.
* Channel ids are ``cb-<shop id>-<random>`` so that an unknown channel still names its
  shop (whose credentials can stop it).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import falcon
import sqlalchemy as sa
from googleapiclient.errors import HttpError

from engine.providers import ProviderContext
from engine.providers.push import (
    ORPHAN,
    Channel,
    NotificationEndpoint,
    Opened,
    channel_table,
    secret_matches,
)
from plugins.calendar_google.client import GoogleSession

METADATA = sa.MetaData()
CHANNELS = channel_table(METADATA, "calendar_google_channels")
NOTIFY_PATH = "/hooks/calendar_google/notify"
LIFETIME_SECONDS = 7 * 86400
RENEW_BEFORE_SECONDS = 86400
JOB_SECONDS = 15 * 60


def channel_id(shop_id: str) -> str:
    """A new channel id (Google allows ``[A-Za-z0-9-_+/=]``, at most 64 characters)."""
    return f"cb-{shop_id}-{secrets.token_hex(8)}"


def shop_of(channel: str) -> str | None:
    """The shop id inside a channel id of ours, else ``None``."""
    parts = channel.split("-")
    if len(parts) != 3 or parts[0] != "cb" or not parts[1]:
        return None
    return parts[1]


class GoogleChannels:
    """The :class:`~engine.providers.push.ChannelBackend` of one shop's Google account."""

    lifetime_seconds = LIFETIME_SECONDS
    renew_before_seconds = RENEW_BEFORE_SECONDS

    def __init__(self, session: GoogleSession, address: str, shop_id: str) -> None:
        self.session = session
        self.address = address
        self.shop_id = shop_id
        self.api = session.service("calendar", "v3")

    def open(self, calendar: str, secret: str, now: int) -> Opened:
        body = {"id": channel_id(self.shop_id), "type": "web_hook", "address": self.address,
                "token": secret, "params": {"ttl": str(self.lifetime_seconds)}}
        got = self.session.call(lambda: self.api.events().watch(calendarId=calendar,
                                                                body=body))
        # Google answers the expiration in milliseconds since the epoch (a string).
        expires = int(got.get("expiration") or (now + self.lifetime_seconds) * 1000) // 1000
        return Opened(str(got.get("id", body["id"])), expires, got.get("resourceId"))

    def renew(self, channel: Channel, now: int) -> Opened | None:
        return None  # a Google channel cannot be extended: a new one replaces it

    def close(self, channel: Channel) -> None:
        body = {"id": channel.id, "resourceId": channel.resource_id or ""}
        try:
            self.session.call(lambda: self.api.channels().stop(body=body),
                              passthrough=(404,))
        except HttpError:
            pass  # 404: Google no longer knows it -- stopped already


@contextmanager
def backend(ctx: ProviderContext, address: str) -> Iterator[GoogleChannels]:
    """The channel backend of one shop's Google account (for :class:`PushSync`)."""
    with GoogleSession(ctx) as session:
        yield GoogleChannels(session, address, ctx.shop.id)


class GoogleNotifications(NotificationEndpoint):
    """``POST /hooks/calendar_google/notify``: Google's channel notifications."""

    table = CHANNELS

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "text/plain"
        resp.text = ""
        cid = req.get_header("X-Goog-Channel-ID") or ""
        state = (req.get_header("X-Goog-Resource-State") or "").lower()
        resource = req.get_header("X-Goog-Resource-ID")
        channel = self.store.get(cid) if cid else None
        if channel is None or channel.state == ORPHAN:
            shop = shop_of(cid)
            if channel is None and shop is not None:
                now = self.now()
                # Ask Google (from the job) to stop it; it expires within a week anyway.
                self.store.add_orphan(shop, cid, resource, now, now + LIFETIME_SECONDS)
            resp.status = falcon.HTTP_404
            return
        if not secret_matches(channel, req.get_header("X-Goog-Channel-Token")) or (
                channel.resource_id and resource != channel.resource_id):
            resp.status = falcon.HTTP_403
            return
        if state in ("exists", "not_exists"):
            self.host.invalidate_busy(channel.shop_id, channel.expert_id)
        # "sync" (the handshake after watch) and anything else: acknowledged, nothing to do.
        resp.status = falcon.HTTP_200
