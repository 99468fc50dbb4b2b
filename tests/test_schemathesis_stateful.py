"""Stateful schemathesis: sequences of requests that follow the document's links.

tests/test_schemathesis.py fuzzes each operation on its own; here schemathesis builds a
state machine from the OpenAPI links (web/openapi.py ``_links``) and chains what one
answer gives to the next request: a created service or expert is read, changed,
replaced and deleted (then read again: 404), an expert's hours are set and read back, a
hold is released (and again), the seeded booking is moved and cancelled. Every answer
gets the stateless test's checks (never a 5xx; status code, content type, headers and
body as documented), schemathesis' stateful ones where they apply to this API, and every
error body is ``{"error": {"code", "message"}}``.

Only the document's links are followed (schemathesis' own link inference is off), so
that the test says whether the document's links are usable. Run over the WSGI app, on
SQLite and PostgreSQL; bounded by a step count and a number of scenarios (well under a
minute per database).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.checks import ensure_resource_availability, use_after_free

from engine.services.shops import install_shop
from engine.store import db as db_module
from tests.conftest import Admin, Storefront, make_catalog, order_payload
from tests.test_schemathesis import World
from tests.test_schemathesis import world as world  # the fixture

pytestmark = pytest.mark.slow

#: The stateless test's checks, and two of schemathesis' stateful ones that hold for
#: this API: a resource answered 201 can be read, a deleted one is gone.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance,
          ensure_resource_availability, use_after_free]

SCENARIOS = 80
STEPS = 10

#: The seeded expert works Mon-Fri 09:00-17:00 in the shop's zone (Europe/Berlin) on a
#: 30-minute grid; NOW is Monday 2026-11-30 12:00 UTC. Holds and reschedules alternate
#: between generated starts and these real ones, so that 201/200 answers are checked too.
SLOT_STARTS = ("2026-12-02T09:00:00Z", "2026-12-02T10:30:00Z", "2026-12-03T13:00:00Z",
               "2026-12-04T08:00:00Z")


class ScenarioIds:
    """Stands in for ``secrets`` in engine.store.db while the test runs: the ids a
    scenario creates are its number (5 bytes) and a counter (5 bytes), base32 like the
    real ones. Lists are ordered by creation time, then id, and the clock is fixed: with
    random ids, which service is listed first (what a link reads) would change when
    Hypothesis replays a scenario, and it refuses a test whose answers change."""

    def __init__(self) -> None:
        self.scenario = self.counter = 0

    def start(self, scenario: int) -> None:
        self.scenario, self.counter = scenario, 0

    def token_bytes(self, n: int) -> bytes:
        assert n == 10, n
        self.counter += 1
        return self.scenario.to_bytes(5, "big") + self.counter.to_bytes(5, "big")


class Driver:
    """What the state machine does around each call: a fresh seeded shop per scenario,
    real ids and starts for the requests that need them (every other time), the signing,
    and the checks."""

    def __init__(self, world: World, ids: ScenarioIds) -> None:
        self.world, self.ids = world, ids
        self.scenarios = 0
        self.calls: dict[str, int] = {}
        self.labels: list[tuple[str, int]] = []

    def new_scenario(self) -> None:
        """A shop of its own with a service, an expert with hours, a hold and a booking.
        Hypothesis replays a scenario to shrink it, and expects the same answers on the
        way (what lands in which bundle decides the next draws): a scenario must not see
        the services, holds and taken slots the earlier ones left behind."""
        self.scenarios += 1
        self.ids.start(self.scenarios)
        self.calls = {}
        world = self.world
        world.shop = install_shop(world.ctx.db, world.ctx.clock, world.ctx.keyring,
                                  f"s{self.scenarios}.myshopify.com", "Europe/Berlin",
                                  access_token="shpat_s")
        client = falcon.testing.TestClient(world.app)
        catalog = make_catalog(Admin(client, world.ctx, world.shop.domain))
        store = Storefront(client, world.ctx, world.shop.domain)
        hold = store.hold(catalog["service"], catalog["expert"], "2026-12-01T09:00:00Z")
        assert hold.status_code == 201, hold.text
        paid = store.webhook("orders/paid", order_payload(1001, [hold.json["hold"]]))
        assert paid.status_code == 200, paid.text
        world.ids = {"services": catalog["service"], "experts": catalog["expert"],
                     "holds": hold.json["hold"]}

    def prepare(self, case: Any) -> None:
        path = case.operation.path
        # Counted within the scenario, so that a replayed scenario does the same.
        self.calls[path] = n = self.calls.get(path, 0) + 1
        if n % 3 == 0:
            return
        start = SLOT_STARTS[n % len(SLOT_STARTS)]
        if path == "/proxy/holds":
            case.query = {}  # signed with the shop's parameters only
            case.body = {"service": self.world.ids["services"],
                         "expert": self.world.ids["experts"], "start": start, "seats": 1}
        elif path.endswith("/reschedule") and isinstance(case.body, dict):
            case.body = {"start": start}

    def kwargs(self, case: Any) -> dict[str, Any]:
        return self.world.sign(case)

    def check(self, machine: Any, response: Any, case: Any, **kwargs: Any) -> None:
        label = f"{case.method.upper()} {case.operation.path}"
        self.labels.append((label, response.status_code))
        try:
            case.validate_response(response, checks=CHECKS,
                                   transport_kwargs=kwargs or None, recorder=machine.recorder)
            assert response.status_code < 500, (label, response.status_code,
                                                 response.text[:300])
            if response.status_code >= 400:
                _assert_error_body(label, response)
        except Exception as exc:
            # The request as sent (signed), to replay by hand against a running app.
            exc.add_note(f"{label} -> {response.status_code} {response.text[:300]}\n"
                         + case.as_curl_command(headers=dict(response.request.headers)))
            raise


def _assert_error_body(label: str, response: Any) -> None:
    content_type = _header(response, "content-type")
    if "json" not in content_type:
        return  # the book page's 400/404 are Liquid pages, as documented
    error = json.loads(response.content)["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str), (
        label, response.status_code, error)


def _header(response: Any, name: str) -> str:
    value = response.headers.get(name) or response.headers.get(name.title()) or ""
    return value[0] if isinstance(value, list) else str(value)


def machine_for(world: World, driver: Driver) -> Any:
    schema = world.schema
    schema.config.phases.stateful.inference.algorithms = []
    base = schema.as_state_machine()

    class Workflow(base):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            driver.new_scenario()

        def before_call(self, case: Any) -> None:
            driver.prepare(case)

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return driver.kwargs(case)

        def validate_response(self, response: Any, case: Any,
                              additional_checks: Any = None, **kwargs: Any) -> None:
            driver.check(self, response, case, **kwargs)

    return Workflow


@pytest.fixture
def driver(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[Driver]:
    ids = ScenarioIds()
    monkeypatch.setattr(db_module, "secrets", ids)
    yield Driver(world, ids)


#: Set in the child process :func:`test_linked_sequences_in_a_fresh_process` starts.
CHILD = "CONSULTBOOK_TEST_STATEFUL_CHILD"
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("variant", ["sqlite", "postgres"])
def test_linked_sequences_in_a_fresh_process(variant: str) -> None:
    """The state machine below, in a pytest process of its own. In full runs (pytest-xdist,
    thousands of tests before it in the worker) its derandomized draws came out different
    -- 9 hold calls, 8 of them 404, against 34 holds all 201 when run alone, whatever the
    hash seed -- so some state an earlier test leaves in the process reaches schemathesis
    or the app; which one is not found yet. A fresh process gives it the run it was
    written for."""
    if variant == "postgres" and not os.environ.get("CONSULTBOOK_TEST_POSTGRES_URL"):
        pytest.skip("CONSULTBOOK_TEST_POSTGRES_URL is not set")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    env[CHILD] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
         f"{Path(__file__).resolve()}::test_linked_sequences_conform[{variant}]"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0 and re.search(r"(^|\s)1 passed", proc.stdout), (
        proc.stdout[-6000:] + proc.stderr[-2000:])


@pytest.mark.child_process_only
def test_linked_sequences_conform(world: World, driver: Driver) -> None:
    machine = machine_for(world, driver)
    machine.run(settings=settings(
        max_examples=SCENARIOS, stateful_step_count=STEPS, derandomize=True,
        database=None, deadline=None, phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck)))
    seen = {label for label, _ in driver.labels}
    succeeded = {label for label, status in driver.labels if status < 300}
    # What the holds answered, for the failure message: a chain that never ran to its
    # DELETE says why (every hold refused, or none made).
    holds = Counter(status for label, status in driver.labels if label == "POST /proxy/holds")
    # The chains ran: creates were followed by the linked reads, changes and deletes.
    for label in ("POST /admin/api/services", "GET /admin/api/services/{item_id}",
                  "PATCH /admin/api/services/{item_id}",
                  "DELETE /admin/api/services/{item_id}", "POST /admin/api/experts",
                  "PUT /admin/api/experts/{item_id}/schedule",
                  "POST /proxy/holds", "DELETE /proxy/holds/{hold_id}"):
        assert label in seen, (label, sorted(seen), "POST /proxy/holds answered", holds)
    for label in ("GET /admin/api/services/{item_id}", "DELETE /proxy/holds/{hold_id}"):
        assert label in succeeded, (label, sorted(succeeded), "POST /proxy/holds answered",
                                    holds)
