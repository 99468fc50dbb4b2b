"""A small fake Shopify over real HTTP on 127.0.0.1: the token endpoint and GraphQL.

``POST /admin/oauth/access_token`` implements the three grants consultbook uses:
authorization code (codes registered with :meth:`FakeShopify.add_code`, each valid
once), token exchange (the session token is verified like Shopify would) and refresh
(single-use refresh tokens: a reused one gets ``400 invalid_grant``). ``expiring=1``
gives an access token with ``expires_in`` and a refresh token.

``POST /admin/api/<version>/graphql.json`` checks ``X-Shopify-Access-Token`` and answers
the few operations the app sends. ``plan`` scripts failures, one per GraphQL request:
``"429"`` (Retry-After), ``"throttle"`` (a THROTTLED error with a cost), ``"500"``,
``"hang"`` (answers after ``hang_seconds``).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from engine.shopify import SessionTokenError, decode_session_token


@dataclass
class Grant:
    kind: str  # "code", "token_exchange", "refresh"
    body: dict[str, Any]
    status: int = 200


@dataclass
class GraphQLCall:
    version: str
    token: str | None
    query: str
    variables: dict[str, Any]


@dataclass
class FakeShopify:
    api_key: str
    api_secret: str
    now: int
    timezone: str = "Europe/Berlin"
    expires_in: int = 3600
    refresh_expires_in: int = 90 * 24 * 3600
    refresh_delay: float = 0.0
    hang_seconds: float = 0.5
    retry_after: str = "2"
    plan: deque[str] = field(default_factory=deque)
    grants: list[Grant] = field(default_factory=list)
    calls: list[GraphQLCall] = field(default_factory=list)
    tags: list[tuple[str, list[str]]] = field(default_factory=list)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    codes: dict[str, str] = field(default_factory=dict)  # code -> shop
    access_tokens: set[str] = field(default_factory=set)
    live_refresh: set[str] = field(default_factory=set)
    spent_refresh: set[str] = field(default_factory=set)
    issued: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                status, headers, body = fake.handle(self.path, dict(self.headers), raw)
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    # ------------------------------------------------------------------ helpers

    def add_code(self, shop: str) -> str:
        code = secrets.token_hex(8)
        self.codes[code] = shop
        return code

    def grants_of(self, kind: str) -> list[Grant]:
        return [g for g in self.grants if g.kind == kind]

    def revoke(self, access_token: str) -> None:
        self.access_tokens.discard(access_token)

    # ------------------------------------------------------------------ dispatch

    def handle(self, path: str, headers: dict[str, str],
               raw: bytes) -> tuple[int, dict[str, str], Any]:
        if path == "/admin/oauth/access_token":
            return self._token(headers, raw)
        parts = path.split("/")
        if len(parts) == 5 and parts[1:3] == ["admin", "api"] and parts[4] == "graphql.json":
            return self._graphql(parts[3], headers, raw)
        return 404, {}, {"errors": "Not Found"}

    def _issue(self, expiring: bool) -> dict[str, Any]:
        token = "shpat_" + secrets.token_hex(16)
        self.access_tokens.add(token)
        body: dict[str, Any] = {"access_token": token, "scope": "read_orders,write_orders,"
                                                                "read_products"}
        if expiring:
            refresh = "shprt_" + secrets.token_hex(16)
            self.live_refresh.add(refresh)
            body.update(expires_in=self.expires_in, refresh_token=refresh,
                        refresh_token_expires_in=self.refresh_expires_in)
        self.issued.append(body)
        return body

    def _token(self, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, str], Any]:
        if "json" in headers.get("Content-Type", ""):
            body = json.loads(raw or b"{}")
        else:
            body = dict(parse_qsl(raw.decode()))
        grant_type = body.get("grant_type")
        kind = {"refresh_token": "refresh",
                "urn:ietf:params:oauth:grant-type:token-exchange": "token_exchange"}.get(
            grant_type or "", "code")
        grant = Grant(kind, body)
        with self.lock:
            self.grants.append(grant)
        if body.get("client_id") != self.api_key or body.get("client_secret") != self.api_secret:
            grant.status = 401
            return 401, {}, {"error": "invalid_client",
                             "error_description": "Client authentication failed."}
        expiring = str(body.get("expiring")) == "1"
        if kind == "code":
            with self.lock:
                shop = self.codes.pop(str(body.get("code")), None)
                if shop is None:
                    grant.status = 400
                    return 400, {}, {"error": "invalid_request",
                                     "error_description": "The authorization code was not "
                                                          "found or was already used"}
                return 200, {}, self._issue(expiring)
        if kind == "token_exchange":
            ok_types = (
                body.get("subject_token_type") == "urn:ietf:params:oauth:token-type:id_token"
                and body.get("requested_token_type")
                == "urn:shopify:params:oauth:token-type:offline-access-token")
            try:
                decode_session_token(str(body.get("subject_token")), api_key=self.api_key,
                                     api_secret=self.api_secret, now=self.now)
            except SessionTokenError:
                ok_types = False
            if not ok_types:
                grant.status = 400
                return 400, {}, {"error": "invalid_subject_token",
                                 "error_description": "The subject token is invalid."}
            with self.lock:
                return 200, {}, self._issue(expiring)
        # refresh
        token = str(body.get("refresh_token"))
        with self.lock:
            if token not in self.live_refresh:
                grant.status = 400
                reused = token in self.spent_refresh
                return 400, {}, {"error": "invalid_grant",
                                 "error_description": "The refresh token was already used."
                                 if reused else "The refresh token is invalid."}
            self.live_refresh.discard(token)
            self.spent_refresh.add(token)
        if self.refresh_delay:
            time.sleep(self.refresh_delay)
        with self.lock:
            return 200, {}, self._issue(True)

    def _graphql(self, version: str, headers: dict[str, str],
                 raw: bytes) -> tuple[int, dict[str, str], Any]:
        body = json.loads(raw or b"{}")
        token = headers.get("X-Shopify-Access-Token")
        call = GraphQLCall(version, token, body.get("query", ""), body.get("variables") or {})
        with self.lock:
            self.calls.append(call)
            step = self.plan.popleft() if self.plan else "ok"
        if token not in self.access_tokens:
            return 401, {}, {"errors": "[API] Invalid API key or access token "
                                       "(unrecognized login or wrong password)"}
        if step == "429":
            return 429, {"Retry-After": self.retry_after}, {"errors": "Exceeded rate limit"}
        if step == "500":
            return 500, {}, {"errors": "Internal Server Error"}
        if step == "throttle":
            return 200, {}, {
                "errors": [{"message": "Throttled", "extensions": {
                    "code": "THROTTLED",
                    "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
                "extensions": {"cost": {
                    "requestedQueryCost": 100, "actualQueryCost": None,
                    "throttleStatus": {"maximumAvailable": 2000.0,
                                       "currentlyAvailable": 40, "restoreRate": 50.0}}}}
        if step == "hang":
            time.sleep(self.hang_seconds)
        return 200, {}, self._answer(call)

    def _answer(self, call: GraphQLCall) -> Any:
        cost = {"cost": {"requestedQueryCost": 10, "actualQueryCost": 10, "throttleStatus": {
            "maximumAvailable": 2000.0, "currentlyAvailable": 1990, "restoreRate": 100.0}}}
        q = call.query
        if "ianaTimezone" in q:
            return {"data": {"shop": {"ianaTimezone": self.timezone}}, "extensions": cost}
        if "tagsAdd" in q:
            tags = call.variables["tags"]
            if any(len(t) > 40 for t in tags):
                return {"data": {"tagsAdd": {"node": None, "userErrors": [
                    {"field": ["tags"], "message": "Tag is too long"}]}}}
            with self.lock:
                self.tags.append((call.variables["id"], list(tags)))
            return {"data": {"tagsAdd": {"node": {"id": call.variables["id"]},
                                         "userErrors": []}}, "extensions": cost}
        if "suggestedRefund" in q:
            return {"data": {"order": {"suggestedRefund": {"suggestedTransactions": [{
                "gateway": "bogus", "kind": "SUGGESTED_REFUND",
                "amountSet": {"presentmentMoney": {"amount": "50.0", "currencyCode": "EUR"}},
                "parentTransaction": {"id": "gid://shopify/OrderTransaction/9"}}]}}}}
        if "refundCreate" in q:
            marker = "@idempotent(key: "
            if marker not in q:
                return {"errors": [{"message": "An idempotency key is required",
                                    "extensions": {"code": "BAD_REQUEST"}}]}
            key = json.loads(q.split(marker, 1)[1].split(")", 1)[0])
            with self.lock:
                refund = self.refunds.get(key)
                if refund is None:
                    refund = {"input": call.variables["input"],
                              "id": f"gid://shopify/Refund/{len(self.refunds) + 1}"}
                    self.refunds[key] = refund
            amount = sum(float(t["amount"]) for t in refund["input"]["transactions"])
            return {"data": {"refundCreate": {"refund": {
                "id": refund["id"],
                "totalRefundedSet": {"presentmentMoney": {
                    "amount": f"{amount:.2f}",
                    "currencyCode": refund["input"]["currency"]}}},
                "userErrors": []}}}
        return {"errors": [{"message": "Field doesn't exist",
                            "extensions": {"code": "undefinedField"}}]}
