"""Helpers for the manage tests: bookings made as Shopify makes them, their manage
tokens (taken from the link the mails carry), and the customer's signed calls."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import falcon.testing

from engine.bootstrap import Context
from engine.services import manage_links
from engine.store.models import Claim
from tests.conftest import Admin, Storefront, order_payload, proxy_query

# Wednesday 2 and Thursday 3 December 2026, Berlin (UTC+1): working hours 08:00-16:00Z.
WED_9 = "2026-12-02T08:00:00Z"
WED_10 = "2026-12-02T09:00:00Z"
WED_11 = "2026-12-02T10:00:00Z"
THU_9 = "2026-12-03T08:00:00Z"
THU_10 = "2026-12-03T09:00:00Z"


def book(store: Storefront, catalog: dict[str, Any], start: str, *, order_id: int,
         customer_id: int = 77, expert: str | None = None, **payload: Any) -> str:
    """A paid booking: a hold, then a signed orders/paid."""
    r = store.hold(catalog["service"], expert or catalog["expert"], start,
                   ip=f"198.51.100.{order_id % 250}")
    assert r.status_code == 201, r.text
    hold = str(r.json["hold"])
    r = store.webhook("orders/paid", order_payload(order_id, [hold], customer_id=customer_id,
                                                   **payload))
    assert r.status_code == 200, r.text
    return hold


def claim_of(ctx: Context, booking_id: str) -> Claim:
    with ctx.db.read() as session:
        c = session.get(Claim, booking_id)
        assert c is not None
        return c


def link(ctx: Context, booking_id: str) -> str | None:
    """The manage link, as the worker makes it for the confirmation mail."""
    return manage_links.link_for(ctx.db, ctx.config, claim_of(ctx, booking_id))


def token(ctx: Context, booking_id: str) -> str:
    url = link(ctx, booking_id)
    assert url is not None
    return parse_qs(urlsplit(url).query)["token"][0]


class Customer:
    """One shop's storefront as a customer with a manage link uses it."""

    def __init__(self, client: falcon.testing.TestClient, ctx: Context, domain: str) -> None:
        self.client, self.ctx, self.domain = client, ctx, domain

    def _qs(self, params: dict[str, str] | None = None, **extra: str) -> str:
        return proxy_query(self.ctx, self.domain, params or {}, **extra)

    def get(self, booking_id: str, tok: str | None) -> falcon.testing.Result:
        params = {} if tok is None else {"token": tok}
        return self.client.simulate_get(f"/proxy/bookings/{booking_id}",
                                        query_string=self._qs(params))

    def reschedule(self, booking_id: str, tok: str | None, start: str,
                   **body: Any) -> falcon.testing.Result:
        doc: dict[str, Any] = {"start": start, **body}
        if tok is not None:
            doc["token"] = tok
        return self.client.simulate_post(f"/proxy/bookings/{booking_id}/reschedule",
                                         query_string=self._qs(), json=doc)

    def cancel(self, booking_id: str, tok: str | None) -> falcon.testing.Result:
        return self.client.simulate_post(f"/proxy/bookings/{booking_id}/cancel",
                                         query_string=self._qs(),
                                         json={} if tok is None else {"token": tok})

    def my_bookings(self, customer: str | None) -> falcon.testing.Result:
        extra = {"logged_in_customer_id": customer} if customer is not None else {}
        return self.client.simulate_get("/proxy/my-bookings", query_string=self._qs(**extra))


def policy(admin: Admin, **settings: Any) -> None:
    r = admin("PATCH", "/settings", settings)
    assert r.status_code == 200, r.text
