"""The production topology, started for one test: parts a test may stop and start.

* :class:`OwnPostgres` -- a PostgreSQL cluster of its own (``pg_createcluster`` on a free
  port, as root); the shared server on 5432 is never touched. The fault tests share one
  (the ``own_postgres`` fixture of tests/faults/conftest.py), each on a new database.
* :class:`PgBouncer` -- Debian's PgBouncer in transaction pooling in front of a cluster.
* :class:`OwnRedis` -- a ``redis-server`` on a free port, no persistence.
* :class:`Deployment` -- ``consultbook serve --workers N`` (gunicorn), and on a broker
  ``consultbook worker`` and ``consultbook beat``, as an operator runs them, with one
  installed shop and the signed-request helpers of ``benchmarks/_harness.py``.

Every part skips the test where the machine cannot provide it (not root, no
postgresql-common, no pgbouncer, no redis-server), and cleans up after itself.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from benchmarks._harness import API_KEY, API_SECRET, DOMAIN, proxy_query
from engine.crypto import generate_key
from engine.shopify import encode_session_token, webhook_hmac


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unavailable(why: str) -> None:
    """Skip where the machine lacks a part; in CI (``CI=true``, set by .ci/run, which
    installs every part) nothing may skip: fail instead."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{why} -- .ci/run should have provided it")
    pytest.skip(why)


def _run(*args: str, timeout: float = 120) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=timeout)


class OwnPostgres:
    """A cluster of its own with one database, ``consultbook`` at first;
    :meth:`new_database` swaps in a fresh one (tests/faults/conftest.py shares one
    cluster among the fault tests that way)."""

    def __init__(self) -> None:
        if os.geteuid() != 0 or not shutil.which("pg_createcluster"):
            unavailable("needs root and postgresql-common (pg_createcluster)")
        versions = sorted(os.listdir("/usr/lib/postgresql"))
        self.version = versions[-1]
        self.name = f"consultbook_fault_{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.database = "consultbook"
        _run("pg_createcluster", self.version, self.name, "-p", str(self.port), "--",
             "--auth-host=trust", "--auth-local=trust")
        self.start()
        self._admin("CREATE DATABASE consultbook")

    def _admin(self, statement: str) -> None:
        admin = create_engine(self.server_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(statement))
        finally:
            admin.dispose()

    def new_database(self) -> None:
        """Drop the current database and make :attr:`url` an empty new one."""
        self._admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        self.database = f"consultbook_{uuid.uuid4().hex[:8]}"
        self._admin(f'CREATE DATABASE "{self.database}"')

    @property
    def server_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{self.database}"

    def start(self) -> None:
        _run("pg_ctlcluster", self.version, self.name, "start")

    def running(self) -> bool:
        done = subprocess.run(["pg_ctlcluster", self.version, self.name, "status"],
                              capture_output=True, timeout=60, check=False)
        return done.returncode == 0

    def stop(self) -> None:
        _run("pg_ctlcluster", self.version, self.name, "stop", "-m", "fast")

    def drop(self) -> None:
        subprocess.run(["pg_dropcluster", "--stop", self.version, self.name],
                       capture_output=True, timeout=120, check=False)


