"""Configuration from the environment (and a ``.env`` file in the working directory).

Every setting the contract names is read here, once, into an immutable :class:`Config`.
A missing or malformed setting raises :class:`ConfigError` whose message is one line
that names the variable; the CLI prints it and exits 1.
"""

from __future__ import annotations

import os
import re
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
    # PostgreSQL: let psycopg prepare a statement on a connection after its fifth run
    # (server-side prepared statements: a third of the database's CPU for the storefront's
    # lookups). Off by default: PgBouncer in transaction pooling breaks them
    # (docs/operations.md, "PgBouncer").
    database_prepared_statements: bool = False
    broker_url: str | None = None
    api_key: str = DEMO_API_KEY
    api_secret: str = DEMO_API_SECRET
    encryption_keys: tuple[str, ...] = (DEMO_ENCRYPTION_KEY,)
    app_url: str = "http://127.0.0.1:8000"
    hold_ttl_seconds: int = 600
    proxy_max_age_seconds: int = 300
    max_holds_per_visitor: int = 3
    # Proxies in front of the app that append to X-Forwarded-For (Shopify's App Proxy is
    # one): the visitor's address is the entry this many places from the right.
    trusted_proxy_hops: int = 1
    # The App Proxy path on the shop's storefront, used in links sent to customers.
    proxy_prefix: str = "/apps/consult"
    # Bearer token /metrics requires; None: /metrics answers 404.
    metrics_token: str | None = None
    smtp_url: str | None = None
    outbox_dir: str = "outbox"
    demo: bool = False
    # Shopify Admin API version and the scopes the install asks for (engine/services/install.py).
    shopify_api_version: str = "2026-10"
    shopify_scopes: str = "read_orders,write_orders,read_products,read_themes"
    # Outbound provider origins, overridable so tests run real clients against local servers.
    origins: Mapping[str, str] = field(default_factory=dict)
    # Provider plugins (issue 4): app credentials, HTTP behaviour, free/busy caching.
    google_client_id: str | None = None
    google_client_secret: str | None = None
    microsoft_client_id: str | None = None
    microsoft_client_secret: str | None = None
    provider_ca_bundle: str | None = None  # CA file for provider TLS (tests: a trustme CA)
    provider_timeout_seconds: float = 10.0
    provider_attempts: int = 5
    provider_backoff_seconds: float = 0.5
    provider_max_backoff_seconds: float = 30.0
    provider_max_retry_after_seconds: float = 60.0
    freebusy_ttl_seconds: int = 120
    freebusy_max_stale_seconds: int = 900  # older than this and unfetchable: fail closed
    redis_url: str | None = None  # free/busy cache; unset: the broker if it is Redis, else DB
    disabled_plugins: tuple[str, ...] = ()
    trace_plugins: bool = False
    ics_allow_private_hosts: bool = False  # ICS feed URLs may point at private addresses
    # The worker (issue 5, docs/operations.md "Workers").
    outbox_lease_seconds: int = 30  # a running delivery renews it every third (heartbeat)
    outbox_max_attempts: int = 10  # then the item is failed and shown to the merchant
    outbox_retry_seconds: float = 30.0  # first retry delay; doubles, jittered
    outbox_retry_max_seconds: float = 3600.0
    broker_visibility_timeout: int = 3600  # Redis: unacked tasks come back after this
    embedded_worker: bool = True  # serve with no broker runs the worker in-process

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
    "CONSULTBOOK_ZOOM_API_ORIGIN": ("zoom_api", "https://api.zoom.us"),
    "CONSULTBOOK_ZOOM_OAUTH_ORIGIN": ("zoom_oauth", "https://zoom.us"),
}


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int,
         maximum: int | None = None) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    # ASCII digits only: int() alone would also take "1_000" and non-ASCII digits,
    # which no operator means.
    if not re.fullmatch(r"[+-]?[0-9]{1,18}", raw):
        raise ConfigError(f"{name} must be a whole number, got {raw!r}")
    value = int(raw)
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, got {value}")
    return value


