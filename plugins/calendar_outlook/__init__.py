"""Outlook / Microsoft 365 calendars through msal and Microsoft Graph.

* **Connect** (``/auth/outlook/start|callback``): msal's auth code flow (PKCE, state,
  nonce); the ``SerializableTokenCache`` is the stored credential, encrypted, and written
  back whenever msal changes it (a refreshed or rotated refresh token).
* **Free/busy**: ``POST /me/calendar/getSchedule`` with at most 20 schedules a call and
  ranges under 62 days; ``busy``, ``tentative`` and ``oof`` items are busy, and time
  outside the schedule's Outlook working hours is busy too.
* **Events**: ``POST /me/events`` with the expert and the customer as attendees and a
  ``transactionId`` derived from the booking (Graph's own idempotency key), and for
  ``video_provider = teams`` ``isOnlineMeeting`` with ``teamsForBusiness``; update by
  ``PATCH``, cancel by ``POST /events/{id}/cancel``.
* Faults: 401 refreshes the token once; 429/503/504 back off honouring ``Retry-After``;
  ``invalid_grant`` from the token endpoint marks the connection broken.

Every HTTP call goes through a ``requests.Session`` with ``trust_env = False`` (the
machine's proxy and CA-bundle variables never override our ``verify``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msal
import requests

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
    ProviderContext,
    ProviderNotConfigured,
    ProviderRegistry,
    ProviderRejected,
    Retry,
    RouteRegistry,
    VideoProvider,
    parse_retry_after,
    retrying,
)
from engine.providers.batching import AccountSession, BusyAnswers, busy_calls, http_session
from engine.providers.intervals import complement
from engine.providers.push import PushSync
from plugins.calendar_outlook import push
from plugins.calendar_outlook.windows_zones import WINDOWS_TO_IANA

AUTHORITY = "https://login.microsoftonline.com/common"
GRAPH = "https://graph.microsoft.com"
SCOPES = ["Calendars.ReadWrite", "User.Read"]
MAX_SCHEDULES = 20
MAX_RANGE = timedelta(days=60)  # Graph refuses 62 days or more
BUSY_STATUSES = {"busy", "tentative", "oof"}
BROKEN_ERRORS = {"invalid_grant", "interaction_required", "invalid_client",
                 "unauthorized_client", "consent_required"}


def missing_client(config: Config) -> str | None:
    if not config.microsoft_client_id or not config.microsoft_client_secret:
        return ("CONSULTBOOK_MICROSOFT_CLIENT_ID and CONSULTBOOK_MICROSOFT_CLIENT_SECRET "
                "are not set")
    return None


def transaction_id(booking_id: str) -> str:
    """Graph's idempotency key for a booking's event (a stable UUID)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"consultbook:booking:{booking_id}"))


def _http(config: Config) -> requests.Session:
    return http_session(config.provider_ca_bundle or True)


def _app(config: Config, cache: msal.SerializableTokenCache, http: requests.Session,
         timeout: float) -> msal.ConfidentialClientApplication:
    authority = str(config.origins.get("microsoft_authority", AUTHORITY)).rstrip("/")
    try:
        return msal.ConfidentialClientApplication(
            config.microsoft_client_id, client_credential=config.microsoft_client_secret,
            authority=authority, token_cache=cache, http_client=http, timeout=timeout,
            # Our authority may be a configured (test or sovereign-cloud) host.
            instance_discovery=False)
    except (ValueError, requests.RequestException) as exc:
        raise Retry(f"Microsoft identity unavailable ({type(exc).__name__})") from None


