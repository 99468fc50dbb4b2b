"""engine.testing.fixtures.provider_context: a context for a throwaway shop, usable by
third parties (a real migrated database, secrets, recorded busy invalidations)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from engine.testing.fixtures import (  # noqa: F401  (the fixtures, as a third party uses them)
    provider_config,
    provider_connection,
    provider_context,
    provider_settings,
)


def test_provider_context_works(provider_context: Any) -> None:  # noqa: F811
    from plugins.calendar_local import LocalCalendar
    from plugins.calendar_local.models import LocalBusyBlock
    cal = LocalCalendar(provider_context)
    now = provider_context.clock.now()
    assert cal.busy(["e1"], now, now)["e1"].busy == ()
    provider_context.invalidate_busy("e1")
    assert provider_context.invalidated == [(provider_context.shop.id, "e1")]
    token = provider_context.secrets.encrypt("x", aad="a")
    assert provider_context.secrets.decrypt(token, aad="a") == "x"
    with provider_context.db.read() as s:
        assert s.scalars(select(LocalBusyBlock)).all() == []
