"""The Celery app for ``celery -A engine.tasks.worker worker|beat``, from the environment.

``consultbook worker`` / ``consultbook beat`` are the usual way to run it; this module
exists for operators who prefer Celery's own command line.
"""

from __future__ import annotations

from engine.config import from_env
from engine.tasks import make_celery

app = make_celery(from_env())