def _graph_time(at: datetime) -> dict[str, str]:
    return {"dateTime": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def _parse_graph_time(value: Mapping[str, str]) -> datetime:
    text = value["dateTime"][:19]
    zone = value.get("timeZone") or "UTC"
    tz = _zone(zone) or ZoneInfo("UTC")
    return datetime.fromisoformat(text).replace(tzinfo=tz).astimezone(UTC)


def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    name = WINDOWS_TO_IANA.get(name, name)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _clock(value: str) -> time:
    return time.fromisoformat(value[:8])


DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def working_windows(hours: Mapping[str, Any], start: datetime,
                    end: datetime) -> list[tuple[datetime, datetime]] | None:
    """The working windows of Graph ``workingHours`` within ``[start, end)``, or ``None``
    when they cannot be read (then working hours are not applied)."""
    tz = _zone((hours.get("timeZone") or {}).get("name"))
    days = {d.lower() for d in hours.get("daysOfWeek") or []}
    if tz is None or not hours.get("startTime") or not hours.get("endTime"):
        return None
    begin, finish = _clock(hours["startTime"]), _clock(hours["endTime"])
    out = []
    day: date = start.astimezone(tz).date() - timedelta(days=1)
    while day <= end.astimezone(tz).date() + timedelta(days=1):
        if DAYS[day.weekday()] in days:
            ws = datetime.combine(day, begin, tz).astimezone(UTC)
            we_day = day if finish > begin else day + timedelta(days=1)
            we = datetime.combine(we_day, finish, tz).astimezone(UTC)
            if we > ws:
                out.append((ws, we))
        day += timedelta(days=1)
    return out


class GraphSession(AccountSession):
    """msal tokens plus Graph calls for one shop's Outlook connection."""

    provider = "outlook"
    account_label = "Microsoft"
    service_label = "Outlook"

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(ctx)
        assert ctx.connection is not None
        self.doc = ctx.connection.credentials()
        self.cache = msal.SerializableTokenCache()
        self.cache.deserialize(self.doc.get("cache") or "{}")
        self.http = _http(ctx.config)
        self.graph = ctx.origin("graph", GRAPH)
        self._app: msal.ConfidentialClientApplication | None = None

    def __enter__(self) -> GraphSession:
        return self

    def close(self) -> None:
        self.http.close()

    def _persist(self) -> None:
        if self.cache.has_state_changed and self.ctx.connection is not None:
            self.doc = {**self.doc, "cache": self.cache.serialize()}
            self.ctx.connection.save(self.doc)
            self.cache.has_state_changed = False

    def token(self, *, force: bool = False) -> str:
        if self._app is None:
            self._app = _app(self.ctx.config, self.cache, self.http, self.ctx.retry.timeout)
        app = self._app
        accounts = app.get_accounts()
        home = self.doc.get("home_account_id")
        account = next((a for a in accounts if a.get("home_account_id") == home),
                       accounts[0] if accounts else None)
        if account is None:
            raise self._broken("the stored Microsoft sign-in has no account; reconnect Outlook")
        try:
            result = app.acquire_token_silent_with_error(SCOPES, account=account,
                                                         force_refresh=force)
        except requests.RequestException as exc:
            raise Retry(f"token refresh failed ({type(exc).__name__})") from None
        finally:
            self._persist()
        if not result:
            raise self._broken("Microsoft has no usable refresh token; reconnect Outlook")
        if "access_token" not in result:
            error = str(result.get("error", ""))
            if error in BROKEN_ERRORS:
                raise self._broken("Microsoft no longer accepts the sign-in "
                                   f"({error}); reconnect Outlook")
            raise Retry(f"token refresh failed ({error or 'no token'})")
        return str(result["access_token"])

    def call(self, method: str, path: str, *, body: Any = None,
             passthrough: tuple[int, ...] = ()) -> requests.Response:
        """One Graph request with retries; statuses in ``passthrough`` are returned."""
        url = f"{self.graph}/v1.0{path}"
        refreshed = False

        def attempt() -> requests.Response:
            nonlocal refreshed
            token = self.token(force=False)
            try:
                resp = self.http.request(method, url, json=body, timeout=self.ctx.retry.timeout,
                                         headers={"Authorization": f"Bearer {token}",
                                                  "Prefer": 'outlook.timezone="UTC"'})
            except requests.RequestException as exc:
                raise Retry(type(exc).__name__) from None
            if resp.status_code == 401 and not refreshed:
                refreshed = True
                self.token(force=True)
                raise Retry("HTTP 401; token refreshed", 0.0)
            if resp.status_code in passthrough or resp.status_code < 300:
                return resp
            if resp.status_code in (429, 503, 504) or resp.status_code >= 500:
                raise Retry(f"HTTP {resp.status_code}",
                            parse_retry_after(resp.headers.get("Retry-After")))
            if resp.status_code == 401:
                raise self._broken("Microsoft Graph refused the refreshed access token")
            code = ""
            try:
                code = resp.json().get("error", {}).get("code", "")
            except ValueError:
                pass
            raise ProviderRejected(f"Microsoft Graph answered HTTP {resp.status_code} {code}"
                                   .strip(), provider=self.provider)

        return retrying(self.ctx.retry, self.provider, attempt)


class OutlookConnector(Connector):
    name = "outlook"
    label = "Microsoft Outlook"

    @classmethod
    def check_config(cls, config: Config) -> str | None:
        return missing_client(config)

    def start(self, *, state: str, redirect_uri: str) -> tuple[str, dict[str, Any]]:
        http = _http(self.config)
        try:
            app = retrying(self.retry, self.name, lambda: _app(
                self.config, msal.SerializableTokenCache(), http, self.retry.timeout))
            # form_post: the code comes back in a POST body, never in a URL or a log.
            flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=redirect_uri, state=state,
                                               prompt="select_account",
                                               response_mode="form_post")
        finally:
            http.close()
        return str(flow["auth_uri"]), dict(flow)

    def finish(self, *, flow: dict[str, Any], params: Mapping[str, str],
               redirect_uri: str) -> Grant:
        cache = msal.SerializableTokenCache()
        http = _http(self.config)
        try:
            app = retrying(self.retry, self.name, lambda: _app(self.config, cache, http,
                                                               self.retry.timeout))
            try:
                result = app.acquire_token_by_auth_code_flow(flow, dict(params), scopes=SCOPES)
            except ValueError as exc:  # msal: state mismatch and the like
                raise ProviderRejected(f"Microsoft sign-in failed: {exc}",
                                       provider=self.name) from None
            except requests.RequestException as exc:
                raise ProviderRejected(f"Microsoft identity unavailable "
                                       f"({type(exc).__name__})", provider=self.name) from None
        finally:
            http.close()
        if "access_token" not in result:
            raise ProviderRejected(f"Microsoft refused the sign-in: "
                                   f"{result.get('error', 'unknown error')}", provider=self.name)
        claims = result.get("id_token_claims") or {}
        accounts = app.get_accounts()
        home = accounts[0]["home_account_id"] if accounts else None
        account = claims.get("preferred_username") or claims.get("email")
        return Grant(account=account, scopes=tuple(str(result.get("scope", "")).split()),
                     credentials={"cache": cache.serialize(), "home_account_id": home})


