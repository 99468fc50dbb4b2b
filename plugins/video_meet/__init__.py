"""Google Meet spaces through the Meet REST API v2 (``spaces.create``), for shops whose
calendar is not Google. (With Google Calendar the event makes its own Meet link.)

Uses the shop's Google connection (scope ``meetings.space.created``). The facade
remembers the space per booking, so a retried task reuses it.
"""

from __future__ import annotations

from engine import hookimpl
from engine.providers import (
    BookingDetails,
    Config,
    Meeting,
    ProviderRegistry,
    ProviderRejected,
    VideoProvider,
)
from engine.providers.google import GoogleSession, missing_client


class MeetVideo(VideoProvider):
    name = "meet"
    label = "Google Meet"
    connection = "google"

    @classmethod
    def check_config(cls, config: Config) -> str | None:
        return missing_client(config)

    def create_meeting(self, booking: BookingDetails) -> Meeting | None:
        with GoogleSession(self.ctx) as session:
            api = session.service("meet", "v2")
            space = session.call(lambda: api.spaces().create(body={}))
        url, name = space.get("meetingUri"), space.get("name")
        if not url or not name:
            raise ProviderRejected("Meet answered without a meeting link", provider=self.name)
        return Meeting(url=str(url), id=str(name), provider=self.name)


@hookimpl
def consultbook_register_providers(registry: ProviderRegistry) -> None:
    registry.add_video(MeetVideo)
