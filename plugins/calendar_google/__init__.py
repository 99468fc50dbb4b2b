"""Google Calendar: the OAuth web flow, free/busy, and booking events with Meet links.

* **Connect** (``/auth/google/start|callback``): authorization code flow with PKCE,
  ``access_type=offline`` and ``prompt=consent`` so Google returns a refresh token; the
  token endpoint's answer is stored encrypted.
* **Free/busy**: ``freebusy.query`` with at most 50 calendars per call and ranges split
  into pieces of at most 60 days; an expert's calendar is their email address.
* **Events** go into the connected account's primary calendar with the expert and the
  customer as attendees. The event id is the booking id in base32hex, chosen by us, so a
  retried insert answers 409 -- which is success: the existing event is returned.
  With ``video_provider = meet`` the event asks for a Meet link itself
  (``conferenceData.createRequest`` with ``requestId`` = booking id); while Google says
  ``pending`` the event is read again with backoff.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlencode

import requests
from googleapiclient.errors import HttpError

from engine import hookimpl
from engine.providers import (
    BookingDetails,
    CalendarBusy,
    CalendarProvider,
    Config,
    Connector,
    EventRef,
    Grant,
    JobRegistry,
    Meeting,
    ProviderRegistry,
    ProviderRejected,
    Retry,
    RouteRegistry,
    retrying,
)
from engine.providers.batching import BusyAnswers, busy_calls, http_session
from engine.providers.push import PushSync
from plugins.calendar_google import push
from plugins.calendar_google.client import (
    AUTH_URL,
    SCOPES,
    TOKEN_URL,
    GoogleSession,
    http_status_reason,
    missing_client,
)

MAX_CALENDARS_PER_QUERY = 50
MAX_RANGE = timedelta(days=60)


def event_id(booking_id: str) -> str:
    """The Google event id of a booking: its id in lowercase base32hex (``[a-v0-9]``)."""
    return base64.b32hexencode(booking_id.encode("utf-8")).decode("ascii").lower().rstrip("=")


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _id_token_email(id_token: str | None) -> str | None:
    """The email claim of the id_token the token endpoint returned (over TLS, straight
    from Google, so the transport vouches for it)."""
    if not id_token or id_token.count(".") != 2:
        return None
    payload = id_token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return None
    email = claims.get("email")
    return email if isinstance(email, str) else None


class GoogleConnector(Connector):
    name = "google"
    label = "Google"

    @classmethod
    def check_config(cls, config: Config) -> str | None:
        return missing_client(config)

    def start(self, *, state: str, redirect_uri: str) -> tuple[str, dict[str, Any]]:
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        query = {
            "client_id": self.config.google_client_id, "redirect_uri": redirect_uri,
            "response_type": "code", "scope": " ".join(SCOPES), "access_type": "offline",
            "prompt": "consent", "include_granted_scopes": "true", "state": state,
            "code_challenge": challenge, "code_challenge_method": "S256",
        }
        auth = str(self.config.origins.get("google_auth", AUTH_URL))
        return f"{auth}?{urlencode(query)}", {"code_verifier": verifier}

    def finish(self, *, flow: dict[str, Any], params: Mapping[str, str],
               redirect_uri: str) -> Grant:
        code = params.get("code", "")
        if not code:
            raise ProviderRejected("Google sent no authorization code", provider=self.name)
        token_url = str(self.config.origins.get("google_token", TOKEN_URL))
        session = http_session(self.config.provider_ca_bundle or True)

        def attempt() -> dict[str, Any]:
            try:
                resp = session.post(token_url, timeout=self.retry.timeout, data={
                                        "grant_type": "authorization_code", "code": code,
                                        "client_id": self.config.google_client_id,
                                        "client_secret": self.config.google_client_secret,
                                        "redirect_uri": redirect_uri,
                                        "code_verifier": flow.get("code_verifier", "")})
            except requests.RequestException as exc:
                raise Retry(type(exc).__name__) from None
            if resp.status_code == 429 or resp.status_code >= 500:
                raise Retry(f"HTTP {resp.status_code}")
            try:
                doc: dict[str, Any] = resp.json()
            except ValueError:
                doc = {}
            if resp.status_code != 200 or "access_token" not in doc:
                raise ProviderRejected(
                    f"Google refused the code: {doc.get('error', resp.status_code)}",
                    provider=self.name)
            return doc

        try:
            doc = retrying(self.retry, self.name, attempt)
        finally:
            session.close()
        if not doc.get("refresh_token"):
            raise ProviderRejected("Google returned no refresh token; remove consultbook's "
                                   "access in your Google account and connect again",
                                   provider=self.name)
        expires_in = int(doc.get("expires_in") or 3600)
        expiry = datetime.now(UTC) + timedelta(seconds=expires_in)
        scopes = tuple(str(doc.get("scope", " ".join(SCOPES))).split())
        return Grant(account=_id_token_email(doc.get("id_token")), scopes=scopes,
                     credentials={"refresh_token": doc["refresh_token"],
                                  "token": doc["access_token"], "expiry": expiry.isoformat(),
                                  "scopes": list(scopes)})


class GoogleCalendar(CalendarProvider):
    name = "google"
    label = "Google Calendar"
    connection = "google"
    embeds_video = frozenset({"meet"})
    #: Google's own invitations: consultbook mails the customer itself.
    send_updates: ClassVar[str] = "none"
    calendar_id: ClassVar[str] = "primary"

    @classmethod
    def check_config(cls, config: Config) -> str | None:
        return missing_client(config)

    def _session(self) -> GoogleSession:
        return GoogleSession(self.ctx)

    # --- free/busy ------------------------------------------------------------------

    def busy(self, calendars: Sequence[str], start: datetime,
             end: datetime) -> Mapping[str, CalendarBusy]:
        with self._session() as session:
            return self._busy(session, calendars, start, end)

    def _busy(self, session: GoogleSession, calendars: Sequence[str], start: datetime,
              end: datetime) -> Mapping[str, CalendarBusy]:
        api = session.service("calendar", "v3")
        answers = BusyAnswers(calendars)
        for batch, piece_start, piece_end in busy_calls(
                calendars, start, end, max_calendars=MAX_CALENDARS_PER_QUERY,
                max_range=MAX_RANGE):
            body = {"timeMin": _rfc3339(piece_start), "timeMax": _rfc3339(piece_end),
                    "timeZone": "UTC", "items": [{"id": c} for c in batch]}
            answer = session.call(partial(api.freebusy().query, body=body))
            got = answer.get("calendars", {})
            for cal in batch:
                entry = got.get(cal)
                if entry is None:
                    answers.fail(cal, "Google did not answer for this calendar")
                elif entry.get("errors"):
                    reasons = ", ".join(e.get("reason", "?") for e in entry["errors"])
                    answers.fail(cal, f"Google cannot read this calendar ({reasons})")
                else:
                    answers.add(cal, ((_parse(b["start"]), _parse(b["end"]))
                                      for b in entry.get("busy", [])))
        return answers.result(start, end)

    # --- events ---------------------------------------------------------------------

    def _body(self, booking: BookingDetails, meeting: Meeting | None) -> dict[str, Any]:
        attendees = []
        if booking.expert_email:
            attendees.append({"email": booking.expert_email, "displayName": booking.expert_name})
        # A seated session's event lists every customer of the session.
        customers = booking.attendees or (
            ((booking.customer_email, booking.customer_name),) if booking.customer_email
            else ())
        for address, name in customers:
            attendees.append({"email": address, "displayName": name or ""})
        description = booking.description
        body: dict[str, Any] = {
            "summary": booking.summary,
            "start": {"dateTime": _rfc3339(booking.start), "timeZone": booking.expert_timezone},
            "end": {"dateTime": _rfc3339(booking.end), "timeZone": booking.expert_timezone},
            "attendees": attendees,
            "status": "cancelled" if booking.status == "cancelled" else "confirmed",
            "extendedProperties": {"private": {"consultbook_booking": booking.booking_id,
                                               "consultbook_shop": booking.shop_domain}},
            "guestsCanModify": False,
        }
        if meeting is not None:
            body["location"] = meeting.url
            description = f"{description}\n\nJoin: {meeting.url}".strip()
        elif "meet" in self.embeds_video and self.ctx.choice.video == "meet":
            body["conferenceData"] = {"createRequest": {
                "requestId": booking.booking_id,
                "conferenceSolutionKey": {"type": "hangoutsMeet"}}}
        body["description"] = description
        return body

    @staticmethod
    def _meeting_url(event: Mapping[str, Any]) -> str | None:
        for entry in event.get("conferenceData", {}).get("entryPoints", []):
            if entry.get("entryPointType") == "video" and entry.get("uri"):
                return str(entry["uri"])
        link = event.get("hangoutLink")
        return str(link) if link else None

    def _settle(self, session: GoogleSession, api: Any, cal: str,
                event: dict[str, Any]) -> dict[str, Any]:
        """Wait (with backoff) while Google still builds the Meet conference."""
        policy = self.ctx.retry
        eid = event["id"]
        for attempt in range(policy.attempts):
            status = (event.get("conferenceData", {}).get("createRequest", {})
                      .get("status", {}).get("statusCode"))
            if status != "pending":
                return event
            policy.sleep(policy.delay(attempt))
            event = session.call(lambda: api.events().get(calendarId=cal, eventId=eid))
        return event

    def _ref(self, cal: str, event: Mapping[str, Any], meeting: Meeting | None) -> EventRef:
        url = self._meeting_url(event) or (meeting.url if meeting else None)
        return EventRef(self.name, str(event["id"]), cal, url)

    def create_event(self, booking: BookingDetails, meeting: Meeting | None) -> EventRef:
        with self._session() as session:
            return self._create(session, booking, meeting)

    def _create(self, session: GoogleSession, booking: BookingDetails,
                meeting: Meeting | None) -> EventRef:
        api = session.service("calendar", "v3")
        cal = self.calendar_id
        body = {**self._body(booking, meeting), "id": event_id(booking.booking_id)}
        try:
            event = session.call(lambda: api.events().insert(
                calendarId=cal, body=body, sendUpdates=self.send_updates,
                conferenceDataVersion=1), passthrough=(409,))
        except HttpError:
            # 409: the event exists already -- made by an earlier attempt of this booking.
            event = session.call(lambda: api.events().get(calendarId=cal, eventId=body["id"]))
            if event.get("status") == "cancelled" and booking.status != "cancelled":
                event = session.call(lambda: api.events().patch(
                    calendarId=cal, eventId=body["id"], body=self._body(booking, meeting),
                    sendUpdates=self.send_updates, conferenceDataVersion=1))
        return self._ref(cal, self._settle(session, api, cal, event), meeting)

    def update_event(self, ref: EventRef, booking: BookingDetails,
                     meeting: Meeting | None) -> EventRef:
        with self._session() as session:
            return self._update(session, ref, booking, meeting)

    def _update(self, session: GoogleSession, ref: EventRef, booking: BookingDetails,
                meeting: Meeting | None) -> EventRef:
        api = session.service("calendar", "v3")
        cal = ref.calendar_id or self.calendar_id
        body = self._body(booking, meeting)
        if ref.meeting_url and "conferenceData" in body:
            del body["conferenceData"]  # keep the conference the event already has
        try:
            event = session.call(lambda: api.events().patch(
                calendarId=cal, eventId=ref.id, body=body, sendUpdates=self.send_updates,
                conferenceDataVersion=1), passthrough=(404, 410))
        except HttpError:
            return self._create(session, booking, meeting)
        return self._ref(cal, self._settle(session, api, cal, event), meeting)

    def cancel_event(self, ref: EventRef, booking: BookingDetails) -> None:
        with self._session() as session:
            self._cancel(session, ref)

    def _cancel(self, session: GoogleSession, ref: EventRef) -> None:
        api = session.service("calendar", "v3")
        cal = ref.calendar_id or self.calendar_id
        try:
            session.call(lambda: api.events().delete(calendarId=cal, eventId=ref.id,
                                                     sendUpdates=self.send_updates),
                         passthrough=(404, 410))
        except HttpError as exc:
            status, _ = http_status_reason(exc)
            if status not in (404, 410):
                raise


#: Push sync: events ``watch`` channels whose notifications mark free/busy stale.
PUSH = PushSync(push.CHANNELS, push.NOTIFY_PATH, lambda: GoogleCalendar, push.backend)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


@hookimpl
def consultbook_register_providers(registry: ProviderRegistry) -> None:
    registry.add_connector(GoogleConnector)
    registry.add_calendar(GoogleCalendar)


@hookimpl
def consultbook_register_routes(routes: RouteRegistry) -> None:
    # Google calls it without our credentials: the channel token is checked inside.
    routes.add(push.NOTIFY_PATH, push.GoogleNotifications, auth="none")


@hookimpl
def consultbook_register_jobs(jobs: JobRegistry) -> None:
    jobs.add("google_push", push.JOB_SECONDS, PUSH.run_job)


@hookimpl
def consultbook_migration_locations() -> Sequence[str]:
    return [str(MIGRATIONS)]
