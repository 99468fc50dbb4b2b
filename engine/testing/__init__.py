"""Test helpers for plugin authors (import from tests only; needs pytest)."""
