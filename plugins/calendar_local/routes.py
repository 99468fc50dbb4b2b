"""The local calendar's admin resources (registered through ``consultbook_register_routes``
with ``auth="admin"``: the host authenticates the session token and puts the shop in
``req.context.shop``)."""

from __future__ import annotations

from typing import Any

from engine.providers import RouteHost
from plugins.calendar_local import service


class _Admin:
    def __init__(self, host: RouteHost) -> None:
        self.host = host


class BusyBlocks(_Admin):
    def on_get(self, req: Any, resp: Any) -> None:
        resp.media = {"busy": service.list_blocks(self.host, req.context.shop.id,
                                                  self.host.query_params(req))}

    def on_post(self, req: Any, resp: Any) -> None:
        resp.media = service.add_block(self.host, req.context.shop.id,
                                       self.host.read_json(req))
        resp.status = "201 Created"


class BusyBlock(_Admin):
    def on_delete(self, req: Any, resp: Any, item_id: str) -> None:
        service.delete_block(self.host, req.context.shop.id, item_id)
        resp.status = "204 No Content"


class Feeds(_Admin):
    def on_get(self, req: Any, resp: Any) -> None:
        resp.media = {"feeds": service.list_feeds(self.host, req.context.shop.id)}

    def on_post(self, req: Any, resp: Any) -> None:
        resp.media = service.add_feed(self.host, req.context.shop.id, self.host.read_json(req))
        resp.status = "201 Created"


class Feed(_Admin):
    def on_delete(self, req: Any, resp: Any, item_id: str) -> None:
        service.delete_feed(self.host, req.context.shop.id, item_id)
        resp.status = "204 No Content"


class FeedRefresh(_Admin):
    def on_post(self, req: Any, resp: Any, item_id: str) -> None:
        resp.media = service.refresh_feed(self.host, req.context.shop.id, item_id)
