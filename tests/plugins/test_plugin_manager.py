"""The plugin manager: discovery, blocking, validation, the registry, the facade, and the
hooks themselves (one test per hook; see test_meta.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from importlib.metadata import entry_points
from typing import Any

import pytest
from sqlalchemy import select

from engine import hookimpl
from engine.bootstrap import Context
from engine.clock import FixedClock
from engine.config import Config, from_env
from engine.plugins import PluginError, ProviderRegistry
from engine.providers import (
    BookingDetails,
    CalendarProvider,
    MailMessage,
    MailProvider,
    Meeting,
    ProviderNotConfigured,
    VideoProvider,
)
from engine.services.providers import Plugins
from engine.services.shops import ShopRef
from tests.conftest import NOW
from tests.plugins.conftest import set_providers


def load(ctx: Context, *extra: tuple[str, object], **config: Any) -> Plugins:
    cfg = ctx.config.with_(**config) if config else ctx.config
    return Plugins.load(cfg, ctx.db, ctx.keyring, FixedClock(NOW), extra=extra)


BUILTINS = {"calendar_local": "plugins.calendar_local", "mail_outbox": "plugins.mail_outbox",
            "mail_smtp": "plugins.mail_smtp", "calendar_google": "plugins.calendar_google",
            "video_meet": "plugins.video_meet", "calendar_outlook": "plugins.calendar_outlook"}


def test_builtins_are_registered_through_the_entry_point_group() -> None:
    """Built-ins load only as entry points, like a third party's (the engine names none)."""
    names = {ep.name: ep.value for ep in entry_points(group="consultbook.plugins")}
    for name, module in BUILTINS.items():
        assert names.get(name) == module


def test_builtins_provide_the_named_providers(ctx: Context) -> None:
    registry = ctx.plugins.registry
    # The built-ins the installed distribution declares (CalDAV and Zoom join once the
    # package is installed with their entry points).
    installed = {ep.name for ep in entry_points(group="consultbook.plugins")}
    caldav = ["caldav"] if "calendar_caldav" in installed else []
    zoom = ["zoom"] if "video_zoom" in installed else []
    assert registry.names("calendar") == sorted(["google", "local", "outlook", *caldav])
    assert registry.names("video") == sorted(["meet", "none", "teams", *zoom])
    assert registry.names("mail") == ["outbox", "smtp"]
    assert set(registry.connector_names()) >= {"google", "outlook", *caldav, *zoom}
    assert registry.owner("calendar", "google") == "calendar_google"


def test_plugins_can_be_blocked_by_configuration(ctx: Context) -> None:
    plugins = load(ctx, disabled_plugins=("calendar_google", "video_meet"))
    assert "google" not in plugins.registry.names("calendar")
    assert "calendar_google" not in plugins.plugin_names()
    assert from_env({"CONSULTBOOK_DISABLE_PLUGINS": "mail_smtp, video_meet"},
                    demo=True).disabled_plugins == ("mail_smtp", "video_meet")


def test_an_implementation_without_a_spec_fails_loading(ctx: Context) -> None:
    class Typo:
        @hookimpl
        def consultbook_register_provider(self, registry: Any) -> None:  # missing "s"
            pass

    with pytest.raises(PluginError, match="unknown hook"):
        load(ctx, ("typo", Typo()))


def test_a_plugin_that_fails_to_import_names_itself(ctx: Context) -> None:
    def boom() -> None:
        raise RuntimeError("kaput")

    class Broken:
        @hookimpl
        def consultbook_register_providers(self, registry: ProviderRegistry) -> None:
            boom()

    with pytest.raises(RuntimeError):
        load(ctx, ("broken", Broken()))


def test_two_providers_with_one_name_fail_loading(ctx: Context) -> None:
    class Imposter(CalendarProvider):
        name = "google"

    class Plugin:
        @hookimpl
        def consultbook_register_providers(self, registry: ProviderRegistry) -> None:
            registry.add_calendar(Imposter)

    with pytest.raises(PluginError, match="two plugins"):
        load(ctx, ("imposter", Plugin()))


def test_registering_the_wrong_kind_fails(ctx: Context) -> None:
    class NotACalendar(MailProvider):
        name = "weird"

    class Plugin:
        @hookimpl
        def consultbook_register_providers(self, registry: ProviderRegistry) -> None:
            registry.add_calendar(NotACalendar)  # type: ignore[arg-type]

    with pytest.raises(PluginError, match="not a CalendarProvider"):
        load(ctx, ("weird", Plugin()))


