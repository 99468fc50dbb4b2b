"""Zoom meetings for bookings, through a Zoom Server-to-Server OAuth app.

Connecting: the merchant creates a Server-to-Server OAuth app in the Zoom App
Marketplace (scopes ``meeting:write:admin``/``meeting:read:admin`` and ``user:read:admin``,
or their granular equivalents) and types its account id, client id and client secret into
the connect form of :class:`ZoomConnector`. ``connect`` gets a token and reads
``GET /v2/users/me`` to name the account; the host stores the three values encrypted.

The provider (:class:`ZoomVideo`, video provider ``zoom``) makes one scheduled meeting
(type 2) per booking: topic = the service, start, duration and the expert's zone from the
booking, a waiting room and no joining before the host (a consultation is private). The
host is the expert's own Zoom user when the account has a user with the expert's email,
else the user who owns the app (``me``). A rescheduled booking moves the meeting
(``update_meeting``: ``PATCH``); a cancelled one deletes it (a meeting already gone is
success).

Idempotent on the booking -- why a marker and a lookup, not a local table. The host's
facade remembers one meeting per booking, but a worker can die after Zoom made the
meeting and before the facade stored it, and an in-call retry can follow a create whose
answer was lost (a timeout, a 502 from Zoom's edge). A table of our own written *before*
the create cannot hold the meeting id (Zoom chooses it), and one written after has the
same gap as the facade's. So the truth lives in Zoom: every meeting's agenda begins
with the line ``consultbook booking <booking id>``, and before creating, the provider
lists the host's scheduled meetings (``GET /users/{id}/meetings?type=scheduled``, every
page) and adopts a meeting carrying the marker. No date window, so a booking moved
between the lost create and the retry still finds its meeting; ``type=scheduled``
rather than ``upcoming``, so a retry still finds a meeting whose start has passed. The
lookup costs a cheap read (a page per 300 meetings) per create and nothing against the
100-per-day create/update budget; only first creates and retries reach it (the facade
answers the rest). It runs inside every retried attempt, so a lost answer is found by
the next attempt. If two meetings ever carry the same booking (two workers past the
lookup at once), the oldest one wins, the same one for every caller.

Tokens last an hour. The current one is kept with the connection's credentials (the host
encrypts them), so every worker and web process reuses it until five minutes before it
expires; a 401 refreshes once, then the connection is broken (see :mod:`.client`).

Rate limits: Zoom allows 100 meeting create/update requests per user per day and answers
429 with ``Retry-After``/``X-RateLimit-*`` headers. A short wait is retried in the call
(the context's retry policy); a daily limit becomes
:class:`~engine.providers.ProviderUnavailable` with ``retry_after`` for the outbox to
reschedule -- a worker never sleeps on it.

Origins: ``ctx.origin("zoom_api", "https://api.zoom.us")`` and ``ctx.origin("zoom_oauth",
"https://zoom.us")`` (tests point both at a local fake).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

from engine import hookimpl
from engine.providers import (
    BookingDetails,
    FormConnector,
    FormField,
    Grant,
    Meeting,
    ProviderNotConfigured,
    ProviderRegistry,
    ProviderRejected,
    VideoProvider,
)
from plugins.video_zoom.client import (
    API_ORIGIN,
    OAUTH_ORIGIN,
    PROVIDER,
    AppCredentials,
    Token,
    TokenRefused,
    ZoomSession,
)

__all__ = ["ZoomConnector", "ZoomVideo", "consultbook_register_providers", "marker"]

#: The agenda's first line that ties a Zoom meeting to its booking.
MARKER_PREFIX = "consultbook booking "
_MARKER = re.compile(r"consultbook booking (\S+)")
#: Zoom's limits on meeting fields.
TOPIC_MAX = 200
AGENDA_MAX = 2000
PAGE_SIZE = 300
#: How long a "which Zoom user hosts this expert's meetings" answer is reused.
HOST_TTL = 3600.0
_ID_VALUE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_MEETING_ID = re.compile(r"[0-9]{1,20}")
#: Settings of every meeting: a consultation is private, and the expert lets the
#: customer in. Registration off; Zoom's own mails off (the shop sends its own).
MEETING_SETTINGS: Mapping[str, Any] = {
    "waiting_room": True,
    "join_before_host": False,
    "host_video": True,
    "participant_video": True,
    "mute_upon_entry": False,
    "approval_type": 2,
    "auto_recording": "none",
    "email_notification": False,
    "registrants_email_notification": False,
}


def marker(booking_id: str) -> str:
    return MARKER_PREFIX + booking_id


def _marked(meeting: Mapping[str, Any]) -> str | None:
    """The booking id a meeting's agenda names on its first line, if any."""
    agenda = str(meeting.get("agenda") or "")
    first = agenda.split("\n", 1)[0].strip()
    found = _MARKER.fullmatch(first)
    return found.group(1) if found else None


