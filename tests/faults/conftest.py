"""One PostgreSQL cluster of their own for all the fault tests (creating, starting and
dropping a cluster takes seconds), each test on a new empty database in it. A test that
stops the cluster (test_postgres_restart.py) finds it running again before the next.

Under pytest-xdist the fault tests run one after another on one worker (the ``faults``
group, tests/conftest.py): they start gunicorn, Celery and beat, and time their answers.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.topology import OwnPostgres


@pytest.fixture(scope="session")
def _fault_cluster() -> Iterator[OwnPostgres]:
    pg = OwnPostgres()
    try:
        yield pg
    finally:
        pg.drop()


@pytest.fixture
def own_postgres(_fault_cluster: OwnPostgres) -> Iterator[OwnPostgres]:
    """The shared fault cluster, running, with an empty database of this test's."""
    pg = _fault_cluster
    if not pg.running():
        pg.start()
    pg.new_database()
    yield pg
    if not pg.running():  # the test stopped it and failed before starting it again
        pg.start()
