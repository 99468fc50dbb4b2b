"""The command line, run as a user runs it: a subprocess with an environment."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from engine.crypto import generate_key

SECRETS = {"SHOPIFY_API_KEY": "key", "SHOPIFY_API_SECRET": "shpss_" + "a" * 32,
           "CONSULTBOOK_ENCRYPTION_KEYS": generate_key()}


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("CONSULTBOOK_", "SHOPIFY_"))}
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=cwd,
                          env={**base, **env}, capture_output=True, text=True, timeout=120)


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_bad_usage_exits_2_with_one_line(tmp_path: Path) -> None:
    for args in (["frobnicate"], [], ["shop", "install"], ["serve", "--port", "x"]):
        r = run(args, tmp_path)
        assert r.returncode == 2, args
        assert "Traceback" not in r.stderr
        one_line(r.stderr)


def test_migrate_then_shop_install(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cb.db"
    r = run(["shop", "install", "alpha.myshopify.com", "--timezone", "Europe/Berlin"],
            tmp_path, CONSULTBOOK_DATABASE_URL=url, **SECRETS)
    assert r.returncode == 1
    assert "consultbook migrate" in one_line(r.stderr)

    r = run(["migrate"], tmp_path, CONSULTBOOK_DATABASE_URL=url)
    assert r.returncode == 0, r.stderr
    r = run(["shop", "install", "alpha.myshopify.com", "--timezone", "Europe/Berlin",
             "--access-token", "shpat_secret_value"], tmp_path,
            CONSULTBOOK_DATABASE_URL=url, **SECRETS)
    assert r.returncode == 0, r.stderr
    assert "alpha.myshopify.com" in r.stdout
    # The token is stored only encrypted.
    assert b"shpat_secret_value" not in (tmp_path / "cb.db").read_bytes()

    # A domain or timezone that can never be right is bad usage: exit 2, one line.
    for bad in (["shop", "install", "evil.com", "--timezone", "UTC"],
                ["shop", "install", "a.myshopify.com", "--timezone", "Mars/Base"]):
        r = run(bad, tmp_path, CONSULTBOOK_DATABASE_URL=url, **SECRETS)
        assert r.returncode == 2
        one_line(r.stderr)


@pytest.mark.parametrize(("env", "variable"), [
    ({"SHOPIFY_API_KEY": ""}, "SHOPIFY_API_KEY"),
    ({"SHOPIFY_API_SECRET": ""}, "SHOPIFY_API_SECRET"),
    ({"CONSULTBOOK_ENCRYPTION_KEYS": ""}, "CONSULTBOOK_ENCRYPTION_KEYS"),
    ({"CONSULTBOOK_ENCRYPTION_KEYS": "not-a-key"}, "CONSULTBOOK_ENCRYPTION_KEYS"),
    ({"CONSULTBOOK_HOLD_TTL_SECONDS": "ten"}, "CONSULTBOOK_HOLD_TTL_SECONDS"),
    ({"CONSULTBOOK_DATABASE_URL": "mysql://x/y"}, "CONSULTBOOK_DATABASE_URL"),
    ({"CONSULTBOOK_BROKER_URL": "nonsense"}, "CONSULTBOOK_BROKER_URL"),
    ({"CONSULTBOOK_SMTP_URL": "http://x"}, "CONSULTBOOK_SMTP_URL"),
    ({"CONSULTBOOK_MAX_HOLDS_PER_VISITOR": "0"}, "CONSULTBOOK_MAX_HOLDS_PER_VISITOR"),
])
def test_bad_setting_stops_serve_naming_the_variable(tmp_path: Path, env: dict[str, str],
                                                     variable: str) -> None:
    r = run(["serve"], tmp_path, **{**SECRETS, **env})
    assert r.returncode == 1
    assert variable in one_line(r.stderr)


def test_dotenv_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CONSULTBOOK_HOLD_TTL_SECONDS=soon\n")
    r = run(["serve"], tmp_path, **SECRETS)
    assert r.returncode == 1
    assert "CONSULTBOOK_HOLD_TTL_SECONDS" in one_line(r.stderr)


def test_keys_generate_and_rotate(tmp_path: Path) -> None:
    r = run(["keys", "generate"], tmp_path)
    assert r.returncode == 0
    new_key = r.stdout.strip()
    url = f"sqlite:///{tmp_path}/cb.db"
    assert run(["migrate"], tmp_path, CONSULTBOOK_DATABASE_URL=url).returncode == 0
    run(["shop", "install", "alpha.myshopify.com", "--timezone", "UTC", "--access-token", "t1"],
        tmp_path, CONSULTBOOK_DATABASE_URL=url, **SECRETS)
    rotated = {**SECRETS,
               "CONSULTBOOK_ENCRYPTION_KEYS": f"{new_key},{SECRETS['CONSULTBOOK_ENCRYPTION_KEYS']}"}
    r = run(["keys", "rotate"], tmp_path, CONSULTBOOK_DATABASE_URL=url, **rotated)
    assert r.returncode == 0, r.stderr
    assert "re-encrypted 1 of 1" in r.stdout
    r = run(["keys", "rotate"], tmp_path, CONSULTBOOK_DATABASE_URL=url, **rotated)
    assert "re-encrypted 0 of 1" in r.stdout  # resumable: nothing left to do

    from engine.crypto import Keyring
    from engine.services.shops import access_token_aad
    from engine.store import Database
    from engine.store.models import Shop

    db = Database(url)
    with db.read() as session:
        shop = session.query(Shop).one()
        assert Keyring.parse(new_key).decrypt_str(shop.access_token,
                                                  aad=access_token_aad(shop.id)) == "t1"
    db.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_serve_refuses_old_schema_then_serves(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cb.db"
    r = run(["serve"], tmp_path, CONSULTBOOK_DATABASE_URL=url, **SECRETS)
    assert r.returncode == 1
    assert "consultbook migrate" in one_line(r.stderr)
    assert run(["migrate"], tmp_path, CONSULTBOOK_DATABASE_URL=url).returncode == 0
    port = _free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CONSULTBOOK_", "SHOPIFY_"))}
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "--port", str(port), "--workers", "2"],
        cwd=tmp_path, env={**base, **SECRETS, "CONSULTBOOK_DATABASE_URL": url},
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r2 = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "server did not come up"
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                time.sleep(0.2)
        assert r2.json() == {"status": "ok"}
        ready = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 200
        assert requests.get(f"http://127.0.0.1:{port}/admin/api/services",
                            timeout=5).status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()


@pytest.mark.slow
def test_demo_seeds_and_prints_urls(tmp_path: Path) -> None:
    r = run(["demo", "--no-serve"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "consultbook-demo.myshopify.com" in r.stdout
    assert "/proxy/availability?" in r.stdout
    again = run(["demo", "--no-serve"], tmp_path)  # idempotent
    assert again.returncode == 0
    assert again.stdout.count("expert:") == 3  # seeded once: Anna, Maya, Lena
