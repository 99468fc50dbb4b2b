"""A fake Zoom: Server-to-Server OAuth token endpoint and the REST API v2 pieces a video
provider uses (users, meetings create/list/get/patch/delete), over real HTTP on 127.0.0.1.

What it checks like Zoom does: HTTP Basic client credentials and ``grant_type=
account_credentials`` with the right ``account_id`` on ``POST /oauth/token``; bearer
tokens that expire (``expire_tokens``) or die with a regenerated secret (``revoke``);
meeting fields (type, ``start_time`` format, duration, IANA zone, topic and agenda
lengths); a per-user daily budget of meeting create/update requests (100 by default)
answered with 429, ``Retry-After`` (the next 00:00 UTC, as an ISO instant) and
``X-RateLimit-*`` headers; list pagination with ``next_page_token``. Faults: ``fail``
(from :class:`FakeServer`) and ``lose_create_answers`` -- the meeting is made but its
answer is lost (a 502, or a delay past the client's timeout), as when Zoom's edge
drops a response or a worker dies right after the create.
"""

from __future__ import annotations

import base64
import itertools
import re
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tests.fakes.http import FakeServer, Request, Response

ZOOM_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


def _fmt(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, code: int, message: str,
           headers: dict[str, str] | None = None) -> Response:
    return Response(status, {"code": code, "message": message}, headers or {})


