"""The Google API session -- now :mod:`engine.providers.google` (part of the plugin
contract, so the Meet plugin can use it without importing this plugin). Re-exported here
for the calendar plugin's modules and older imports."""

from __future__ import annotations

from engine.providers.google import (
    API_ORIGIN,
    AUTH_URL,
    BROKEN_GRANT_ERRORS,
    MEET_ORIGIN,
    RATE_LIMIT_REASONS,
    SCOPES,
    TOKEN_URL,
    GoogleSession,
    T,
    http_status_reason,
    missing_client,
)

__all__ = [
    "API_ORIGIN",
    "AUTH_URL",
    "BROKEN_GRANT_ERRORS",
    "MEET_ORIGIN",
    "RATE_LIMIT_REASONS",
    "SCOPES",
    "TOKEN_URL",
    "GoogleSession",
    "T",
    "http_status_reason",
    "missing_client",
]