_PROXY_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)+")
# RFC 6750 b64token: what may follow "Bearer " in an Authorization header.
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")


def _proxy_prefix(env: Mapping[str, str]) -> str:
    """``CONSULTBOOK_PROXY_PREFIX``: an absolute URL path without a trailing slash."""
    raw = env.get("CONSULTBOOK_PROXY_PREFIX", "").strip()
    if not raw:
        return "/apps/consult"
    prefix = raw.rstrip("/") if raw != "/" else raw
    if len(prefix) > 200 or not _PROXY_PREFIX.fullmatch(prefix):
        raise ConfigError("CONSULTBOOK_PROXY_PREFIX must be a URL path such as "
                          f"/apps/consult, got {raw!r}")
    return prefix


def _metrics_token(env: Mapping[str, str]) -> str | None:
    """``CONSULTBOOK_METRICS_TOKEN``: unset means /metrics is off (404)."""
    raw = env.get("CONSULTBOOK_METRICS_TOKEN", "").strip()
    if not raw:
        return None
    if len(raw) > 512 or not _BEARER_TOKEN.fullmatch(raw):
        # Never echo the value: it is a secret.
        raise ConfigError("CONSULTBOOK_METRICS_TOKEN must be a bearer token (letters, digits "
                          "and -._~+/, at most 512 characters)")
    return raw


