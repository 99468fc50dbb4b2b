"""`consultbook sweep` and `consultbook reminders run`: one pass each, exit 0/1/2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.tasks.helpers import process_env


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_sweep_and_reminders_run_do_one_pass(sqlite_url: str, tmp_path: Path) -> None:
    env = process_env(sqlite_url, CONSULTBOOK_OUTBOX_DIR=str(tmp_path / "outbox"))
    r = run(["sweep"], env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("expired 0 holds")
    r = run(["reminders", "run"], env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0 due: 0 sent, 0 skipped, 0 to retry, 0 failed"


def test_bad_usage_and_failures_are_one_line(sqlite_url: str, tmp_path: Path) -> None:
    env = process_env(sqlite_url)
    for args in (["reminders"], ["reminders", "run", "--limit", "0"], ["worker", "--x"]):
        r = run(args, env, tmp_path)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1
    r = run(["sweep"], process_env(f"sqlite:///{tmp_path}/empty.db"), tmp_path)
    assert r.returncode == 1
    (line,) = r.stderr.strip().splitlines()
    assert "consultbook migrate" in line
