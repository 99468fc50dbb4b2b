"""The demo's Shopify Admin API: what the app asks Shopify, answered by the demo itself.

`consultbook demo` promises that nothing leaves the machine. The app tags booked orders
(``tagsAdd``), with auto-refund on refunds lines it could not honour
(``suggestedRefund`` then ``refundCreate``), and reads the live theme's product templates
for the admin's first-run checklist (``themes``) through the real client
(:mod:`engine.shopify.admin_api`) over real HTTP. The demo points the Shopify admin
origin (``Config.origins["shopify_admin"]``, see :func:`engine.demo.demo_config`) at
``{app}/demo/shopify``, and this module answers there the way Shopify does:

* ``POST /demo/shopify/admin/api/<version>/graphql.json`` with ``X-Shopify-Access-Token``
  (the demo shop's token, else ``401``) — the operations the app sends, with the
  response shapes, ``userErrors`` and cost ``extensions`` of Shopify's GraphQL Admin API;
  an operation the demo does not know gets a GraphQL error, never a made-up success.
* ``POST /demo/shopify/admin/oauth/access_token`` — the token-exchange grant (an App
  Bridge session token for the demo shop's offline token), for a "Reconnect".

The orders the demo's checkout placed, the tags added to them, the refunds made and a
log of every call are kept as files under ``<outbox>/shopify/`` (the outbox folder is
where the demo already keeps what the app "sent"), so the outbox viewer can show them
and they survive a restart. No customer name or address is written there: an order
file holds its id, name, currency and lines; ``customers/redact`` has nothing to find.
"""

from __future__ import annotations

import fnmatch
import hmac
import json
import os
import re
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import falcon

from engine.bootstrap import Context
from engine.demo import ADMIN_API_PREFIX, DEMO_ACCESS_TOKEN, DEMO_SHOP, DEMO_TZ
from engine.shopify import SessionTokenError, decode_session_token

VERSION = re.compile(r"20[0-9]{2}-(?:01|04|07|10)|unstable")
ORDER_GID = re.compile(r"gid://shopify/Order/([0-9]{1,20})")
LINE_GID = re.compile(r"gid://shopify/LineItem/([0-9]{1,20})")
IDEMPOTENT = re.compile(r'@idempotent\(\s*key:\s*"((?:[^"\\]|\\.){1,255})"\s*\)')
MAX_TAGS = 250  # Shopify's limit on an order's tags
MAX_LOG_ROWS = 200  # what the outbox viewer shows
INVALID_TOKEN = ("[API] Invalid API key or access token (unrecognized login or wrong "
                 "password)")


# ------------------------------------------------------------------------ the ledger


@dataclass(frozen=True)
class ApiCall:
    """One Admin API call as the outbox viewer lists it."""

    at: str
    operation: str  # tagsAdd, suggestedRefund, refundCreate, shop, token exchange, ...
    order: str | None  # the order's number (digits), when the call named one
    order_name: str | None  # "#1042"
    detail: str  # what was asked or done, in words
    outcome: str  # "ok", or why Shopify refused


