"""Configuration from the environment (and a ``.env`` file in the working directory).

Every setting the contract names is read here, once, into an immutable :class:`Config`.
A missing or malformed setting raises :class:`ConfigError` whose message is one line
that names the variable; the CLI prints it and exits 1.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from engine.errors import ConfigError

DEMO_API_KEY = "consultbook-demo-api-key"
DEMO_API_SECRET = "shpss_consultbook_demo_secret_not_secret"
# A fixed, public key: the demo's secrets are not secret. Never used outside `demo`.
DEMO_ENCRYPTION_KEY = "ZGVtby1rZXktbm90LWEtc2VjcmV0LWRlbW8ta2V5ISE="


@dataclass(frozen=True)
class Config:
    """The settings of one process. Tests build it directly; `from_env` reads the environment."""

    database_url: str = "sqlite:///consultbook.db"
    broker_url: str | None = None
    api_key: str = DEMO_API_KEY
    api_secret: str = DEMO_API_SECRET
    encryption_keys: tuple[str, ...] = (DEMO_ENCRYPTION_KEY,)
    app_url: str = "http://127.0.0.1:8000"
    hold_ttl_seconds: int = 600
    proxy_max_age_seconds: int = 300
    max_holds_per_visitor: int = 3
    smtp_url: str | None = None
    outbox_dir: str = "outbox"
    demo: bool = False
    # Outbound provider origins, overridable so tests run real clients against local servers.
    origins: Mapping[str, str] = field(default_factory=dict)

    def with_(self, **changes: object) -> Config:
        return replace(self, **changes)  # type: ignore[arg-type]


# variable -> (origin name, default)
ORIGIN_VARIABLES: dict[str, tuple[str, str]] = {
    "CONSULTBOOK_SHOPIFY_ADMIN_ORIGIN": ("shopify_admin", ""),  # default: https://{shop}
    "CONSULTBOOK_GOOGLE_API_ORIGIN": ("google_api", "https://www.googleapis.com"),
    "CONSULTBOOK_GOOGLE_TOKEN_URL": ("google_token", "https://oauth2.googleapis.com/token"),
    "CONSULTBOOK_GOOGLE_AUTH_URL": ("google_auth", "https://accounts.google.com/o/oauth2/auth"),
    "CONSULTBOOK_MEET_API_ORIGIN": ("meet_api", "https://meet.googleapis.com"),
    "CONSULTBOOK_MICROSOFT_AUTHORITY": (
        "microsoft_authority", "https://login.microsoftonline.com/common"),
    "CONSULTBOOK_GRAPH_ORIGIN": ("graph", "https://graph.microsoft.com"),
}


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _url(env: Mapping[str, str], name: str, default: str | None,
         schemes: tuple[str, ...]) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    parts = urlsplit(raw)
    scheme = parts.scheme.split("+")[0]
    if scheme not in schemes:
        raise ConfigError(f"{name} must be a {'/'.join(schemes)} URL, got {raw!r}")
    if scheme in {"redis", "rediss", "http", "https", "smtp", "smtps", "postgresql", "amqp"} \
            and not parts.hostname:
        raise ConfigError(f"{name} must name a host, got {raw!r}")
    return raw


def read_dotenv(path: Path | None = None) -> dict[str, str]:
    """The `.env` file of the working directory, if any (values never override the environment)."""
    from dotenv import dotenv_values

    file = path or Path.cwd() / ".env"
    if not file.is_file():
        return {}
    return {k: v for k, v in dotenv_values(file).items() if v is not None}


def from_env(env: Mapping[str, str] | None = None, *, demo: bool = False,
             require_secrets: bool = True) -> Config:
    """Build a Config from `env` (default: `.env` overlaid by ``os.environ``).

    With ``demo`` the Shopify credentials and the encryption key fall back to public
    demo values. Otherwise ``SHOPIFY_API_KEY``, ``SHOPIFY_API_SECRET`` and
    ``CONSULTBOOK_ENCRYPTION_KEYS`` are required when ``require_secrets`` is true
    (commands like ``migrate`` and ``keys generate`` don't need them).
    """
    if env is None:
        merged = read_dotenv()
        merged.update(os.environ)
        env = merged
    from engine.crypto import parse_keys

    database_url = _url(env, "CONSULTBOOK_DATABASE_URL", "sqlite:///consultbook.db",
                        ("sqlite", "postgresql", "postgres"))
    assert database_url is not None
    if database_url.startswith("postgres://"):
        raise ConfigError("CONSULTBOOK_DATABASE_URL must start with postgresql+psycopg://, "
                          "not postgres://")
    if database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://"):]
    elif database_url.startswith("postgresql+") and not database_url.startswith(
            "postgresql+psycopg://"):
        raise ConfigError("CONSULTBOOK_DATABASE_URL must use the psycopg driver "
                          "(postgresql+psycopg://...)")

    def secret(name: str, demo_value: str) -> str:
        value = env.get(name, "").strip()
        if value:
            return value
        if demo or not require_secrets:
            return demo_value
        raise ConfigError(f"{name} is required (set it in the environment or in .env)")

    api_key = secret("SHOPIFY_API_KEY", DEMO_API_KEY)
    api_secret = secret("SHOPIFY_API_SECRET", DEMO_API_SECRET)
    keys_raw = secret("CONSULTBOOK_ENCRYPTION_KEYS", DEMO_ENCRYPTION_KEY)
    try:
        parse_keys(keys_raw)
    except ValueError as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    keys = tuple(k.strip() for k in keys_raw.split(",") if k.strip())

    app_url = _url(env, "CONSULTBOOK_APP_URL", "http://127.0.0.1:8000", ("http", "https"))
    assert app_url is not None
    origins: dict[str, str] = {}
    for variable, (name, default) in ORIGIN_VARIABLES.items():
        value = _url(env, variable, default or None, ("http", "https"))
        if value:
            origins[name] = value.rstrip("/")

    outbox = env.get("CONSULTBOOK_OUTBOX_DIR", "").strip() or "outbox"
    return Config(
        database_url=database_url,
        broker_url=_url(env, "CONSULTBOOK_BROKER_URL", None, ("redis", "rediss", "amqp")),
        api_key=api_key,
        api_secret=api_secret,
        encryption_keys=keys,
        app_url=app_url.rstrip("/"),
        hold_ttl_seconds=_int(env, "CONSULTBOOK_HOLD_TTL_SECONDS", 600, minimum=1),
        proxy_max_age_seconds=_int(env, "CONSULTBOOK_PROXY_MAX_AGE_SECONDS", 300, minimum=1),
        max_holds_per_visitor=_int(env, "CONSULTBOOK_MAX_HOLDS_PER_VISITOR", 3, minimum=1),
        smtp_url=_url(env, "CONSULTBOOK_SMTP_URL", None, ("smtp", "smtps")),
        outbox_dir=outbox,
        demo=demo,
        origins=origins,
    )