def _float(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not value >= minimum or value == float("inf"):
        raise ConfigError(f"{name} must be a finite number of at least {minimum}, got {raw}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in {"", "0", "false", "no", "off"}:
        return False
    if raw in {"1", "true", "yes", "on"}:
        return True
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


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
        database_prepared_statements=_flag(env, "CONSULTBOOK_DATABASE_PREPARED_STATEMENTS"),
        broker_url=_url(env, "CONSULTBOOK_BROKER_URL", None, ("redis", "rediss", "amqp")),
        api_key=api_key,
        api_secret=api_secret,
        encryption_keys=keys,
        app_url=app_url.rstrip("/"),
        hold_ttl_seconds=_int(env, "CONSULTBOOK_HOLD_TTL_SECONDS", 600, minimum=1),
        proxy_max_age_seconds=_int(env, "CONSULTBOOK_PROXY_MAX_AGE_SECONDS", 300, minimum=1),
        max_holds_per_visitor=_int(env, "CONSULTBOOK_MAX_HOLDS_PER_VISITOR", 3, minimum=1),
        trusted_proxy_hops=_int(env, "CONSULTBOOK_TRUSTED_PROXY_HOPS", 1, minimum=0,
                                maximum=32),
        proxy_prefix=_proxy_prefix(env),
        metrics_token=_metrics_token(env),
        smtp_url=_url(env, "CONSULTBOOK_SMTP_URL", None, ("smtp", "smtps")),
        outbox_dir=outbox,
        demo=demo,
        origins=origins,
        **_provider_settings(env),  # type: ignore[arg-type]
        **_worker_settings(env),  # type: ignore[arg-type]
        shopify_api_version=_shopify_api_version(env),
        shopify_scopes=_shopify_scopes(env),
    )


def _shopify_api_version(env: Mapping[str, str]) -> str:
    raw = env.get("CONSULTBOOK_SHOPIFY_API_VERSION", "").strip() or "2026-10"
    if not re.fullmatch(r"20[0-9]{2}-(01|04|07|10)|unstable", raw):
        raise ConfigError(f"CONSULTBOOK_SHOPIFY_API_VERSION must look like 2026-10, got {raw!r}")
    return raw


def _shopify_scopes(env: Mapping[str, str]) -> str:
    raw = env.get("CONSULTBOOK_SHOPIFY_SCOPES", "").strip()
    if not raw:
        return "read_orders,write_orders,read_products,read_themes"
    scopes = [s.strip() for s in raw.split(",") if s.strip()]
    if not scopes or not all(re.fullmatch(r"[a-z_]{1,64}", s) for s in scopes):
        raise ConfigError("CONSULTBOOK_SHOPIFY_SCOPES must be a comma-separated list of "
                          f"scopes such as read_orders,write_orders, got {raw!r}")
    return ",".join(scopes)


def _provider_settings(env: Mapping[str, str]) -> dict[str, object]:
    """The settings of provider plugins (issue 4; documented in docs/plugins.md)."""
    def opt(name: str) -> str | None:
        return env.get(name, "").strip() or None

    ca = opt("CONSULTBOOK_PROVIDER_CA_BUNDLE")
    if ca is not None and not Path(ca).is_file():
        raise ConfigError(f"CONSULTBOOK_PROVIDER_CA_BUNDLE must name a file, got {ca!r}")
    disabled = tuple(n.strip() for n in env.get("CONSULTBOOK_DISABLE_PLUGINS", "").split(",")
                     if n.strip())
    return {
        "google_client_id": opt("CONSULTBOOK_GOOGLE_CLIENT_ID"),
        "google_client_secret": opt("CONSULTBOOK_GOOGLE_CLIENT_SECRET"),
        "microsoft_client_id": opt("CONSULTBOOK_MICROSOFT_CLIENT_ID"),
        "microsoft_client_secret": opt("CONSULTBOOK_MICROSOFT_CLIENT_SECRET"),
        "provider_ca_bundle": ca,
        "provider_timeout_seconds": _float(env, "CONSULTBOOK_PROVIDER_TIMEOUT_SECONDS", 10.0,
                                           minimum=0.01),
        "provider_attempts": _int(env, "CONSULTBOOK_PROVIDER_ATTEMPTS", 5, minimum=1),
        "provider_backoff_seconds": _float(env, "CONSULTBOOK_PROVIDER_BACKOFF_SECONDS", 0.5,
                                           minimum=0),
        "provider_max_backoff_seconds": _float(env, "CONSULTBOOK_PROVIDER_MAX_BACKOFF_SECONDS",
                                               30.0, minimum=0),
        "provider_max_retry_after_seconds": _float(
            env, "CONSULTBOOK_PROVIDER_MAX_RETRY_AFTER_SECONDS", 60.0, minimum=0),
        "freebusy_ttl_seconds": _int(env, "CONSULTBOOK_FREEBUSY_TTL_SECONDS", 120, minimum=1),
        "freebusy_max_stale_seconds": _int(env, "CONSULTBOOK_FREEBUSY_MAX_STALE_SECONDS", 900,
                                           minimum=0),
        "redis_url": _url(env, "CONSULTBOOK_REDIS_URL", None, ("redis", "rediss")),
        "disabled_plugins": disabled,
        "trace_plugins": _flag(env, "CONSULTBOOK_TRACE_PLUGINS"),
        "ics_allow_private_hosts": _flag(env, "CONSULTBOOK_ICS_ALLOW_PRIVATE_HOSTS"),
    }


def _worker_settings(env: Mapping[str, str]) -> dict[str, object]:
    """The worker's settings (issue 5; documented in docs/operations.md)."""
    return {
        "outbox_lease_seconds": _int(env, "CONSULTBOOK_OUTBOX_LEASE_SECONDS", 30, minimum=1),
        "outbox_max_attempts": _int(env, "CONSULTBOOK_OUTBOX_MAX_ATTEMPTS", 10, minimum=1),
        "outbox_retry_seconds": _float(env, "CONSULTBOOK_OUTBOX_RETRY_SECONDS", 30.0,
                                       minimum=0),
        "outbox_retry_max_seconds": _float(env, "CONSULTBOOK_OUTBOX_RETRY_MAX_SECONDS",
                                           3600.0, minimum=0),
        "broker_visibility_timeout": _int(env, "CONSULTBOOK_BROKER_VISIBILITY_TIMEOUT", 3600,
                                          minimum=1),
        "embedded_worker": not _flag(env, "CONSULTBOOK_NO_EMBEDDED_WORKER"),
    }