class OutlookCalendar(CalendarProvider):
    name = "outlook"
    label = "Microsoft Outlook"
    connection = "outlook"
    embeds_video = frozenset({"teams"})
    calendar_id: ClassVar[str] = "me"

    @classmethod
    def check_config(cls, config: Config) -> str | None:
        return missing_client(config)

    def busy(self, calendars: Sequence[str], start: datetime,
             end: datetime) -> Mapping[str, CalendarBusy]:
        answers = BusyAnswers(calendars)
        outside: dict[str, list[tuple[datetime, datetime]]] = {}
        with GraphSession(self.ctx) as graph:
            for batch, piece, piece_end in busy_calls(calendars, start, end,
                                                      max_calendars=MAX_SCHEDULES,
                                                      max_range=MAX_RANGE):
                resp = graph.call("POST", "/me/calendar/getSchedule", body={
                    "schedules": batch, "startTime": _graph_time(piece),
                    "endTime": _graph_time(piece_end), "availabilityViewInterval": 30})
                by_id = {v.get("scheduleId", "").lower(): v
                         for v in resp.json().get("value", [])}
                for cal in batch:
                    info = by_id.get(cal.lower())
                    if info is None or info.get("error"):
                        err = (info or {}).get("error") or {}
                        answers.fail(cal, "Outlook cannot read this calendar "
                                          f"({err.get('responseCode', 'no answer')})")
                        continue
                    answers.add(cal, ((_parse_graph_time(item["start"]),
                                       _parse_graph_time(item["end"]))
                                      for item in info.get("scheduleItems", [])
                                      if str(item.get("status", "")).lower() in BUSY_STATUSES))
                    hours = info.get("workingHours")
                    got = working_windows(hours, piece, piece_end) if hours else None
                    if got is not None:
                        # Time outside this piece's working windows is busy.
                        outside.setdefault(cal, []).extend(complement(got, piece, piece_end))
        return answers.result(start, end, outside)

    def _body(self, booking: BookingDetails, meeting: Meeting | None) -> dict[str, Any]:
        attendees = []
        # A seated session's event lists every customer of the session.
        customers = booking.attendees or ((booking.customer_email, booking.customer_name),)
        for address, name in ((booking.expert_email, booking.expert_name), *customers):
            if address:
                attendees.append({"emailAddress": {"address": address, "name": name or ""},
                                  "type": "required"})
        description = booking.description
        body: dict[str, Any] = {
            "subject": booking.summary,
            "start": _graph_time(booking.start), "end": _graph_time(booking.end),
            "attendees": attendees, "allowNewTimeProposals": False,
        }
        if meeting is not None:
            body["location"] = {"displayName": meeting.url}
            description = f"{description}\n\nJoin: {meeting.url}".strip()
        elif self.ctx.choice.video == "teams":
            body["isOnlineMeeting"] = True
            body["onlineMeetingProvider"] = "teamsForBusiness"
        body["body"] = {"contentType": "text", "content": description}
        return body

    def _ref(self, event: Mapping[str, Any], meeting: Meeting | None) -> EventRef:
        url = ((event.get("onlineMeeting") or {}).get("joinUrl")
               or (meeting.url if meeting else None))
        return EventRef(self.name, str(event["id"]), self.calendar_id, url)

    def create_event(self, booking: BookingDetails, meeting: Meeting | None) -> EventRef:
        body = {**self._body(booking, meeting),
                "transactionId": transaction_id(booking.booking_id)}
        with GraphSession(self.ctx) as graph:
            event = graph.call("POST", "/me/events", body=body).json()
        return self._ref(event, meeting)

    def update_event(self, ref: EventRef, booking: BookingDetails,
                     meeting: Meeting | None) -> EventRef:
        body = self._body(booking, meeting)
        if ref.meeting_url:
            body.pop("isOnlineMeeting", None)
            body.pop("onlineMeetingProvider", None)
        with GraphSession(self.ctx) as graph:
            resp = graph.call("PATCH", f"/me/events/{ref.id}", body=body, passthrough=(404,))
            if resp.status_code == 404:
                return self.create_event(booking, meeting)
            return self._ref(resp.json(), meeting)

    def cancel_event(self, ref: EventRef, booking: BookingDetails) -> None:
        with GraphSession(self.ctx) as graph:
            resp = graph.call("POST", f"/me/events/{ref.id}/cancel",
                              body={"comment": "This appointment was cancelled."},
                              passthrough=(400, 404))
            if resp.status_code == 400:  # e.g. no attendees to notify: just delete it
                graph.call("DELETE", f"/me/events/{ref.id}", passthrough=(404,))


