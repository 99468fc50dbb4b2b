"""Helpers of the worker suite (a module of its own, so tests and fixtures share one
copy of the test plugins' state)."""

from __future__ import annotations

import email
import email.policy
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from engine import hookimpl
from engine.bootstrap import Context
from engine.providers import (
    BookingDetails,
    MailMessage,
    MailProvider,
    Meeting,
    ProviderRegistry,
    VideoProvider,
)
from engine.providers.mime import build_mime
from engine.services.shops import ShopRef
from engine.store.models import Claim, ShopSettings
from tests.conftest import (
    API_SECRET,
    KEY,
    Admin,
    Storefront,
    make_catalog,
    order_payload,
)

# The appointment every test books: Tuesday 10:00 in Berlin, the day after NOW.
SLOT = "2026-12-01T09:00:00Z"
FAST: dict[str, Any] = {
    "provider_attempts": 2,
    "provider_backoff_seconds": 0.001,
    "provider_max_backoff_seconds": 0.01,
    "provider_timeout_seconds": 2.0,
    "outbox_retry_seconds": 10.0,
    "outbox_retry_max_seconds": 600.0,
}


@dataclass
class MailLog:
    """What the test mail providers were asked to send (thread-safe)."""

    sent: list[MailMessage] = field(default_factory=list)
    calls: int = 0
    failures: list[BaseException] = field(default_factory=list)  # raised, in order
    lock: threading.Lock = field(default_factory=threading.Lock)

    def to(self, address: str) -> list[MailMessage]:
        return [m for m in self.sent if address in m.to]


MAIL = MailLog()


class RecordingMailer(MailProvider):
    """Keeps every message; raises the queued failures first."""

    name = "recording"
    label = "Test: recording mailer"

    def send(self, message: MailMessage) -> str:
        with MAIL.lock:
            MAIL.calls += 1
            if MAIL.failures:
                raise MAIL.failures.pop(0)
            MAIL.sent.append(message)
            mime = build_mime(message, sender=f"no-reply@{self.ctx.shop.domain}")
            return str(mime["Message-ID"])


class FakeVideo(VideoProvider):
    """Meetings at a fixed host (the URL is derived from the booking id)."""

    name = "testvideo"
    label = "Test video"
    made: list[str] = []

    def create_meeting(self, booking: BookingDetails) -> Meeting | None:
        FakeVideo.made.append(booking.booking_id)
        return Meeting(url=f"https://video.example/{booking.booking_id}",
                       id=f"m-{booking.booking_id}", provider=self.name)


class FakePlugin:
    @hookimpl
    def consultbook_register_providers(self, registry: ProviderRegistry) -> None:
        registry.add_mail(RecordingMailer)
        registry.add_video(FakeVideo)


EXTRA = [("tasks_test", FakePlugin())]


def set_providers(ctx: Context, shop: ShopRef, **choice: str) -> None:
    with ctx.db.write() as session:
        session.execute(update(ShopSettings).where(ShopSettings.shop_id == shop.id)
                        .values(**{f"{k}_provider": v for k, v in choice.items()}))


def book(admin: Admin, store: Storefront, *, order_id: int = 1001, start: str = SLOT,
         catalog: dict[str, Any] | None = None, **payload: Any) -> str:
    """A paid booking made as Shopify makes it: a hold, then a signed orders/paid."""
    catalog = catalog or make_catalog(admin)
    r = store.hold(catalog["service"], catalog["expert"], start)
    assert r.status_code == 201, r.text
    hold = r.json["hold"]
    r = store.webhook("orders/paid", order_payload(order_id, [hold], **payload))
    assert r.status_code == 200, r.text
    return str(hold)


def claim_row(ctx: Context, booking_id: str) -> Claim:
    with ctx.db.read() as session:
        row = session.scalar(select(Claim).where(Claim.id == booking_id))
        assert row is not None
        return row


def eml_files(directory: Path) -> list[EmailMessage]:
    if not directory.exists():
        return []
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for p in sorted(directory.glob("*.eml"))]


def calendar_part(msg: EmailMessage) -> tuple[str, str]:
    """(method param, text) of the ``text/calendar`` alternative."""
    for part in msg.walk():
        if part.get_content_type() == "text/calendar":
            return str(part.get_param("method")), part.get_content()
    raise AssertionError("no text/calendar part")


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05,
             message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_env(db_url: str, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("CONSULTBOOK_", "SHOPIFY_"))}
    return {**base, "CONSULTBOOK_DATABASE_URL": db_url, "SHOPIFY_API_KEY": "test-api-key",
            "SHOPIFY_API_SECRET": API_SECRET, "CONSULTBOOK_ENCRYPTION_KEYS": KEY,
            "PYTHONUNBUFFERED": "1", **extra}


def start_cli(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "engine.cli", *args], env=env,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (read from /proc, no psutil)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may contain spaces: split after the last ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == pid:
            out.append(int(entry.name))
    return sorted(out)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    import signal

    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def future_slot(now: datetime, days: int = 2) -> str:
    """An on-grid slot ``days`` ahead at 10:00 Berlin on a weekday (real-clock tests)."""
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    day = now.astimezone(berlin).date() + timedelta(days=days)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    start = datetime(day.year, day.month, day.day, 10, 0, tzinfo=berlin)
    return start.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ")