# --- one test per hook ----------------------------------------------------------------


class Postcard(MailProvider):
    """A third-party mailer, written in a few lines."""

    name = "postcard"
    sent: list[MailMessage] = []

    def send(self, message: MailMessage) -> str:
        self.sent.append(message)
        return f"<{len(self.sent)}@postcard>"


class PostcardPlugin:
    @hookimpl
    def consultbook_register_providers(self, registry: ProviderRegistry) -> None:
        registry.add_mail(Postcard)

    @hookimpl
    def consultbook_mail_headers(self, message: MailMessage,
                                 shop_domain: str) -> Mapping[str, str] | None:
        return {"X-Shop": shop_domain, "List-Unsubscribe": "<mailto:stop@example.com>"}


def test_hook_consultbook_register_providers(ctx: Context, shop: ShopRef) -> None:
    plugins = load(ctx, ("postcard", PostcardPlugin()))
    assert "postcard" in plugins.registry.names("mail")
    set_providers(ctx, shop, mail="postcard")
    assert isinstance(plugins.mailer_for(shop).provider, Postcard)


def test_hook_consultbook_mail_headers(ctx: Context, shop: ShopRef) -> None:
    Postcard.sent.clear()
    plugins = load(ctx, ("postcard", PostcardPlugin()))
    set_providers(ctx, shop, mail="postcard")
    mailer = plugins.mailer_for(shop)
    message = MailMessage(to=("a@example.org",), subject="Hi", text="x",
                          idempotency_key="k1")
    first = mailer.send(message)
    assert Postcard.sent[-1].headers["X-Shop"] == shop.domain
    # The same idempotency key again: not sent twice, same id.
    assert plugins.mailer_for(shop).send(message) == first and len(Postcard.sent) == 1


def test_hook_consultbook_connection_changed(ctx: Context, shop: ShopRef) -> None:
    seen: list[tuple[str, str, str, str | None]] = []

    class Watcher:
        @hookimpl
        def consultbook_connection_changed(self, shop_domain: str, provider: str,
                                           status: str, reason: str | None) -> None:
            seen.append((shop_domain, provider, status, reason))

    class Failing:
        @hookimpl
        def consultbook_connection_changed(self, shop_domain: str, provider: str,
                                           status: str, reason: str | None) -> None:
            raise RuntimeError("pager down")

    from engine.providers import Grant
    from engine.services import connections

    plugins = load(ctx, ("watcher", Watcher()), ("failing", Failing()))
    connections.store_connection(plugins, shop, "google",
                                 Grant(account="a@example.com", credentials={"x": 1}))
    connections.mark_broken(plugins, shop, "google", "revoked")
    connections.mark_broken(plugins, shop, "google", "revoked")  # no second notice
    connections.disconnect(plugins, shop, "google")
    assert [s[2] for s in seen] == ["connected", "broken", "disconnected"]
    assert seen[1] == (shop.domain, "google", "broken", "revoked")


# --- the facade -----------------------------------------------------------------------


def test_a_missing_provider_is_a_clear_error(ctx: Context, shop: ShopRef,
                                             booking: BookingDetails) -> None:
    set_providers(ctx, shop, mail="pigeon")
    with pytest.raises(ProviderNotConfigured, match=r"pigeon.*not installed"):
        ctx.plugins.mailer_for(shop)
    set_providers(ctx, shop, mail="smtp")
    with pytest.raises(ProviderNotConfigured, match="CONSULTBOOK_SMTP_URL"):
        ctx.plugins.mailer_for(shop)
    set_providers(ctx, shop, calendar="google")
    with pytest.raises(ProviderNotConfigured, match="GOOGLE_CLIENT_ID"):
        ctx.plugins.calendar_for(shop)


def test_a_provider_that_needs_an_account_says_so(ctx: Context, shop: ShopRef) -> None:
    plugins = load(ctx, google_client_id="id", google_client_secret="secret")
    set_providers(ctx, shop, calendar="google")
    with pytest.raises(ProviderNotConfigured, match="not connected"):
        plugins.calendar_for(shop)


def test_the_facade_finds_shops_by_id_or_domain(ctx: Context, shop: ShopRef) -> None:
    assert ctx.plugins.calendar_for(shop.id).ctx.shop == shop
    assert ctx.plugins.calendar_for(shop.domain).ctx.shop == shop
    assert ctx.plugins.video_for(shop.id).shop == shop
    assert ctx.plugins.mailer_for(shop.domain).shop == shop


