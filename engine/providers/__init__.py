"""The provider-facing API: what a calendar, video or mail plugin implements and receives.

A plugin author needs only this package and :data:`engine.hookimpl`::

    from engine import hookimpl
    from engine.providers import CalendarProvider, BookingDetails, EventRef
"""

from __future__ import annotations

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
    ProviderError,
    ProviderNotConfigured,
    ProviderRejected,
    ProviderUnavailable,
)
from engine.providers.retry import Retry, RetryPolicy, parse_retry_after, retrying
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
    "ConnectionBroken",
    "ConnectionHandle",
    "Connector",
    "EventRef",
    "FormConnector",
    "FormField",
    "Grant",
    "MailMessage",
    "MailProvider",
    "Meeting",
    "Provider",
    "ProviderChoice",
    "ProviderContext",
    "ProviderError",
    "ProviderNotConfigured",
    "ProviderRejected",
    "ProviderUnavailable",
    "Retry",
    "RetryPolicy",
    "VideoProvider",
    "parse_retry_after",
    "retrying",
]