def _zoom_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meeting_body(booking: BookingDetails) -> dict[str, Any]:
    """What a create or an update sends: the booking's time, names and the marker."""
    minutes = max(1, math.ceil((booking.end - booking.start).total_seconds() / 60))
    agenda = marker(booking.booking_id)
    if booking.description:
        agenda = f"{agenda}\n{booking.description}"
    return {
        "topic": (booking.service_title or "Consultation")[:TOPIC_MAX],
        "start_time": _zoom_time(booking.start),
        "duration": minutes,
        "timezone": booking.expert_timezone or booking.shop_timezone,
        "agenda": agenda[:AGENDA_MAX],
    }


def _check_value(label: str, value: str) -> str:
    value = value.strip()
    if not _ID_VALUE.fullmatch(value):
        raise ProviderRejected(f"the {label} does not look like a Zoom {label} (copy it from "
                               "the app's App Credentials page)", provider=PROVIDER)
    return value


class ZoomConnector(FormConnector):
    """Connects a shop to a Zoom account through a Server-to-Server OAuth app."""

    name = "zoom"
    label = "Zoom"
    fields: ClassVar[tuple[FormField, ...]] = (
        FormField("account_id", "Account ID",
                  help="From your Server-to-Server OAuth app's App Credentials page."),
        FormField("client_id", "Client ID"),
        FormField("client_secret", "Client secret", kind="password"),
    )

    def _origin(self, name: str, default: str) -> str:
        origins = getattr(self.config, "origins", None) or {}
        return str(origins.get(name, default)).rstrip("/")

    def connect(self, *, values: Mapping[str, str]) -> Grant:
        app = AppCredentials(
            account_id=_check_value("account ID", values.get("account_id", "")),
            client_id=_check_value("client ID", values.get("client_id", "")),
            client_secret=values.get("client_secret", "").strip())
        if not app.client_secret or any(c.isspace() for c in app.client_secret):
            raise ProviderRejected("the client secret is missing or malformed",
                                   provider=PROVIDER)
        verify = getattr(self.config, "provider_ca_bundle", None) or True
        with ZoomSession(app, api_origin=self._origin("zoom_api", API_ORIGIN),
                         oauth_origin=self._origin("zoom_oauth", OAUTH_ORIGIN),
                         verify=verify, retry=self.retry,
                         now=lambda: datetime.now(UTC)) as session:
            def login() -> Any:
                try:
                    session.fetch_token()
                except TokenRefused as exc:
                    raise ProviderRejected(
                        "Zoom refused the account ID, client ID or client secret "
                        f"({exc.reason}); check them on the app's App Credentials page and "
                        "that the app is activated", provider=PROVIDER) from None
                return session.request("GET", "/users/me")

            user = session.run(login)
        if not isinstance(user, dict) or not user.get("id"):
            raise ProviderRejected("Zoom answered without the account's user",
                                   provider=PROVIDER)
        email = str(user.get("email") or "") or None
        return Grant(account=email or str(user["id"]), credentials={
            "account_id": app.account_id, "client_id": app.client_id,
            "client_secret": app.client_secret, "user_id": str(user["id"]),
            "user_email": email})


