"""One CalDAV account over HTTP: a ``requests`` session, our XML, our error mapping.

The plugin speaks the few WebDAV/CalDAV requests it needs (PROPFIND, REPORT, GET, PUT,
DELETE) itself, over ``requests`` (which the engine already uses): the ``caldav``
library's 2.x and 3.x releases bring ``niquests``, whose ``urllib3-future`` replaces the
``urllib3`` package every other HTTP client of the app relies on. The tests drive a real
Radicale server with the ``caldav`` library to prove the two agree.

Every request goes through :meth:`DavSession.request`, the one place where HTTP answers
become the contract's errors:

* 401 -> :class:`~engine.providers.ConnectionBroken` (the app password was revoked);
* 403 -> :class:`Forbidden`, a ``ConnectionBroken`` that callers reading one calendar
  among several may catch (a mapped calendar the account may not read is that expert's
  problem, not the whole connection's);
* 429, 5xx, timeouts, refused connections -> retried with the context's
  :class:`~engine.providers.RetryPolicy` (honouring ``Retry-After``), then
  :class:`~engine.providers.ProviderUnavailable` carrying the hint;
* any other 4xx -> :class:`~engine.providers.ProviderRejected`, unless the caller
  listed the status in ``expect`` (404 on a cancel, 412 on a create...).

Where requests may go: only to the origins the account names (the server URL the
merchant typed and the calendar home the server pointed us to at connect time; iCloud
serves calendars from a partition host such as ``p42-caldav.icloud.com``), over https,
to public addresses. Redirects are not followed. ``allow_private`` (an operator setting;
the tests' Radicale listens on 127.0.0.1) also permits plain http and private addresses.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from lxml import etree
from requests.auth import AuthBase, HTTPBasicAuth, HTTPDigestAuth

from engine.providers import (
    ConnectionBroken,
    ProviderRejected,
    Retry,
    RetryPolicy,
    parse_retry_after,
    retrying,
)

PROVIDER = "caldav"
DAV = "DAV:"
CALDAV_NS = "urn:ietf:params:xml:ns:caldav"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


class Forbidden(ConnectionBroken):
    """HTTP 403. ``preconditions`` are the ``DAV:error`` children the server named
    (``{urn:ietf:params:xml:ns:caldav}no-uid-conflict``...)."""

    def __init__(self, message: str, preconditions: Iterable[str] = ()) -> None:
        super().__init__(message, provider=PROVIDER)
        self.preconditions = tuple(preconditions)


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status, headers (case-insensitive lookups via :meth:`header`),
    and the body as bytes."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    tree: Any = None  # the parsed XML body, when the client library parsed it already

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return None if value is None else str(value)

    def xml(self) -> Any:
        """The body as an lxml element (entities are never resolved)."""
        if self.tree is not None:
            return self.tree
        try:
            return etree.fromstring(self.body, parser=_PARSER)
        except etree.XMLSyntaxError as exc:
            raise ProviderRejected(f"the CalDAV server answered with malformed XML ({exc})",
                                   provider=PROVIDER) from None


def origin(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def collection_url(base: str, value: str) -> str:
    """``value`` (an absolute URL or a path on ``base``'s server) as an absolute collection
    URL ending in ``/``, the form calendar ids take everywhere."""
    url = urljoin(base if base.endswith("/") else base + "/", value.strip())
    parts = urlsplit(url)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return parts._replace(path=path, query="", fragment="").geturl()


def check_url(url: str, *, allow_private: bool) -> None:
    """Refuse URLs credentials must never be sent to: not http(s), plain http to a public
    server, or (unless ``allow_private``) a host resolving to a private, loopback or
    link-local address. Raises :class:`ProviderRejected` with a sentence for the merchant."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2048:
        raise ProviderRejected("the CalDAV server URL must be an https:// address",
                               provider=PROVIDER)
    if parts.username or parts.password:
        raise ProviderRejected("put the user name and password in their own fields, not in "
                               "the URL", provider=PROVIDER)
    if allow_private:
        return
    if parts.scheme != "https":
        raise ProviderRejected("the CalDAV server URL must use https:// (the password "
                               "would travel unencrypted)", provider=PROVIDER)
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        # Unresolvable now: the request itself will fail and be retried as unavailable.
        return
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not address.is_global:
            raise ProviderRejected("the CalDAV server's address is a private or local "
                                   "network address", provider=PROVIDER)


class DavSession:
    """A logged-in CalDAV client for one account. Use as a context manager.

    ``origins`` are the absolute URLs whose origins requests may reach (see the module
    docstring); the first is the server URL."""

    def __init__(self, *, url: str, username: str, password: str, retry: RetryPolicy,
                 verify: str | bool, allow_private: bool,
                 extra_origins: Iterable[str] = (), auth_type: str | None = None) -> None:
        self.retry = retry
        self.allow_private = allow_private
        self.url = collection_url(url, "")
        self.allowed = {origin(self.url)} | {origin(u) for u in extra_origins if u}
        for allowed_url in (self.url, *extra_origins):
            if allowed_url:
                check_url(allowed_url, allow_private=allow_private)
        self._username, self._password = username, password
        self._verify = verify
        self._timeout = retry.timeout
        # The scheme found at connect time (no 401 round trip first); else Basic, and
        # Digest when the server's first 401 asks for it.
        self._auth_type = auth_type if auth_type in ("basic", "digest") else None
        self._auth: AuthBase = self._make_auth(self._auth_type or "basic")
        self.session = requests.Session()
        self.session.trust_env = False  # our CA setting, not the machine's proxy/CA vars
        self.session.headers["User-Agent"] = "consultbook-caldav"

    def _make_auth(self, scheme: str) -> AuthBase:
        if scheme == "digest":
            return HTTPDigestAuth(self._username, self._password)
        return HTTPBasicAuth(self._username, self._password)

    def __enter__(self) -> DavSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    @property
    def auth_type(self) -> str | None:
        """The authentication scheme the server accepted (after the first request)."""
        return self._auth_type

    def _send(self, method: str, url: str, body: str, headers: Mapping[str, str]
              ) -> requests.Response:
        def go() -> requests.Response:
            return self.session.request(
                method, url, data=body.encode("utf-8") if body else None,
                headers=dict(headers), auth=self._auth, timeout=self._timeout,
                verify=self._verify,
                allow_redirects=False)  # a redirect could lead the password anywhere

        r = go()
        if r.status_code == 401 and self._auth_type is None:
            challenge = r.headers.get("WWW-Authenticate", "").lower()
            if challenge.startswith("digest"):
                self._auth = self._make_auth("digest")
                r = go()
                if r.status_code != 401:
                    self._auth_type = "digest"
        elif r.status_code != 401 and self._auth_type is None:
            self._auth_type = "basic"
        return r

    def allow(self, url: str) -> None:
        """Also permit requests to ``url``'s origin (after checking it)."""
        check_url(url, allow_private=self.allow_private)
        self.allowed.add(origin(url))

    def permitted(self, url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and origin(url) in self.allowed

    def request(self, method: str, url: str, body: str = "", *,
                headers: Mapping[str, str] | None = None,
                expect: Iterable[int] = ()) -> Answer:
        """Send one request (retried per the policy); see the module docstring for what
        each answer becomes. 2xx and the ``expect`` statuses are returned."""
        if not self.permitted(url):
            raise ProviderRejected("the calendar is not on the connected CalDAV server",
                                   provider=PROVIDER)
        expected = set(expect)
        sent = dict(headers or {})

        def attempt() -> Answer:
            try:
                r = self._send(method, url, body, sent)
            except (requests.Timeout, requests.ConnectionError) as exc:
                raise Retry(type(exc).__name__) from None
            except requests.RequestException as exc:
                raise Retry(type(exc).__name__) from None
            status = int(r.status_code)
            answer = Answer(status, r.headers, r.content)
            if status in expected or 200 <= status < 300:
                return answer
            if 300 <= status < 400:
                raise ProviderRejected("the CalDAV server redirected the request; enter "
                                       "the CalDAV address it redirects to",
                                       provider=PROVIDER)
            if status == 403:
                raise Forbidden("the CalDAV server forbids this account to "
                                f"{method} {urlsplit(url).path}",
                                _preconditions(answer)) from None
            if status == 429 or status >= 500:
                raise Retry(f"HTTP {status}", parse_retry_after(answer.header("Retry-After")))
            if status == 401:
                raise ConnectionBroken("the CalDAV server no longer accepts the user name "
                                       "and app password; connect again", provider=PROVIDER)
            raise ProviderRejected(f"the CalDAV server refused {method} "
                                   f"{urlsplit(url).path}: HTTP {status}", provider=PROVIDER)

        return retrying(self.retry, PROVIDER, attempt)


def _preconditions(answer: Answer) -> tuple[str, ...]:
    """The ``DAV:error`` children of a refusal (``{urn:ietf:params:xml:ns:caldav}
    no-uid-conflict``...), as Clark names; none when the body is not that XML."""
    if not answer.body.lstrip().startswith(b"<"):
        return ()
    try:
        root = etree.fromstring(answer.body, parser=_PARSER)
    except etree.XMLSyntaxError:
        return ()
    if root.tag != f"{{{DAV}}}error":
        return ()
    return tuple(str(child.tag) for child in root)


__all__ = ["CALDAV_NS", "DAV", "PROVIDER", "Answer", "DavSession", "Forbidden",
           "check_url", "collection_url", "origin"]
