"""The provider-facing API: what a calendar, video or mail plugin implements and receives.

A plugin author needs only this package and :data:`engine.hookimpl`::

    from engine import hookimpl
    from engine.providers import CalendarProvider, BookingDetails, EventRef

Everything here is the public plugin contract (with :mod:`engine.hookspecs`); it imports
no engine service, wiring or store session, and plugins import nothing else of the
engine. See docs/plugins.md.
"""

from __future__ import annotations

# The deployment settings type providers receive (``check_config(config)``, ``ctx.config``):
# re-exported so a plugin never imports engine.config.
from engine.config import Config
from engine.providers.base import (
    CalendarProvider,
    ConnectionHandle,
    Connector,
    FormConnector,
    FormField,
    Grant,
    MailProvider,
    Provider,
    ProviderChoice,
    ProviderContext,
    VideoProvider,
)
from engine.providers.errors import (
    ConnectionBroken,
    NotFound,
    ProviderError,
    ProviderNotConfigured,
    ProviderRejected,
    ProviderUnavailable,
    ValidationError,
)
from engine.providers.host import JobHost, PluginHost, RouteHost
from engine.providers.registry import (
    Job,
    JobRegistry,
    PluginError,
    ProviderRegistry,
    Route,
    RouteRegistry,
    SecretColumn,
    SecretRegistry,
)
from engine.providers.retry import Retry, RetryPolicy, parse_retry_after, retrying
from engine.providers.storage import ExpertInfo, ReadCache, Secrets, ShopInfo, Storage
from engine.providers.types import (
    BookingDetails,
    BusyInterval,
    CalendarBusy,
    EventRef,
    MailMessage,
    Meeting,
)

__all__ = [
    "BookingDetails",
    "BusyInterval",
    "CalendarBusy",
    "CalendarProvider",
    "Config",
    "ConnectionBroken",
    "ConnectionHandle",
    "Connector",
    "EventRef",
    "ExpertInfo",
    "FormConnector",
    "FormField",
    "Grant",
    "Job",
    "JobHost",
    "JobRegistry",
    "MailMessage",
    "MailProvider",
    "Meeting",
    "NotFound",
    "PluginError",
    "PluginHost",
    "Provider",
    "ProviderChoice",
    "ProviderContext",
    "ProviderError",
    "ProviderNotConfigured",
    "ProviderRegistry",
    "ProviderRejected",
    "ProviderUnavailable",
    "ReadCache",
    "Retry",
    "RetryPolicy",
    "Route",
    "RouteHost",
    "RouteRegistry",
    "SecretColumn",
    "SecretRegistry",
    "Secrets",
    "ShopInfo",
    "Storage",
    "ValidationError",
    "VideoProvider",
    "parse_retry_after",
    "retrying",
]
