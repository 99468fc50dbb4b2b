"""Fixtures of the waitlist suite: the worker suite's (a context with the recording
mailer, worker deps, a shop without a Shopify token, the mail log reset per test)."""

from tests.tasks.conftest import (  # noqa: F401 (fixtures)
    _reset_logs,
    ctx,
    deps,
    outbox_dir,
    overrides,
    shop,
)
