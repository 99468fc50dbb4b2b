"""Base classes for providers, and what a provider instance is given.

A provider is a class registered by name (see :mod:`engine.hookspecs`). The engine makes
one instance per shop and use, passing a :class:`ProviderContext`: the shop, its
choices, settings, a retry policy, and -- for providers that need an account -- a
:class:`ConnectionHandle` to the shop's stored (encrypted) credentials.

Every method documents its contract. Methods a provider must implement raise
``NotImplementedError`` here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol

from engine.clock import Clock
from engine.config import Config
from engine.providers.retry import RetryPolicy
from engine.providers.storage import Secrets, ShopInfo, Storage
from engine.providers.types import BookingDetails, CalendarBusy, EventRef, MailMessage, Meeting

__all__ = [
    "CalendarProvider",
    "ConnectionHandle",
    "Connector",
    "FormConnector",
    "FormField",
    "Grant",
    "MailProvider",
    "Provider",
    "ProviderChoice",
    "ProviderContext",
    "VideoProvider",
]


class ConnectionHandle(Protocol):
    """A shop's connection to an account (Google, Microsoft...), as a provider sees it."""

    provider: str
    account: str | None

    def credentials(self) -> dict[str, Any]:
        """The decrypted credentials document the connector stored at connect time."""
        ...

    def save(self, credentials: dict[str, Any]) -> None:
        """Store updated credentials (a refreshed token, a changed msal cache), encrypted."""
        ...

    def mark_broken(self, reason: str) -> None:
        """Record that the grant no longer works; the merchant sees ``reason``."""
        ...


@dataclass(frozen=True)
class ProviderChoice:
    """The provider names a shop's settings choose."""

    calendar: str = "local"
    video: str = "none"
    mail: str = "outbox"


@dataclass
class ProviderContext:
    """Everything a provider instance may use. Built by the host
    (``engine.services.providers``); tests and third parties may build one by hand (see
    ``engine.testing.fixtures.provider_context``).

    * ``shop`` -- the shop (``id``, ``domain``, ``timezone``); ``choice`` -- its providers.
    * ``config`` -- deployment settings, read-only; prefer :meth:`option` / :meth:`origin`.
    * ``clock``, ``retry`` -- the time source and the retry policy every call uses.
    * ``db`` -- the host's :class:`~engine.providers.storage.Storage`, for the plugin's own
      tables; ``secrets`` -- encryption for the plugin's own secret columns.
    * ``connection`` -- the shop's connection to the account named by the provider's
      ``connection`` (a :class:`ConnectionHandle`), else ``None``.
    * ``settings`` -- the shop's values of the provider's :attr:`Provider.settings`
      (every declared field present; ``""`` when never set).
    """

    shop: ShopInfo
    choice: ProviderChoice
    config: Config
    clock: Clock
    db: Storage
    retry: RetryPolicy
    connection: ConnectionHandle | None = None
    settings: Mapping[str, str] = field(default_factory=dict)
    secrets: Secrets | None = None
    #: Set by the host: ``(shop_id, expert_id or None)`` -> the cached busy time is stale.
    busy_invalidator: Callable[[str, str | None], None] | None = None

    def origin(self, name: str, default: str) -> str:
        """An outbound origin from the configuration (tests point these at fakes)."""
        return str(self.config.origins.get(name, default)).rstrip("/")

    def option(self, name: str, default: Any = None) -> Any:
        """A deployment setting by name (``provider_timeout_seconds``, an OAuth client
        id...), or ``default`` when the deployment has no such setting."""
        return getattr(self.config, name, default)

    def invalidate_busy(self, expert_id: str | None = None) -> None:
        """The shop's cached busy time of ``expert_id`` (or of all its experts) is stale
        at once: the next availability request reads the provider again (push sync calls
        this when the provider says a calendar changed). A no-op without a host."""
        if self.busy_invalidator is not None:
            self.busy_invalidator(self.shop.id, expert_id)

    @property
    def verify(self) -> str | bool:
        """What TLS verification uses: a CA bundle path from the config, else the system's."""
        return self.config.provider_ca_bundle or True


class Provider:
    """Common ground of calendar, video and mail providers."""

    kind: ClassVar[str] = ""
    #: The name shops choose in their settings (``calendar_provider`` etc.).
    name: ClassVar[str] = ""
    #: A human label for the admin.
    label: ClassVar[str] = ""
    #: The connector whose account this provider uses (``"google"``), or ``None``.
    connection: ClassVar[str | None] = None
    #: Per-shop, non-secret settings the admin shows for this provider (a CalDAV
    #: calendar path...). The host stores them per shop and hands them in as
    #: ``self.ctx.settings``; ``kind="password"`` fields are not for settings (use a
    #: :class:`FormConnector` for secrets).
    settings: ClassVar[tuple[FormField, ...]] = ()

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx

    @classmethod
    def check_config(cls, config: Config) -> str | None:
        """Why this provider cannot run with ``config`` (a sentence), or ``None`` if it can.

        Called before an instance is made; e.g. a missing OAuth client id.
        """
        return None