class TeamsVideo(VideoProvider):
    """Teams meetings are made by the Outlook event itself (``isOnlineMeeting``)."""

    name = "teams"
    label = "Microsoft Teams"

    def create_meeting(self, booking: BookingDetails) -> Meeting | None:
        raise ProviderNotConfigured("Teams meetings are made through the Outlook calendar; "
                                    "choose outlook as the calendar provider")


#: Push sync: Graph subscriptions whose notifications mark free/busy stale.
PUSH = PushSync(push.CHANNELS, push.NOTIFY_PATH, lambda: OutlookCalendar,
                push.backend(GraphSession))
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


@hookimpl
def consultbook_register_providers(registry: ProviderRegistry) -> None:
    registry.add_connector(OutlookConnector)
    registry.add_calendar(OutlookCalendar)
    registry.add_video(TeamsVideo)


@hookimpl
def consultbook_register_routes(routes: RouteRegistry) -> None:
    # Graph calls it without our credentials: clientState and the handshake are inside.
    routes.add(push.NOTIFY_PATH, push.GraphNotifications, auth="none")


@hookimpl
def consultbook_register_jobs(jobs: JobRegistry) -> None:
    jobs.add("outlook_push", push.JOB_SECONDS, PUSH.run_job)


@hookimpl
def consultbook_migration_locations() -> Sequence[str]:
    return [str(MIGRATIONS)]
