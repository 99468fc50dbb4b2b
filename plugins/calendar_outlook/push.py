"""Push sync for Outlook: a Microsoft Graph subscription per expert calendar.

* The periodic job (``outlook_push``, every :data:`JOB_SECONDS`; the plugin's
  ``PUSH.run_job``) creates a subscription on
  each expert's events (``POST /subscriptions``: ``resource = users/<email>/events``,
  ``changeType = created,updated,deleted``, a random per-subscription ``clientState``,
  notifications and lifecycle notifications to :data:`NOTIFY_PATH`, three days), renews it
  in place (``PATCH /subscriptions/{id}``) when less than a day is left, and deletes the
  ones no expert needs. A subscription Graph no longer knows (404 on renew) is recreated.
* Graph calls :data:`NOTIFY_PATH`: the validation handshake (``?validationToken=``) is
  echoed as ``text/plain`` at once; every notification's ``clientState`` is checked
  against the subscription's (only its hash is stored); change notifications mark the
  expert's free/busy stale; lifecycle ones mark the subscription for the job
  (``reauthorizationRequired`` -> renew, ``subscriptionRemoved`` -> recreate, and the
  busy time is stale as changes may have been missed). Answers 202; 403 when nothing in
  the request was genuine. No Graph call is made inside the request.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import falcon
import sqlalchemy as sa

from engine.providers import ProviderContext
from engine.providers.push import (
    LIVE,
    ORPHAN,
    RECREATE,
    RENEW,
    Channel,
    NotificationEndpoint,
    Opened,
    channel_table,
    secret_matches,
)

METADATA = sa.MetaData()
CHANNELS = channel_table(METADATA, "calendar_outlook_subscriptions")
NOTIFY_PATH = "/hooks/calendar_outlook/notify"
LIFETIME_SECONDS = 3 * 86400  # Graph allows under 7 days for Outlook events
RENEW_BEFORE_SECONDS = 86400
JOB_SECONDS = 15 * 60
MAX_BODY = 1 << 20
MAX_VALIDATION_TOKEN = 2048


def _graph_instant(at: int) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


def _parse_instant(value: Any, fallback: int) -> int:
    """Graph's ``expirationDateTime`` (always UTC, ``...Z``) in POSIX seconds."""
    try:
        return int(datetime.fromisoformat(str(value)[:19]).replace(tzinfo=UTC).timestamp())
    except ValueError:
        return fallback


class GraphSubscriptions:
    """The :class:`~engine.providers.push.ChannelBackend` of one shop's Microsoft account."""

    lifetime_seconds = LIFETIME_SECONDS
    renew_before_seconds = RENEW_BEFORE_SECONDS

    def __init__(self, graph: Any, address: str) -> None:
        self.graph = graph
        self.address = address

    def open(self, calendar: str, secret: str, now: int) -> Opened:
        expires = now + self.lifetime_seconds
        doc = self.graph.call("POST", "/subscriptions", body={
            "changeType": "created,updated,deleted",
            "notificationUrl": self.address, "lifecycleNotificationUrl": self.address,
            "resource": f"users/{quote(calendar, safe='@')}/events",
            "expirationDateTime": _graph_instant(expires), "clientState": secret}).json()
        return Opened(str(doc["id"]), _parse_instant(doc.get("expirationDateTime"), expires))

    def renew(self, channel: Channel, now: int) -> Opened | None:
        expires = now + self.lifetime_seconds
        resp = self.graph.call("PATCH", f"/subscriptions/{channel.id}",
                               body={"expirationDateTime": _graph_instant(expires)},
                               passthrough=(404,))
        if resp.status_code == 404:
            return None  # Graph removed it: a new subscription replaces it
        doc = resp.json()
        return Opened(channel.id, _parse_instant(doc.get("expirationDateTime"), expires))

    def close(self, channel: Channel) -> None:
        self.graph.call("DELETE", f"/subscriptions/{channel.id}", passthrough=(404,))


def backend(session: Callable[[ProviderContext], AbstractContextManager[Any]]
            ) -> Callable[[ProviderContext, str], AbstractContextManager[GraphSubscriptions]]:
    """The channel backend factory (for :class:`PushSync`) over ``session(ctx)``, the
    plugin's Graph session (passed in: this module does not import the plugin package)."""

    @contextmanager
    def open_backend(ctx: ProviderContext, address: str) -> Iterator[GraphSubscriptions]:
        with session(ctx) as graph:
            yield GraphSubscriptions(graph, address)

    return open_backend


class GraphNotifications(NotificationEndpoint):
    """``POST /hooks/calendar_outlook/notify``: Graph's notifications and handshakes."""

    table = CHANNELS

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        token = req.get_param("validationToken")
        if token is not None:
            # Graph's handshake: echo the token as plain text within 10 s.
            if len(token) > MAX_VALIDATION_TOKEN:
                resp.status = falcon.HTTP_400
                return
            resp.content_type = "text/plain"
            resp.text = token
            resp.status = falcon.HTTP_200
            return
        resp.content_type = "text/plain"
        resp.text = ""
        length = req.content_length or 0
        if length > MAX_BODY:
            resp.status = falcon.HTTP_413
            return
        try:
            doc = json.loads(req.bounded_stream.read(MAX_BODY) or b"null")
        except ValueError:
            resp.status = falcon.HTTP_400
            return
        items = doc.get("value") if isinstance(doc, dict) else None
        if not isinstance(items, list):
            resp.status = falcon.HTTP_400
            return
        genuine = 0
        for item in items:
            if not isinstance(item, dict):
                continue
            channel = self.store.get(str(item.get("subscriptionId") or ""))
            if channel is None or channel.state == ORPHAN or not secret_matches(
                    channel, item.get("clientState") if isinstance(
                        item.get("clientState"), str) else None):
                continue  # forged, or a subscription we no longer keep: ignored
            genuine += 1
            event = item.get("lifecycleEvent")
            if event == "reauthorizationRequired":
                self.store.set_state(channel.id, RENEW, only_from=(LIVE,))
                continue
            if event == "subscriptionRemoved":
                self.store.set_state(channel.id, RECREATE)
            # A change, "missed" or a removed subscription: the busy time may be stale.
            self.host.invalidate_busy(channel.shop_id, channel.expert_id)
        resp.status = falcon.HTTP_202 if genuine or not items else falcon.HTTP_403
