"""A pytest plugin (``-p tests.plugins.hook_recorder``) that records, per test, which
hooks of :mod:`engine.hookspecs` the engine itself invoked on a plugin the test wrote.

It wraps every implementation written in a file under ``tests/`` and registered with a consultbook
plugin manager. A call counts only when the code calling it is the project's (``engine/``,
``web/``, ``plugins/``), found by walking past pluggy's own frames: a test that calls
``pm.hook.<name>(...)`` itself proves nothing about the engine and is not recorded.

At the end of the session it writes ``{nodeid: {"outcome": ..., "hooks": [...]}}`` as
JSON to the file named by ``CONSULTBOOK_HOOK_RECORD``. ``tests/plugins/test_meta.py``
runs the hook tests in a subprocess with this plugin and reads that file.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pluggy
import pytest

RECORD_ENV = "CONSULTBOOK_HOOK_RECORD"
ROOT = Path(__file__).resolve().parents[2]
PROJECT_DIRS = tuple(str(ROOT / d) + os.sep for d in ("engine", "web", "plugins"))
PLUGGY_DIR = str(Path(pluggy.__file__).resolve().parent) + os.sep
TESTS_DIR = str(ROOT / "tests") + os.sep
HERE = str(Path(__file__).resolve())

_current: str | None = None
_record: dict[str, dict[str, Any]] = {}


def _called_by_the_project() -> bool:
    """Whether the nearest caller outside pluggy and this module is project code."""
    frame = sys._getframe(1)
    while frame is not None:
        path = frame.f_code.co_filename
        if path != HERE and not path.startswith(PLUGGY_DIR):
            return path.startswith(PROJECT_DIRS)
        frame = frame.f_back  # type: ignore[assignment]
    return False


def _wrap(hook: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def recorded(*args: Any, **kwargs: Any) -> Any:
        if _current is not None and _called_by_the_project():
            _record.setdefault(_current, {"outcome": None, "hooks": []})["hooks"].append(hook)
        return function(*args, **kwargs)

    recorded.__consultbook_recorded__ = True  # type: ignore[attr-defined]
    return recorded


def _defined_in_tests(function: Callable[..., Any]) -> bool:
    """Whether a hook implementation was written in a file under tests/ (by file, since
    pytest may import test modules under names other than ``tests.*``)."""
    code = getattr(getattr(function, "__func__", function), "__code__", None)
    return code is not None and str(Path(code.co_filename).resolve()).startswith(TESTS_DIR)


_original_register = pluggy.PluginManager.register


def _register(self: pluggy.PluginManager, plugin: object, name: str | None = None) -> Any:
    result = _original_register(self, plugin, name)
    if result is None or self.project_name != "consultbook":
        return result
    for caller in self.get_hookcallers(plugin) or []:
        for impl in caller.get_hookimpls():
            function = impl.function
            if (impl.plugin is plugin and _defined_in_tests(function)
                    and not getattr(function, "__consultbook_recorded__", False)):
                impl.function = _wrap(caller.name, function)
    return result


pluggy.PluginManager.register = _register  # type: ignore[method-assign]


def pytest_configure(config: pytest.Config) -> None:
    # Under pytest-xdist the tests run in the workers, where this module is not loaded,
    # and the file would be written empty by the controller: refuse instead.
    workers = getattr(config.option, "numprocesses", None)
    if workers not in (None, 0, "0"):
        raise pytest.UsageError("-p tests.plugins.hook_recorder records the hook calls in "
                                "the process that runs the tests: run it with -n 0")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    global _current
    _current = item.nodeid
    _record.setdefault(item.nodeid, {"outcome": None, "hooks": []})
    try:
        return (yield)
    finally:
        _current = None


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    entry = _record.setdefault(report.nodeid, {"outcome": None, "hooks": []})
    if report.when == "call" or report.outcome != "passed":
        # a failure in setup or teardown makes the test count as failed
        if entry["outcome"] in (None, "passed"):
            entry["outcome"] = report.outcome


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get(RECORD_ENV)
    if path:
        Path(path).write_text(json.dumps(_record, indent=1, sort_keys=True))
