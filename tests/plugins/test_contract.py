"""The built-in providers pass the reusable contract suite (engine.testing.contract)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from engine.bootstrap import Context
from engine.providers import CalendarProvider, MailProvider, VideoProvider
from engine.services.shops import ShopRef
from engine.store import new_id
from engine.testing.contract import (
    CalendarProviderContract,
    MailProviderContract,
    VideoProviderContract,
)
from plugins.calendar_local.models import LocalBusyBlock, LocalCalendarEvent
from tests.fakes.google import FakeGoogle
from tests.fakes.smtp import FakeSMTP
from tests.fakes.tls import ca_file
from tests.plugins.conftest import add_experts, connect, google_config, set_providers

Intervals = list[tuple[datetime, datetime]]


class TestLocalCalendar(CalendarProviderContract):
    @pytest.fixture
    def calendar_ids(self, ctx: Context, shop: ShopRef) -> list[str]:
        return add_experts(ctx, shop, ["a@example.com", "b@example.com"])

    @pytest.fixture
    def calendar_provider(self, ctx: Context, shop: ShopRef) -> CalendarProvider:
        return ctx.plugins.calendar_for(shop)

    @pytest.fixture
    def seed_busy(self, ctx: Context, shop: ShopRef) -> Callable[[str, Intervals], None]:
        def seed(calendar: str, intervals: Intervals) -> None:
            with ctx.db.write() as session:
                session.add_all(LocalBusyBlock(id=new_id("busy"), shop_id=shop.id,
                                               expert_id=calendar, start=s, end=e,
                                               created_at=ctx.clock.now())
                                for s, e in intervals)
        return seed

    @pytest.fixture
    def live_events(self, ctx: Context) -> Callable[[], int]:
        def count() -> int:
            with ctx.db.read() as session:
                return int(session.scalar(select(func.count()).select_from(LocalCalendarEvent)
                                          .where(LocalCalendarEvent.status != "cancelled"))
                           or 0)
        return count


class _GoogleFixtures:
    @pytest.fixture
    def overrides(self, google: FakeGoogle) -> dict[str, Any]:
        return google_config(google)

    @pytest.fixture
    def connected(self, ctx: Context, shop: ShopRef, google: FakeGoogle) -> None:
        connect(ctx, shop, "google", {"refresh_token": google.issue_refresh_token()})


class TestGoogleCalendar(_GoogleFixtures, CalendarProviderContract):
    @pytest.fixture
    def calendar_ids(self) -> list[str]:
        return ["a@example.com", "b@example.com"]

    @pytest.fixture
    def calendar_provider(self, ctx: Context, shop: ShopRef, connected: None) -> CalendarProvider:
        set_providers(ctx, shop, calendar="google", video="none")
        return ctx.plugins.calendar_for(shop)

    @pytest.fixture
    def seed_busy(self, google: FakeGoogle) -> Callable[[str, Intervals], None]:
        return lambda calendar, intervals: google.busy.__setitem__(calendar, list(intervals))

    @pytest.fixture
    def live_events(self, google: FakeGoogle) -> Callable[[], int]:
        return lambda: len(google.live_events())


class TestMeetVideo(_GoogleFixtures, VideoProviderContract):
    @pytest.fixture
    def video_provider(self, ctx: Context, shop: ShopRef, connected: None) -> VideoProvider:
        set_providers(ctx, shop, calendar="local", video="meet")
        provider = ctx.plugins.video_for(shop).provider
        assert provider is not None
        return provider


class TestOutboxMailer(MailProviderContract):
    @pytest.fixture
    def mail_provider(self, ctx: Context, shop: ShopRef) -> MailProvider:
        return ctx.plugins.mailer_for(shop).provider

    @pytest.fixture
    def delivered(self, ctx: Context) -> Callable[[], list[bytes]]:
        def files() -> list[bytes]:
            return [p.read_bytes() for p in sorted(Path(ctx.config.outbox_dir).glob("*.eml"))]
        return files


class _SmtpContract(MailProviderContract):
    implicit_tls = False

    @pytest.fixture
    def smtp(self) -> Iterator[FakeSMTP]:
        with FakeSMTP(implicit_tls=self.implicit_tls) as server:
            yield server

    @pytest.fixture
    def overrides(self, smtp: FakeSMTP) -> dict[str, Any]:
        return {"smtp_url": smtp.url, "provider_ca_bundle": ca_file()}

    @pytest.fixture
    def mail_provider(self, ctx: Context, shop: ShopRef) -> MailProvider:
        set_providers(ctx, shop, mail="smtp")
        return ctx.plugins.mailer_for(shop).provider

    @pytest.fixture
    def delivered(self, smtp: FakeSMTP) -> Callable[[], list[bytes]]:
        return lambda: [e.data for e in smtp.envelopes]


class TestSmtpStarttls(_SmtpContract):
    implicit_tls = False


class TestSmtpImplicitTls(_SmtpContract):
    implicit_tls = True


class TestOutlookCalendar(CalendarProviderContract):
    @pytest.fixture
    def ms(self) -> Iterator[Any]:
        from tests.fakes.microsoft import FakeMicrosoft

        with FakeMicrosoft() as fake:
            yield fake

    @pytest.fixture
    def overrides(self, ms: Any) -> dict[str, Any]:
        return {"origins": ms.origins(), "microsoft_client_id": ms.client_id,
                "microsoft_client_secret": ms.client_secret, "provider_ca_bundle": ca_file()}

    @pytest.fixture
    def calendar_ids(self) -> list[str]:
        return ["a@contoso.example", "b@contoso.example"]

    @pytest.fixture
    def calendar_provider(self, ctx: Context, client: Any, shop: ShopRef) -> CalendarProvider:
        from tests.plugins.test_calendar_outlook import oauth_connect

        assert oauth_connect(ctx, client, shop).status_code == 302
        set_providers(ctx, shop, calendar="outlook", video="none")
        return ctx.plugins.calendar_for(shop)

    @pytest.fixture
    def seed_busy(self, ms: Any) -> Callable[[str, Intervals], None]:
        return lambda cal, intervals: ms.schedules.__setitem__(
            cal, {"busy": [(s, e, "busy") for s, e in intervals]})

    @pytest.fixture
    def live_events(self, ms: Any) -> Callable[[], int]:
        return lambda: len(ms.live_events())
