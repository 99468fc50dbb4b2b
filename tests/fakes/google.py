"""A fake Google: OAuth (authorize + token endpoint), Calendar v3 (freeBusy, events) and
Meet v2 (spaces), over real HTTP on 127.0.0.1, for google-api-python-client + google-auth.

What it checks like Google does: bearer tokens (an expired or unknown token is 401),
refresh tokens (a revoked one is ``invalid_grant``), PKCE on the code exchange, at most
50 calendars per ``freeBusy`` call and at most 60 days per range, client-chosen event ids
in base32hex (a repeated id is 409 ``duplicate``), and Meet conferences that stay
``pending`` for a configurable number of reads.

Push: ``events.watch`` opens a channel (our id and token, ``params.ttl`` capped at a
week) and, like Google, sends the ``sync`` handshake to its address; ``channels.stop``
closes it (404 for an unknown id or resource id). :meth:`FakeGoogle.add_busy` changes a
calendar and notifies its channels over real HTTP (``exists``); :meth:`notify` sends any
notification (a forged token...); :meth:`drop_channel` is Google stopping one silently.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlencode

import requests

from tests.fakes.http import FakeServer, Request, Response

EVENT_ID = re.compile(r"[a-v0-9]{5,1024}")


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _fmt(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _jwt(claims: dict[str, Any]) -> str:
    def part(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


class FakeGoogle(FakeServer):
    client_id = "google-client-id"
    client_secret = "google-client-secret"

    def __init__(self) -> None:
        super().__init__()
        self.access_tokens: set[str] = set()
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> account email
        self.revoked: set[str] = set()
        self.codes: dict[str, dict[str, Any]] = {}
        # calendar id -> [(start, end)] busy; calendars not here answer notFound
        self.busy: dict[str, list[tuple[datetime, datetime]]] = {}
        self.events: dict[str, dict[str, Any]] = {}  # event id -> event
        self.spaces: list[dict[str, Any]] = []
        self.conference_pending_reads = 0
        self._counter = itertools.count(1)
        self.channels: dict[str, dict[str, Any]] = {}  # channel id -> channel
        self.max_ttl = 7 * 86400
        #: The fake's idea of now (POSIX seconds); tests point it at their clock.
        self.now: Callable[[], float] = time.time
        #: Answers of the notifications the fake sent: (channel id, state, HTTP status).
        self.deliveries: list[tuple[str, str, int]] = []

    # --- helpers for tests ------------------------------------------------------------

    def origins(self) -> dict[str, str]:
        return {"google_api": self.url, "google_token": f"{self.url}/token",
                "google_auth": f"{self.url}/o/oauth2/auth", "meet_api": self.url}

    def issue_refresh_token(self, account: str = "owner@example.com") -> str:
        token = f"1//rt-{secrets.token_hex(8)}"
        self.refresh_tokens[token] = account
        return token

    def revoke(self, refresh_token: str) -> None:
        self.revoked.add(refresh_token)

    def expire_access_tokens(self) -> None:
        self.access_tokens.clear()

    def live_events(self) -> list[dict[str, Any]]:
        return [e for e in self.events.values() if e.get("status") != "cancelled"]

    def live_channels(self, calendar: str | None = None) -> list[dict[str, Any]]:
        now = self.now()
        return [c for c in self.channels.values() if int(c["expiration"]) / 1000 > now
                and (calendar is None or c["calendar"] == calendar)]

    def notify(self, channel_id: str, state: str = "exists", *, token: str | None = None,
               resource_id: str | None = None, address: str | None = None) -> int:
        """POST one notification like Google (headers only) over real HTTP; the status."""
        channel = self.channels.get(channel_id, {})
        headers = {"X-Goog-Channel-ID": channel_id,
                   "X-Goog-Channel-Token": channel.get("token", "") if token is None else token,
                   "X-Goog-Resource-ID": resource_id or channel.get("resourceId", "r"),
                   "X-Goog-Resource-URI": channel.get("resourceUri", ""),
                   "X-Goog-Resource-State": state,
                   "X-Goog-Message-Number": str(next(self._counter))}
        if channel.get("expiration"):
            headers["X-Goog-Channel-Expiration"] = str(channel["expiration"])
        status = requests.post(address or channel["address"], headers=headers, timeout=5,
                               data=b"").status_code
        self.deliveries.append((channel_id, state, status))
        return status

    def add_busy(self, calendar: str, start: datetime, end: datetime) -> list[int]:
        """A new busy event in ``calendar``: its live channels are notified (statuses)."""
        self.busy.setdefault(calendar, []).append((start, end))
        return [self.notify(c["id"]) for c in self.live_channels(calendar)]

    def drop_channel(self, channel_id: str) -> None:
        """Google stops a channel on its own (no notification says so)."""
        self.channels.pop(channel_id, None)

    # --- routing -------------------------------------------------------------------------

    def route(self, r: Request) -> Response:
        if r.path == "/token" and r.method == "POST":
            return self._token(r)
        if r.path == "/o/oauth2/auth" and r.method == "GET":
            return self._authorize(r)
        auth = r.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.access_tokens:
            return Response(401, {"error": {"code": 401, "message": "Invalid Credentials",
                                            "errors": [{"reason": "authError"}]}},
                            {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})
        if r.path == "/calendar/v3/freeBusy" and r.method == "POST":
            return self._freebusy(r)
        m = re.fullmatch(r"/calendar/v3/calendars/([^/]+)/events/watch", r.path)
        if m and r.method == "POST":
            return self._watch(r, unquote(m.group(1)))
        if r.path == "/calendar/v3/channels/stop" and r.method == "POST":
            body = r.json
            channel = self.channels.get(body.get("id", ""))
            if channel is None or channel["resourceId"] != body.get("resourceId"):
                return Response(404, {"error": {"code": 404, "message": "Channel not found",
                                                "errors": [{"reason": "notFound"}]}})
            del self.channels[body["id"]]
            return Response(204, b"")
        m = re.fullmatch(r"/calendar/v3/calendars/([^/]+)/events(?:/([^/]+))?", r.path)
        if m:
            return self._events(r, m.group(1), m.group(2))
        if r.path == "/v2/spaces" and r.method == "POST":
            n = next(self._counter)
            code = f"abc-{n:04d}-xyz"
            space = {"name": f"spaces/space{n}", "meetingUri": f"https://meet.google.com/{code}",
                     "meetingCode": code, "config": {"accessType": "TRUSTED"}}
            self.spaces.append(space)
            return Response(200, space)
        return Response(404, {"error": {"code": 404, "message": "Not Found"}})

    def _watch(self, r: Request, calendar: str) -> Response:
        body = r.json
        cid = body.get("id", "")
        if not re.fullmatch(r"[A-Za-z0-9\-_+/=]{1,64}", cid) or cid in self.channels:
            return Response(400, {"error": {"code": 400, "message": "Invalid channel id",
                                            "errors": [{"reason": "invalid"}]}})
        if body.get("type") != "web_hook" or not str(body.get("address", "")).startswith(
                ("https://", "http://127.0.0.1")):
            # Google calls https only; loopback http stands in for it in tests.
            return Response(400, {"error": {
                "code": 400, "message": "WebHook callback must be HTTPS",
                "errors": [{"reason": "push.webhookUrlNotHttps"}]}})
        ttl = min(int((body.get("params") or {}).get("ttl") or self.max_ttl), self.max_ttl)
        channel = {"kind": "api#channel", "id": cid,
                   "resourceId": f"res-{secrets.token_hex(6)}",
                   "resourceUri": f"{self.url}/calendar/v3/calendars/{calendar}/events",
                   "token": body.get("token", ""), "address": body["address"],
                   "expiration": str(int((self.now() + ttl) * 1000)), "calendar": calendar}
        self.channels[cid] = channel
        # Like Google: the sync handshake right after the channel exists (a thread, so the
        # watch answer is not held up by the app's answer).
        threading.Thread(target=self.notify, args=(cid, "sync"), daemon=True).start()
        return Response(200, {k: v for k, v in channel.items()
                              if k not in ("address", "calendar")})

    def _authorize(self, r: Request) -> Response:
        """Consent at once: redirect back with a code (PKCE challenge remembered)."""
        code = f"4/code-{secrets.token_hex(6)}"
        self.codes[code] = {"redirect_uri": r.query["redirect_uri"],
                            "challenge": r.query.get("code_challenge"),
                            "client_id": r.query.get("client_id"),
                            "scope": r.query.get("scope", ""),
                            "account": r.query.get("login_hint") or "owner@example.com"}
        target = r.query["redirect_uri"] + "?" + urlencode(
            {"code": code, "state": r.query.get("state", ""), "scope": r.query.get("scope")})
        return Response(302, b"", {"Location": target})

    def _new_access(self) -> str:
        token = f"ya29.{secrets.token_hex(10)}"
        self.access_tokens.add(token)
        return token

    def _token(self, r: Request) -> Response:
        form = r.form
        if form.get("client_id") != self.client_id or \
                form.get("client_secret") != self.client_secret:
            return Response(401, {"error": "invalid_client"})
        if form.get("grant_type") == "refresh_token":
            rt = form.get("refresh_token", "")
            if rt not in self.refresh_tokens or rt in self.revoked:
                return Response(400, {"error": "invalid_grant",
                                      "error_description": "Token has been expired or revoked."})
            return Response(200, {"access_token": self._new_access(), "expires_in": 3599,
                                  "token_type": "Bearer",
                                  "scope": "https://www.googleapis.com/auth/calendar.events"})
        if form.get("grant_type") == "authorization_code":
            grant = self.codes.pop(form.get("code", ""), None)
            if grant is None or grant["redirect_uri"] != form.get("redirect_uri"):
                return Response(400, {"error": "invalid_grant"})
            verifier = form.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(
                hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if grant["challenge"] and challenge != grant["challenge"]:
                return Response(400, {"error": "invalid_grant",
                                      "error_description": "code_verifier mismatch"})
            rt = self.issue_refresh_token(grant["account"])
            return Response(200, {"access_token": self._new_access(), "expires_in": 3599,
                                  "refresh_token": rt, "scope": grant["scope"],
                                  "token_type": "Bearer",
                                  "id_token": _jwt({"email": grant["account"],
                                                    "aud": self.client_id})})
        return Response(400, {"error": "unsupported_grant_type"})

    def _freebusy(self, r: Request) -> Response:
        body = r.json
        items = body.get("items", [])
        if len(items) > 50:
            return Response(400, {"error": {"code": 400, "message": "Too many calendars",
                                            "errors": [{"reason": "tooManyCalendarsRequested"}]}})
        start, end = _parse(body["timeMin"]), _parse(body["timeMax"])
        if end - start > timedelta(days=61):
            return Response(400, {"error": {"code": 400, "message": "range too long",
                                            "errors": [{"reason": "timeRangeTooLong"}]}})
        calendars: dict[str, Any] = {}
        for item in items:
            cal = item["id"]
            if cal not in self.busy:
                calendars[cal] = {"errors": [{"domain": "global", "reason": "notFound"}],
                                  "busy": []}
                continue
            calendars[cal] = {"busy": [{"start": _fmt(max(s, start)), "end": _fmt(min(e, end))}
                                       for s, e in sorted(self.busy[cal])
                                       if s < end and e > start]}
        return Response(200, {"kind": "calendar#freeBusy", "timeMin": body["timeMin"],
                              "timeMax": body["timeMax"], "calendars": calendars})

    def _conference(self, event: dict[str, Any]) -> None:
        request = event.get("conferenceData", {}).get("createRequest")
        if not request:
            return
        if event.get("_pending_reads", 0) > 0:
            event["_pending_reads"] -= 1
            request["status"] = {"statusCode": "pending"}
            return
        request["status"] = {"statusCode": "success"}
        code = "mee-" + hashlib.sha256(request["requestId"].encode()).hexdigest()[:4] + "-tst"
        event["conferenceData"]["entryPoints"] = [
            {"entryPointType": "video", "uri": f"https://meet.google.com/{code}"}]
        event["conferenceData"]["conferenceId"] = code
        event["hangoutLink"] = f"https://meet.google.com/{code}"

    def _public(self, event: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in event.items() if not k.startswith("_")}

    def _events(self, r: Request, calendar: str, event_id: str | None) -> Response:
        if event_id is None and r.method == "POST":
            body = r.json
            eid = body.get("id") or f"gen{next(self._counter):08d}"
            if not EVENT_ID.fullmatch(eid):
                return Response(400, {"error": {"code": 400, "message": "Invalid resource id",
                                                "errors": [{"reason": "invalid"}]}})
            if eid in self.events:
                return Response(409, {"error": {"code": 409, "message": "The requested "
                                                "identifier already exists.",
                                                "errors": [{"reason": "duplicate"}]}})
            event = {**body, "id": eid, "status": body.get("status", "confirmed"),
                     "sequence": 0, "_calendar": calendar, "_query": dict(r.query),
                     "_pending_reads": self.conference_pending_reads}
            if r.query.get("conferenceDataVersion") != "1":
                event.pop("conferenceData", None)
            self._conference(event)
            self.events[eid] = event
            return Response(200, self._public(event))
        event = self.events.get(event_id or "")
        if event is None:
            return Response(404, {"error": {"code": 404, "message": "Not Found",
                                            "errors": [{"reason": "notFound"}]}})
        if r.method == "GET":
            self._conference(event)
            return Response(200, self._public(event))
        if r.method == "PATCH":
            event.update(r.json)
            event["sequence"] += 1
            event["_query"] = dict(r.query)
            return Response(200, self._public(event))
        if r.method == "DELETE":
            if event.get("status") == "cancelled":
                return Response(410, {"error": {"code": 410, "message": "Resource has been "
                                                "deleted", "errors": [{"reason": "deleted"}]}})
            event["status"] = "cancelled"
            event["_query"] = dict(r.query)
            return Response(204, b"")
        return Response(405, {"error": {"code": 405}})
