"""A fake Microsoft identity platform + Graph over HTTPS (trustme certificate), for msal
and requests. One origin serves both: authority ``<url>/common``, Graph ``<url>``.

Checks what Microsoft checks: the client secret, PKCE, bearer tokens (unknown or expired
ones are 401), revoked refresh tokens (``invalid_grant``), at most 20 schedules per
``getSchedule`` and ranges under 62 days; ``transactionId`` makes a repeated event POST
return the first event.

Push: ``POST /v1.0/subscriptions`` validates the notification (and lifecycle) URL like
Graph -- a POST with ``?validationToken=`` that must be echoed as ``text/plain`` within
10 s -- and refuses an expiration past 7 days; ``PATCH`` renews, ``DELETE`` removes.
:meth:`FakeMicrosoft.add_busy` changes a schedule and notifies its subscriptions over
real HTTP; :meth:`notify` sends any notification (a forged ``clientState``, a lifecycle
event); :meth:`remove_subscription` is Graph dropping one (``subscriptionRemoved``).
"""

from __future__ import annotations

import base64
import hashlib
import html
import itertools
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import requests

from tests.fakes.http import FakeServer, Request, Response
from tests.fakes.tls import server_context


def _b64(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


def _parse(value: dict[str, str]) -> datetime:
    assert value.get("timeZone", "UTC") == "UTC"
    return datetime.fromisoformat(value["dateTime"][:19]).replace(tzinfo=UTC)


def _fmt(at: datetime) -> dict[str, str]:
    return {"dateTime": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000"),
            "timeZone": "UTC"}


class FakeMicrosoft(FakeServer):
    client_id = "ms-client-id"
    client_secret = "ms-client-secret"
    tenant_id = "9188040d-6c67-4c5b-b112-36a304b66dad"

    def __init__(self) -> None:
        super().__init__(ssl_context=server_context())
        self.access_tokens: set[str] = set()
        self.refresh_tokens: dict[str, str] = {}
        self.revoked: set[str] = set()
        self.codes: dict[str, dict[str, Any]] = {}
        # schedule (email) -> {"busy": [(start, end, status)], "working_hours": {...}}
        self.schedules: dict[str, dict[str, Any]] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self._counter = itertools.count(1)
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.max_minutes = 10080
        #: The fake's idea of now (POSIX seconds); tests point it at their clock.
        self.now: Callable[[], float] = time.time
        #: (url, validation token, HTTP status, content type) of every handshake sent.
        self.validations: list[tuple[str, str, int, str]] = []

    def origins(self) -> dict[str, str]:
        return {"microsoft_authority": f"{self.url}/common", "graph": self.url}

    def issue_refresh_token(self, account: str = "owner@contoso.example") -> str:
        token = f"0.rt-{secrets.token_hex(8)}"
        self.refresh_tokens[token] = account
        return token

    def revoke_all(self) -> None:
        self.revoked.update(self.refresh_tokens)

    def expire_access_tokens(self) -> None:
        self.access_tokens.clear()

    def live_events(self) -> list[dict[str, Any]]:
        return [e for e in self.events.values() if not e.get("isCancelled")]

    def live_subscriptions(self, schedule: str | None = None) -> list[dict[str, Any]]:
        now = self.now()
        return [s for s in self.subscriptions.values() if s["_expires"] > now and (
            schedule is None or s["resource"].lower() == f"users/{schedule.lower()}/events")]

    def notify(self, subscription_id: str, change: str = "updated", *,
               client_state: str | None = None, lifecycle: str | None = None,
               url: str | None = None) -> int:
        """POST one notification like Graph over real HTTP; the HTTP status."""
        sub = self.subscriptions.get(subscription_id, {})
        item: dict[str, Any] = {
            "subscriptionId": subscription_id, "tenantId": self.tenant_id,
            "clientState": sub.get("clientState") if client_state is None else client_state,
            "subscriptionExpirationDateTime": sub.get("expirationDateTime")}
        if lifecycle:
            item["lifecycleEvent"] = lifecycle
            target = url or sub.get("lifecycleNotificationUrl") or sub["notificationUrl"]
        else:
            item.update({"changeType": change, "resource": sub.get("resource", ""),
                         "resourceData": {"@odata.type": "#Microsoft.Graph.Event",
                                          "id": f"AAMk{next(self._counter)}"}})
            target = url or sub["notificationUrl"]
        return requests.post(target, json={"value": [item]}, timeout=5).status_code

    def add_busy(self, schedule: str, start: datetime, end: datetime,
                 status: str = "busy") -> list[int]:
        """A new event in ``schedule``: its live subscriptions are notified (statuses)."""
        info = self.schedules.setdefault(schedule.lower(), {"busy": []})
        info.setdefault("busy", []).append((start, end, status))
        return [self.notify(s["id"], "created") for s in self.live_subscriptions(schedule)]

    def remove_subscription(self, subscription_id: str) -> int:
        """Graph drops a subscription and says so (``subscriptionRemoved``)."""
        status = self.notify(subscription_id, lifecycle="subscriptionRemoved")
        self.subscriptions.pop(subscription_id, None)
        return status

    # --- identity ---------------------------------------------------------------------

    def route(self, r: Request) -> Response:
        m = re.fullmatch(r"/([^/]+)/v2\.0/\.well-known/openid-configuration", r.path)
        if m:
            t = m.group(1)
            return Response(200, {
                "authorization_endpoint": f"{self.url}/{t}/oauth2/v2.0/authorize",
                "token_endpoint": f"{self.url}/{t}/oauth2/v2.0/token",
                "issuer": f"{self.url}/{self.tenant_id}/v2.0",
                "response_types_supported": ["code"]})
        if re.fullmatch(r"/[^/]+/oauth2/v2\.0/authorize", r.path):
            return self._authorize(r)
        if re.fullmatch(r"/[^/]+/oauth2/v2\.0/token", r.path) and r.method == "POST":
            return self._token(r)
        auth = r.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.access_tokens:
            return Response(401, {"error": {"code": "InvalidAuthenticationToken",
                                            "message": "Access token has expired."}})
        if r.path == "/v1.0/me/calendar/getSchedule" and r.method == "POST":
            return self._schedule(r)
        if r.path == "/v1.0/subscriptions" and r.method == "POST":
            return self._subscribe(r)
        m = re.fullmatch(r"/v1\.0/subscriptions/([^/]+)", r.path)
        if m:
            return self._subscription(r, m.group(1))
        if r.path == "/v1.0/me/events" and r.method == "POST":
            return self._create(r)
        m = re.fullmatch(r"/v1\.0/me/events/([^/]+)(/cancel)?", r.path)
        if m:
            return self._event(r, m.group(1), bool(m.group(2)))
        return Response(404, {"error": {"code": "ResourceNotFound"}})

    def _authorize(self, r: Request) -> Response:
        code = f"M.code-{secrets.token_hex(6)}"
        self.codes[code] = {"redirect_uri": r.query["redirect_uri"],
                            "challenge": r.query.get("code_challenge"),
                            "nonce": r.query.get("nonce"), "scope": r.query.get("scope", ""),
                            "account": "owner@contoso.example"}
        fields = {"code": code, "state": r.query.get("state", ""), "session_state": "s"}
        if r.query.get("response_mode") == "form_post":
            # Like Microsoft: an auto-submitting form that POSTs the answer back.
            inputs = "".join(f'<input type="hidden" name="{k}" value="{html.escape(v)}">'
                             for k, v in fields.items())
            page = (f'<html><body onload="document.forms[0].submit()"><form method="POST" '
                    f'action="{html.escape(r.query["redirect_uri"])}">{inputs}</form>'
                    "</body></html>")
            return Response(200, page, {"Content-Type": "text/html"})
        target = r.query["redirect_uri"] + "?" + urlencode(fields)
        return Response(302, b"", {"Location": target})

    def _tokens(self, account: str, nonce: str | None, scope: str) -> dict[str, Any]:
        access = f"eyJ0.at-{secrets.token_hex(10)}"
        self.access_tokens.add(access)
        refresh = self.issue_refresh_token(account)
        now = int(time.time())
        oid = hashlib.sha256(account.encode()).hexdigest()[:8] + "-0000-0000-0000-000000000000"
        claims = {"aud": self.client_id, "iss": f"{self.url}/{self.tenant_id}/v2.0",
                  "iat": now, "nbf": now, "exp": now + 3600, "oid": oid,
                  "tid": self.tenant_id, "sub": "subject", "preferred_username": account,
                  "name": "Owner", "ver": "2.0"}
        if nonce:
            claims["nonce"] = nonce
        return {"token_type": "Bearer", "scope": scope or "Calendars.ReadWrite User.Read",
                "expires_in": 3600, "ext_expires_in": 3600, "access_token": access,
                "refresh_token": refresh,
                "id_token": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
                "client_info": _b64({"uid": oid, "utid": self.tenant_id})}

    def _token(self, r: Request) -> Response:
        form = r.form
        if form.get("client_id") != self.client_id or \
                form.get("client_secret") != self.client_secret:
            return Response(401, {"error": "invalid_client",
                                  "error_description": "AADSTS7000215: Invalid client secret"})
        if form.get("grant_type") == "authorization_code":
            grant = self.codes.pop(form.get("code", ""), None)
            if grant is None or grant["redirect_uri"] != form.get("redirect_uri"):
                return Response(400, {"error": "invalid_grant"})
            verifier = form.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(
                hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if grant["challenge"] and challenge != grant["challenge"]:
                return Response(400, {"error": "invalid_grant",
                                      "error_description": "AADSTS501481: verifier mismatch"})
            return Response(200, self._tokens(grant["account"], grant["nonce"], grant["scope"]))
        if form.get("grant_type") == "refresh_token":
            rt = form.get("refresh_token", "")
            if rt not in self.refresh_tokens or rt in self.revoked:
                return Response(400, {"error": "invalid_grant", "error_codes": [70000],
                                      "error_description": "AADSTS70000: The refresh token "
                                      "was revoked."})
            account = self.refresh_tokens[rt]
            return Response(200, self._tokens(account, None, form.get("scope", "")))
        return Response(400, {"error": "unsupported_grant_type"})

    # --- Graph ------------------------------------------------------------------------

    def _schedule(self, r: Request) -> Response:
        body = r.json
        schedules = body["schedules"]
        if len(schedules) > 20:
            return Response(400, {"error": {"code": "ErrorInvalidRequest",
                                            "message": "Too many schedules"}})
        start, end = _parse(body["startTime"]), _parse(body["endTime"])
        if end - start >= timedelta(days=62):
            return Response(400, {"error": {"code": "ErrorInvalidTimeRange",
                                            "message": "range of 62 days or more"}})
        value = []
        for s in schedules:
            info = self.schedules.get(s.lower())
            if info is None:
                value.append({"scheduleId": s, "error": {"message": "not found",
                                                         "responseCode": "UserNotFound"}})
                continue
            items = [{"status": status, "start": _fmt(max(a, start)), "end": _fmt(min(b, end)),
                      "isPrivate": False}
                     for a, b, status in info.get("busy", []) if a < end and b > start]
            entry: dict[str, Any] = {"scheduleId": s, "availabilityView": "",
                                     "scheduleItems": items}
            if info.get("working_hours"):
                entry["workingHours"] = info["working_hours"]
            value.append(entry)
        return Response(200, {"value": value})

    def _expiry(self, value: str) -> float | None:
        at = _parse({"dateTime": value.rstrip("Z"), "timeZone": "UTC"}).timestamp()
        if at <= self.now() or at > self.now() + self.max_minutes * 60:
            return None
        return at

    def _validate(self, url: str) -> bool:
        token = f"Validation: Testing client application {secrets.token_hex(8)}"
        try:
            resp = requests.post(url, params={"validationToken": token}, timeout=10,
                                 headers={"Content-Type": "text/plain"}, data=b"")
        except requests.RequestException:
            self.validations.append((url, token, 0, ""))
            return False
        kind = resp.headers.get("Content-Type", "")
        self.validations.append((url, token, resp.status_code, kind))
        return resp.status_code == 200 and kind.startswith("text/plain") and resp.text == token

    def _subscribe(self, r: Request) -> Response:
        body = r.json
        expires = self._expiry(body.get("expirationDateTime", ""))
        if expires is None:
            return Response(400, {"error": {"code": "InvalidRequest",
                                            "message": "expirationDateTime out of range"}})
        urls = {body.get("notificationUrl", ""), body.get("lifecycleNotificationUrl") or ""}
        urls.discard("")
        if not all(u.startswith(("https://", "http://127.0.0.1")) for u in urls) or \
                not all(self._validate(u) for u in urls):
            return Response(400, {"error": {"code": "ValidationError",
                                            "message": "Subscription validation request "
                                            "failed."}})
        sid = str(uuid.uuid4())
        sub = {**body, "id": sid, "applicationId": self.client_id, "_expires": expires}
        self.subscriptions[sid] = sub
        return Response(201, {k: v for k, v in sub.items() if not k.startswith("_")})

    def _subscription(self, r: Request, sid: str) -> Response:
        sub = self.subscriptions.get(sid)
        if sub is None or sub["_expires"] <= self.now():
            self.subscriptions.pop(sid, None)
            return Response(404, {"error": {"code": "ResourceNotFound",
                                            "message": "subscription not found"}})
        if r.method == "PATCH":
            expires = self._expiry(r.json.get("expirationDateTime", ""))
            if expires is None:
                return Response(400, {"error": {"code": "InvalidRequest",
                                                "message": "expirationDateTime out of range"}})
            sub.update(expirationDateTime=r.json["expirationDateTime"], _expires=expires)
            return Response(200, {k: v for k, v in sub.items() if not k.startswith("_")})
        if r.method == "DELETE":
            del self.subscriptions[sid]
            return Response(204, b"")
        return Response(200, {k: v for k, v in sub.items() if not k.startswith("_")})

    def _create(self, r: Request) -> Response:
        body = r.json
        tx = body.get("transactionId")
        for event in self.events.values():
            if tx and event.get("transactionId") == tx:
                return Response(201, event)
        eid = f"AAMkAD{next(self._counter):06d}="
        event = {**body, "id": eid, "isCancelled": False, "webLink": f"https://outlook/{eid}"}
        if body.get("isOnlineMeeting"):
            event["onlineMeeting"] = {
                "joinUrl": f"https://teams.microsoft.com/l/meetup-join/{eid}"}
        self.events[eid] = event
        return Response(201, event)

    def _event(self, r: Request, eid: str, cancel: bool) -> Response:
        event = self.events.get(eid)
        if event is None:
            return Response(404, {"error": {"code": "ErrorItemNotFound"}})
        if cancel and r.method == "POST":
            if not event.get("attendees"):
                return Response(400, {"error": {"code": "ErrorInvalidRequest",
                                                "message": "no attendees"}})
            event["isCancelled"] = True
            return Response(202, b"")
        if r.method == "PATCH":
            event.update(r.json)
            return Response(200, event)
        if r.method == "DELETE":
            del self.events[eid]
            return Response(204, b"")
        if r.method == "GET":
            return Response(200, event)
        return Response(405, {"error": {"code": "MethodNotAllowed"}})
