"""The hook contract between consultbook and its plugins -- read it like a table of contents.

Plugins implement these hooks with :data:`engine.hookimpl` and register through the
``consultbook.plugins`` entry-point group; built-in plugins load exactly the same way.
Hooks are always called with keyword arguments. A plugin implementing a hook that is not
specified here fails loading (``check_pending``).

Registration hooks (called once per plugin, when the plugin manager loads):

* :func:`consultbook_register_providers` -- calendar, video and mail providers and the
  connectors (OAuth or form) that connect a shop's account;
* :func:`consultbook_register_jobs` -- periodic jobs;
* :func:`consultbook_register_routes` -- HTTP routes (admin, storefront, push hooks);
* :func:`consultbook_register_secrets` -- encrypted columns of the plugin's tables;
* :func:`consultbook_migration_locations` -- the plugin's own Alembic migrations.

Event hooks: :func:`consultbook_mail_headers`, :func:`consultbook_connection_changed`.

This module, :mod:`engine.providers` and the manager (:mod:`engine.plugins`) are the
contract: they import no engine service, no wiring and no store session.

The provider-facing values (:class:`~engine.providers.BookingDetails`,
:class:`~engine.providers.Meeting`, :class:`~engine.providers.EventRef`,
:class:`~engine.providers.MailMessage`) and the base classes live in
:mod:`engine.providers`; they are re-exported here for convenience.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pluggy

from engine.providers.registry import (
    JobRegistry,
    ProviderRegistry,
    RouteRegistry,
    SecretRegistry,
)
from engine.providers.types import BookingDetails, EventRef, MailMessage, Meeting

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

    A :class:`~engine.providers.FormConnector` is served as ``POST
    /admin/api/connections/<name>`` with ``{"values": {...}}`` instead of a redirect.

    :param registry: the engine's :class:`~engine.providers.ProviderRegistry`.
    """


@hookspec
def consultbook_register_jobs(jobs: JobRegistry) -> None:
    """Ask for periodic jobs: ``jobs.add(name, every_seconds, run)``.

    The host runs ``run(host)`` (a :class:`~engine.providers.JobHost`) every
    ``every_seconds``, once per period across all processes: on Celery beat in a
    deployment with a broker, and in the embedded worker otherwise. ``run`` returns a
    small summary mapping (logged) or ``None``; an exception is logged and the job runs
    again at its next period.

    :param jobs: the engine's :class:`~engine.providers.JobRegistry`.
    """


@hookspec
def consultbook_register_routes(routes: RouteRegistry) -> None:
    """Serve HTTP routes: ``routes.add(path, factory, auth)``.

    ``factory(host)`` (a :class:`~engine.providers.RouteHost`) returns a Falcon resource
    (``on_get``/``on_post``... methods). ``auth="admin"`` routes live under
    ``/admin/api/`` and ``auth="proxy"`` routes under ``/proxy/``; both get the
    authenticated shop as ``req.context.shop``. ``auth="none"`` routes live under
    ``/hooks/<plugin name>/`` and verify requests themselves (provider push
    notifications). Errors raised as :class:`~engine.providers.ValidationError` /
    :class:`~engine.providers.NotFound` answer 400 / 404 with the JSON error body.

    :param routes: the engine's :class:`~engine.providers.RouteRegistry`.
    """


@hookspec
def consultbook_register_secrets(secrets: SecretRegistry) -> None:
    """Declare the encrypted columns of the plugin's own tables:
    ``secrets.add_column(Model.__table__, "url", aad=lambda row: f"my_feed:{row.id}:url")``,
    so ``consultbook keys rotate`` re-encrypts them (by compare-and-set per cell, safe
    while the app runs). Values are made with ``ctx.secrets.encrypt(text, aad=...)``.

    :param secrets: the engine's :class:`~engine.providers.SecretRegistry`.
    """


@hookspec
def consultbook_migration_locations() -> Sequence[str]:
    """Folders of Alembic version scripts that create the plugin's own tables.

    The plugin's scripts form their own branch: the first one has ``down_revision =
    None``, a ``branch_labels`` naming the plugin, and ``depends_on`` the engine
    revision whose tables it references (``"0010"`` for shops and experts).
    ``consultbook migrate`` upgrades the engine's and every plugin's heads together, and
    ``serve`` refuses to start until all of them are applied. Models use the plugin's
    own ``sqlalchemy.MetaData`` (a ``DeclarativeBase`` of its own), never the engine's.

    :param: (none) -- the hook takes no arguments.
    :return: absolute paths of directories of version scripts.
    """
    raise NotImplementedError  # a spec: pluggy calls the plugins' implementations


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
