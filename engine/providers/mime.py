"""Turning a :class:`~engine.providers.MailMessage` into a MIME message (shared by mailers).

Layout: ``multipart/mixed`` holding a ``multipart/alternative`` (text, HTML, and the
invitation as ``text/calendar; method=...`` so calendar clients offer to accept it) and
the same invitation attached as ``invite.ics``. Headers go through the stdlib's strict
policy: a header value with a line break is refused, never folded into a new header.
"""

from __future__ import annotations

import hashlib
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formataddr, formatdate, make_msgid

from engine.providers.types import MailMessage

RESERVED = {"from", "to", "cc", "bcc", "subject", "date", "message-id", "mime-version",
            "content-type", "content-transfer-encoding", "reply-to"}


def message_id(message: MailMessage, domain: str) -> str:
    """A ``Message-ID``: derived from the idempotency key when there is one, so the same
    logical message keeps one id across retries."""
    if message.idempotency_key:
        digest = hashlib.sha256(message.idempotency_key.encode("utf-8")).hexdigest()[:40]
        return f"<{digest}@{domain}>"
    return make_msgid(domain=domain)


def build_mime(message: MailMessage, *, sender: str, sender_name: str | None = None,
               now: float | None = None) -> EmailMessage:
    """The MIME message for ``message`` sent from ``sender``."""
    msg = EmailMessage(policy=SMTP)
    name = message.from_name or sender_name
    msg["From"] = formataddr((name, sender)) if name else sender
    msg["To"] = ", ".join(message.to)
    if message.reply_to:
        msg["Reply-To"] = message.reply_to
    msg["Subject"] = message.subject
    msg["Date"] = formatdate(now, usegmt=True)
    domain = sender.rpartition("@")[2] or "consultbook.invalid"
    msg["Message-ID"] = message_id(message, domain)
    for header, value in message.headers.items():
        if header.lower() in RESERVED:
            raise ValueError(f"the header {header} is set by the mailer, not by a message")
        msg[header] = value
    msg.set_content(message.text, subtype="plain", charset="utf-8")
    if message.html is not None:
        msg.add_alternative(message.html, subtype="html", charset="utf-8")
    if message.ics is not None:
        ics_text = message.ics.decode("utf-8")
        msg.add_alternative(ics_text, subtype="calendar", charset="utf-8",
                            params={"method": message.ics_method})
        msg.make_mixed()
        msg.add_attachment(message.ics, maintype="application", subtype="ics",
                           filename="invite.ics")
    return msg


def valid_sender(address: str) -> bool:
    try:
        Address(addr_spec=address)
    except (ValueError, IndexError):
        return False
    return "@" in address and "\n" not in address and "\r" not in address
