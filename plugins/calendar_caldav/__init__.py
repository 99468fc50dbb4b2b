"""CalDAV calendars (RFC 4791): Apple iCloud, Fastmail, Nextcloud and any other server.

Built only on the public plugin contract (:mod:`engine.providers`), ``requests`` and
``lxml`` (see :mod:`plugins.calendar_caldav.dav` for why not the ``caldav`` library's
client; the tests use that library against a real Radicale server).

* **Connect** (a form, ``POST /admin/api/connections/caldav``): server URL, user name,
  app password, optionally a calendar. :meth:`CalDAVConnector.connect` logs in,
  discovers the principal (``current-user-principal``), its calendar home and its
  calendar-user addresses, lists the calendars, and returns a :class:`Grant` whose
  credentials the host stores encrypted. Nothing is kept in tables of our own: the
  server holds the events, found again by the UID we chose.
* **Which calendar holds an expert's busy time** (:meth:`CalDAVCalendar.calendar_for_expert`):
  the shop's ``expert_calendars`` setting (``email-or-expert-id = calendar URL or
  path``, one pair per line or separated by commas) first; else, when the expert's email
  is one of the connected account's own addresses (its user name or a
  ``calendar-user-address-set`` entry), the connected calendar; else ``None`` -- the
  engine then hides that expert's slots (fail closed). Calendar ids are absolute
  collection URLs on the connected server.
* **Busy time**: a ``free-busy-query`` REPORT (RFC 4791 section 7.10) per calendar; when
  the server does not offer it, or the shop's ``busy_method`` setting is ``events``, the
  events in range (a ``calendar-query`` REPORT) expanded here: recurrences, exceptions,
  transparent and cancelled events (free), all-day and floating events in the
  calendar's ``calendar-timezone`` (else the shop's zone). A calendar that cannot be read
  gets an error of its own, never an empty (free) answer.
* **Events** go into the expert's calendar (else the connected one) as
  ``<calendar>/<booking id>.ics`` with ``UID:<booking id>@consultbook``, written with
  ``If-None-Match: *``: a retried create finds the event already there (412, or the
  server's ``no-uid-conflict``) and returns it, never a second one. An update reads the
  event and writes it back with ``If-Match`` and a higher ``SEQUENCE``; a cancel deletes
  it, and a missing event is already cancelled.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, ClassVar
from urllib.parse import unquote, urljoin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine import hookimpl
from engine.providers import (
    BookingDetails,
    CalendarBusy,
    CalendarProvider,
    ConnectionBroken,
    EventRef,
    FormConnector,
    FormField,
    Grant,
    Meeting,
    ProviderNotConfigured,
    ProviderRegistry,
    ProviderRejected,
    ProviderUnavailable,
    RetryPolicy,
)
from engine.providers.intervals import merge_clip
from plugins.calendar_caldav import ical
from plugins.calendar_caldav.dav import (
    CALDAV_NS,
    DAV,
    PROVIDER,
    Answer,
    DavSession,
    Forbidden,
    collection_url,
)

ALLOW_PRIVATE_ENV = "CONSULTBOOK_CALDAV_ALLOW_PRIVATE_HOSTS"
NO_UID_CONFLICT = f"{{{CALDAV_NS}}}no-uid-conflict"
XML = {"Content-Type": "application/xml; charset=utf-8"}
ICS = {"Content-Type": "text/calendar; charset=utf-8"}
#: Statuses with which a server says it does not do free-busy-query on a calendar.
NO_FREEBUSY = (400, 405, 406, 415, 422, 501)
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,120}")
_SPLIT = re.compile(r"[\n,;]+")


def allow_private_hosts(config: object) -> bool:
    """Whether CalDAV servers may be on private addresses and plain http: the config's
    ``caldav_allow_private_hosts`` if it has one, else ``CONSULTBOOK_CALDAV_ALLOW_PRIVATE_HOSTS``.
    Off by default (the server URL is typed by a merchant; no SSRF into our network)."""
    value = getattr(config, "caldav_allow_private_hosts", None)
    if value is None:
        value = os.environ.get(ALLOW_PRIVATE_ENV, "")
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _verify(config: object) -> str | bool:
    return getattr(config, "provider_ca_bundle", None) or True


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def resource_name(booking_id: str) -> str:
    """The event's file name in its calendar: the booking id when it is URL-safe (they
    are), else a hash of it. Deterministic, so a retried create names the same resource."""
    if _SAFE_NAME.fullmatch(booking_id):
        return f"{booking_id}.ics"
    return hashlib.sha256(booking_id.encode("utf-8")).hexdigest()[:40] + ".ics"


# ------------------------------------------------------------------------------ WebDAV XML


def _propfind(*props: str) -> str:
    inner = "".join(f"<{p}/>" for p in props)
    return ('<?xml version="1.0" encoding="utf-8"?>'
            f'<d:propfind xmlns:d="{DAV}" xmlns:c="{CALDAV_NS}"><d:prop>{inner}</d:prop>'
            "</d:propfind>")


def _freebusy_query(start: datetime, end: datetime) -> str:
    return ('<?xml version="1.0" encoding="utf-8"?>'
            f'<c:free-busy-query xmlns:c="{CALDAV_NS}">'
            f'<c:time-range start="{_stamp(start)}" end="{_stamp(end)}"/>'
            "</c:free-busy-query>")


def _calendar_query(filter_xml: str) -> str:
    return ('<?xml version="1.0" encoding="utf-8"?>'
            f'<c:calendar-query xmlns:d="{DAV}" xmlns:c="{CALDAV_NS}">'
            "<d:prop><d:getetag/><c:calendar-data/></d:prop>"
            f'<c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT">'
            f"{filter_xml}</c:comp-filter></c:comp-filter></c:filter></c:calendar-query>")


def _responses(answer: Answer, base: str) -> list[tuple[str, dict[str, Any]]]:
    """``(absolute href, {clark tag: prop element})`` per ``DAV:response`` of a
    multistatus, with only the properties the server answered with 200."""
    root = answer.xml()
    out: list[tuple[str, dict[str, Any]]] = []
    for response in root.iter(f"{{{DAV}}}response"):
        href = response.findtext(f"{{{DAV}}}href")
        if not href:
            continue
        props: dict[str, Any] = {}
        for propstat in response.iter(f"{{{DAV}}}propstat"):
            status = propstat.findtext(f"{{{DAV}}}status") or ""
            if " 200 " not in f"{status} ":
                continue
            prop = propstat.find(f"{{{DAV}}}prop")
            if prop is not None:
                for child in prop:
                    props[str(child.tag)] = child
        out.append((urljoin(base, href.strip()), props))
    return out


def _href_in(prop: Any) -> str | None:
    if prop is None:
        return None
    text = prop.findtext(f"{{{DAV}}}href")
    return text.strip() if text else None


# ------------------------------------------------------------------------------ connector


class CalDAVConnector(FormConnector):
    """Connects a shop to a CalDAV account with an app password (see the module doc)."""

    name = "caldav"
    label = "CalDAV calendar (iCloud, Fastmail, Nextcloud)"
    help = ("Use an app-specific password, never your account password. iCloud: server "
            "https://caldav.icloud.com, your Apple ID, and an app-specific password from "
            "appleid.apple.com (Sign-In and Security). Fastmail: https://caldav.fastmail.com"
            "/dav/, your Fastmail address, an app password with CalDAV access (Settings > "
            "Privacy & Security). Nextcloud: https://<your cloud>/remote.php/dav, your login, "
            "an app password (Settings > Security > Devices & sessions).")
    fields: ClassVar[tuple[FormField, ...]] = (
        FormField("url", "CalDAV server URL", kind="url",
                  help="iCloud: https://caldav.icloud.com - Fastmail: "
                       "https://caldav.fastmail.com/dav/ - Nextcloud: "
                       "https://<your cloud>/remote.php/dav",
                  placeholder="https://caldav.icloud.com"),
        FormField("username", "User name",
                  help="iCloud: your Apple ID email - Fastmail: your Fastmail address - "
                       "Nextcloud: your login name",
                  placeholder="you@example.com"),
        FormField("password", "App password", kind="password",
                  help="An app-specific password: iCloud makes one at appleid.apple.com "
                       "(Sign-In and Security > App-Specific Passwords), Fastmail under "
                       "Settings > Privacy & Security > App passwords, Nextcloud under "
                       "Settings > Security"),
        FormField("calendar", "Calendar URL or path", required=False,
                  help="The calendar bookings go into and the account's own busy time is "
                       "read from. Blank: the account's first calendar."),
    )

    def connect(self, *, values: Mapping[str, str]) -> Grant:
        url = str(values.get("url", "")).strip()
        username = str(values.get("username", "")).strip()
        password = str(values.get("password", ""))
        chosen = str(values.get("calendar", "")).strip()
        for field, value in (("CalDAV server URL", url), ("user name", username),
                             ("app password", password)):
            if not value:
                raise ProviderRejected(f"the {field} is required", provider=PROVIDER)
        try:
            return self._connect(url, username, password, chosen)
        except Forbidden:
            raise ProviderRejected("the CalDAV server refused this account access to its "
                                   "calendars", provider=PROVIDER) from None
        except ConnectionBroken:
            raise ProviderRejected("the CalDAV server refused the user name or app "
                                   "password", provider=PROVIDER) from None

    def _connect(self, url: str, username: str, password: str, chosen: str) -> Grant:
        with DavSession(url=url, username=username, password=password, retry=self.retry,
                        verify=_verify(self.config),
                        allow_private=allow_private_hosts(self.config)) as s:
            principal = self._principal(s)
            found = _responses(s.request(
                "PROPFIND", principal,
                _propfind("c:calendar-home-set", "c:calendar-user-address-set"),
                headers={**XML, "Depth": "0"}), principal)
            props = found[0][1] if found else {}
            home_href = _href_in(props.get(f"{{{CALDAV_NS}}}calendar-home-set"))
            if not home_href:
                raise ProviderRejected("the server named no calendar home for this account; "
                                       "is this a CalDAV address?", provider=PROVIDER)
            home = collection_url(principal, home_href)
            s.allow(home)
            addresses = sorted(_addresses(props.get(f"{{{CALDAV_NS}}}calendar-user-address-set"),
                                          username))
            calendars = _list_calendars(s, home)
            if chosen:
                calendar_url = collection_url(s.url, chosen)
                if not s.permitted(calendar_url):
                    raise ProviderRejected("the calendar is not on this CalDAV server",
                                           provider=PROVIDER)
                if calendar_url not in {c["url"] for c in calendars} \
                        and not _is_calendar(s, calendar_url):
                    raise ProviderRejected("no calendar of this account is at "
                                           f"{chosen}", provider=PROVIDER)
            elif calendars:
                calendar_url = calendars[0]["url"]
            else:
                raise ProviderRejected("this account has no calendar for events",
                                       provider=PROVIDER)
        return Grant(account=username, credentials={
            "url": s.url, "username": username, "password": password, "home_url": home,
            "calendar_url": calendar_url, "addresses": addresses, "calendars": calendars,
            "auth_type": s.auth_type})

    @staticmethod
    def _principal(s: DavSession) -> str:
        """The account's principal URL (RFC 5397 ``current-user-principal``)."""
        for base in (s.url, collection_url(s.url, "/.well-known/caldav")):
            answer = s.request("PROPFIND", base, _propfind("d:current-user-principal"),
                               headers={**XML, "Depth": "0"}, expect=(301, 302, 404, 405))
            if answer.status not in (200, 207):
                continue
            for _href, props in _responses(answer, base):
                principal = _href_in(props.get(f"{{{DAV}}}current-user-principal"))
                if principal:
                    return collection_url(base, principal)
        raise ProviderRejected("the server did not say which account this is "
                               "(no current-user-principal); is this a CalDAV address?",
                               provider=PROVIDER)


