"""`consultbook demo` as a child process, for the scripts and benchmarks that drive it
(scripts/screenshots.py, benchmarks/bench_lighthouse.py): a free port, a throw-away
SQLite database and outbox in ``workdir``, and the day the demo shop calls tomorrow."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import requests

from engine.demo import DEMO_TZ  # the demo shop's zone: its dates, never the host's


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_tomorrow() -> date:
    """Tomorrow in the demo shop's zone (not the host's local date)."""
    return datetime.now(UTC).astimezone(ZoneInfo(DEMO_TZ)).date() + timedelta(days=1)


def start_demo(workdir: Path, wait_s: float = 90) -> tuple[subprocess.Popen[bytes], str]:
    """Start the demo in ``workdir``; return the process and its base URL once /healthz
    answers (generous: a loaded machine starts it slowly)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSULTBOOK_", "SHOPIFY_"))}
    env.update(CONSULTBOOK_DATABASE_URL=f"sqlite:///{workdir}/demo.db",
               CONSULTBOOK_OUTBOX_DIR=str(workdir / "outbox"))
    with (workdir / "server.log").open("w") as log:
        proc = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
            [sys.executable, "-m", "engine.cli", "demo", "--port", str(port)],
            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base
        except requests.RequestException:  # not up yet, or slow under load
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("consultbook demo did not start:\n" + (workdir / "server.log").read_text())
