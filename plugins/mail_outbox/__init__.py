"""The outbox mailer: every message becomes one ``.eml`` file in ``CONSULTBOOK_OUTBOX_DIR``.

The embedded default (no SMTP server anywhere). Files are written atomically (temporary
file, then rename), named ``<UTC time>-<message id hash>.eml``; a message with an
idempotency key always lands in the same file, so a retried send does not duplicate it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from engine import hookimpl
from engine.providers import (
    MailMessage,
    MailProvider,
    ProviderRegistry,
    ProviderUnavailable,
)
from engine.providers.mime import build_mime


class OutboxMailer(MailProvider):
    """Writes ``.eml`` files instead of sending."""

    name = "outbox"
    label = "Outbox folder (no mail is sent)"
    idempotent = True  # a key always lands in the same file

    @property
    def directory(self) -> Path:
        return Path(self.ctx.config.outbox_dir)

    def send(self, message: MailMessage) -> str:
        now = self.ctx.clock.now()
        sender = f"no-reply@{self.ctx.shop.domain}"
        mime = build_mime(message, sender=sender, sender_name=self.ctx.shop.domain,
                          now=now.timestamp())
        message_id = str(mime["Message-ID"])
        digest = hashlib.sha256(message_id.encode()).hexdigest()[:16]
        directory = self.directory
        try:
            directory.mkdir(parents=True, exist_ok=True)
            existing = sorted(directory.glob(f"*-{digest}.eml"))
            if existing and message.idempotency_key:
                return message_id
            target = directory / f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{digest}.eml"
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".eml")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(mime.as_bytes())
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise ProviderUnavailable(f"cannot write to the outbox {directory}: {exc.strerror}",
                                      provider=self.name) from None
        return message_id


@hookimpl
def consultbook_register_providers(registry: ProviderRegistry) -> None:
    registry.add_mail(OutboxMailer)
