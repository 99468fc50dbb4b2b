"""Plugins are discovered once per process.

Every periodic job used to build a new Context, which read the entry points and imported
the plugins again: a plugin installed into a running deployment was picked up by some
jobs and not by the web process, and a broken one logged a traceback every five minutes.
Now the first plugin manager in a process reads the entry points, every later one reuses
that, and a broken entry point stops start-up with one line naming it.

The plugins here are real distributions: a ``*.dist-info`` folder with an
``entry_points.txt`` on ``sys.path``, found by :mod:`importlib.metadata` exactly like a
``pip install``-ed package.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import engine.plugins as plugins_module
from engine.bootstrap import bootstrap
from engine.clock import FixedClock
from engine.plugins import PluginError, reset_discovery
from engine.tasks import jobs
from tests.conftest import NOW, make_config

ROOT = Path(__file__).resolve().parents[1]


def make_distribution(where: Path, dist: str, entry: str, module: str, source: str) -> Path:
    """Install a one-module distribution with one ``consultbook.plugins`` entry point
    into the folder ``where`` (as a wheel would: module + dist-info)."""
    where.mkdir(parents=True, exist_ok=True)
    (where / f"{module}.py").write_text(textwrap.dedent(source))
    info = where / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[consultbook.plugins]\n{entry} = {module}\n")
    return where


GOOD = """
    from engine import hookimpl
    from engine.providers import MailProvider

    import pathlib

    with pathlib.Path(__file__).with_suffix(".runs").open("a") as runs:
        runs.write("x")  # counts executions of this module


    class PigeonMail(MailProvider):
        name = "pigeon"
        label = "Carrier pigeon"

        def send(self, message):
            return "coo"


    @hookimpl
    def consultbook_register_providers(registry):
        registry.add_mail(PigeonMail)
"""

BROKEN = """
    import pathlib

    # Counts executions of this module: a failed import leaves nothing in sys.modules,
    # so each load attempt would run it again.
    with pathlib.Path(__file__).with_suffix(".runs").open("a") as runs:
        runs.write("x")
    import consultbook_dependency_that_is_not_installed  # noqa: F401
"""


def runs(site: Path, module: str = "cbtest_broken") -> int:
    """How many times ``module`` was executed (imported) so far."""
    path = site / f"{module}.runs"
    return len(path.read_text()) if path.exists() else 0


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path to install distributions into; discovery forgotten before
    and after, so each test starts as a fresh process would."""
    where = tmp_path / "site"
    where.mkdir()
    monkeypatch.syspath_prepend(str(where))
    reset_discovery()
    yield where
    reset_discovery()
    for name in ("cbtest_pigeon", "cbtest_broken"):
        sys.modules.pop(name, None)


@pytest.fixture
def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the reads of the entry-point group (the expensive, rediscovering step)."""
    reads: list[int] = []
    real = plugins_module.entry_points

    def counting(**kwargs: str) -> object:
        reads.append(1)
        return real(**kwargs)

    monkeypatch.setattr(plugins_module, "entry_points", counting)
    return reads


def test_discovery_runs_once_across_bootstraps_and_jobs(
        site: Path, sqlite_url: str, count_reads: list[int]) -> None:
    make_distribution(site, "cbtest-pigeon", "pigeon_mail", "cbtest_pigeon", GOOD)
    config = make_config(sqlite_url)
    contexts = [bootstrap(config, clock=FixedClock(NOW)) for _ in range(4)]
    runtime = jobs.Runtime(config, clock=FixedClock(NOW))
    deps = runtime.deps()
    try:
        # What each periodic job builds (refresh_shopify_tokens makes a Context per run).
        for _ in range(3):
            jobs.refresh_shopify_tokens(deps)
        assert len(count_reads) == 1
        assert runs(site, "cbtest_pigeon") == 1  # imported once, not once per Context
        for c in [*contexts, deps]:
            assert c.plugins.registry.names("mail") == ["outbox", "pigeon", "smtp"]
            assert c.plugins.registry.owner("mail", "pigeon") == "pigeon_mail"
    finally:
        runtime.close()
        for c in contexts:
            c.db.dispose()


def test_a_plugin_installed_into_a_running_process_waits_for_the_restart(
        site: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    config = make_config(sqlite_url)
    first = bootstrap(config, clock=FixedClock(NOW))
    # Installed while the process runs, and broken: the running process does not see it,
    # so the jobs it runs keep working and log nothing about it.
    make_distribution(site, "cbtest-broken", "broken_thing", "cbtest_broken", BROKEN)
    caplog.set_level(logging.DEBUG)
    later = [bootstrap(config, clock=FixedClock(NOW)) for _ in range(3)]
    try:
        assert "broken_thing" not in later[-1].plugins.plugin_names()
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        # A new process (here: discovery forgotten) reports it.
        reset_discovery()
        with pytest.raises(PluginError, match="broken_thing"):
            bootstrap(config, clock=FixedClock(NOW))
    finally:
        for c in [first, *later]:
            c.db.dispose()


def test_a_broken_entry_point_is_one_clear_line_imported_once(
        site: Path, sqlite_url: str) -> None:
    make_distribution(site, "cbtest-broken", "broken_thing", "cbtest_broken", BROKEN)
    config = make_config(sqlite_url)
    messages = []
    for _ in range(3):
        with pytest.raises(PluginError) as raised:
            bootstrap(config, clock=FixedClock(NOW))
        messages.append(str(raised.value))
        # One line, no chained traceback of the import machinery.
        assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert len(set(messages)) == 1
    message = messages[0]
    assert "\n" not in message
    assert "'broken_thing' failed to load: ModuleNotFoundError" in message
    assert "consultbook_dependency_that_is_not_installed" in message
    assert "CONSULTBOOK_DISABLE_PLUGINS" in message
    assert runs(site) == 1  # imported once, not once per bootstrap

    # Blocked by configuration it is never imported, and everything else loads.
    reset_discovery()
    ctx = bootstrap(make_config(sqlite_url, disabled_plugins=("broken_thing",)),
                    clock=FixedClock(NOW))
    try:
        assert "broken_thing" not in ctx.plugins.plugin_names()
        assert runs(site) == 1  # not imported again
    finally:
        ctx.db.dispose()


def _cli(args: list[str], site: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSULTBOOK_", "SHOPIFY_"))}
    env.update(PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]),
               CONSULTBOOK_DATABASE_URL=f"sqlite:///{tmp_path}/cli.db",
               CONSULTBOOK_BROKER_URL="redis://127.0.0.1:1/0",
               SHOPIFY_API_KEY="k", SHOPIFY_API_SECRET="s",
               CONSULTBOOK_ENCRYPTION_KEYS="MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", [["sweep"], ["worker"], ["beat"]])
def test_commands_refuse_to_start_with_a_broken_plugin_in_one_line(
        site: Path, tmp_path: Path, command: list[str]) -> None:
    make_distribution(site, "cbtest-broken", "broken_thing", "cbtest_broken", BROKEN)
    assert _cli(["migrate"], site, tmp_path).returncode == 0
    done = _cli(command, site, tmp_path)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "plugin 'broken_thing' failed to load" in lines[0]
