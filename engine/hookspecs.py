"""The hook contract between consultbook and its plugins -- read it like a table of contents.

Plugins implement these hooks with :data:`engine.hookimpl` and register through the
``consultbook.plugins`` entry-point group; built-in plugins load exactly the same way.
Hooks are always called with keyword arguments. A plugin implementing a hook that is not
specified here fails loading (``check_pending``).

The provider-facing values (:class:`~engine.providers.BookingDetails`,
:class:`~engine.providers.Meeting`, :class:`~engine.providers.EventRef`,
:class:`~engine.providers.MailMessage`) and the base classes live in
:mod:`engine.providers`; they are re-exported here for convenience.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import pluggy

from engine.providers.types import BookingDetails, EventRef, MailMessage, Meeting

if TYPE_CHECKING:
    from engine.plugins import ProviderRegistry

PROJECT = "consultbook"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["BookingDetails", "EventRef", "MailMessage", "Meeting", "hookimpl", "hookspec"]


# -------------------------------------------------------------------------------------
# Registration: called once, when the plugin manager loads.
# -------------------------------------------------------------------------------------


@hookspec
def consultbook_register_providers(registry: ProviderRegistry) -> None:
    """Register named providers and account connectors.

    Call ``registry.add_calendar(cls)``, ``registry.add_video(cls)``,
    ``registry.add_mail(cls)`` with subclasses of
    :class:`~engine.providers.CalendarProvider`, :class:`~engine.providers.VideoProvider`
    and :class:`~engine.providers.MailProvider`, and ``registry.add_connector(cls)`` with
    a :class:`~engine.providers.Connector` for an OAuth flow served at
    ``/auth/<name>/start|callback``. Each class carries its ``name``; shops choose
    providers by that name. Two plugins registering the same kind and name fail loading.

    :param registry: the engine's :class:`~engine.plugins.ProviderRegistry`.
    """


# -------------------------------------------------------------------------------------
# Mail: called for every message the engine sends, before the provider gets it.
# -------------------------------------------------------------------------------------


@hookspec
def consultbook_mail_headers(message: MailMessage, shop_domain: str) -> Mapping[str, str] | None:
    """Extra headers for an outgoing message (e.g. ``List-Unsubscribe``, a tag).

    Every implementation's result is merged into the message's headers, in plugin
    order (later plugins win). Values must not contain line breaks; a bad header stops
    the send with ``ValueError``.

    :param message: the message about to be sent.
    :param shop_domain: the shop it is sent for.
    :return: headers to add, or ``None``.
    """


# -------------------------------------------------------------------------------------
# Connections: called when a shop's account connection changes state.
# -------------------------------------------------------------------------------------


@hookspec
def consultbook_connection_changed(shop_domain: str, provider: str, status: str,
                                   reason: str | None) -> None:
    """A shop's connection was made, broken or removed (notify someone, log it...).

    ``status`` is ``"connected"``, ``"broken"`` (the grant was revoked or expired; the
    merchant must reconnect; ``reason`` says why) or ``"disconnected"``. Exceptions
    raised here are logged and swallowed: a notification never undoes the change.

    :param shop_domain: the shop's ``*.myshopify.com`` domain.
    :param provider: the connector name (``"google"``, ``"outlook"``...).
    :param status: the new state.
    :param reason: a human sentence for ``"broken"``, else ``None``.
    """
