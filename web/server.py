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

        app = get_app(self.config_)
        if not self.config_.broker_url and self.config_.embedded_worker:
            # No broker: this process also runs the worker and the scheduler (a thread;
            # every gunicorn worker runs one, the database claims keep work single).
            from engine import embedded

            embedded.start(self.config_)
        return app


def _stop_embedded_worker(server: Any, worker: Any) -> None:
    """Let the embedded worker finish the job it is on before the process goes."""
    from engine import embedded

    embedded.stop(timeout=5.0)


def serve(config: Config, *, host: str, port: int, workers: int) -> None:
    """Run until interrupted. Each worker process builds its own app (engine, pool)."""
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread" if workers > 0 else "sync",
        "threads": 4,
        # Each worker binds its own socket (SO_REUSEPORT): the kernel spreads new
        # connections over the workers, instead of one worker accepting most keep-alive
        # connections and pinning them to its single core.
        "reuse_port": True,
        "accesslog": None,  # per-request logging halves throughput; errors still log
        "errorlog": "-",
        "loglevel": "warning",
        "timeout": 30,
        "graceful_timeout": 10,
        "keepalive": 5,
        "proc_name": "consultbook",
        "worker_exit": _stop_embedded_worker,
    }
    _Gunicorn(config, options).run()
