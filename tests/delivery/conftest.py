"""Fixtures of the delivery suite: the worker suite's context (a recording mailer, a
video provider) and the fake Google."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.google import FakeGoogle
from tests.tasks.conftest import _reset_logs, ctx, outbox_dir, shop  # noqa: F401


@pytest.fixture
def google() -> Iterator[FakeGoogle]:
    fake = FakeGoogle().start()
    assert isinstance(fake, FakeGoogle)
    yield fake
    fake.stop()


@pytest.fixture
def overrides(google: FakeGoogle) -> dict[str, Any]:
    return {"origins": google.origins(), "google_client_id": google.client_id,
            "google_client_secret": google.client_secret}