def _addresses(prop: Any, username: str) -> set[str]:
    found = {username.lower()} if "@" in username else set()
    if prop is not None:
        for href in prop.iter(f"{{{DAV}}}href"):
            text = (href.text or "").strip()
            if text.lower().startswith("mailto:"):
                found.add(unquote(text[7:]).lower())
    return found


def _list_calendars(s: DavSession, home: str) -> list[dict[str, str]]:
    """The home's calendar collections that take events, in the server's order."""
    answer = s.request("PROPFIND", home,
                       _propfind("d:resourcetype", "d:displayname",
                                 "c:supported-calendar-component-set"),
                       headers={**XML, "Depth": "1"})
    calendars = []
    for href, props in _responses(answer, home):
        kind = props.get(f"{{{DAV}}}resourcetype")
        if kind is None or kind.find(f"{{{CALDAV_NS}}}calendar") is None:
            continue
        comps = props.get(f"{{{CALDAV_NS}}}supported-calendar-component-set")
        if comps is not None and len(comps):
            names = {str(c.get("name", "")).upper() for c in comps}
            if "VEVENT" not in names:
                continue  # a task list
        url = collection_url(home, href)
        if url == home or not s.permitted(url):
            continue
        shown = props.get(f"{{{DAV}}}displayname")
        calendars.append({"url": url, "name": str(shown.text or "") if shown is not None
                          else ""})
    return calendars


