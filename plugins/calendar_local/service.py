"""Busy blocks and ICS feeds of the local calendar, as its admin routes manage them.

Everything here takes the host (:class:`engine.providers.PluginHost`: storage, secrets,
clock, experts) as an argument -- the plugin imports nothing of the engine but the
contract.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from engine.providers import ExpertInfo, NotFound, PluginHost, ValidationError
from plugins.calendar_local import ics
from plugins.calendar_local.models import IcsFeed, LocalBusyBlock, feed_url_aad

IMPORT_HORIZON = timedelta(days=400)
MAX_BLOCK = timedelta(days=366)
_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_id(prefix: str) -> str:
    """``<prefix>_<random>`` within 32 characters (the tables' id width)."""
    return f"{prefix}_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(20))


def iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_instant(name: str, value: Any) -> datetime:
    if not isinstance(value, str) or not value.endswith("Z") or len(value) > 40:
        raise ValidationError(f"{name} must be an ISO-8601 UTC instant ending in Z", field=name)
    try:
        at = datetime.fromisoformat(value[:-1] + "+00:00")
    except ValueError:
        raise ValidationError(f"{name} is not an ISO-8601 instant", field=name) from None
    return at.astimezone(UTC)


def _expert(host: PluginHost, shop_id: str, expert_id: Any) -> tuple[ExpertInfo, ZoneInfo]:
    expert = host.expert(shop_id, expert_id) if isinstance(expert_id, str) else None
    if expert is None:
        raise NotFound(f"no expert {expert_id!r}")
    return expert, ZoneInfo(expert.timezone)


def _render_block(b: LocalBusyBlock) -> dict[str, Any]:
    return {"id": b.id, "expert": b.expert_id, "start": iso(b.start), "end": iso(b.end),
            "summary": b.summary, "feed": b.feed_id}


def list_blocks(host: PluginHost, shop_id: str, params: dict[str, str]) -> list[dict[str, Any]]:
    q = select(LocalBusyBlock).where(LocalBusyBlock.shop_id == shop_id)
    if params.get("expert"):
        q = q.where(LocalBusyBlock.expert_id == params["expert"])
    if params.get("from"):
        q = q.where(LocalBusyBlock.end > parse_instant("from", params["from"]))
    if params.get("to"):
        q = q.where(LocalBusyBlock.start < parse_instant("to", params["to"]))
    with host.db.read() as session:
        rows = session.scalars(q.order_by(LocalBusyBlock.start, LocalBusyBlock.id)
                               .limit(5000)).all()
        return [_render_block(b) for b in rows]


def add_block(host: PluginHost, shop_id: str, doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ValidationError("the body must be a JSON object")
    unknown = set(doc) - {"expert", "start", "end", "summary"}
    if unknown:
        raise ValidationError(f"unknown field {sorted(unknown)[0]}", field=sorted(unknown)[0])
    start, end = parse_instant("start", doc.get("start")), parse_instant("end", doc.get("end"))
    if end <= start:
        raise ValidationError("end must be after start", field="end")
    if end - start > MAX_BLOCK:
        raise ValidationError("a busy block lasts at most a year", field="end")
    summary = doc.get("summary")
    if summary is not None and (not isinstance(summary, str) or len(summary) > 255):
        raise ValidationError("summary must be text of at most 255 characters", field="summary")
    _expert(host, shop_id, doc.get("expert"))
    with host.db.write() as session:
        block = LocalBusyBlock(id=new_id("busy"), shop_id=shop_id, expert_id=doc["expert"],
                               start=start, end=end, summary=summary,
                               created_at=host.clock.now())
        session.add(block)
        session.flush()
        rendered = _render_block(block)
    host.invalidate_busy(shop_id, doc["expert"])
    return rendered


def delete_block(host: PluginHost, shop_id: str, block_id: str) -> None:
    with host.db.write() as session:
        block = session.get(LocalBusyBlock, block_id)
        if block is None or block.shop_id != shop_id:
            raise NotFound(f"no busy block {block_id!r}")
        if block.feed_id is not None:
            raise ValidationError("this block comes from an ICS feed; remove the feed instead",
                                  code="imported_block")
        expert_id = block.expert_id
        session.delete(block)
    host.invalidate_busy(shop_id, expert_id)


def _render_feed(f: IcsFeed) -> dict[str, Any]:
    # The URL is a secret (private feed addresses embed a key): never shown back.
    return {"id": f.id, "expert": f.expert_id, "name": f.name, "kind": "url" if f.url else "file",
            "events": f.events, "last_fetched_at": iso(f.last_fetched_at)
            if f.last_fetched_at else None, "last_error": f.last_error}


def list_feeds(host: PluginHost, shop_id: str) -> list[dict[str, Any]]:
    with host.db.read() as session:
        rows = session.scalars(select(IcsFeed).where(IcsFeed.shop_id == shop_id)
                               .order_by(IcsFeed.created_at, IcsFeed.id)).all()
        return [_render_feed(f) for f in rows]


def _import(host: PluginHost, session: Session, feed: IcsFeed, data: bytes,
            tz: ZoneInfo) -> None:
    now = host.clock.now()
    busy = ics.busy_from_ics(data, tz, now - timedelta(days=1), now + IMPORT_HORIZON)
    session.execute(delete(LocalBusyBlock).where(LocalBusyBlock.feed_id == feed.id))
    session.add_all(LocalBusyBlock(id=new_id("busy"), shop_id=feed.shop_id,
                                   expert_id=feed.expert_id, start=s, end=e, summary=summary,
                                   feed_id=feed.id, created_at=now) for s, e, summary in busy)
    feed.events, feed.last_fetched_at, feed.last_error = len(busy), now, None


def _fetch(host: PluginHost, url: str) -> bytes:
    return ics.fetch(url, timeout=host.option("provider_timeout_seconds", 10.0),
                     allow_private=bool(host.option("ics_allow_private_hosts", False)),
                     verify=host.option("provider_ca_bundle") or True)


def add_feed(host: PluginHost, shop_id: str, doc: Any) -> dict[str, Any]:
    """Add an ICS feed (``url``) or import a file (``ics``: the text) for an expert."""
    if not isinstance(doc, dict):
        raise ValidationError("the body must be a JSON object")
    unknown = set(doc) - {"expert", "url", "ics", "name"}
    if unknown:
        raise ValidationError(f"unknown field {sorted(unknown)[0]}", field=sorted(unknown)[0])
    url, text = doc.get("url"), doc.get("ics")
    if (url is None) == (text is None):
        raise ValidationError("give either url (a feed address) or ics (the file's text)")
    if url is not None and not isinstance(url, str):
        raise ValidationError("url must be text", field="url")
    if text is not None and (not isinstance(text, str) or len(text) > ics.MAX_BYTES):
        raise ValidationError("ics must be the text of an .ics file (at most 5 MiB)",
                              field="ics")
    name = doc.get("name") or ("Calendar feed" if url else "Imported calendar")
    if not isinstance(name, str) or len(name) > 255:
        raise ValidationError("name must be text of at most 255 characters", field="name")
    _, tz = _expert(host, shop_id, doc.get("expert"))
    if url is not None:
        url = ics.normalize_url(url)
        data = _fetch(host, url)
    else:
        data = (text or "").encode("utf-8")
    _expert(host, shop_id, doc.get("expert"))  # still there after the fetch
    with host.db.write() as session:
        feed = IcsFeed(id=new_id("feed"), shop_id=shop_id, expert_id=doc["expert"], name=name,
                       events=0, created_at=host.clock.now())
        if url is not None:
            feed.url = host.secrets.encrypt(url, aad=feed_url_aad(feed.id))
        session.add(feed)
        session.flush()
        _import(host, session, feed, data, tz)
        session.flush()
        rendered = _render_feed(feed)
    host.invalidate_busy(shop_id, doc["expert"])
    return rendered


def delete_feed(host: PluginHost, shop_id: str, feed_id: str) -> None:
    with host.db.write() as session:
        feed = session.get(IcsFeed, feed_id)
        if feed is None or feed.shop_id != shop_id:
            raise NotFound(f"no feed {feed_id!r}")
        expert_id = feed.expert_id
        session.execute(delete(LocalBusyBlock).where(LocalBusyBlock.feed_id == feed_id))
        session.delete(feed)
    host.invalidate_busy(shop_id, expert_id)


def refresh_feed(host: PluginHost, shop_id: str, feed_id: str) -> dict[str, Any]:
    """Fetch a URL feed again and replace its blocks. A failure keeps the old blocks and
    records the error (shown to the merchant)."""
    with host.db.read() as session:
        feed = session.get(IcsFeed, feed_id)
        if feed is None or feed.shop_id != shop_id:
            raise NotFound(f"no feed {feed_id!r}")
        if feed.url is None:
            return _render_feed(feed)
        url = host.secrets.decrypt(feed.url, aad=feed_url_aad(feed.id))
        expert_id = feed.expert_id
    try:
        data = _fetch(host, url)
        error = None
    except ics.FeedError as exc:
        data, error = b"", exc.message
    _, tz = _expert(host, shop_id, expert_id)
    with host.db.write() as session:
        feed = session.get(IcsFeed, feed_id)
        if feed is None:
            raise NotFound(f"no feed {feed_id!r}")
        if error is None:
            try:
                _import(host, session, feed, data, tz)
            except ics.FeedError as exc:
                error = exc.message
        if error is not None:
            feed.last_error = error
        session.flush()
        rendered = _render_feed(feed)
    host.invalidate_busy(shop_id, expert_id)
    return rendered


def refresh_all_feeds(host: PluginHost) -> dict[str, int]:
    """Refresh every URL feed (the plugin's periodic job). Returns how many were tried."""
    with host.db.read() as session:
        feeds = session.execute(select(IcsFeed.id, IcsFeed.shop_id)
                                .where(IcsFeed.url.is_not(None))).all()
    for feed_id, shop_id in feeds:
        try:
            refresh_feed(host, shop_id, feed_id)
        except NotFound:
            continue
    return {"feeds": len(feeds)}