class Ledger:
    """The demo Shopify's state: its orders (one JSON file each) and the call log.

    Thread-safe within the process (the demo is one process: gunicorn with one worker,
    the embedded worker a thread in it); files are replaced atomically.
    """

    _lock = threading.Lock()

    def __init__(self, outbox_dir: str | os.PathLike[str]) -> None:
        self.root = Path(outbox_dir) / "shopify"

    # -- files ---------------------------------------------------------------------

    def _order_path(self, order_id: str) -> Path:
        if not order_id.isascii() or not order_id.isdigit():
            raise ValueError("an order id is digits")
        return self.root / "orders" / f"{order_id}.json"

    def _write(self, path: Path, doc: Mapping[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)

    # -- orders --------------------------------------------------------------------

    def record_order(self, order: Mapping[str, Any]) -> None:
        """Keep an order the demo's checkout placed (no customer data)."""
        doc: dict[str, Any] = {
            "id": str(order["id"]), "name": str(order.get("name") or ""),
            "currency": str(order.get("currency") or ""),
            "financial_status": str(order.get("financial_status") or ""),
            "line_items": [{"id": str(li["id"]), "title": str(li.get("title") or ""),
                            "quantity": int(li.get("quantity") or 1),
                            "price": str(li.get("price") or "0")}
                           for li in order.get("line_items") or []],
            "tags": [], "refunds": [],
        }
        with self._lock:
            self._write(self._order_path(doc["id"]), doc)

    def order(self, order_id: str) -> dict[str, Any] | None:
        try:
            path = self._order_path(order_id)
        except ValueError:
            return None
        try:
            doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return doc

    def add_tags(self, order_id: str, tags: list[str]) -> list[str] | None:
        """Add ``tags`` (a tag already there stays once); the order's tags, or None."""
        with self._lock:
            doc = self.order(order_id)
            if doc is None:
                return None
            have = list(doc.get("tags") or [])
            for tag in tags:
                if tag not in have:
                    have.append(tag)
            doc["tags"] = have[:MAX_TAGS]
            self._write(self._order_path(order_id), doc)
            return list(doc["tags"])

    def add_refund(self, order_id: str, key: str, refund: dict[str, Any]
                   ) -> tuple[dict[str, Any], bool]:
        """Record ``refund`` under idempotency ``key``; a repeat of a key returns the first
        refund (``(refund, False)``), as Shopify's ``@idempotent`` does."""
        with self._lock:
            doc = self.order(order_id)
            if doc is None:
                raise KeyError(order_id)
            for earlier in doc.get("refunds") or []:
                if earlier.get("key") == key:
                    return earlier, False
            doc.setdefault("refunds", []).append({**refund, "key": key})
            self._write(self._order_path(order_id), doc)
            return refund, True

    # -- the call log --------------------------------------------------------------

    def log(self, call: ApiCall) -> None:
        line = json.dumps(call.__dict__, sort_keys=True) + "\n"
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            with (self.root / "admin-api.jsonl").open("a", encoding="utf-8") as fh:
                fh.write(line)

    def calls(self, limit: int = MAX_LOG_ROWS) -> list[ApiCall]:
        """The newest ``limit`` calls, newest first (unreadable lines are skipped)."""
        try:
            lines = (self.root / "admin-api.jsonl").read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        out: list[ApiCall] = []
        for raw in reversed(lines):
            try:
                out.append(ApiCall(**json.loads(raw)))
            except (ValueError, TypeError):
                continue
            if len(out) >= limit:
                break
        return out


# ------------------------------------------------------------------------ the theme

DEMO_THEME_ID = "gid://shopify/OnlineStoreTheme/100000000001"
DEMO_THEME_NAME = "Dawn (demo)"
#: The app block's type as Shopify writes it into a template: app handle, block handle,
#: extension uuid (the demo's own uuid; a deployed extension gets Shopify's).
DEMO_BLOCK_TYPE = ("shopify://apps/consultbook/blocks/booking/"
                   "0b5c6d1e-2f3a-4b4c-9d5e-6f7a8b9c0d1e")
#: The live theme's JSON templates: the product page carries the booking block in an Apps
#: section, as the theme editor's deep link adds it.
DEMO_THEME_FILES: dict[str, str] = {
    "templates/index.json": json.dumps({
        "sections": {"featured": {"type": "featured-collection", "settings": {}}},
        "order": ["featured"]}, indent=2),
    "templates/product.json": (
        "/*\n * ------------------------------------------------------------\n"
        " * IMPORTANT: The contents of this file are auto-generated.\n"
        " * ------------------------------------------------------------\n */\n"
        + json.dumps({
            "sections": {
                "main": {"type": "main-product", "blocks": {
                    "title": {"type": "title", "settings": {}},
                    "price": {"type": "price", "settings": {}},
                    "buy_buttons": {"type": "buy_buttons", "settings": {}}},
                    "block_order": ["title", "price", "buy_buttons"], "settings": {}},
                "apps": {"type": "apps", "blocks": {
                    "booking_cb": {"type": DEMO_BLOCK_TYPE, "settings": {
                        "heading": "Book your time", "service_id": "",
                        "proxy_prefix": "/apps/consult"}}},
                    "block_order": ["booking_cb"], "settings": {}}},
            "order": ["main", "apps"]}, indent=2)),
}


# ------------------------------------------------------------------------ GraphQL


def _cost(requested: int = 10) -> dict[str, Any]:
    """Shopify's ``extensions.cost``: the demo's bucket is never empty."""
    return {"cost": {"requestedQueryCost": requested, "actualQueryCost": requested,
                     "throttleStatus": {"maximumAvailable": 2000.0,
                                        "currentlyAvailable": 2000 - requested,
                                        "restoreRate": 100.0}}}


def _money(value: Any) -> Decimal | None:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() else None


class _Refused(Exception):
    """A userError: the mutation ran and Shopify said no."""

    def __init__(self, field: list[str], message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


class GraphQL:
    """``POST /demo/shopify/admin/api/{version}/graphql.json``."""

    def __init__(self, ctx: Context, ledger: Ledger) -> None:
        self.ctx, self.ledger = ctx, ledger

    def _now(self) -> str:
        return self.ctx.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")

    def _log(self, operation: str, order: str | None, detail: str, outcome: str) -> None:
        doc = self.ledger.order(order) if order else None
        self.ledger.log(ApiCall(self._now(), operation, order,
                                (doc or {}).get("name") or None, detail, outcome))

    def on_post(self, req: falcon.Request, resp: falcon.Response, version: str) -> None:
        resp.content_type = falcon.MEDIA_JSON
        if not VERSION.fullmatch(version):
            resp.status = falcon.HTTP_404
            resp.media = {"errors": "Not Found"}
            return
        token = req.get_header("X-Shopify-Access-Token") or ""
        if not hmac.compare_digest(token.encode(), DEMO_ACCESS_TOKEN.encode()):
            self._log("(refused)", None, "a call with a wrong access token", "401")
            resp.status = falcon.HTTP_401
            resp.media = {"errors": INVALID_TOKEN}
            return
        try:
            body = json.loads(req.bounded_stream.read(1 << 20) or b"null")
        except ValueError:
            body = None
        query = body.get("query") if isinstance(body, dict) else None
        variables = body.get("variables") if isinstance(body, dict) else None
        if not isinstance(query, str) or not isinstance(variables, dict | None):
            resp.status = falcon.HTTP_400
            resp.media = {"errors": {"query": "Required parameter missing or invalid"}}
            return
        resp.media = self.answer(query, variables or {})

    def answer(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """The GraphQL response document for one request (status 200, as Shopify's)."""
        if "refundCreate" in query:
            return self._refund_create(query, variables)
        if "suggestedRefund" in query:
            return self._suggested_refund(variables)
        if "tagsAdd" in query:
            return self._tags_add(variables)
        if re.search(r"\bthemes\s*\(", query):
            return self._themes(query, variables)
        if re.search(r"\bshop\s*\{[^}]*\bianaTimezone\b", query):
            self._log("shop", None, "asked for the shop's timezone", "ok")
            return {"data": {"shop": {"ianaTimezone": self._timezone()}}, "extensions": _cost(1)}
        self._log("(unknown)", None, "a query the demo does not answer", "error")
        return {"errors": [{"message": "The demo's Shopify does not answer this query.",
                            "extensions": {"code": "undefinedField"}}]}

    # -- themes (the first-run checklist's theme check) ---------------------------------

    def _themes(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """``themes(roles: [MAIN]) { nodes { files(filenames: ...) } }``: the demo
        storefront's live theme, whose product template has the booking block (the demo
        product page shows it)."""
        if "MAIN" not in query:
            self._log("themes", None, "asked for a theme other than the live one", "error")
            return {"errors": [{"message": "The demo's Shopify has only its live (MAIN) "
                                           "theme.", "extensions": {"code": "undefinedField"}}]}
        patterns = variables.get("filenames")
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            patterns = ["*"]
        nodes = [{"filename": name, "body": {"content": content}}
                 for name, content in DEMO_THEME_FILES.items()
                 if any(fnmatch.fnmatchcase(name, p) for p in patterns)]
        self._log("themes", None, f"read {len(nodes)} file(s) of the live theme", "ok")
        return {"data": {"themes": {"nodes": [{
            "id": DEMO_THEME_ID, "name": DEMO_THEME_NAME,
            "files": {"nodes": nodes, "userErrors": [],
                      "pageInfo": {"hasNextPage": False, "endCursor": None}}}]}},
            "extensions": _cost(len(nodes) + 1)}

    def _timezone(self) -> str:
        from engine.services.shops import installed_shop

        try:
            with self.ctx.db.read() as session:
                return str(installed_shop(session, DEMO_SHOP).timezone)
        except Exception:  # the demo shop is gone: Shopify would still know its zone
            return DEMO_TZ

    # -- tagsAdd ---------------------------------------------------------------------

    def _tags_add(self, variables: dict[str, Any]) -> dict[str, Any]:
        gid, tags = variables.get("id"), variables.get("tags")
        match = ORDER_GID.fullmatch(gid) if isinstance(gid, str) else None
        order = match.group(1) if match else None
        try:
            if order is None:
                raise _Refused(["id"], "Invalid global id")
            if not isinstance(tags, list) or not tags or not all(
                    isinstance(t, str) and t.strip() and len(t) <= 40 for t in tags):
                raise _Refused(["tags"], "Tags must be 1 to 40 characters each")
            now_tags = self.ledger.add_tags(order, [t.strip() for t in tags])
            if now_tags is None:
                raise _Refused(["id"], "Order does not exist")
        except _Refused as refused:
            self._log("tagsAdd", order, f"tags {_list(tags)}", f"refused: {refused.message}")
            return {"data": {"tagsAdd": {"node": None, "userErrors": [
                {"field": refused.field, "message": refused.message}]}},
                "extensions": _cost()}
        self._log("tagsAdd", order, f"tags {_list(tags)} (now {_list(now_tags)})", "ok")
        return {"data": {"tagsAdd": {"node": {"id": gid}, "userErrors": []}},
                "extensions": _cost()}

    # -- refunds ---------------------------------------------------------------------

    def _lines(self, doc: dict[str, Any], raw: Any) -> list[tuple[dict[str, Any], int]]:
        """The order's lines a refund names, with the quantity asked (bounded by the line)."""
        by_id = {li["id"]: li for li in doc.get("line_items") or []}
        out = []
        for item in raw if isinstance(raw, list) else []:
            gid = item.get("lineItemId") if isinstance(item, dict) else None
            match = LINE_GID.fullmatch(gid) if isinstance(gid, str) else None
            line = by_id.get(match.group(1)) if match else None
            quantity = item.get("quantity") if isinstance(item, dict) else None
            if line is None or isinstance(quantity, bool) or not isinstance(quantity, int) \
                    or quantity < 1:
                raise _Refused(["refundLineItems"], "Line item does not exist on this order")
            out.append((line, min(quantity, int(line["quantity"]))))
        if not out:
            raise _Refused(["refundLineItems"], "No line items to refund")
        return out

    def _suggested_refund(self, variables: dict[str, Any]) -> dict[str, Any]:
        gid = variables.get("id")
        match = ORDER_GID.fullmatch(gid) if isinstance(gid, str) else None
        doc = self.ledger.order(match.group(1)) if match else None
        if doc is None or match is None:
            self._log("suggestedRefund", match.group(1) if match else None,
                      "asked what to refund", "order not found")
            return {"data": {"order": None}, "extensions": _cost()}
        try:
            lines = self._lines(doc, variables.get("items"))
        except _Refused as refused:
            self._log("suggestedRefund", doc["id"], "asked what to refund",
                      f"refused: {refused.message}")
            return {"errors": [{"message": refused.message,
                                "extensions": {"code": "BAD_REQUEST"}}]}
        amount = sum((Decimal(line["price"]) * n for line, n in lines), Decimal("0"))
        self._log("suggestedRefund", doc["id"],
                  f"asked what to refund: {amount:.2f} {doc['currency']}", "ok")
        return {"data": {"order": {"suggestedRefund": {"suggestedTransactions": [{
            "gateway": "bogus", "kind": "SUGGESTED_REFUND",
            "amountSet": {"presentmentMoney": {"amount": f"{amount:.2f}",
                                               "currencyCode": doc["currency"]}},
            "parentTransaction": {"id": f"gid://shopify/OrderTransaction/{doc['id']}"},
        }]}}}, "extensions": _cost()}

    def _refund_create(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        key_match = IDEMPOTENT.search(query)
        data = variables.get("input")
        data = data if isinstance(data, dict) else {}
        gid = data.get("orderId")
        match = ORDER_GID.fullmatch(gid) if isinstance(gid, str) else None
        order = match.group(1) if match else None
        if key_match is None:
            # Shopify requires the @idempotent directive on refundCreate from 2026-04.
            self._log("refundCreate", order, "a refund without an idempotency key", "error")
            return {"errors": [{"message": "An idempotency key is required for refundCreate.",
                                "extensions": {"code": "BAD_REQUEST"}}]}
        key = key_match.group(1)
        doc = self.ledger.order(order) if order else None
        try:
            if doc is None or order is None:
                raise _Refused(["orderId"], "Order does not exist")
            lines = self._lines(doc, data.get("refundLineItems"))
            currency = data.get("currency")
            if currency != doc["currency"]:
                raise _Refused(["currency"], "Currency must be the order's currency")
            txs = data.get("transactions")
            amounts = [_money(t.get("amount")) for t in txs if isinstance(t, dict)] \
                if isinstance(txs, list) else []
            total = sum((a for a in amounts if a is not None), Decimal("0"))
            if not amounts or any(a is None or a <= 0 for a in amounts):
                raise _Refused(["transactions"], "A refund needs a positive amount")
            owed = sum((Decimal(line["price"]) * n for line, n in lines), Decimal("0"))
            if total > owed:
                raise _Refused(["transactions"], "Refund amount exceeds what was paid")
            refund = {"id": f"gid://shopify/Refund/{secrets.randbelow(9 * 10**12) + 10**12}",
                      "amount": f"{total:.2f}", "currency": doc["currency"],
                      "line_items": [{"id": line["id"], "title": line["title"],
                                      "quantity": n} for line, n in lines],
                      "note": str(data.get("note") or "")[:500], "created_at": self._now()}
            refund, new = self.ledger.add_refund(order, key, refund)
        except _Refused as refused:
            self._log("refundCreate", order, "a refund", f"refused: {refused.message}")
            return {"data": {"refundCreate": {"refund": None, "userErrors": [
                {"field": refused.field, "message": refused.message}]}},
                "extensions": _cost()}
        titles = ", ".join(f"{li['quantity']} \u00d7 {li['title']}" for li in refund["line_items"])
        self._log("refundCreate", order,
                  f"refunded {refund['amount']} {refund['currency']} for {titles}"
                  + ("" if new else " (a repeat: the first refund stands)"), "ok")
        return {"data": {"refundCreate": {"refund": {
            "id": refund["id"], "totalRefundedSet": {"presentmentMoney": {
                "amount": refund["amount"], "currencyCode": refund["currency"]}}},
            "userErrors": []}}, "extensions": _cost()}


def _list(tags: Any) -> str:
    if not isinstance(tags, list):
        return "(none)"
    return ", ".join(str(t)[:40] for t in tags[:10]) or "(none)"


# ------------------------------------------------------------------------ the token endpoint


class AccessToken:
    """``POST /demo/shopify/admin/oauth/access_token``: the token-exchange grant only (the
    demo shop's token does not expire, so there is nothing to refresh)."""

    def __init__(self, ctx: Context, ledger: Ledger) -> None:
        self.ctx, self.ledger = ctx, ledger

    def _refuse(self, resp: falcon.Response, error: str, description: str) -> None:
        self.ledger.log(ApiCall(self.ctx.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
                                "token exchange", None, None, "asked for an access token",
                                f"refused: {error}"))
        resp.status = falcon.HTTP_400
        resp.media = {"error": error, "error_description": description}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            body = json.loads(req.bounded_stream.read(1 << 16) or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self._refuse(resp, "invalid_request", "The request body is not JSON.")
        config = self.ctx.config
        if not (hmac.compare_digest(str(body.get("client_id", "")).encode(),
                                    config.api_key.encode())
                and hmac.compare_digest(str(body.get("client_secret", "")).encode(),
                                        config.api_secret.encode())):
            return self._refuse(resp, "invalid_client", "Client authentication failed.")
        if body.get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange":
            return self._refuse(resp, "invalid_grant", "The demo only exchanges session tokens.")
        try:
            claims = decode_session_token(str(body.get("subject_token", "")),
                                          api_key=config.api_key,
                                          api_secret=config.api_secret,
                                          now=int(self.ctx.clock.now().timestamp()))
        except SessionTokenError:
            return self._refuse(resp, "invalid_subject_token", "The subject token is invalid.")
        if claims.shop != DEMO_SHOP:
            return self._refuse(resp, "invalid_subject_token", "This is not the demo shop.")
        self.ledger.log(ApiCall(self.ctx.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
                                "token exchange", None, None,
                                "a session token for the shop's offline token", "ok"))
        resp.media = {"access_token": DEMO_ACCESS_TOKEN, "scope": config.shopify_scopes}


def register(app: falcon.App, ctx: Context) -> Ledger:
    """Mount the demo's Shopify under ``ADMIN_API_PREFIX``; returns its ledger."""
    ledger = Ledger(ctx.config.outbox_dir)
    app.add_route(f"{ADMIN_API_PREFIX}/admin/api/{{version}}/graphql.json", GraphQL(ctx, ledger))
    app.add_route(f"{ADMIN_API_PREFIX}/admin/oauth/access_token", AccessToken(ctx, ledger))
    return ledger