def _is_calendar(s: DavSession, url: str) -> bool:
    try:
        answer = s.request("PROPFIND", url, _propfind("d:resourcetype"),
                           headers={**XML, "Depth": "0"}, expect=(404,))
    except Forbidden:
        return False  # not this account's (servers answer 403 rather than 404)
    if answer.status == 404:
        return False
    for _href, props in _responses(answer, url):
        kind = props.get(f"{{{DAV}}}resourcetype")
        if kind is not None and kind.find(f"{{{CALDAV_NS}}}calendar") is not None:
            return True
    return False


# ------------------------------------------------------------------------------ calendar


class CalDAVCalendar(CalendarProvider):
    """Busy time from, and booking events into, the shop's CalDAV account."""

    name = "caldav"
    label = "CalDAV calendar (iCloud, Fastmail, Nextcloud)"
    connection = "caldav"
    #: Per-shop settings the admin shows (the host hands them in as ``ctx.settings``).
    settings: ClassVar[tuple[FormField, ...]] = (
        FormField("expert_calendars", "Calendars of experts", required=False,
                  help="One 'expert email = calendar URL or path' per line (or separated "
                       "by commas). An expert not listed uses the connected calendar when "
                       "their email is the connected account's; otherwise their times "
                       "stay hidden until they are listed here.",
                  placeholder="erika@example.com = /calendars/erika/work/"),
        FormField("busy_method", "Read busy time by", required=False,
                  help="'freebusy' (default): the server's free-busy report, falling back "
                       "to reading events where the server has none. 'events': always read "
                       "the events (for servers that place all-day events in UTC).",
                  placeholder="freebusy"),
    )

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self._creds: dict[str, Any] | None = None

    # --- account ------------------------------------------------------------------

    def _credentials(self) -> dict[str, Any]:
        if self._creds is None:
            if self.ctx.connection is None:
                raise ProviderNotConfigured("the shop has not connected a CalDAV account")
            creds = dict(self.ctx.connection.credentials())
            if not creds.get("url") or not creds.get("username"):
                raise ConnectionBroken("the stored CalDAV connection is incomplete; connect "
                                       "again", provider=PROVIDER)
            self._creds = creds
        return self._creds

    def _settings(self) -> Mapping[str, str]:
        return getattr(self.ctx, "settings", None) or {}

    def _session(self) -> DavSession:
        creds = self._credentials()
        config = getattr(self.ctx, "config", None)
        return DavSession(url=str(creds["url"]), username=str(creds["username"]),
                          password=str(creds.get("password", "")), retry=self._retry(),
                          verify=self.ctx.verify, allow_private=allow_private_hosts(config),
                          extra_origins=[str(creds.get("home_url") or "")],
                          auth_type=creds.get("auth_type"))

    def _retry(self) -> RetryPolicy:
        policy: RetryPolicy = self.ctx.retry
        return policy

    def _mapping(self) -> dict[str, str]:
        raw = str(self._settings().get("expert_calendars", "") or "")
        base = str(self._credentials()["url"])
        mapping: dict[str, str] = {}
        for entry in _SPLIT.split(raw):
            key, sep, value = entry.partition("=")
            if sep and key.strip() and value.strip():
                mapping[key.strip().lower()] = collection_url(base, value)
        return mapping

    def calendar_for_expert(self, expert_id: str, expert_email: str | None) -> str | None:
        """The expert's calendar URL: the ``expert_calendars`` setting (by email or expert
        id), else the connected calendar when the email is the account's own, else
        ``None`` (unknowable: the expert's slots are hidden)."""
        mapping = self._mapping()
        email = (expert_email or "").strip().lower()
        for key in (email, expert_id.lower()):
            if key and key in mapping:
                return mapping[key]
        creds = self._credentials()
        if email and email in {str(a).lower() for a in creds.get("addresses", [])}:
            calendar = creds.get("calendar_url")
            return str(calendar) if calendar else None
        return None

    # --- free/busy ----------------------------------------------------------------

    def busy(self, calendars: Sequence[str], start: datetime,
             end: datetime) -> Mapping[str, CalendarBusy]:
        answers: dict[str, CalendarBusy] = {}
        unavailable: ProviderUnavailable | None = None
        with self._session() as s:
            for cal in dict.fromkeys(calendars):
                if not s.permitted(cal):
                    answers[cal] = CalendarBusy(error="the calendar is not on the connected "
                                                      "CalDAV server")
                    continue
                try:
                    found = self._busy_of(s, cal, start, end)
                except Forbidden:
                    answers[cal] = CalendarBusy(error="the CalDAV account may not read this "
                                                      "calendar")
                except ProviderUnavailable as exc:
                    unavailable = exc
                    answers[cal] = CalendarBusy(error=exc.message)
                except ProviderRejected as exc:
                    answers[cal] = CalendarBusy(error=exc.message)
                except ValueError as exc:
                    answers[cal] = CalendarBusy(error=f"the calendar's data is unreadable "
                                                      f"({exc})")
                else:
                    answers[cal] = CalendarBusy(tuple(merge_clip(found, start, end)))
        if unavailable is not None and answers and all(a.error for a in answers.values()):
            raise unavailable  # nothing could be read: the caller keeps what it had
        return {c: answers[c] for c in calendars}

    def _busy_of(self, s: DavSession, cal: str, start: datetime,
                 end: datetime) -> list[tuple[datetime, datetime]]:
        method = str(self._settings().get("busy_method", "") or "freebusy").strip().lower()
        if method != "events":
            try:
                answer = s.request("REPORT", cal, _freebusy_query(start, end),
                                   headers={**XML, "Depth": "1"},
                                   expect=(*NO_FREEBUSY, 404))
            except Forbidden:
                answer = None  # often "DAV:supported-report": the events will tell
            if answer is not None and answer.status == 404:
                raise ProviderRejected("the calendar was not found on the CalDAV server",
                                       provider=PROVIDER)
            if answer is not None and answer.status in (200, 207) \
                    and b"VFREEBUSY" in answer.body.upper():
                return ical.freebusy_periods(answer.body)
        return self._events_busy(s, cal, start, end)

    def _events_busy(self, s: DavSession, cal: str, start: datetime,
                     end: datetime) -> list[tuple[datetime, datetime]]:
        # The server's filter may read floating and all-day times in UTC: ask a day wider.
        lo, hi = start - timedelta(days=1), end + timedelta(days=1)
        answer = s.request("REPORT", cal, _calendar_query(
            f'<c:time-range start="{_stamp(lo)}" end="{_stamp(hi)}"/>'),
            headers={**XML, "Depth": "1"}, expect=(404,))
        if answer.status == 404:
            raise ProviderRejected("the calendar was not found on the CalDAV server",
                                   provider=PROVIDER)
        texts = [props[f"{{{CALDAV_NS}}}calendar-data"].text or ""
                 for _href, props in _responses(answer, cal)
                 if props.get(f"{{{CALDAV_NS}}}calendar-data") is not None]
        return ical.event_busy([t for t in texts if t.strip()], start, end,
                               self._zone_of(s, cal))

    def _zone_of(self, s: DavSession, cal: str) -> tzinfo:
        """The zone of the calendar's all-day and floating times: its
        ``calendar-timezone`` (RFC 4791 5.2.2), else the shop's."""
        answer = s.request("PROPFIND", cal, _propfind("c:calendar-timezone"),
                           headers={**XML, "Depth": "0"}, expect=(404,))
        names: list[str | None] = []
        if answer.status != 404:
            for _href, props in _responses(answer, cal):
                prop = props.get(f"{{{CALDAV_NS}}}calendar-timezone")
                names.append(ical.zone_of_vtimezone(prop.text if prop is not None else None))
        names.append(getattr(self.ctx.shop, "timezone", None))
        for name in names:
            if name:
                try:
                    return ZoneInfo(name)
                except (ZoneInfoNotFoundError, ValueError):
                    continue
        return UTC

    # --- events -------------------------------------------------------------------

    def _target(self, booking: BookingDetails) -> str:
        cal = self.calendar_for_expert(booking.expert_id, booking.expert_email)
        cal = cal or self._credentials().get("calendar_url")
        if not cal:
            raise ProviderNotConfigured("the CalDAV connection names no calendar for events")
        return str(cal)

    def _ref(self, href: str, cal: str, meeting: Meeting | None) -> EventRef:
        return EventRef(self.name, href, cal, meeting.url if meeting is not None else None)

    def _ics(self, booking: BookingDetails, meeting: Meeting | None, sequence: int) -> str:
        return ical.event_ics(booking, meeting, sequence=sequence, stamp=self.ctx.clock.now())

    def create_event(self, booking: BookingDetails, meeting: Meeting | None) -> EventRef:
        with self._session() as s:
            return self._create(s, booking, meeting)

    def _create(self, s: DavSession, booking: BookingDetails,
                meeting: Meeting | None) -> EventRef:
        cal = self._target(booking)
        href = urljoin(cal, resource_name(booking.booking_id))
        for _ in range(3):
            try:
                put = s.request("PUT", href, self._ics(booking, meeting, booking.sequence),
                                headers={**ICS, "If-None-Match": "*"}, expect=(409, 412))
            except Forbidden as exc:
                if NO_UID_CONFLICT not in exc.preconditions:
                    raise
                put = Answer(409, {}, b"")
            if put.status < 300:
                return self._ref(href, cal, meeting)
            if put.status == 409 or NO_UID_CONFLICT.encode() in put.body \
                    or b"no-uid-conflict" in put.body:
                # The UID lives under another name (another client moved it, or the
                # server renamed it): that is our event.
                other = self._find_by_uid(s, cal, ical.uid_of(booking.booking_id))
                if other is None:
                    raise ProviderRejected("the CalDAV server reports a UID conflict but "
                                           "no event with the booking's UID",
                                           provider=PROVIDER)
                found = self._revive(s, other, cal, booking, meeting)
                assert found is not None  # missing_ok=False raises instead
                return found
            # 412: an earlier attempt of this booking made it already.
            existing = self._revive(s, href, cal, booking, meeting, missing_ok=True)
            if existing is not None:
                return existing
        raise ProviderUnavailable("the booking's event kept appearing and disappearing",
                                  provider=PROVIDER)

    def _revive(self, s: DavSession, href: str, cal: str, booking: BookingDetails,
                meeting: Meeting | None, missing_ok: bool = False) -> EventRef | None:
        """The existing event at ``href`` as our ref; rewritten when it was cancelled
        although the booking is not. ``None`` if it vanished (and ``missing_ok``)."""
        got = s.request("GET", href, headers={"Accept": "text/calendar"}, expect=(404, 410))
        if got.status in (404, 410):
            if missing_ok:
                return None
            raise ProviderRejected("the booking's event vanished", provider=PROVIDER)
        try:
            current = ical.parse_calendar(got.body)
        except ValueError:
            current = None
        if current is not None and ical.status_of(current) == "CANCELLED" \
                and booking.status != "cancelled":
            self._write(s, href, booking, meeting, got, current)
        return self._ref(href, cal, meeting)

    def _write(self, s: DavSession, href: str, booking: BookingDetails,
               meeting: Meeting | None, got: Answer, current: Any) -> bool:
        """PUT the booking over the event read as ``got``; ``False`` if it changed
        meanwhile (412). SEQUENCE goes up past both the event's and the booking's."""
        sequence = max(ical.sequence_of(current) + 1, booking.sequence)
        headers = dict(ICS)
        etag = got.header("ETag")
        if etag:
            headers["If-Match"] = etag
        put = s.request("PUT", href, self._ics(booking, meeting, sequence), headers=headers,
                        expect=(412,))
        return put.status != 412

    def _find_by_uid(self, s: DavSession, cal: str, uid: str) -> str | None:
        answer = s.request("REPORT", cal, _calendar_query(
            '<c:prop-filter name="UID"><c:text-match collation="i;octet">'
            f"{uid}</c:text-match></c:prop-filter>"),
            headers={**XML, "Depth": "1"}, expect=(404,))
        if answer.status == 404:
            return None
        for href, _props in _responses(answer, cal):
            if s.permitted(href):
                return href
        return None

    def update_event(self, ref: EventRef, booking: BookingDetails,
                     meeting: Meeting | None) -> EventRef:
        with self._session() as s:
            cal = ref.calendar_id or self._target(booking)
            for _ in range(3):
                got = s.request("GET", ref.id, headers={"Accept": "text/calendar"},
                                expect=(404, 410))
                if got.status in (404, 410):
                    return self._create(s, booking, meeting)  # deleted outside: make it again
                try:
                    current = ical.parse_calendar(got.body)
                except ValueError:
                    current = ical.parse_calendar(self._ics(booking, meeting, 0))
                if self._write(s, ref.id, booking, meeting, got, current):
                    return self._ref(ref.id, cal, meeting)
        raise ProviderUnavailable("the booking's event kept changing while it was updated",
                                  provider=PROVIDER)

    def cancel_event(self, ref: EventRef, booking: BookingDetails) -> None:
        with self._session() as s:
            s.request("DELETE", ref.id, expect=(404, 410))


@hookimpl
def consultbook_register_providers(registry: ProviderRegistry) -> None:
    registry.add_connector(CalDAVConnector)
    registry.add_calendar(CalDAVCalendar)


__all__ = ["CalDAVCalendar", "CalDAVConnector", "allow_private_hosts", "resource_name"]
