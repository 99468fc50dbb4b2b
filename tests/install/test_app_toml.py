"""``shopify.app.toml`` says what the app does: scopes, webhooks, compliance, proxy."""

from __future__ import annotations

import tomllib
from pathlib import Path

from engine.config import Config

TOML = Path(__file__).resolve().parents[2] / "shopify.app.toml"


def test_app_toml_matches_the_app() -> None:
    app = tomllib.loads(TOML.read_text(encoding="utf-8"))
    assert app["embedded"] is True and app["client_id"]
    assert app["access_scopes"]["scopes"] == Config().shopify_scopes
    assert all(url.endswith("/auth/callback") for url in app["auth"]["redirect_urls"])
    assert app["webhooks"]["api_version"] == Config().shopify_api_version
    topics: set[str] = set()
    compliance: set[str] = set()
    for sub in app["webhooks"]["subscriptions"]:
        assert sub["uri"].endswith("/webhooks")
        topics.update(sub.get("topics", []))
        compliance.update(sub.get("compliance_topics", []))
    assert topics == {"orders/create", "orders/paid", "orders/cancelled", "app/uninstalled"}
    assert compliance == {"customers/data_request", "customers/redact", "shop/redact"}
    proxy = app["app_proxy"]
    assert proxy["url"].endswith("/proxy")
    assert (proxy["prefix"], proxy["subpath"]) == ("apps", "consult")


def test_api_version_and_scopes_come_from_the_environment() -> None:
    import pytest

    from engine.config import from_env
    from engine.errors import ConfigError

    config = from_env({"CONSULTBOOK_SHOPIFY_API_VERSION": "2027-01",
                       "CONSULTBOOK_SHOPIFY_SCOPES": "read_orders, write_orders"}, demo=True)
    assert config.shopify_api_version == "2027-01"
    assert config.shopify_scopes == "read_orders,write_orders"
    with pytest.raises(ConfigError, match="CONSULTBOOK_SHOPIFY_API_VERSION"):
        from_env({"CONSULTBOOK_SHOPIFY_API_VERSION": "latest"}, demo=True)
    with pytest.raises(ConfigError, match="CONSULTBOOK_SHOPIFY_SCOPES"):
        from_env({"CONSULTBOOK_SHOPIFY_SCOPES": "read orders"}, demo=True)
