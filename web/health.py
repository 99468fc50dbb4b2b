"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

import falcon
from sqlalchemy import text

from engine.bootstrap import Context


class Healthz:
    """The process is up and answering; touches nothing else."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


class Readyz:
    """The database and (when configured) the broker answer."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        checks: dict[str, str] = {}
        try:
            with self.ctx.db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unavailable: {type(exc).__name__}"
        if self.ctx.config.broker_url:
            checks["broker"] = _ping_broker(self.ctx.config.broker_url)
        else:
            checks["broker"] = "embedded"
        ready = all(v in {"ok", "embedded"} for v in checks.values())
        resp.status = falcon.HTTP_200 if ready else falcon.HTTP_503
        resp.media = ({"status": "ready", "checks": checks} if ready else
                      {"error": {"code": "not_ready",
                                 "message": "a dependency is unavailable"}, "checks": checks})


def _ping_broker(url: str) -> str:
    if not url.startswith(("redis://", "rediss://")):
        return "ok (not checked)"
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        client.ping()
        client.close()
        return "ok"
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"


def register(app: falcon.App, ctx: Context) -> None:
    app.add_route("/healthz", Healthz())
    app.add_route("/readyz", Readyz(ctx))
