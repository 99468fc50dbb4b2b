"""engine.providers.retry.deadline: inside it, :func:`retrying` starts no retry that its
policy's timeout could carry past the deadline (the first attempt is always made), for
any provider; outside it, the policy alone decides. Real time, short numbers."""

from __future__ import annotations

import time

import pytest

from engine.providers.errors import ProviderUnavailable
from engine.providers.retry import Retry, RetryPolicy, deadline, retrying

WAIT = 0.05  # each failure asks for this wait (Retry-After): no jitter


def failing(calls: list[float]) -> None:
    calls.append(time.monotonic())
    raise Retry("503 from the provider", retry_after=WAIT)


def policy(**kw: float) -> RetryPolicy:
    values = {"attempts": 6, "base": 0.05, "cap": 0.05, "timeout": 0.2, **kw}
    return RetryPolicy(attempts=int(values.pop("attempts")), **values)


def test_without_a_deadline_every_attempt_is_made() -> None:
    calls: list[float] = []
    with pytest.raises(ProviderUnavailable, match="503"):
        retrying(policy(), "p", lambda: failing(calls))
    assert len(calls) == 6


def test_no_retry_starts_that_could_end_after_the_deadline() -> None:
    calls: list[float] = []
    started = time.monotonic()
    with deadline(0.42), pytest.raises(ProviderUnavailable, match="503"):
        retrying(policy(), "p", lambda: failing(calls))
    # A retry starts only while its 0.2 s timeout still ends by 0.42 s: at 0, 0.05, ...
    # 0.20 at the latest -- five of the six attempts, fewer on a slow machine.
    assert 2 <= len(calls) <= 5, calls
    assert all(c - started <= 0.42 - 0.2 for c in calls), [c - started for c in calls]
    assert time.monotonic() - started < 0.42


def test_the_first_attempt_is_made_even_with_no_time_left() -> None:
    calls: list[float] = []
    with deadline(0), pytest.raises(ProviderUnavailable):
        retrying(policy(), "p", lambda: failing(calls))
    assert len(calls) == 1


def test_a_success_within_the_deadline_is_returned() -> None:
    calls: list[float] = []

    def twice() -> str:
        if len(calls) < 2:
            failing(calls)
        return "ok"

    with deadline(5):
        assert retrying(policy(), "p", twice) == "ok"


def test_nested_deadlines_keep_the_earlier_and_end_with_their_block() -> None:
    calls: list[float] = []
    with deadline(0.3), deadline(60), pytest.raises(ProviderUnavailable):
        retrying(policy(), "p", lambda: failing(calls))
    assert len(calls) < 6
    calls.clear()
    with pytest.raises(ProviderUnavailable):  # the block is over: no deadline
        retrying(policy(), "p", lambda: failing(calls))
    assert len(calls) == 6
