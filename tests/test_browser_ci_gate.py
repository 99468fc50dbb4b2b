"""In CI a browser test that cannot find Chromium fails instead of skipping (issue 9).

Runs one real browser test in a subprocess with ``CONSULTBOOK_TEST_CHROMIUM`` pointing
at a path that does not exist: with ``CI=true`` the run fails and says why; without CI
the test is skipped, saying why. Nothing here needs Chromium itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BROWSER_TEST = ("tests/browser/test_admin_home.py::"
                "test_the_home_page_shows_the_business_at_a_glance")


def _run(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONSULTBOOK_TEST_CHROMIUM": str(tmp_path / "no-chromium")}
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_ADDOPTS", None)
    if ci is None:
        env.pop("CI", None)
    else:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly",
         "-n", "0", "-q", "-rfEs", BROWSER_TEST],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_in_ci_a_missing_chromium_fails_the_run(tmp_path: Path) -> None:
    proc = _run(tmp_path, "true")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert "skipped" not in out.splitlines()[-1], out[-3000:]
    assert "passed" not in out.splitlines()[-1], out[-3000:]
    assert "no-chromium is not installed" in out, out[-3000:]


def test_outside_ci_a_missing_chromium_skips_saying_why(tmp_path: Path) -> None:
    proc = _run(tmp_path, None)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "1 skipped" in out.splitlines()[-1], out[-3000:]
    assert "no-chromium is not installed" in out, out[-3000:]


@pytest.mark.parametrize(("value", "ci"), [
    ("true", True), ("1", True), ("yes", True), ("TRUE ", True), ("on", True),
    ("", False), ("false", False), ("0", False), ("no", False)])
def test_what_counts_as_ci(value: str, ci: bool) -> None:
    from tests.browser.conftest import in_ci

    assert in_ci({"CI": value}) is ci
    assert in_ci({}) is False