class Kiosk(VideoProvider):
    """A third-party video provider that counts the meetings it was asked to make."""

    name = "kiosk"
    made: list[str] = []

    def create_meeting(self, booking: BookingDetails) -> Meeting | None:
        self.made.append(booking.booking_id)
        return Meeting(url=f"https://kiosk.example/{booking.booking_id}/{len(self.made)}",
                       id=f"k{len(self.made)}", provider=self.name)


class KioskPlugin:
    @hookimpl
    def consultbook_register_providers(self, registry: ProviderRegistry) -> None:
        registry.add_video(Kiosk)


def _stored_meetings(ctx: Context) -> list[tuple[str, str, str]]:
    from engine.store.providers_models import ProviderMeeting

    with ctx.db.read() as session:
        return [(m.booking_id, m.provider, m.url)
                for m in session.scalars(select(ProviderMeeting))]


def test_video_none_makes_no_meeting(ctx: Context, shop: ShopRef,
                                     booking: BookingDetails) -> None:
    """The contract of ``video_for`` with video "none": no provider, and create_meeting
    returns None without storing anything."""
    facade = ctx.plugins.video_for(shop)
    assert (facade.name, facade.provider, facade.embedded) == ("none", None, False)
    assert facade.create_meeting(booking) is None
    assert _stored_meetings(ctx) == []


def test_a_calendar_that_embeds_the_video_makes_no_meeting_beforehand(
        ctx: Context, shop: ShopRef, booking: BookingDetails) -> None:
    """Meet inside Google Calendar: the calendar event makes the link, so the facade has
    no provider (not even an unconfigured one) and makes nothing."""
    set_providers(ctx, shop, calendar="google", video="meet")
    facade = ctx.plugins.video_for(shop)
    assert (facade.name, facade.provider, facade.embedded) == ("meet", None, True)
    assert facade.create_meeting(booking) is None
    assert _stored_meetings(ctx) == []


def test_create_meeting_makes_one_meeting_per_booking(ctx: Context, shop: ShopRef,
                                                      booking: BookingDetails) -> None:
    """A plugin's video provider is called once per booking; a retry (even through a new
    facade, as a retried task would get) returns the remembered meeting."""
    Kiosk.made.clear()
    plugins = load(ctx, ("kiosk", KioskPlugin()))
    set_providers(ctx, shop, video="kiosk")
    facade = plugins.video_for(shop)
    assert isinstance(facade.provider, Kiosk) and not facade.embedded
    first = facade.create_meeting(booking)
    assert first == Meeting(url=f"https://kiosk.example/{booking.booking_id}/1", id="k1",
                            provider="kiosk")
    assert plugins.video_for(shop).create_meeting(booking) == first
    assert Kiosk.made == [booking.booking_id]
    assert _stored_meetings(ctx) == [(booking.booking_id, "kiosk", first.url)]
    other = facade.create_meeting(replace(booking, booking_id="bkg_other"))
    assert other is not None and other.id == "k2"
    assert Kiosk.made == [booking.booking_id, "bkg_other"]


def test_config_reads_provider_settings() -> None:
    cfg = from_env({"CONSULTBOOK_FREEBUSY_TTL_SECONDS": "30",
                    "CONSULTBOOK_PROVIDER_BACKOFF_SECONDS": "0.25",
                    "CONSULTBOOK_TRACE_PLUGINS": "yes"}, demo=True)
    assert isinstance(cfg, Config)
    assert cfg.freebusy_ttl_seconds == 30 and cfg.provider_backoff_seconds == 0.25
    assert cfg.trace_plugins
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="CONSULTBOOK_PROVIDER_TIMEOUT_SECONDS"):
        from_env({"CONSULTBOOK_PROVIDER_TIMEOUT_SECONDS": "soon"}, demo=True)
    with pytest.raises(ConfigError, match="CONSULTBOOK_PROVIDER_CA_BUNDLE"):
        from_env({"CONSULTBOOK_PROVIDER_CA_BUNDLE": "/nonexistent.pem"}, demo=True)


def test_tracing_logs_hook_calls(ctx: Context, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    with caplog.at_level(logging.INFO, logger="consultbook.plugins"):
        plugins = load(ctx, trace_plugins=True)
        plugins.hook.consultbook_mail_headers(
            message=MailMessage(to=("a@example.org",), subject="s", text="t"),
            shop_domain="x.myshopify.com")
    assert "consultbook_mail_headers" in caplog.text
