"""Reading iCalendar feeds into busy intervals (pure, apart from :func:`fetch`).

Handles what real feeds (Google's secret address, Outlook's published calendar, Apple)
contain: ``DATE`` (all-day) and floating times in the expert's zone, ``TZID`` times,
``DURATION``, ``RRULE`` expanded in wall-clock time (so a 09:00 meeting stays 09:00 across
DST), ``EXDATE``, moved instances (``RECURRENCE-ID``), and skips cancelled and
transparent ("free") events.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo

import certifi
import icalendar
import urllib3
from dateutil.rrule import rrulestr

from engine.providers import ValidationError

MAX_BYTES = 5 * 1024 * 1024
MAX_EVENTS = 20_000
MAX_REDIRECTS = 3


class FeedError(ValidationError):
    """The feed cannot be fetched or read (the message says why, for the merchant)."""

    code = "invalid_feed"


def _aware(value: date | datetime, tz: ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=tz) if value.tzinfo is None else value
    return datetime.combine(value, time(0), tz)


def _wall(value: date | datetime, tz: ZoneInfo) -> tuple[datetime, ZoneInfo]:
    """A naive wall time and the zone it belongs to (for RRULE expansion)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value, tz
        zone = value.tzinfo if isinstance(value.tzinfo, ZoneInfo) else None
        if zone is None:  # a fixed offset or UTC: expand in UTC
            return value.astimezone(UTC).replace(tzinfo=None), ZoneInfo("UTC")
        return value.replace(tzinfo=None), zone
    return datetime.combine(value, time(0)), tz


def _instant(wall: datetime, zone: ZoneInfo) -> datetime:
    return wall.replace(tzinfo=zone).astimezone(UTC)


def busy_from_ics(data: bytes | str, tz: ZoneInfo, window_start: datetime,
                  window_end: datetime) -> list[tuple[datetime, datetime, str | None]]:
    """Busy ``(start, end, summary)`` of every event overlapping the window, UTC."""
    try:
        calendar = icalendar.Calendar.from_ical(data)
    except (ValueError, IndexError, KeyError) as exc:
        raise FeedError(f"the feed is not iCalendar data ({exc})".splitlines()[0]) from None
    out: list[tuple[datetime, datetime, str | None]] = []
    events = list(calendar.walk("VEVENT"))
    moved: set[tuple[str, datetime]] = set()
    for event in events:
        if event.get("RECURRENCE-ID") is not None:
            rid = event.decoded("RECURRENCE-ID")
            moved.add((str(event.get("UID", "")), _aware(rid, tz).astimezone(UTC)))
    for event in events:
        for item in _occurrences(event, tz, window_start, window_end,  # type: ignore[arg-type]
                                 moved):
            out.append(item)
            if len(out) > MAX_EVENTS:
                raise FeedError(f"the feed has more than {MAX_EVENTS} events in the next year")
    out.sort()
    return out


def _occurrences(event: icalendar.Event, tz: ZoneInfo, window_start: datetime,
                 window_end: datetime, moved: set[tuple[str, datetime]],
                 ) -> Iterator[tuple[datetime, datetime, str | None]]:
    status = str(event.get("STATUS", "")).upper()
    transp = str(event.get("TRANSP", "")).upper()
    if status == "CANCELLED" or transp == "TRANSPARENT" or event.get("DTSTART") is None:
        return
    summary = str(event.get("SUMMARY", "")).strip()[:255] or None
    start_value = event.decoded("DTSTART")
    if event.get("DTEND") is not None:
        end_value = event.decoded("DTEND")
        length = _aware(end_value, tz) - _aware(start_value, tz)
    elif event.get("DURATION") is not None:
        length = event.decoded("DURATION")
    else:
        length = timedelta(days=1) if not isinstance(start_value, datetime) else timedelta(0)
    if length <= timedelta(0):
        return
    uid = str(event.get("UID", ""))
    if event.get("RRULE") is None:
        start = _aware(start_value, tz).astimezone(UTC)
        end = start + length
        if start < window_end and end > window_start:
            yield start, end, summary
        return
    wall_start, zone = _wall(start_value, tz)
    rule = event["RRULE"]
    rule = rule[0] if isinstance(rule, list) else rule
    recur = icalendar.vRecur(dict(rule))  # type: ignore[arg-type]
    if "UNTIL" in recur:
        until = recur["UNTIL"][0] if isinstance(recur["UNTIL"], list) else recur["UNTIL"]
        recur["UNTIL"] = [_aware(until, zone).astimezone(zone).replace(tzinfo=None)
                          if isinstance(until, datetime) else
                          datetime.combine(until, time(23, 59, 59))]
    try:
        rrule = rrulestr(recur.to_ical().decode(), dtstart=wall_start)
    except (ValueError, TypeError) as exc:
        raise FeedError(f"an event's RRULE cannot be read ({exc})") from None
    excluded: set[datetime] = set()
    exdates = event.get("EXDATE")
    for ex in exdates if isinstance(exdates, list) else [exdates] if exdates else []:
        for d in ex.dts:
            excluded.add(_aware(d.dt, zone).astimezone(UTC))
    # Wall times one day either side cover any UTC offset.
    after = window_start.astimezone(zone).replace(tzinfo=None) - length - timedelta(days=1)
    before = window_end.astimezone(zone).replace(tzinfo=None) + timedelta(days=1)
    for wall in rrule.between(after, before, inc=True):
        start = _instant(wall, zone)
        if start in excluded or (uid, start) in moved:
            continue
        end = start + length
        if start < window_end and end > window_start:
            yield start, end, summary


