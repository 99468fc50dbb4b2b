"""A service's first notification can arrive before the job has stored the channel it
just opened (Google sends its ``sync`` handshake right after ``events.watch``): the
endpoint then remembers the id as an unknown channel of the shop while the job stores
it. Whichever commits first, the job's live channel wins and neither side fails -- on
PostgreSQL, where the two transactions really overlap, as on SQLite."""

from __future__ import annotations

import threading
import time
from typing import Any

import sqlalchemy as sa

from engine.bootstrap import Context
from engine.providers.push import LIVE, ORPHAN, Channel, ChannelStore
from engine.services.shops import ShopRef
from plugins.calendar_google.push import CHANNELS

NOW = 1_800_000_000


def channel(shop: ShopRef, cid: str) -> Channel:
    return Channel(id=cid, shop_id=shop.id, expert_id="exp_1", calendar="ada@example.com",
                   secret_hash="h" * 64, expires_at=NOW + 86400, created_at=NOW,
                   resource_id="res-1")


def state(ctx: Context, cid: str) -> str | None:
    with ctx.db.engine.connect() as conn:
        return conn.execute(sa.select(CHANNELS.c.state).where(CHANNELS.c.id == cid)).scalar()


def in_background(work: Any) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def test_the_job_stores_its_channel_while_the_endpoint_records_it_unknown(
        ctx: Context, shop: ShopRef) -> None:
    store = ChannelStore(ctx.db, CHANNELS)
    store.add(channel(shop, "cb-existing"))  # the shop has channels: orphans are kept
    cid = f"cb-{shop.id}-0001"
    with ctx.db.engine.connect() as conn:
        tx = conn.begin()
        # The endpoint's transaction: the unknown id recorded, not committed yet.
        conn.execute(sa.insert(CHANNELS).values(
            id=cid, shop_id=shop.id, expert_id="", calendar="", secret_hash="",
            resource_id="res-1", state=ORPHAN, expires_at=NOW + 86400, created_at=NOW))
        thread, errors = in_background(lambda: store.add(channel(shop, cid)))
        time.sleep(0.5)  # the job's write waits on the endpoint's (PostgreSQL, SQLite)
        tx.commit()
    thread.join(10)
    assert not errors, errors
    assert state(ctx, cid) == LIVE


def test_the_endpoint_records_an_id_the_job_is_storing(ctx: Context, shop: ShopRef) -> None:
    store = ChannelStore(ctx.db, CHANNELS)
    store.add(channel(shop, "cb-existing"))
    cid = f"cb-{shop.id}-0002"
    live = channel(shop, cid)
    with ctx.db.engine.connect() as conn:
        tx = conn.begin()
        # The job's transaction: the channel stored, not committed yet.
        conn.execute(sa.insert(CHANNELS).values(**live.__dict__))
        thread, errors = in_background(
            lambda: store.add_orphan(shop.id, cid, "res-1", NOW, NOW + 86400))
        time.sleep(0.5)
        tx.commit()
    thread.join(10)
    assert not errors, errors
    assert state(ctx, cid) == LIVE
