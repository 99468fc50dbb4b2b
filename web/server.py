"""`consultbook serve`: the app under gunicorn, a production-grade WSGI server."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from engine.config import Config


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, config: Config, options: dict[str, Any]) -> None:
        self.config_ = config
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from web.app import get_app

        return get_app(self.config_)


def serve(config: Config, *, host: str, port: int, workers: int) -> None:
    """Run until interrupted. Each worker process builds its own app (engine, pool)."""
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread" if workers > 0 else "sync",
        "threads": 4,
        "accesslog": None,  # per-request logging halves throughput; errors still log
        "errorlog": "-",
        "loglevel": "warning",
        "timeout": 30,
        "graceful_timeout": 10,
        "keepalive": 5,
        "proc_name": "consultbook",
    }
    _Gunicorn(config, options).run()