class _Hosts:
    """Which Zoom user hosts an expert's meetings, remembered per account for an hour
    (one lookup per expert and hour, not per booking)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[tuple[str, str], tuple[str, float]] = {}

    def get(self, account_id: str, email: str) -> str | None:
        with self._lock:
            found = self._known.get((account_id, email.lower()))
        if found is None or found[1] < time.monotonic():
            return None
        return found[0]

    def put(self, account_id: str, email: str, user_id: str) -> None:
        with self._lock:
            self._known[(account_id, email.lower())] = (user_id, time.monotonic() + HOST_TTL)

    def clear(self) -> None:
        """Forget every answer (tests; a deployment that renamed its Zoom users)."""
        with self._lock:
            self._known.clear()


HOSTS = _Hosts()


class ZoomVideo(VideoProvider):
    """Zoom meetings for bookings (see the module docstring for the guarantees)."""

    name = "zoom"
    label = "Zoom"
    connection = "zoom"

    # --- plumbing -----------------------------------------------------------------------

    def _session(self) -> ZoomSession:
        handle = self.ctx.connection
        if handle is None:
            # The host opens the connection before making the provider; without one the
            # shop never connected Zoom.
            raise ProviderNotConfigured("the shop has not connected Zoom (connect it in the "
                                        "app's settings)")
        doc = handle.credentials()
        try:
            app = AppCredentials(str(doc["account_id"]), str(doc["client_id"]),
                                 str(doc["client_secret"]))
        except KeyError:
            raise ProviderRejected("the stored Zoom connection is incomplete; connect Zoom "
                                   "again", provider=PROVIDER) from None
        token = None
        if doc.get("access_token") and doc.get("token_expires_at"):
            try:
                token = Token(str(doc["access_token"]),
                              datetime.fromisoformat(str(doc["token_expires_at"])))
            except ValueError:
                token = None

        def keep(new: Token) -> None:
            current = handle.credentials()
            handle.save({**current, "access_token": new.value,
                         "token_expires_at": new.expires_at.astimezone(UTC).isoformat()})

        return ZoomSession(app, api_origin=self.ctx.origin("zoom_api", API_ORIGIN),
                           oauth_origin=self.ctx.origin("zoom_oauth", OAUTH_ORIGIN),
                           verify=self.ctx.verify, retry=self.ctx.retry,
                           now=self.ctx.clock.now, token=token, on_token=keep,
                           on_broken=handle.mark_broken)

    def _host(self, session: ZoomSession, booking: BookingDetails) -> str:
        """The Zoom user id that hosts the booking's meeting."""
        default = str(self.ctx.connection.credentials().get("user_id") or "me") \
            if self.ctx.connection is not None else "me"
        email = (booking.expert_email or "").strip()
        if not email:
            return default
        known = HOSTS.get(session.app.account_id, email)
        if known is not None:
            return known
        user = session.call("GET", f"/users/{quote(email, safe='@')}", missing_ok=True)
        host = default
        if isinstance(user, dict) and user.get("id") and \
                str(user.get("status", "active")) == "active":
            host = str(user["id"])
        HOSTS.put(session.app.account_id, email, host)
        return host

    @staticmethod
    def _meeting(doc: Any) -> Meeting:
        if not isinstance(doc, dict):
            raise ProviderRejected("Zoom answered without a meeting", provider=PROVIDER)
        url, mid = str(doc.get("join_url") or ""), str(doc.get("id") or "")
        if not url.startswith("https://") or not _MEETING_ID.fullmatch(mid):
            raise ProviderRejected("Zoom answered without a meeting link", provider=PROVIDER)
        return Meeting(url=url, id=mid, provider=PROVIDER)

    def _find(self, session: ZoomSession, host: str,
              booking: BookingDetails) -> dict[str, Any] | None:
        """The host's scheduled meeting marked with the booking (oldest first), every page
        read. One attempt: raises Retry for the caller's retry loop."""
        # No from/to window: a booking rescheduled between the lost create and the retry
        # must still find the meeting at its old time. Only retries and first creates
        # get here (the facade answers the rest), so a few pages are affordable.
        params: dict[str, Any] = {"type": "scheduled", "page_size": PAGE_SIZE}
        found: list[dict[str, Any]] = []
        seen_tokens: set[str] = set()
        while True:
            page = session.request("GET", f"/users/{quote(host, safe='@')}/meetings",
                                   params=params)
            page = page if isinstance(page, dict) else {}
            for meeting in page.get("meetings") or ():
                if isinstance(meeting, dict) and _marked(meeting) == booking.booking_id:
                    found.append(meeting)
            next_token = str(page.get("next_page_token") or "")
            if not next_token or next_token in seen_tokens:
                break
            seen_tokens.add(next_token)
            params = {**params, "next_page_token": next_token}
        if not found:
            return None
        found.sort(key=lambda m: (str(m.get("created_at") or ""), int(m.get("id") or 0)))
        best = found[0]
        if not best.get("join_url"):
            # Zoom's list answers carry join_url; if one did not, read the meeting.
            best = session.request("GET", f"/meetings/{int(best['id'])}")
        return best if isinstance(best, dict) else None

    # --- the provider contract ----------------------------------------------------------

    def create_meeting(self, booking: BookingDetails) -> Meeting | None:
        """The booking's meeting: the one Zoom already holds for it (a retry), else a new
        one. Raises ProviderUnavailable (429/5xx/timeouts, with ``retry_after``),
        ConnectionBroken, or ProviderRejected (Zoom refused the meeting)."""
        with self._session() as session:
            host = self._host(session, booking)
            body = {**_meeting_body(booking), "type": 2, "settings": dict(MEETING_SETTINGS)}

            def find_or_create() -> Any:
                existing = self._find(session, host, booking)
                if existing is not None:
                    return existing
                return session.request("POST", f"/users/{quote(host, safe='@')}/meetings",
                                       json=body)

            return self._meeting(session.run(find_or_create))

    def update_meeting(self, meeting: Meeting, booking: BookingDetails) -> Meeting:
        """Move ``meeting`` to the booking's (new) time and names; the join link stays.
        A meeting Zoom no longer has is ProviderRejected (it cannot be moved)."""
        mid = self._own_id(meeting)
        if mid is None:
            raise ProviderRejected(f"the meeting {meeting.id!r} is not a Zoom meeting",
                                   provider=PROVIDER)
        with self._session() as session:
            session.call("PATCH", f"/meetings/{mid}", json=_meeting_body(booking))
        return Meeting(url=meeting.url, id=meeting.id, provider=PROVIDER)

    def delete_meeting(self, meeting: Meeting) -> None:
        """Delete the meeting; one that is already gone is success. A meeting of another
        provider (the shop switched video providers) is not Zoom's to delete: nothing."""
        mid = self._own_id(meeting)
        if mid is None:
            return
        with self._session() as session:
            session.call("DELETE", f"/meetings/{mid}",
                         params={"schedule_for_reminder": "false",
                                 "cancel_meeting_reminder": "false"}, missing_ok=True)

    @staticmethod
    def _own_id(meeting: Meeting) -> int | None:
        if meeting.provider not in ("", PROVIDER) or not _MEETING_ID.fullmatch(meeting.id):
            return None
        return int(meeting.id)


@hookimpl
def consultbook_register_providers(registry: ProviderRegistry) -> None:
    registry.add_connector(ZoomConnector)
    registry.add_video(ZoomVideo)

