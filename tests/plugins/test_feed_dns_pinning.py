"""The ``.ics`` feed fetch connects to the address it checked (no DNS rebinding).

A resolver we control stands in for DNS: ``socket.getaddrinfo`` answers for the test
names and passes everything else to the real resolver. Every ``connect`` is recorded,
and connections to anything but loopback are refused at once (there is no internet),
so the tests see exactly which addresses the fetch tried.

Loopback is reached only with ``allow_private=True``, the explicit setting
(``CONSULTBOOK_ICS_ALLOW_PRIVATE_HOSTS``) the other feed tests use too.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from plugins.calendar_local.ics import FeedError, fetch
from tests.fakes.http import FakeServer, Request, Response
from tests.fakes.tls import authority, ca_file

FEED = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n"
PUBLIC = "8.8.8.8"  # is_global; nothing is reachable there from the test machine


class Feed(FakeServer):
    def route(self, r: Request) -> Response:
        if r.path == "/hop":
            return Response(302, b"", {"Location": f"http://rebind.test:{self.port}/feed.ics"})
        return Response(200, FEED, {"Content-Type": "text/calendar"})


class Resolver:
    """Answers for chosen names (a list of answers, one per call, the last repeating)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answers: dict[str, list[list[str]]] = {}
        self.lookups: list[str] = []
        self.connects: list[str] = []
        real_getaddrinfo = socket.getaddrinfo
        real_connect = socket.socket.connect

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            name = host.decode() if isinstance(host, bytes) else str(host)
            if name not in self.answers:
                return real_getaddrinfo(host, port, *args, **kwargs)
            self.lookups.append(name)
            queue = self.answers[name]
            addresses = queue.pop(0) if len(queue) > 1 else queue[0]
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM,
                     socket.IPPROTO_TCP, "", (a, int(port or 0))) for a in addresses]

        def connect(sock: socket.socket, address: Any) -> None:
            self.connects.append(str(address[0]))
            if not str(address[0]).startswith("127."):
                raise ConnectionRefusedError(111, "refused by the test (no internet)")
            real_connect(sock, address)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Resolver:
    return Resolver(monkeypatch)


@pytest.fixture
def feed() -> Iterator[Feed]:
    with Feed() as server:
        yield server  # type: ignore[misc]


def test_a_rebinding_name_never_reaches_loopback(resolver: Resolver, feed: Feed) -> None:
    # First answer public (passes the check), every later answer 127.0.0.1.
    resolver.answers["rebind.test"] = [[PUBLIC], ["127.0.0.1"]]
    with pytest.raises(FeedError, match="could not be fetched"):
        fetch(f"http://rebind.test:{feed.port}/feed.ics", timeout=1)
    assert resolver.lookups == ["rebind.test"]  # resolved once
    assert resolver.connects == [PUBLIC]
    assert feed.calls("GET", "/feed.ics") == []


def test_a_rebinding_name_over_https_never_reaches_loopback(resolver: Resolver) -> None:
    resolver.answers["rebind.test"] = [[PUBLIC], ["127.0.0.1"]]
    with pytest.raises(FeedError):
        fetch("https://rebind.test/feed.ics", timeout=1, verify=ca_file())
    assert resolver.connects == [PUBLIC]


def test_one_private_address_among_public_ones_is_refused(resolver: Resolver) -> None:
    resolver.answers["mixed.test"] = [[PUBLIC, "127.0.0.1"]]
    with pytest.raises(FeedError, match="private"):
        fetch("http://mixed.test/feed.ics", timeout=1)
    assert resolver.connects == []


def test_the_checked_address_is_used_with_the_name_in_the_host_header(
        resolver: Resolver, feed: Feed) -> None:
    """Pinned, not broken: the fetch connects to the one address the name resolved to
    and still speaks to the server by name."""
    resolver.answers["calendar.test"] = [["127.0.0.1"], ["192.0.2.1"]]
    body = fetch(f"http://calendar.test:{feed.port}/feed.ics?k=1", timeout=1,
                 allow_private=True)
    assert body == FEED
    assert resolver.connects == ["127.0.0.1"] and resolver.lookups == ["calendar.test"]
    [call] = feed.calls("GET", "/feed.ics")
    assert call.headers["host"] == f"calendar.test:{feed.port}"
    assert call.query == {"k": "1"}


def test_each_redirect_hop_is_resolved_and_checked_once(resolver: Resolver,
                                                        feed: Feed) -> None:
    resolver.answers["first.test"] = [["127.0.0.1"]]
    resolver.answers["rebind.test"] = [[PUBLIC], ["127.0.0.1"]]
    with pytest.raises(FeedError):
        fetch(f"http://first.test:{feed.port}/hop", timeout=1, allow_private=True)
    # The hop's name answered public first: the fetch went there, not to loopback.
    assert resolver.lookups == ["first.test", "rebind.test"]
    assert resolver.connects == ["127.0.0.1", PUBLIC]
    assert feed.calls("GET", "/feed.ics") == []


def test_https_checks_the_certificate_against_the_name_not_the_address(
        resolver: Resolver) -> None:
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority().issue_cert("calendar.test").configure_cert(context)
    with Feed(ssl_context=context) as server:
        resolver.answers["calendar.test"] = [["127.0.0.1"]]
        resolver.answers["other.test"] = [["127.0.0.1"]]
        url = f"https://calendar.test:{server.port}/feed.ics"
        assert fetch(url, timeout=2, allow_private=True, verify=ca_file()) == FEED
        assert server.calls("GET", "/feed.ics")[0].headers["host"] == (
            f"calendar.test:{server.port}")
        # The same server under a name its certificate does not carry is refused.
        with pytest.raises(FeedError):
            fetch(f"https://other.test:{server.port}/feed.ics", timeout=2,
                  allow_private=True, verify=ca_file())
        assert resolver.connects == ["127.0.0.1", "127.0.0.1"]