class PgBouncer:
    """PgBouncer, transaction pooling, in front of ``pg``'s database, which it names
    ``consultbook``."""

    def __init__(self, pg: OwnPostgres, pool_size: int = 10) -> None:
        exe = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not os.path.exists(exe):
            unavailable("needs pgbouncer (Debian package pgbouncer)")
        self.dir = Path(tempfile.mkdtemp(prefix="consultbook-pgbouncer-"))
        self.dir.chmod(0o755)
        self.port = free_port()
        (self.dir / "userlist.txt").write_text('"postgres" ""\n')
        ini = self.dir / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"consultbook = host=127.0.0.1 port={pg.port} dbname={pg.database}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.dir / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {pool_size}\nmax_client_conn = 500\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\npidfile = {self.dir / 'pgbouncer.pid'}\n"
            "ignore_startup_parameters = extra_float_digits,options\n")
        for f in self.dir.iterdir():
            f.chmod(0o644)
        args = [exe, str(ini)]
        if os.geteuid() == 0:  # PgBouncer refuses to run as root: it runs as postgres,
            import pwd  # which must be able to write its log and pid file

            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            args[1:1] = ["-u", "postgres"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("pgbouncer did not start: " + self.log())

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/consultbook"

    def log(self) -> str:
        try:
            return (self.dir / "pgbouncer.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class OwnRedis:
    def __init__(self) -> None:
        self.exe = shutil.which("redis-server")
        if self.exe is None:
            unavailable("needs redis-server")
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.exe is not None
        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


class Deployment:
    """``consultbook`` processes on a database (and a broker, if given), one shop."""

    def __init__(self, database_url: str, *, direct_url: str | None = None,
                 broker_url: str | None = None, extra_env: dict[str, str] | None = None
                 ) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="consultbook-fault-"))
        self.outbox = self.tmp / "outbox"
        self.env = {**os.environ, "CONSULTBOOK_DATABASE_URL": database_url,
                    "SHOPIFY_API_KEY": API_KEY, "SHOPIFY_API_SECRET": API_SECRET,
                    "CONSULTBOOK_ENCRYPTION_KEYS": generate_key(),
                    "CONSULTBOOK_OUTBOX_DIR": str(self.outbox), **(extra_env or {})}
        self.env.pop("CONSULTBOOK_BROKER_URL", None)
        if broker_url:
            self.env["CONSULTBOOK_BROKER_URL"] = broker_url
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.port = 0
        # Migrations and the install run on a direct connection (DDL, as an operator
        # would run `consultbook migrate` against the server, not the pooler).
        self.cli("migrate", url=direct_url)
        self.cli("shop", "install", DOMAIN, "--timezone", "Europe/Berlin", url=direct_url)
        self.engine = create_engine(direct_url or database_url)

    def cli(self, *args: str, url: str | None = None) -> str:
        env = dict(self.env)
        if url:
            env["CONSULTBOOK_DATABASE_URL"] = url
        done = subprocess.run([shutil.which("consultbook") or "consultbook", *args], env=env,
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"consultbook {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "ab")
        proc = subprocess.Popen([shutil.which("consultbook") or "consultbook", *args],
                                env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=self.tmp)  # beat's schedule file
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        try:
            return (self.tmp / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""

    def serve(self, workers: int = 2) -> None:
        self.port = free_port()
        proc = self.start("serve", "serve", "--workers", str(workers), "--port", str(self.port))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, self.log("serve")[-3000:]
            try:
                if self.request("GET", "/healthz", timeout=2)[0] == 200:
                    time.sleep(1.0)  # every gunicorn worker booted
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("serve did not come up: " + self.log("serve")[-3000:])

    def worker(self) -> subprocess.Popen[bytes]:
        """Start ``consultbook worker`` and wait until it is ready. The log is appended
        to across restarts: only a "ready." written after this start counts."""
        log = self.tmp / "worker.log"
        seen = log.stat().st_size if log.exists() else 0
        proc = self.start("worker", "worker", "--concurrency", "2")
        deadline = time.monotonic() + 60
        while b"ready." not in log.read_bytes()[seen:]:
            assert proc.poll() is None and time.monotonic() < deadline, self.log("worker")
            time.sleep(0.1)
        return proc

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, sig)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name)
        self.engine.dispose()
        keep = os.environ.get("CONSULTBOOK_FAULT_LOGS")  # a folder to keep the logs in
        if keep:
            for log in self.tmp.glob("*.log"):
                shutil.copy(log, Path(keep) / log.name)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- requests ----------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None, timeout: float = 30
                ) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
            conn.request(method, path, body=data,
                         headers={"Content-Type": "application/json", **(headers or {})})
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            return resp.status, raw

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        token = encode_session_token(DOMAIN, api_key=API_KEY, api_secret=API_SECRET,
                                     now=int(time.time()))
        status, doc = self.request(method, "/admin/api" + path, body,
                                   {"Authorization": f"Bearer {token}"})
        if status >= 300:
            raise RuntimeError(f"{method} {path} -> {status} {doc}")
        return doc

    def catalog(self, experts: int = 1) -> tuple[str, list[str]]:
        svc = self.admin("POST", "/services", {"title": "Consultation", "duration_minutes": 30,
                                               "variant_id": 4242})
        weekly = {d: [["00:00", "24:00"]]
                  for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
        ids = []
        for n in range(experts):
            e = self.admin("POST", "/experts", {"name": f"Expert {n}",
                                                "email": f"expert{n}@example.com",
                                                "services": [svc["id"]]})
            self.admin("PUT", f"/experts/{e['id']}/schedule", {"weekly": weekly,
                                                               "overrides": []})
            ids.append(e["id"])
        return svc["id"], ids

    def availability(self, service: str, days: int = 2, timeout: float = 30
                     ) -> tuple[int, Any]:
        tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
        return self.request("GET", "/proxy/availability?" + proxy_query(
            {"service": service, "start": tomorrow, "days": str(days)}), timeout=timeout)

    def hold(self, service: str, expert: str, start: str, customer: str,
             timeout: float = 30) -> tuple[int, Any]:
        return self.request("POST", "/proxy/holds?" + proxy_query(
            logged_in_customer_id=customer), {"service": service, "expert": expert,
                                              "start": start},
            {"X-Forwarded-For": "203.0.113.7"}, timeout=timeout)

    def webhook(self, topic: str, payload: dict[str, Any], webhook_id: str,
                timeout: float = 30) -> tuple[int, Any]:
        body = json.dumps(payload).encode()
        return self.request("POST", "/webhooks", body, {
            "X-Shopify-Topic": topic, "X-Shopify-Shop-Domain": DOMAIN,
            "X-Shopify-Webhook-Id": webhook_id,
            "X-Shopify-Hmac-Sha256": webhook_hmac(body, API_SECRET)}, timeout=timeout)

    def sql(self, query: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(query), params))


def paid_order(order_id: int, hold: str) -> dict[str, Any]:
    """A paid order of customer ``c<order id>`` with one line booking ``hold``."""
    from tests.conftest import order_payload

    return order_payload(order_id, [hold], email=f"c{order_id}@example.com",
                         customer_id=order_id,
                         updated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def mails_to(outbox: Path) -> dict[str, int]:
    """How many messages each recipient got in the outbox folder."""
    from email import policy
    from email.parser import BytesParser

    counts: dict[str, int] = {}
    if not outbox.exists():
        return counts
    for path in outbox.glob("*.eml"):
        if path.name.startswith("."):
            continue  # a message being written (the mailer renames it when complete)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        msg = BytesParser(policy=policy.default).parsebytes(data)
        to = str(msg["To"])
        counts[to] = counts.get(to, 0) + 1
    return counts
