"""A fake SMTP server (aiosmtpd) that requires STARTTLS and AUTH, or speaks implicit TLS.

``with FakeSMTP() as smtp:`` then ``smtp.url`` is a ``CONSULTBOOK_SMTP_URL`` and
``smtp.messages`` holds what arrived (``email.message.EmailMessage`` objects, with
``smtp.envelopes`` for the SMTP envelope). Use ``tests.fakes.tls.ca_file()`` as the CA.
"""

from __future__ import annotations

import email
import email.policy
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, Session

from tests.fakes.tls import server_context


@dataclass
class Envelope:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


class _Session(Session):
    # aiosmtpd itself still sets the deprecated ``login_data``; keep its warning (an
    # error under our pytest settings, raised in the server's thread) out of the way.
    @property  # type: ignore[override]
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class _SMTP(SMTP):
    def _create_session(self) -> Session:
        return _Session(self.loop)

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if self._original_transport is None and transport.get_extra_info("ssl_object"):
            # Implicit TLS: aiosmtpd only counts STARTTLS as TLS; this connection is TLS
            # from the first byte, so AUTH may be offered (no STARTTLS is, tls_context
            # being unset).
            self._tls_protocol = True  # type: ignore[assignment]


class _PortZeroController(Controller):
    def factory(self) -> SMTP:
        return _SMTP(self.handler, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        # Bound to port 0: learn the real port before the readiness probe connects.
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class FakeSMTP:
    username = "mailer"
    password = "s3cret pass/word"

    def __init__(self, *, implicit_tls: bool = False, sender: str = "bookings@example.com",
                 reject_rcpt: int | None = None) -> None:
        self.implicit_tls = implicit_tls
        self.sender = sender
        self.envelopes: list[Envelope] = []
        self.auth_attempts: list[str] = []
        self.reject_rcpt = reject_rcpt  # an SMTP code to answer RCPT with
        self.defer_data = 0  # how many DATA commands answer 451 first
        self._lock = threading.Lock()
        fake = self

        class Handler:
            async def handle_RCPT(self, server: Any, session: Any, envelope: Any,
                                  address: str, rcpt_options: list[str]) -> str:
                if fake.reject_rcpt:
                    return f"{fake.reject_rcpt} mailbox unavailable"
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server: Any, session: Any,
                                  envelope: Any) -> str:
                with fake._lock:
                    if fake.defer_data > 0:
                        fake.defer_data -= 1
                        return "451 try again later"
                    fake.envelopes.append(Envelope(envelope.mail_from,
                                                   list(envelope.rcpt_tos),
                                                   bytes(envelope.content)))
                return "250 Message accepted"

        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                          auth_data: Any) -> AuthResult:
            ok = isinstance(auth_data, LoginPassword) and \
                auth_data.login.decode() == self.username and \
                auth_data.password.decode() == self.password
            self.auth_attempts.append(mechanism)
            return AuthResult(success=ok, handled=False)

        tls = server_context()
        if implicit_tls:
            self.controller = _PortZeroController(
                Handler(), hostname="127.0.0.1", port=0, ssl_context=tls,
                authenticator=authenticator, auth_required=True, auth_require_tls=True)
        else:
            self.controller = _PortZeroController(
                Handler(), hostname="127.0.0.1", port=0, tls_context=tls,
                require_starttls=True, authenticator=authenticator, auth_required=True,
                auth_require_tls=True)

    def __enter__(self) -> FakeSMTP:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def port(self) -> int:
        return int(self.controller.port)

    @property
    def url(self) -> str:
        from urllib.parse import quote

        scheme = "smtps" if self.implicit_tls else "smtp"
        return (f"{scheme}://{self.username}:{quote(self.password, safe='')}@127.0.0.1:"
                f"{self.port}?from={self.sender}")

    @property
    def messages(self) -> list[EmailMessage]:
        return [email.message_from_bytes(e.data, policy=email.policy.default)  # type: ignore[misc]
                for e in self.envelopes]
