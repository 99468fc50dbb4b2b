"""GET /admin/api/settings offers every registered provider by its label (``choices``),
so that the admin page can show a plugin's provider, not only the built-ins."""

from __future__ import annotations

from typing import Any

import pytest

from engine import hookimpl
from engine.bootstrap import Context
from engine.providers import BookingDetails, CalendarProvider, ProviderRegistry, VideoProvider
from engine.services.providers import Plugins
from tests.conftest import Admin


class PigeonVideo(VideoProvider):
    name = "pigeon"
    label = "Carrier pigeon video"

    def create_meeting(self, booking: BookingDetails) -> None:
        return None


class UnlabelledCalendar(CalendarProvider):
    name = "abacus"  # no label: shown by its name


class PigeonPlugin:
    @hookimpl
    def consultbook_register_providers(self, registry: ProviderRegistry) -> None:
        registry.add_video(PigeonVideo)
        registry.add_calendar(UnlabelledCalendar)


@pytest.fixture
def with_plugin(ctx: Context) -> Context:
    """The running app's plugins replaced by a load with one more plugin (as if it had
    been installed and the process restarted)."""
    ctx.plugins = Plugins.load(ctx.config, ctx.db, ctx.keyring, ctx.clock,
                               extra=[("pigeon_plugin", PigeonPlugin())])
    return ctx


def choices(admin: Admin) -> dict[str, list[dict[str, str]]]:
    r = admin("GET", "/settings")
    assert r.status_code == 200, r.text
    found: dict[str, list[dict[str, str]]] = r.json["choices"]
    return found


def test_builtins_are_offered_by_label(admin: Admin, ctx: Context) -> None:
    offered = choices(admin)
    assert set(offered) == {"calendar_provider", "video_provider", "mail_provider"}
    for field, kind in (("calendar_provider", "calendar"), ("video_provider", "video"),
                        ("mail_provider", "mail")):
        names = [o["name"] for o in offered[field]]
        assert sorted(names) == ctx.plugins.registry.names(kind)
        labels = [o["label"] for o in offered[field]]
        assert labels == sorted(labels, key=str.casefold)
        for option in offered[field]:
            cls = ctx.plugins.registry.get(kind, option["name"])
            assert cls is not None and option["label"] == cls.label and cls.label
    assert {"name": "google", "label": "Google Calendar"} in offered["calendar_provider"]
    assert {"name": "none", "label": "No video"} in offered["video_provider"]
    assert {"name": "smtp", "label": "SMTP server"} in offered["mail_provider"]


def test_a_plugin_registered_at_runtime_is_offered_and_can_be_chosen(
        admin: Admin, with_plugin: Context) -> None:
    offered = choices(admin)
    assert {"name": "pigeon", "label": "Carrier pigeon video"} in offered["video_provider"]
    assert {"name": "abacus", "label": "abacus"} in offered["calendar_provider"]
    r = admin("PATCH", "/settings", {"video_provider": "pigeon"})
    assert r.status_code == 200, r.text
    assert r.json["video_provider"] == "pigeon"
    assert "choices" not in r.json  # PUT and PATCH answer the settings document alone


def test_a_get_edit_put_round_trip_ignores_choices(admin: Admin, with_plugin: Context) -> None:
    doc: dict[str, Any] = admin("GET", "/settings").json
    doc["video_provider"] = "pigeon"
    doc["reminders"] = [30]
    r = admin("PUT", "/settings", doc)
    assert r.status_code == 200, r.text
    again = admin("GET", "/settings").json
    assert again["video_provider"] == "pigeon" and again["reminders"] == [30]
    # The document without choices is just as good; other unknown fields are refused.
    del doc["choices"]
    assert admin("PUT", "/settings", doc).status_code == 200
    for bad in ({**doc, "nope": 1}, {"chioces": {}}, {"video_provider": "carrier-pigeon"}):
        r = admin("PATCH", "/settings", bad)
        assert r.status_code == 400, bad
        assert r.json["error"]["code"]


def test_choices_follow_the_registry_not_a_list(admin: Admin, ctx: Context) -> None:
    # Blocking a built-in plugin removes its providers from the choices.
    ctx.plugins = Plugins.load(ctx.config.with_(disabled_plugins=("calendar_google",)),
                               ctx.db, ctx.keyring, ctx.clock)
    names = [o["name"] for o in choices(admin)["calendar_provider"]]
    assert "google" not in names and "local" in names
