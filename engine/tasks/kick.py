"""What a web process calls after committing work for the worker (``Context.after_commit``).

With a broker: publish ``consultbook.relay_outbox`` (best effort -- if Redis is down the
periodic relay still finds the row; the request never fails for it). Without one: wake
the in-process worker of this process, if it runs one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.config import Config

log = logging.getLogger("consultbook.worker")


def kicker(config: Config) -> Callable[[], None]:
    """The ``after_commit`` callable for ``config``."""
    if not config.broker_url:
        from engine import embedded

        return embedded.wake
    lock = threading.Lock()
    holder: dict[str, Any] = {}

    def kick() -> None:
        try:
            with lock:
                app = holder.get("app")
                if app is None:
                    from engine.tasks import make_celery

                    app = holder["app"] = make_celery(config)
            app.send_task("consultbook.relay_outbox")
        except Exception as exc:  # best effort: the periodic relay catches up
            log.warning("could not kick the outbox relay (%s); the periodic relay will pick "
                        "the work up", exc)

    return kick