def resolve_checked(host: str, port: int, allow_private: bool) -> list[str]:
    """The addresses to connect to for ``host``: resolved once, every one checked.

    All addresses must be global unless ``allow_private`` (an operator setting, and what
    the tests use to reach their server on 127.0.0.1): one private address among public
    ones is refused, since the client might pick it. The caller connects to these
    addresses only and never lets the HTTP client resolve ``host`` again, so a name that
    answers differently the second time (DNS rebinding) cannot smuggle in a private
    address after the check.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise FeedError(f"the feed's host {host} cannot be resolved") from None
    addresses: list[str] = []
    for info in infos:
        # An IPv6 scope ("fe80::1%eth0") is not part of what ip_address checks.
        text = str(info[4][0]).split("%", 1)[0]
        ip = ipaddress.ip_address(text)
        if not allow_private and not ip.is_global:
            raise FeedError("the feed's address is a private or local network address")
        if str(ip) not in addresses:
            addresses.append(str(ip))
    if not addresses:
        raise FeedError(f"the feed's host {host} cannot be resolved")
    return addresses


def _host_header(host: str, port: int, scheme: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port == (443 if scheme == "https" else 80) else f"{shown}:{port}"


def _pinned_pool(scheme: str, address: str, port: int, host: str, timeout: float,
                 verify: str | bool) -> urllib3.HTTPConnectionPool:
    """A connection pool to ``address`` (an IP, never resolved again) that speaks to
    it as ``host``: for https the TLS server name (SNI) and the certificate check use
    ``host``, exactly as if the client had connected by name."""
    timeouts = urllib3.Timeout(connect=timeout, read=timeout)
    if scheme == "http":
        return urllib3.HTTPConnectionPool(address, port, timeout=timeouts, maxsize=1,
                                          retries=False)
    if verify is False:
        return urllib3.HTTPSConnectionPool(address, port, timeout=timeouts, maxsize=1,
                                           retries=False, cert_reqs="CERT_NONE",
                                           assert_hostname=False, server_hostname=host)
    ca_certs = verify if isinstance(verify, str) else certifi.where()
    return urllib3.HTTPSConnectionPool(address, port, timeout=timeouts, maxsize=1,
                                       retries=False, cert_reqs="CERT_REQUIRED",
                                       ca_certs=ca_certs, server_hostname=host,
                                       assert_hostname=host)


def normalize_url(url: str) -> str:
    """A feed URL as fetched: ``webcal://`` becomes ``https://``; only http(s)."""
    url = url.strip()
    if url.lower().startswith("webcal://"):
        url = "https://" + url[len("webcal://"):]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2048:
        raise FeedError("the feed URL must be an http(s) or webcal URL")
    return url


def fetch(url: str, *, timeout: float, allow_private: bool = False,
          verify: str | bool = True) -> bytes:
    """The feed's bytes (at most 5 MiB, decoded).

    Refuses private addresses (SSRF) unless ``allow_private``. The host is resolved
    once per hop (:func:`resolve_checked`) and the connection goes to a checked address,
    with the name in ``Host`` and, for https, in SNI and the certificate check.
    Redirects are followed by hand, so every hop is resolved and checked the same way.
    ``verify`` is a CA file, True (the certifi bundle) or False.
    """
    for _ in range(MAX_REDIRECTS + 1):
        url = normalize_url(url)
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise FeedError("the feed URL has an invalid port") from None
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {"Host": _host_header(host, port, parts.scheme),
                   "Accept": "text/calendar", "Accept-Encoding": "gzip, deflate",
                   "User-Agent": "consultbook-ics"}
        resp = None
        failure: Exception | None = None
        for address in resolve_checked(host, port, allow_private):
            pool = _pinned_pool(parts.scheme, address, port, host, timeout, verify)
            try:
                resp = pool.urlopen("GET", target, headers=headers, redirect=False,
                                    retries=False, preload_content=False,
                                    assert_same_host=False)
                break
            except urllib3.exceptions.NewConnectionError as exc:
                pool.close()
                failure = exc  # this address is unreachable: try the next checked one
            except urllib3.exceptions.HTTPError as exc:
                pool.close()
                raise FeedError(f"the feed could not be fetched ({type(exc).__name__})"
                                ) from None
        if resp is None:
            name = type(failure).__name__ if failure else "no address"
            raise FeedError(f"the feed could not be fetched ({name})")
        try:
            location = resp.headers.get("Location")
            if resp.status in (301, 302, 303, 307, 308) and location:
                url = urljoin(url, location)
                continue
            if resp.status != 200:
                raise FeedError(f"the feed answered HTTP {resp.status}")
            body = bytearray()
            try:
                for chunk in resp.stream(65536, decode_content=True):
                    body.extend(chunk)
                    if len(body) > MAX_BYTES:
                        raise FeedError("the feed is larger than 5 MiB")
            except urllib3.exceptions.HTTPError as exc:
                raise FeedError(f"the feed could not be read ({type(exc).__name__})"
                                ) from None
            return bytes(body)
        finally:
            resp.release_conn()
            resp.close()
            pool.close()
    raise FeedError("the feed redirects too often")
