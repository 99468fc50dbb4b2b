"""SMTP (smtplib against aiosmtpd with STARTTLS + AUTH) and the outbox mailer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.bootstrap import Context
from engine.providers import MailMessage, ProviderRejected, ProviderUnavailable
from engine.services.shops import ShopRef
from plugins.mail_smtp import SmtpSettings
from tests.fakes.smtp import FakeSMTP
from tests.fakes.tls import ca_file
from tests.plugins.conftest import set_providers

MESSAGE = MailMessage(to=("carl@example.net",), subject="Booked", text="See you",
                      html="<p>See you</p>", idempotency_key="confirmation:bkg_1:0")


@pytest.fixture
def smtp() -> Iterator[FakeSMTP]:
    with FakeSMTP() as server:
        yield server



@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """SQLite only: these tests are about the provider's HTTP behaviour; storing
    connections is covered on both databases by test_freebusy, test_contract, test_meta."""
    return sqlite_url


@pytest.fixture
def overrides(smtp: FakeSMTP) -> dict[str, Any]:
    return {"smtp_url": smtp.url, "provider_ca_bundle": ca_file()}


@pytest.fixture
def smtp_shop(ctx: Context, shop: ShopRef) -> ShopRef:
    set_providers(ctx, shop, mail="smtp")
    return shop


def test_smtp_uses_starttls_and_auth(ctx: Context, smtp_shop: ShopRef, smtp: FakeSMTP) -> None:
    ctx.plugins.mailer_for(smtp_shop).send(MESSAGE)
    assert smtp.auth_attempts and smtp.envelopes[0].mail_from == "bookings@example.com"
    assert smtp.envelopes[0].rcpt_tos == ["carl@example.net"]
    got = smtp.messages[0]
    assert got["From"].addresses[0].addr_spec == "bookings@example.com"
    assert got["From"].addresses[0].display_name == smtp_shop.domain


def test_the_same_idempotency_key_is_sent_once(ctx: Context, smtp_shop: ShopRef,
                                               smtp: FakeSMTP) -> None:
    first = ctx.plugins.mailer_for(smtp_shop).send(MESSAGE)
    assert ctx.plugins.mailer_for(smtp_shop).send(MESSAGE) == first
    assert len(smtp.envelopes) == 1


def test_a_wrong_password_is_rejected_not_retried(ctx: Context, smtp_shop: ShopRef,
                                                  smtp: FakeSMTP) -> None:
    bad = smtp.url.replace("s3cret", "wrong")
    plugins = type(ctx.plugins).load(ctx.config.with_(smtp_url=bad), ctx.db, ctx.keyring,
                                     ctx.clock)
    with pytest.raises(ProviderRejected, match="login"):
        plugins.mailer_for(smtp_shop).send(MESSAGE)
    assert smtp.auth_attempts == ["PLAIN", "LOGIN"]  # one login (smtplib tries both), no retry


def test_a_451_is_retried(ctx: Context, smtp_shop: ShopRef, smtp: FakeSMTP) -> None:
    smtp.defer_data = 1
    ctx.plugins.mailer_for(smtp_shop).send(MESSAGE)
    assert len(smtp.envelopes) == 1 and smtp.auth_attempts == ["PLAIN", "PLAIN"]


def test_a_rejected_recipient_is_permanent(ctx: Context, smtp_shop: ShopRef,
                                           smtp: FakeSMTP) -> None:
    smtp.reject_rcpt = 550
    with pytest.raises(ProviderRejected):
        ctx.plugins.mailer_for(smtp_shop).send(MESSAGE)


def test_an_untrusted_certificate_is_refused(ctx: Context, smtp_shop: ShopRef,
                                             smtp: FakeSMTP) -> None:
    plugins = type(ctx.plugins).load(ctx.config.with_(provider_ca_bundle=None), ctx.db,
                                     ctx.keyring, ctx.clock)
    with pytest.raises(ProviderRejected, match="certificate"):
        plugins.mailer_for(smtp_shop).send(MESSAGE)
    assert not smtp.envelopes


def test_an_unreachable_server_is_unavailable(ctx: Context, smtp_shop: ShopRef) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    plugins = type(ctx.plugins).load(ctx.config.with_(
        smtp_url=f"smtp://127.0.0.1:{port}?starttls=true"), ctx.db, ctx.keyring, ctx.clock)
    with pytest.raises(ProviderUnavailable):
        plugins.mailer_for(smtp_shop).send(MESSAGE)


def test_smtp_url_parsing() -> None:
    s = SmtpSettings.parse("smtps://u%40x:p%3Aw@mail.example.com?from=a@example.com")
    assert (s.host, s.port, s.implicit_tls, s.username, s.password) == \
        ("mail.example.com", 465, True, "u@x", "p:w")
    assert SmtpSettings.parse("smtp://mail.example.com").starttls
    with pytest.raises(ValueError, match="without TLS"):
        SmtpSettings.parse("smtp://u:p@mail.example.com?starttls=false")
    with pytest.raises(ValueError):
        SmtpSettings.parse("smtp://mail.example.com?from=not-an-address")


def test_outbox_writes_one_eml_per_message_atomically(ctx: Context, shop: ShopRef) -> None:
    mailer = ctx.plugins.mailer_for(shop)
    mailer.send(MESSAGE)
    mailer.send(MailMessage(to=("x@example.org",), subject="Other", text="x"))
    files = sorted(Path(ctx.config.outbox_dir).glob("*.eml"))
    assert len(files) == 2 and not list(Path(ctx.config.outbox_dir).glob(".tmp-*"))
    assert b"Subject: Booked" in b"".join(f.read_bytes() for f in files)
    # A retried send of a keyed message (even past the facade) lands in the same file.
    mailer.provider.send(MESSAGE)
    assert len(list(Path(ctx.config.outbox_dir).glob("*.eml"))) == 2


def test_outbox_that_cannot_be_written_is_unavailable(ctx: Context, shop: ShopRef,
                                                      tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    plugins = type(ctx.plugins).load(ctx.config.with_(outbox_dir=str(blocker / "sub")),
                                     ctx.db, ctx.keyring, ctx.clock)
    with pytest.raises(ProviderUnavailable):
        plugins.mailer_for(shop).send(MESSAGE)
