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
    # Publishing happens on a daemon thread, never in the request: a slow or down broker
    # must not hold a webhook answer past Shopify's 5 seconds. Kicks that arrive while
    # one is being published coalesce into the next publish.
    wanted = threading.Event()
    lock = threading.Lock()
    holder: dict[str, Any] = {}

    def publish_forever() -> None:
        app = None
        while True:
            wanted.wait()
            wanted.clear()
            try:
                if app is None:
                    from engine.tasks import make_celery

                    app = make_celery(config)
                app.send_task("consultbook.relay_outbox", retry=False)
            except Exception as exc:  # best effort: the periodic relay catches up
                log.warning("could not kick the outbox relay (%s); the periodic relay will "
                            "pick the work up", exc)

    def kick() -> None:
        with lock:
            thread = holder.get("thread")
            if thread is None or not thread.is_alive():
                thread = holder["thread"] = threading.Thread(
                    target=publish_forever, name="consultbook-kick", daemon=True)
                thread.start()
        wanted.set()

    return kick
