"""Placeholder: filled in by the waitlist work (issue 12)."""

from __future__ import annotations

import falcon

from engine.bootstrap import Context


def register(app: falcon.App, ctx: Context) -> None:
    del app, ctx
