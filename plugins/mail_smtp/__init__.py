"""SMTP mail through :mod:`smtplib`: STARTTLS or implicit TLS, AUTH, certificate checks.

Configured by ``CONSULTBOOK_SMTP_URL``:

* ``smtp://user:pass@host:587`` -- STARTTLS (the default; ``?starttls=false`` turns it off,
  and is refused together with a password: credentials never cross the wire in clear);
* ``smtps://user:pass@host:465`` -- implicit TLS;
* ``?from=bookings@example.com`` -- the sender (default ``no-reply@<host>``);
* user and password are percent-decoded.

TLS verifies the server's certificate against the system's CAs, or against
``CONSULTBOOK_PROVIDER_CA_BUNDLE`` when set. Transient failures (connection errors,
timeouts, 4xx replies) are retried with backoff, then raised as ProviderUnavailable;
5xx replies are ProviderRejected.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

from engine import hookimpl
from engine.providers import (
    Config,
    MailMessage,
    MailProvider,
    ProviderNotConfigured,
    ProviderRegistry,
    ProviderRejected,
    Retry,
    retrying,
)
from engine.providers.mime import build_mime, valid_sender


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    username: str | None
    password: str | None
    sender: str

    @classmethod
    def parse(cls, url: str) -> SmtpSettings:
        """Raises ValueError with a one-line reason (never echoing the password)."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("CONSULTBOOK_SMTP_URL must look like smtp://user:pass@host:port")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        implicit = parts.scheme == "smtps"
        flag = query.get("starttls", "true").lower()
        if flag not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError("the starttls parameter of CONSULTBOOK_SMTP_URL must be true/false")
        starttls = not implicit and flag in ("true", "1", "yes")
        try:
            port = parts.port or (465 if implicit else 587)
        except ValueError:
            raise ValueError("CONSULTBOOK_SMTP_URL has an invalid port") from None
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        if password and not (implicit or starttls):
            raise ValueError("CONSULTBOOK_SMTP_URL sends a password without TLS; use smtps:// "
                             "or starttls=true")
        sender = query.get("from") or f"no-reply@{parts.hostname}"
        if not valid_sender(sender):
            raise ValueError("the from parameter of CONSULTBOOK_SMTP_URL is not an address")
        return cls(parts.hostname, port, implicit, starttls, username, password, sender)


class SmtpMailer(MailProvider):
    """Sends through the SMTP server of ``CONSULTBOOK_SMTP_URL``."""

    name = "smtp"
    label = "SMTP server"
    transient_codes: ClassVar[range] = range(400, 500)

    @classmethod
    def check_config(cls, config: Config) -> str | None:
        if not config.smtp_url:
            return "CONSULTBOOK_SMTP_URL is not set"
        try:
            SmtpSettings.parse(config.smtp_url)
        except ValueError as exc:
            return str(exc)
        return None

    def _tls(self) -> ssl.SSLContext:
        ca = self.ctx.config.provider_ca_bundle
        return ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()

    def send(self, message: MailMessage) -> str:
        url = self.ctx.config.smtp_url
        if not url:
            raise ProviderNotConfigured("CONSULTBOOK_SMTP_URL is not set")
        settings = SmtpSettings.parse(url)
        mime = build_mime(message, sender=settings.sender, sender_name=self.ctx.shop.domain,
                          now=self.ctx.clock.now().timestamp())

        def attempt() -> None:
            timeout = self.ctx.retry.timeout
            try:
                client: smtplib.SMTP
                if settings.implicit_tls:
                    client = smtplib.SMTP_SSL(settings.host, settings.port, timeout=timeout,
                                              context=self._tls())
                else:
                    client = smtplib.SMTP(settings.host, settings.port, timeout=timeout)
                with client:
                    client.ehlo()
                    if settings.starttls:
                        client.starttls(context=self._tls())
                        client.ehlo()
                    if settings.username:
                        client.login(settings.username, settings.password or "")
                    client.send_message(mime, from_addr=settings.sender,
                                        to_addrs=list(message.to))
            except smtplib.SMTPAuthenticationError as exc:
                raise ProviderRejected(f"the SMTP server refused the login ({exc.smtp_code})",
                                       provider=self.name) from None
            except smtplib.SMTPRecipientsRefused as exc:
                codes = {code for code, _ in exc.recipients.values()}
                if all(c in self.transient_codes for c in codes):
                    raise Retry(f"recipients deferred ({sorted(codes)})") from None
                raise ProviderRejected("the SMTP server refused the recipient(s)",
                                       provider=self.name) from None
            except smtplib.SMTPResponseException as exc:
                if exc.smtp_code in self.transient_codes:
                    raise Retry(f"SMTP {exc.smtp_code}") from None
                raise ProviderRejected(f"the SMTP server refused the message ({exc.smtp_code})",
                                       provider=self.name) from None
            except smtplib.SMTPNotSupportedError:
                raise ProviderRejected("the SMTP server does not support STARTTLS/AUTH",
                                       provider=self.name) from None
            except ssl.SSLCertVerificationError:
                raise ProviderRejected("the SMTP server's certificate is not trusted",
                                       provider=self.name) from None
            except (smtplib.SMTPException, OSError) as exc:
                raise Retry(f"{type(exc).__name__}") from None

        retrying(self.ctx.retry, self.name, attempt)
        return str(mime["Message-ID"])


@hookimpl
def consultbook_register_providers(registry: ProviderRegistry) -> None:
    registry.add_mail(SmtpMailer)