class CalendarProvider(Provider):
    """An expert calendar: busy time in, booking events out."""

    kind = "calendar"
    #: Video providers whose meeting this calendar creates inside the event itself
    #: (Google Calendar makes Meet links; Outlook makes Teams meetings).
    embeds_video: ClassVar[frozenset[str]] = frozenset()
    #: Whether busy() is a remote call worth caching (local calendars read the database).
    remote: ClassVar[bool] = True

    def calendar_for_expert(self, expert_id: str, expert_email: str | None) -> str | None:
        """The calendar id that holds an expert's busy time, or ``None`` if unknowable
        (then that expert's slots are hidden: fail closed). Default: the expert's email."""
        return expert_email

    def busy(self, calendars: Sequence[str], start: datetime,
             end: datetime) -> Mapping[str, CalendarBusy]:
        """Busy time of each calendar within ``[start, end)`` (aware UTC datetimes).

        Must answer every asked calendar: a calendar the provider could not read gets a
        :class:`CalendarBusy` with ``error`` set, never an empty (free) answer. Batches
        and splits long ranges as the provider's limits require. Providers that know an
        account's working hours report the time outside them as busy. Raises
        :class:`~engine.providers.errors.ProviderUnavailable` or
        :class:`~engine.providers.errors.ConnectionBroken` when nothing could be read.
        """
        raise NotImplementedError

    def create_event(self, booking: BookingDetails, meeting: Meeting | None) -> EventRef:
        """Create the booking's event; idempotent on ``booking.booking_id``.

        Calling it again for the same booking (a retried task) returns the same event,
        never a second one. ``meeting`` is a video meeting made beforehand, or ``None``
        (no video, or a video provider this calendar embeds -- see ``embeds_video``).
        """
        raise NotImplementedError

    def update_event(self, ref: EventRef, booking: BookingDetails,
                     meeting: Meeting | None) -> EventRef:
        """Bring the event in line with ``booking`` (new time, sequence, names)."""
        raise NotImplementedError

    def cancel_event(self, ref: EventRef, booking: BookingDetails) -> None:
        """Cancel the event. Cancelling an event that is already gone is success."""
        raise NotImplementedError


class VideoProvider(Provider):
    """Video meetings made before the calendar event."""

    kind = "video"

    def create_meeting(self, booking: BookingDetails) -> Meeting | None:
        """A meeting for the booking, or ``None`` when there is nothing to make.

        The facade remembers the meeting per booking, so a retried task does not make
        a second one.
        """
        raise NotImplementedError

    def update_meeting(self, meeting: Meeting, booking: BookingDetails) -> Meeting:
        """Bring the meeting in line with a moved booking (new time, duration, names),
        keeping its join link where the provider can. Default: the meeting as it is (a
        link that is not tied to a time, as Meet's and Teams' are)."""
        return meeting

    def delete_meeting(self, meeting: Meeting) -> None:
        """Release a meeting of a cancelled booking, where the provider supports it."""


class MailProvider(Provider):
    """Outgoing mail."""

    kind = "mail"
    #: True when a message sent twice with one ``idempotency_key`` is delivered once
    #: (the outbox folder names its file by it). The worker then repeats a send whose
    #: first attempt died half-way; otherwise (SMTP) such a send is marked in doubt.
    idempotent = False

    def send(self, message: MailMessage) -> str:
        """Deliver ``message``; returns its ``Message-ID``.

        Raises :class:`~engine.providers.errors.ProviderUnavailable` for transient
        failures (the worker retries) and
        :class:`~engine.providers.errors.ProviderRejected` for permanent ones.
        """
        raise NotImplementedError


@dataclass(frozen=True)
class Grant:
    """What an OAuth callback yields: the account and the credentials to store encrypted."""

    account: str | None
    credentials: dict[str, Any]
    scopes: tuple[str, ...] = ()


class Connector:
    """An OAuth web flow that connects a shop to an account (``/auth/<name>/...``)."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""

    def __init__(self, config: Config, retry: RetryPolicy) -> None:
        self.config = config
        self.retry = retry

    @classmethod
    def check_config(cls, config: Config) -> str | None:
        """Why this connector cannot run (e.g. no client id configured), else ``None``."""
        return None

    def start(self, *, state: str, redirect_uri: str) -> tuple[str, dict[str, Any]]:
        """The authorization URL to send the merchant to, and the flow data to keep
        (encrypted, single use) until the callback. ``state`` must end up in the URL."""
        raise NotImplementedError

    def finish(self, *, flow: dict[str, Any], params: Mapping[str, str],
               redirect_uri: str) -> Grant:
        """Exchange the callback's ``params`` (``code``...) for a :class:`Grant`.

        The engine has already checked ``state``. Raises
        :class:`~engine.providers.errors.ProviderRejected` when the provider refuses.
        """
        raise NotImplementedError


@dataclass(frozen=True)
class FormField:
    """One field a form asks the merchant for (a connect form, a provider's settings).

    ``kind`` is ``"text"``, ``"password"`` (never shown again once saved), ``"url"`` or
    ``"email"``; the admin renders the form from these, knowing nothing else of the
    provider."""

    name: str
    label: str
    kind: str = "text"
    required: bool = True
    help: str = ""
    placeholder: str = ""


class FormConnector(Connector):
    """A connection made by filling in a form instead of an OAuth redirect: a CalDAV
    server's URL, user and app password; a Zoom Server-to-Server app's account id, client
    id and secret. Registered with ``registry.add_connector`` like an OAuth connector.

    The engine renders :attr:`fields`, passes what the merchant typed to :meth:`connect`,
    and stores the :class:`Grant`'s credentials encrypted, exactly as for OAuth; providers
    whose ``connection`` names this connector then get them through
    :class:`ConnectionHandle`."""

    fields: ClassVar[tuple[FormField, ...]] = ()

    def start(self, *, state: str, redirect_uri: str) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError("a form connector has no redirect flow")

    def connect(self, *, values: Mapping[str, str]) -> Grant:
        """Check ``values`` (one string per field; blanks of optional fields are ``""``)
        and the account they name -- e.g. log in once -- and return the grant to store.

        Raises :class:`~engine.providers.errors.ProviderRejected` with a sentence the
        merchant can act on ("the server refused the user name or password") when the
        values are wrong, :class:`~engine.providers.errors.ProviderUnavailable` when the
        service cannot be reached. Never stores anything itself."""
        raise NotImplementedError
