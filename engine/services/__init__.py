"""Use cases. Each function takes what it needs (database, clock, keyring), owns its
transaction, and returns plain values (dicts ready to render, or dataclasses)."""
