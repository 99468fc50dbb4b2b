"""The availability answer cache is never stale across processes (issue 14).

Two app instances in two processes over one database (SQLite file, PostgreSQL): this
test process (A) takes holds and books; a second Python process (B, its own
``bootstrap`` and app, its own answer cache, warmed first) answers availability. The
very next answer from B after a write through A reflects it: a hold hides its slot, a
release shows it again, a hold's expiry shows it again with no write at all (the clock
alone), and a catalog change through A is seen by B within the read cache's second.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from engine.bootstrap import Context
from engine.clock import FixedClock
from engine.services.shops import ShopRef
from tests.conftest import API_SECRET, KEY, Admin, Storefront, make_catalog, proxy_query

# Process B: reads "<clock iso>\t<query string>" lines, answers each with one JSON line
# {"status": ..., "slots": [start, ...]} from its own app.
_B = textwrap.dedent("""
    import json, os, sys
    from datetime import datetime
    import falcon.testing
    from engine.bootstrap import bootstrap
    from engine.clock import FixedClock
    from engine.config import Config
    from web.app import create_app
    config = Config(database_url=os.environ["B_DB"], api_key="test-api-key",
                    api_secret=os.environ["B_SECRET"], encryption_keys=(os.environ["B_KEY"],))
    clock = FixedClock(datetime.fromisoformat(os.environ["B_NOW"]))
    ctx = bootstrap(config, clock=clock)
    client = falcon.testing.TestClient(create_app(ctx))
    print("ready", flush=True)
    for line in sys.stdin:
        at, query = line.rstrip("\\n").split("\\t", 1)
        clock.set(datetime.fromisoformat(at))
        r = client.simulate_get("/proxy/availability", query_string=query)
        slots = [s["start"] for s in r.json["slots"]] if r.status_code == 200 else []
        print(json.dumps({"status": r.status_code, "slots": slots,
                          "cached": len(ctx.db.answers._entries)}), flush=True)
""")


class Other:
    """Process B."""

    def __init__(self, db_url: str, now: datetime) -> None:
        env = {**os.environ, "B_DB": db_url, "B_SECRET": API_SECRET, "B_KEY": KEY,
               "B_NOW": now.isoformat()}
        self.proc = subprocess.Popen([sys.executable, "-c", _B], env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     cwd=os.path.dirname(os.path.dirname(__file__)))
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "ready\n"

    def ask(self, at: datetime, query: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{at.isoformat()}\t{query}\n")
        self.proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self.proc.stdout.readline())
        assert answer["status"] == 200, answer
        return answer

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()


@pytest.fixture
def other(ctx: Context, shop: ShopRef) -> Iterator[Other]:
    b = Other(ctx.db.url, ctx.clock.now())
    yield b
    b.close()


TUE_9 = "2026-12-01T08:00:00Z"  # Tuesday 09:00 Berlin


def test_a_hold_via_one_process_is_in_the_very_next_answer_of_the_other(
        ctx: Context, admin: Admin, store: Storefront, shop: ShopRef, other: Other) -> None:
    cat = make_catalog(admin)
    clock = ctx.clock
    assert isinstance(clock, FixedClock)

    def ask() -> dict[str, Any]:
        return other.ask(clock.now(), proxy_query(ctx, shop.domain, {
            "service": cat["service"], "start": "2026-12-01", "days": "31"}))

    first = ask()
    assert TUE_9 in first["slots"]
    assert ask()["slots"] == first["slots"] and ask()["cached"] >= 1  # B serves it cached

    hold = store.hold(cat["service"], cat["expert"], TUE_9)  # through process A
    assert hold.status_code == 201, hold.text
    after_hold = ask()
    assert TUE_9 not in after_hold["slots"]
    assert len(after_hold["slots"]) == len(first["slots"]) - 1

    assert store.release(hold.json["hold"]).status_code == 204
    assert TUE_9 in ask()["slots"]

    # A hold lapses by the clock alone (no write): B's cached answer must not outlive it.
    again = store.hold(cat["service"], cat["expert"], TUE_9)
    assert again.status_code == 201, again.text
    assert TUE_9 not in ask()["slots"]
    expires = datetime.fromisoformat(again.json["expires_at"].replace("Z", "+00:00"))
    clock.set(expires - timedelta(seconds=1))
    assert TUE_9 not in ask()["slots"]
    clock.set(expires)
    assert TUE_9 in ask()["slots"]


def test_notice_thresholds_move_the_answer_to_the_second(
        ctx: Context, admin: Admin, shop: ShopRef, other: Other) -> None:
    """A slot leaves the answer the second its notice runs out, though nothing was
    written: the cached answer is valid only until then."""
    cat = make_catalog(admin)
    svc = cat["service"]
    assert admin("PATCH", f"/services/{svc}", {"min_notice_minutes": 60}).status_code == 200
    clock = ctx.clock
    assert isinstance(clock, FixedClock)
    # Monday 2026-11-30 12:00Z = 13:00 Berlin; notice 60 min: 14:00 Berlin (13:00Z) first.
    q = {"service": svc, "start": "2026-11-30", "days": "2"}
    at = clock.now()
    slots = other.ask(at, proxy_query(ctx, shop.domain, q))["slots"]
    assert slots[0] == "2026-11-30T13:00:00Z"
    # The engine sees whole seconds: 12:00:00.999 still offers 13:00Z, 12:00:01 does not.
    clock.set(at + timedelta(microseconds=999_999))
    assert other.ask(clock.now(), proxy_query(ctx, shop.domain, q))["slots"] == slots
    clock.set(at + timedelta(seconds=1))
    slots = other.ask(clock.now(), proxy_query(ctx, shop.domain, q))["slots"]
    assert slots[0] == "2026-11-30T13:30:00Z"


def test_the_processes_own_route_agrees_with_an_uncached_answer(
        ctx: Context, admin: Admin, store: Storefront, shop: ShopRef, other: Other) -> None:
    """After a run of holds and releases through A, B's (cached) answer is the answer
    computed afresh."""
    from engine.services import availability

    cat = make_catalog(admin, experts=2)
    query = {"service": cat["service"], "start": "2026-12-01", "days": "7"}
    held = []
    for k in range(4):
        start = f"2026-12-0{1 + k}T09:00:00Z"
        other.ask(ctx.clock.now(), proxy_query(ctx, shop.domain, query))
        r = store.hold(cat["service"], cat["experts"][k % 2], start, ip=f"203.0.113.{k}")
        assert r.status_code == 201, r.text
        held.append(r.json["hold"])
    store.release(held[1])
    fresh = availability.availability(ctx.db, ctx.clock, shop, availability.AvailabilityQuery(
        cat["service"], datetime(2026, 12, 1).date(), 7))
    got = other.ask(ctx.clock.now(), proxy_query(ctx, shop.domain, query))["slots"]
    assert got == [s["start"] for s in fresh["slots"]]
