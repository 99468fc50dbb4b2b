"""The manage link's token: unguessable, stored only as a hash, the same 404 for every
way of getting it wrong, dead after customers/redact, compared in constant time."""

from __future__ import annotations

import hashlib
from typing import Any

import falcon.testing
import pytest
from sqlalchemy import text

from engine.bootstrap import Context
from engine.services import manage, manage_links
from engine.services.shops import ShopRef
from tests.conftest import Admin, Storefront, make_catalog
from tests.manage.helpers import WED_9, WED_10, Customer, book, claim_of, link, token

CONTRACT_FIELDS = {"id", "service", "expert", "start", "end", "local", "status", "seats",
                   "can_cancel", "can_reschedule", "cancel_until", "reschedule_until"}


def test_the_link_and_the_booking_it_opens(admin: Admin, store: Storefront, ctx: Context,
                                           customer: Customer) -> None:
    cat = make_catalog(admin)
    bid = book(store, cat, WED_9, order_id=1001)
    url = link(ctx, bid)
    assert url is not None and url.startswith(
        f"https://alpha.myshopify.com/apps/consult/manage?booking={bid}&token=")
    tok = token(ctx, bid)
    assert len(tok) >= 22  # >= 128 bits in base64url
    assert link(ctx, bid) == url  # the same link every time
    # Only its sha256 is stored, and nowhere the token itself.
    c = claim_of(ctx, bid)
    assert c.manage_token_hash == hashlib.sha256(tok.encode()).hexdigest()
    with ctx.db.read() as session:
        row = session.execute(text("SELECT * FROM claims WHERE id = :i"), {"i": bid}).one()
    assert all(tok not in str(v) for v in row)

    r = customer.get(bid, tok)
    assert r.status_code == 200, r.text
    b = r.json["booking"]
    assert CONTRACT_FIELDS <= set(b)
    assert (b["id"], b["start"], b["status"], b["seats"]) == (bid, WED_9, "confirmed", 1)
    assert b["local"] == "2026-12-02T09:00:00+01:00"  # no tz on the hold: the shop's
    assert b["can_cancel"] is True and b["can_reschedule"] is True
    assert b["cancel_until"] == b["reschedule_until"] == "2026-12-01T08:00:00Z"


def test_local_is_in_the_customers_timezone(admin: Admin, store: Storefront, ctx: Context,
                                           customer: Customer) -> None:
    cat = make_catalog(admin)
    r = store.hold(cat["service"], cat["expert"], WED_9, tz="America/New_York")
    from tests.conftest import order_payload

    assert store.webhook("orders/paid", order_payload(5, [r.json["hold"]])).status_code == 200
    b = customer.get(r.json["hold"], token(ctx, r.json["hold"])).json["booking"]
    assert b["local"] == "2026-12-02T03:00:00-05:00"
    assert b["shop_local"] == "2026-12-02T09:00:00+01:00"


def _redact(store: Storefront, customer_id: int) -> None:
    r = store.webhook("customers/redact", {"shop_domain": store.domain,
                                           "customer": {"id": customer_id,
                                                        "email": "jon@example.com"},
                                           "orders_to_redact": []})
    assert r.status_code == 200, r.text


def test_every_wrong_way_gets_the_same_404(admin: Admin, store: Storefront, ctx: Context,
                                          customer: Customer, other_shop: ShopRef,
                                          client: falcon.testing.TestClient,
                                          other_admin: Admin) -> None:
    cat = make_catalog(admin)
    bid = book(store, cat, WED_9, order_id=1001)
    tok = token(ctx, bid)
    # Another shop's booking, with its own right token, asked through this shop.
    other_store = Storefront(client, ctx, other_shop.domain)
    other_cat = make_catalog(other_admin)
    other_bid = book(other_store, other_cat, "2026-12-02T15:00:00Z", order_id=2001)
    other_tok = token(ctx, other_bid)
    assert Customer(client, ctx, other_shop.domain).get(other_bid, other_tok).status_code == 200
    # A hold that never became a booking.
    hold = store.hold(cat["service"], cat["expert"], WED_10).json["hold"]

    answers: list[Any] = []
    for booking_id, tried in [(bid, "x" * 43), (bid, None), (bid, ""), (bid, tok[:-1]),
                              (bid, tok + "A"), (bid, "é" * 200), (other_bid, other_tok),
                              (bid, other_tok), ("bk_nope", tok), ("x" * 65, tok),
                              (hold, tok)]:
        r = customer.get(booking_id, tried)
        answers.append((r.status_code, r.json))
        # Reschedule and cancel answer the same for it.
        answers.append(((r2 := customer.reschedule(booking_id, tried or "t", WED_10))
                        .status_code, r2.json))
        answers.append(((r3 := customer.cancel(booking_id, tried or "t")).status_code,
                        r3.json))
    # Redacted: the right token is dead.
    _redact(store, 77)
    assert claim_of(ctx, bid).manage_token_hash is None
    for call in (lambda: customer.get(bid, tok), lambda: customer.cancel(bid, tok),
                 lambda: customer.reschedule(bid, tok, WED_10)):
        r = call()
        answers.append((r.status_code, r.json))
    assert link(ctx, bid) is None  # and no new link is ever made for it
    assert claim_of(ctx, bid).manage_token_hash is None
    assert {(s, str(j)) for s, j in answers} == {
        (404, str({"error": {"code": "not_found", "message": manage.NOT_FOUND_MESSAGE}}))}
    assert claim_of(ctx, bid).status == "confirmed"  # nothing was done to it


def test_the_comparison_is_constant_time(admin: Admin, store: Storefront, ctx: Context,
                                         customer: Customer,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    cat = make_catalog(admin)
    bid = book(store, cat, WED_9, order_id=1001)
    tok = token(ctx, bid)
    calls: list[tuple[Any, Any]] = []
    real = manage_links.hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(manage_links.hmac, "compare_digest", spy)
    for tried in (tok, "wrong", None):
        calls.clear()
        customer.get(bid, tried)
        # Digests of equal length are compared, whatever was sent (or not sent).
        assert calls and all(len(a) == len(b) == 64 for a, b in calls)


def test_links_survive_a_key_rotation(admin: Admin, store: Storefront, ctx: Context,
                                      customer: Customer) -> None:
    from dataclasses import replace

    from engine.crypto import generate_key

    cat = make_catalog(admin)
    bid = book(store, cat, WED_9, order_id=1001)
    before = link(ctx, bid)
    rotated = replace(ctx.config, encryption_keys=(generate_key(),
                                                   *ctx.config.encryption_keys))
    assert manage_links.link_for(ctx.db, rotated, claim_of(ctx, bid)) == before
    assert customer.get(bid, token(ctx, bid)).status_code == 200
