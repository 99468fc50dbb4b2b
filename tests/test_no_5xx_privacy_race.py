"""Concurrent lifecycle deliveries for one shop (``app/uninstalled``, ``shop/redact``,
``customers/data_request``, a second ``shop/redact``) never answer 5xx: each either
finds the shop and finishes before it is deleted, or finds it gone (issue 9: a
StaleDataError used to make this a 500). Raced with threads through HTTP, on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import threading
from typing import Any

import falcon.testing
import pytest
from sqlalchemy import func, select

from engine.bootstrap import Context
from engine.services.shops import install_shop
from engine.shopify import webhook_hmac
from engine.store import new_id
from engine.store.models import PrivacyRequest, Shop
from tests.conftest import API_SECRET

ROUNDS = 12


def _deliver(client: falcon.testing.TestClient, domain: str, topic: str,
             payload: dict[str, Any]) -> falcon.testing.Result:
    body = json.dumps(payload).encode()
    return client.simulate_post("/webhooks", body=body, headers={
        "X-Shopify-Topic": topic, "X-Shopify-Shop-Domain": domain,
        "X-Shopify-Webhook-Id": new_id("wh"),
        "X-Shopify-Hmac-Sha256": webhook_hmac(body, API_SECRET)})


@pytest.mark.parametrize("topics", [
    ("app/uninstalled", "shop/redact"),
    ("shop/redact", "shop/redact"),
    ("customers/data_request", "shop/redact", "app/uninstalled"),
])
def test_lifecycle_topics_racing_for_one_shop_never_5xx(
        client: falcon.testing.TestClient, ctx: Context, topics: tuple[str, ...]) -> None:
    payload = {"shop_domain": "race.myshopify.com",
               "customer": {"id": 5, "email": "c@example.com"}, "orders_requested": [1]}
    for n in range(ROUNDS):
        domain = f"race{n}.myshopify.com"
        install_shop(ctx.db, ctx.clock, ctx.keyring, domain, "Europe/Berlin",
                     access_token="shpat_race")
        barrier = threading.Barrier(len(topics))
        results: list[Any] = [None] * len(topics)

        def run(i: int, topic: str, domain: str, barrier: threading.Barrier,
                results: list[Any]) -> None:
            barrier.wait()
            try:
                results[i] = _deliver(client, domain, topic, payload)
            except BaseException as exc:  # the test client re-raises nothing, but be sure
                results[i] = exc

        threads = [threading.Thread(target=run, args=(i, t, domain, barrier, results))
                   for i, t in enumerate(topics)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for topic, r in zip(topics, results, strict=True):
            assert isinstance(r, falcon.testing.Result), (topic, r)
            assert r.status_code == 200, (n, topic, r.text)
        # shop/redact always wins in the end: nothing of the shop is left
        with ctx.db.read() as s:
            assert s.scalar(select(func.count()).select_from(Shop)
                            .where(Shop.domain == domain)) == 0
            assert s.scalar(select(func.count()).select_from(PrivacyRequest)) == 0
