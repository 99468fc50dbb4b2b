"""The push-sync contract as a reusable pytest class: run it against your provider.

Subclass :class:`PushSyncContract` and provide one fixture, ``push_kit``, a mapping:

* ``run_job`` -- ``() -> Mapping``: run your periodic channel job once (its summary
  has ``opened``, ``renewed``, ``closed``, ``failed`` counts);
* ``expert_id`` -- the one expert of the shop, whose calendar your fake serves;
* ``channels`` -- ``() -> list[Channel]``: your stored channels of the shop;
* ``change`` -- ``() -> list[int]``: change that expert's calendar in your fake, which
  notifies your app over real HTTP; the HTTP statuses your endpoint answered;
* ``forge`` -- ``(channel_id) -> int``: a notification for that channel with a wrong
  secret (channel token, ``clientState``); the status answered;
* ``invalidated`` -- ``() -> list[(shop_id, expert_id)]``: what your endpoint passed
  to ``invalidate_busy`` so far;
* ``advance`` -- ``(seconds) -> None``: move the clock your job and fake use.

The built-in Google and Outlook plugins pass it in ``tests/plugins/test_push_sync.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

DAY = 86400


class PushSyncContract:
    """Channels opened per expert, changes invalidate, forgeries do not, renewal."""

    @pytest.fixture
    def push_kit(self) -> Mapping[str, Any]:
        raise NotImplementedError("provide the push_kit fixture (see the module doc)")

    def test_job_opens_one_channel_per_expert_and_is_idempotent(
            self, push_kit: Mapping[str, Any]) -> None:
        first = push_kit["run_job"]()
        assert first["opened"] == 1 and first["failed"] == 0
        again = push_kit["run_job"]()
        assert again["opened"] == 0 and again["closed"] == 0
        (channel,) = push_kit["channels"]()
        assert channel.expert_id == push_kit["expert_id"]

    def test_a_change_invalidates_that_expert(self, push_kit: Mapping[str, Any]) -> None:
        push_kit["run_job"]()
        statuses = push_kit["change"]()
        assert statuses and all(200 <= s < 300 for s in statuses)
        invalidated = push_kit["invalidated"]()
        assert invalidated and {e for _, e in invalidated} == {push_kit["expert_id"]}

    def test_a_forged_secret_is_refused(self, push_kit: Mapping[str, Any]) -> None:
        push_kit["run_job"]()
        (channel,) = push_kit["channels"]()
        status = push_kit["forge"](channel.id)
        assert 400 <= status < 500
        assert push_kit["invalidated"]() == []

    def test_channels_outlive_their_expiry_through_the_job(
            self, push_kit: Mapping[str, Any]) -> None:
        push_kit["run_job"]()
        (channel,) = push_kit["channels"]()
        for _ in range(3):  # past the first channel's end, run daily: always covered
            push_kit["advance"](DAY)
            push_kit["run_job"]()
        (current,) = push_kit["channels"]()
        assert current.expires_at > channel.created_at + 3 * DAY + DAY / 2
        push_kit["invalidated"]().clear()
        assert push_kit["change"]() and push_kit["invalidated"]()