class FakeZoom(FakeServer):
    account_id = "AcctFake-123"
    client_id = "zoomClientId42"
    client_secret = "zoom-client-secret-0123456789"

    def __init__(self, *, now: Callable[[], datetime] | None = None,
                 daily_limit: int = 100, max_page_size: int = 300) -> None:
        super().__init__()
        self.now = now or (lambda: datetime.now(UTC))
        self.daily_limit = daily_limit
        self.max_page_size = max_page_size
        self.token_lifetime = 3599
        self.tokens: dict[str, datetime] = {}  # access token -> expiry
        self.owner = {"id": "uOwner0001", "email": "owner@example.com",
                      "first_name": "Olga", "last_name": "Owner", "type": 2,
                      "status": "active", "account_id": self.account_id,
                      "timezone": "Europe/Berlin"}
        self.users: dict[str, dict[str, Any]] = {self.owner["id"]: self.owner}
        self.meetings: dict[int, dict[str, Any]] = {}
        self.deleted: set[int] = set()
        self.budget_used: dict[tuple[str, date], int] = {}
        #: The next n creates make the meeting but answer 502 (or stall ``lose_delay``).
        self.lose_create_answers = 0
        self.lose_delay = 0.0
        self._ids = itertools.count(81234567890)
        self._state = threading.Lock()

    # --- helpers for tests ----------------------------------------------------------

    def origins(self) -> dict[str, str]:
        return {"zoom_api": self.url, "zoom_oauth": self.url}

    def values(self, **changes: str) -> dict[str, str]:
        """The connect form's values of this fake's app."""
        return {"account_id": self.account_id, "client_id": self.client_id,
                "client_secret": self.client_secret, **changes}

    def credentials(self) -> dict[str, Any]:
        """What the connector stores for this fake's app (as if connected)."""
        return {"account_id": self.account_id, "client_id": self.client_id,
                "client_secret": self.client_secret, "user_id": self.owner["id"],
                "user_email": self.owner["email"]}

    def add_user(self, email: str, status: str = "active") -> dict[str, Any]:
        user = {"id": f"u{secrets.token_hex(5)}", "email": email, "first_name": "E",
                "last_name": "X", "type": 2, "status": status,
                "account_id": self.account_id, "timezone": "UTC"}
        self.users[user["id"]] = user
        return user

    def expire_tokens(self) -> None:
        """Every issued token expires now (Zoom's hour is up)."""
        with self._state:
            self.tokens.clear()

    def revoke(self) -> None:
        """The merchant regenerated the app's secret: old tokens and the secret are dead."""
        with self._state:
            self.tokens.clear()
            self.client_secret = "regenerated-" + secrets.token_hex(8)

    def live_meetings(self) -> list[dict[str, Any]]:
        return [m for m in self.meetings.values() if m["id"] not in self.deleted]

    def token_calls(self) -> int:
        return len(self.calls("POST", r"^/oauth/token$"))

    # --- routing --------------------------------------------------------------------

    def route(self, r: Request) -> Response:
        if r.path == "/oauth/token":
            if r.method != "POST":
                return Response(405, {"reason": "Method Not Allowed", "error": "invalid_request"})
            return self._token(r)
        auth = r.headers.get("authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        with self._state:
            expiry = self.tokens.get(token)
        if expiry is None:
            return _error(401, 124, "Invalid access token.")
        if expiry <= self.now():
            return _error(401, 124, "Access token is expired.")
        m = re.fullmatch(r"/v2/users/([^/]+)", r.path)
        if m and r.method == "GET":
            user = self._user(m.group(1))
            if user is None:
                return _error(404, 1001, f"User does not exist: {m.group(1)}.")
            return Response(200, user)
        m = re.fullmatch(r"/v2/users/([^/]+)/meetings", r.path)
        if m:
            user = self._user(m.group(1))
            if user is None:
                return _error(404, 1001, f"User does not exist: {m.group(1)}.")
            if r.method == "POST":
                return self._create(r, user)
            if r.method == "GET":
                return self._list(r, user)
        m = re.fullmatch(r"/v2/meetings/([0-9]+)", r.path)
        if m:
            return self._meeting(r, int(m.group(1)))
        return _error(404, 404, "Not found")

    def _user(self, ref: str) -> dict[str, Any] | None:
        if ref == "me":
            return self.owner
        if ref in self.users:
            return self.users[ref]
        return next((u for u in self.users.values() if u["email"].lower() == ref.lower()), None)

    def _token(self, r: Request) -> Response:
        if r.query.get("grant_type") != "account_credentials":
            return Response(400, {"reason": "Unsupported grant type",
                                  "error": "unsupported_grant_type"})
        auth = r.headers.get("authorization", "")
        try:
            client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            client_id = secret = ""
        if not auth.startswith("Basic ") or client_id != self.client_id or \
                secret != self.client_secret:
            return Response(400, {"reason": "Invalid client_id or client_secret",
                                  "error": "invalid_client"})
        if r.query.get("account_id") != self.account_id:
            return Response(400, {"reason": "Invalid account_id", "error": "invalid_request"})
        value = "eyJzdrs" + secrets.token_urlsafe(24)
        with self._state:
            self.tokens[value] = self.now() + timedelta(seconds=self.token_lifetime)
        return Response(200, {"access_token": value, "token_type": "bearer",
                              "expires_in": self.token_lifetime,
                              "scope": "meeting:write:admin meeting:read:admin "
                                       "user:read:admin",
                              "api_url": "https://api.zoom.us"})

    def _spend(self, user_id: str) -> Response | None:
        """Count one create/update against the user's day; a 429 once it is spent."""
        now = self.now()
        key = (user_id, now.date())
        with self._state:
            used = self.budget_used.get(key, 0)
            if used >= self.daily_limit:
                midnight = datetime.combine(now.date() + timedelta(days=1),
                                            datetime.min.time(), UTC)
                return _error(429, 429, (
                    f"You have exceeded the daily rate limit ({self.daily_limit}) of Meeting "
                    "Create/Update API requests permitted for this particular user. You may "
                    "resume these requests at GMT 00:00:00."), {
                    "Retry-After": _fmt(midnight), "X-RateLimit-Type": "Daily-limit",
                    "X-RateLimit-Limit": str(self.daily_limit),
                    "X-RateLimit-Remaining": "0"})
            self.budget_used[key] = used + 1
        return None

    @staticmethod
    def _invalid(body: Any, *, create: bool) -> str | None:
        """Why Zoom would refuse these meeting fields (code 300), or None."""
        if not isinstance(body, dict):
            return "Request Body should be a valid JSON object."
        if create and body.get("type", 2) not in (1, 2, 3, 8):
            return "Invalid field: type"
        if "start_time" in body or (create and body.get("type", 2) == 2):
            if not isinstance(body.get("start_time"), str) or \
                    not ZOOM_TIME.fullmatch(body["start_time"]):
                return "Invalid field: start_time"
        if "duration" in body and (not isinstance(body["duration"], int)
                                   or isinstance(body["duration"], bool)
                                   or not 0 < body["duration"] <= 1440 * 7):
            return "Invalid field: duration"
        if "timezone" in body:
            try:
                ZoneInfo(str(body["timezone"]))
            except (ZoneInfoNotFoundError, ValueError):
                return "Invalid field: timezone"
        if len(str(body.get("topic", ""))) > 200:
            return "Invalid field: topic"
        if len(str(body.get("agenda", ""))) > 2000:
            return "Invalid field: agenda"
        return None

    def _create(self, r: Request, user: dict[str, Any]) -> Response:
        body = r.json
        invalid = self._invalid(body, create=True)
        if invalid:
            return _error(400, 300, invalid)
        spent = self._spend(user["id"])
        if spent is not None:
            return spent
        with self._state:
            mid = next(self._ids)
            password = secrets.token_hex(3)
            meeting = {
                "uuid": base64.b64encode(secrets.token_bytes(16)).decode(),
                "id": mid, "host_id": user["id"], "host_email": user["email"],
                "topic": body.get("topic", "Zoom meeting"), "type": body.get("type", 2),
                "status": "waiting", "start_time": body.get("start_time"),
                "duration": body.get("duration", 60),
                "timezone": body.get("timezone", user["timezone"]),
                "agenda": body.get("agenda", ""), "created_at": _fmt(self.now()),
                "start_url": f"https://us05web.zoom.us/s/{mid}?zak=fake",
                "join_url": f"https://us05web.zoom.us/j/{mid}?pwd={password}",
                "password": password, "settings": dict(body.get("settings") or {}),
                "_seq": len(self.meetings),
            }
            self.meetings[mid] = meeting
            lose = self.lose_create_answers > 0
            if lose:
                self.lose_create_answers -= 1
        if lose:
            if self.lose_delay:
                time.sleep(self.lose_delay)
            return Response(502, b"<html>502 Bad Gateway</html>",
                            {"Content-Type": "text/html"})
        return Response(201, self._public(meeting))

    @staticmethod
    def _public(meeting: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in meeting.items() if not k.startswith("_")}

    def _list(self, r: Request, user: dict[str, Any]) -> Response:
        kind = r.query.get("type", "scheduled")
        if kind not in ("scheduled", "live", "upcoming", "upcoming_meetings",
                        "previous_meetings"):
            return _error(400, 300, "Invalid field: type")
        try:
            size = min(int(r.query.get("page_size", "30")), self.max_page_size)
            start = int(r.query.get("next_page_token") or "0")
            low = date.fromisoformat(r.query["from"]) if "from" in r.query else None
            high = date.fromisoformat(r.query["to"]) if "to" in r.query else None
        except ValueError:
            return _error(400, 300, "Invalid field")
        now = self.now()
        chosen = []
        for m in sorted(self.live_meetings(), key=lambda m: m["_seq"]):
            if m["host_id"] != user["id"] or m["type"] not in (2, 8):
                continue
            at = datetime.fromisoformat(m["start_time"].replace("Z", "+00:00"))
            if kind.startswith("upcoming") and at < now:
                continue
            if (low and at.date() < low) or (high and at.date() > high):
                continue
            chosen.append(m)
        page = chosen[start:start + size]
        following = start + size if start + size < len(chosen) else None
        listed = [{k: m[k] for k in ("uuid", "id", "host_id", "topic", "type", "start_time",
                                     "duration", "timezone", "agenda", "created_at",
                                     "join_url")} for m in page]
        return Response(200, {"page_size": size, "total_records": len(chosen),
                              "next_page_token": str(following) if following else "",
                              "meetings": listed})

    def _meeting(self, r: Request, mid: int) -> Response:
        meeting = self.meetings.get(mid)
        if meeting is None or mid in self.deleted:
            return _error(404, 3001, f"Meeting {mid} is not found or has expired.")
        if r.method == "GET":
            return Response(200, self._public(meeting))
        if r.method == "PATCH":
            body = r.json
            invalid = self._invalid(body, create=False)
            if invalid:
                return _error(400, 300, invalid)
            spent = self._spend(meeting["host_id"])
            if spent is not None:
                return spent
            with self._state:
                for key in ("topic", "start_time", "duration", "timezone", "agenda"):
                    if key in body:
                        meeting[key] = body[key]
                meeting.setdefault("_updates", 0)
                meeting["_updates"] += 1
            return Response(204)
        if r.method == "DELETE":
            with self._state:
                self.deleted.add(mid)
            return Response(204)
        return _error(405, 405, "Method not allowed")
