"""The host's ``TZ`` never changes a result.

The same scenarios run in fresh interpreters under ``TZ=UTC``, ``TZ=Pacific/Chatham``
(+12:45/+13:45) and ``TZ=America/St_Johns`` (-03:30/-02:30): the slot engine over the
awkward zones across their offset changes, and ``GET /proxy/availability`` through the
Falcon app on SQLite. The JSON each run prints must be byte-identical.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

HOST_ZONES = ("UTC", "Pacific/Chatham", "America/St_Johns")

SCRIPT = textwrap.dedent('''
    import json, sys, time
    from datetime import UTC, date, datetime, timedelta
    from zoneinfo import ZoneInfo

    from engine.domain.slots import (ExpertCalendar, ServiceRules, expert_slots, is_offered,
                                     local_windows, merged_slots, wall_to_instant)

    ZONES = ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu",
             "Australia/Lord_Howe", "Pacific/Apia", "Europe/Dublin", "Pacific/Chatham",
             "America/St_Johns", "UTC"]
    DAY = 86400

    def transition_days(tz, year):
        t = int(datetime(year, 1, 1, tzinfo=UTC).timestamp())
        end = int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp())
        off, out = datetime.fromtimestamp(t, tz).utcoffset(), []
        while t < end:
            t += 3600
            now = datetime.fromtimestamp(t, tz).utcoffset()
            if now != off:
                out.append(datetime.fromtimestamp(t, tz).date())
                off = now
        return out or [date(year, 6, 1)]

    def utc(ts):
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    out = {"engine": {}, "host": {"tz": time.tzname, "offset": time.timezone}}
    weekly = {d: [(0, 300), (540, 1020), (1320, 1440)] for d in range(7)}
    rules = [ServiceRules(duration=30, interval=30),
             ServiceRules(duration=45, interval=25, buffer_before=10, buffer_after=5,
                          min_notice=90, max_days_ahead=400)]
    cals = []
    for name in ZONES:
        tz = ZoneInfo(name)
        days = transition_days(tz, 2026) + ([date(2011, 12, 30)] if "Apia" in name else [])
        mid = days[0]
        first = int(datetime(mid.year, mid.month, mid.day, tzinfo=UTC).timestamp())
        busy = [(first + k * 7919, first + k * 7919 + 1800) for k in range(0, 40, 3)]
        cal = ExpertCalendar(expert_id=name, tz=tz, weekly=weekly,
                             overrides={days[-1]: [(60, 200)]}, busy=busy)
        cals.append(cal)
        entry = out["engine"][name] = {}
        for d in days:
            a = int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()) - DAY
            b = a + 3 * DAY
            now = a - 2 * DAY
            entry[d.isoformat()] = {
                "windows": [[utc(x), utc(y), str(z)] for x, y, z in
                            local_windows(tz, weekly, cal.overrides, d - timedelta(1),
                                          d + timedelta(1))],
                "edges": [wall_to_instant(tz, d, m, edge=e) for m in (0, 90, 120, 150, 1440)
                          for e in ("start", "end")],
                "slots": [[[utc(s.start), utc(s.end), datetime.fromtimestamp(s.start,
                           tz).isoformat()] for s in expert_slots(cal, r, now=now,
                           range_start=a, range_end=b)] for r in rules],
                "offered": [is_offered(cal, rules[1], now=now, start=t)
                            for t in range(a, b, 1500)],
            }
    a = int(datetime(2026, 3, 25, tzinfo=UTC).timestamp())
    out["merged"] = [[utc(s.start), s.expert_id] for s in merged_slots(
        cals, rules[0], now=a - DAY, range_start=a, range_end=a + 14 * DAY)]

    # The HTTP path: a shop in Chatham, experts in St John's and Berlin, across DST.
    if len(sys.argv) > 1:
        import falcon.testing
        from urllib.parse import urlencode
        from engine.bootstrap import bootstrap
        from engine.clock import FixedClock
        from engine.config import Config
        from engine.crypto import generate_key
        from engine.services.shops import install_shop
        from engine.shopify import encode_session_token, sign_proxy
        from engine.store.migrate import upgrade
        from web.app import create_app

        secret, key = "shpss_" + "0" * 32, "test-api-key"
        config = Config(database_url=f"sqlite:///{sys.argv[1]}", api_key=key,
                        api_secret=secret, encryption_keys=(generate_key(),))
        clock = FixedClock(datetime(2026, 1, 10, 12, tzinfo=UTC))
        ctx = bootstrap(config, clock=clock)
        upgrade(ctx.db.engine)
        domain = "tz.myshopify.com"
        install_shop(ctx.db, clock, ctx.keyring, domain, "Pacific/Chatham")
        client = falcon.testing.TestClient(create_app(ctx))
        now = int(clock.now().timestamp())
        headers = {"Authorization": "Bearer " + encode_session_token(
            domain, api_key=key, api_secret=secret, now=now)}

        def admin(method, path, body):
            r = client.simulate_request(method, "/admin/api" + path, json=body,
                                        headers=headers)
            assert r.status_code < 300, (path, r.status_code, r.text)
            return r.json

        svc = admin("POST", "/services", {"title": "Call", "duration_minutes": 45,
                                          "interval_minutes": 30, "buffer_after_minutes": 15,
                                          "max_days_ahead": 365})["id"]
        names = {}
        for name, tz in (("ann", "America/St_Johns"), ("bob", "Europe/Berlin")):
            e = admin("POST", "/experts", {"name": name, "timezone": tz,
                                           "services": [svc]})["id"]
            names[e] = name
            admin("PUT", f"/experts/{e}/schedule", {
                "weekly": {d: [["00:00", "04:00"], ["09:00", "12:00"], ["22:00", "24:00"]]
                           for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
                "overrides": [{"date": "2026-03-29", "windows": [["01:30", "03:30"]]}]})
        http = {}
        for start, days, tz in (("2026-03-07", 3, None), ("2026-03-28", 3, "Asia/Kathmandu"),
                                ("2026-04-04", 3, "Australia/Lord_Howe"),
                                ("2026-09-26", 3, None), ("2026-10-24", 3, "UTC"),
                                ("2026-10-31", 3, "America/St_Johns")):
            params = {"service": svc, "start": start, "days": str(days), "shop": domain,
                      "path_prefix": "/apps/consult", "timestamp": str(now)}
            if tz:
                params["tz"] = tz
            params["signature"] = sign_proxy(params, secret)
            r = client.simulate_get("/proxy/availability", query_string=urlencode(params))
            assert r.status_code == 200, r.text
            body = r.json
            keys = [(s["start"], s["expert"]) for s in body["slots"]]
            assert keys == sorted(keys)
            for s in body["slots"]:
                s["expert"] = names[s["expert"]]  # ids are random per run: name them
            body["slots"].sort(key=lambda s: (s["start"], s["expert"]))
            http[start] = body
        out["http"] = http
        ctx.db.dispose()

    print(json.dumps(out, sort_keys=True))
''')


def _start(host_tz: str, db: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "TZ": host_tz}
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(db)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=Path(__file__).resolve().parents[2])


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict[str, Any], str]]:
    """host TZ -> (what the process saw of its zone, the result JSON without it)."""
    base = tmp_path_factory.mktemp("host_tz")
    procs = {tz: _start(tz, base / f"{tz.replace('/', '_')}.db") for tz in HOST_ZONES}
    out = {}
    for tz, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 0, stderr
        payload = json.loads(stdout)
        host = payload.pop("host")
        out[tz] = (host, json.dumps(payload, sort_keys=True))
    return out


def test_the_host_zone_really_differs(outputs: dict[str, tuple[dict[str, Any], str]]) -> None:
    offsets = {tz: host["offset"] for tz, (host, _) in outputs.items()}
    assert len(set(offsets.values())) == len(HOST_ZONES), offsets


def test_results_are_byte_identical_under_every_host_tz(
        outputs: dict[str, tuple[dict[str, Any], str]]) -> None:
    texts = {tz: text for tz, (_, text) in outputs.items()}
    reference = texts["UTC"]
    data = json.loads(reference)
    # The scenarios are not vacuous: slots on both sides of offset changes, and over HTTP.
    assert sum(len(s) for z in data["engine"].values() for d in z.values()
               for s in d["slots"]) > 1000
    assert data["merged"]
    assert all(body["slots"] for body in data["http"].values())
    for tz, text in texts.items():
        assert text == reference, f"TZ={tz} differs from TZ=UTC"
