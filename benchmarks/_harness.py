"""Shared pieces of the HTTP benchmarks (``bench_holds.py``, ``bench_webhooks.py``).

A :class:`Bench` creates a fresh PostgreSQL database, runs ``consultbook migrate`` and
``consultbook shop install`` in it, starts a real ``consultbook serve --workers N``
(gunicorn) on a free port, and drops the database at the end. :func:`run_load` drives
prepared requests through keep-alive ``http.client`` connections, one per thread, and
:class:`CpuMeter` says how much CPU the load generator, the server and the whole machine
used while it ran (so a client-bound run can be told from a server-bound one).
"""

from __future__ import annotations

import http.client
import itertools
import json
import math
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from engine.crypto import generate_key
from engine.shopify import encode_session_token, sign_proxy

API_KEY = "bench-api-key"
API_SECRET = "shpss_bench_0123456789abcdef0123456789abcdef"
DOMAIN = "bench-shop.myshopify.com"
DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
CLIENT_ADDR = "203.0.113.7"


# --------------------------------------------------------------------------- HTTP


@dataclass
class Request:
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Result:
    index: int
    status: int  # 0 = connection error
    latency: float  # seconds
    body: bytes
    sent: float = 0.0  # perf_counter at send
    done: float = 0.0  # perf_counter at answer


def _call(conn: http.client.HTTPConnection, r: Request) -> tuple[int, bytes]:
    conn.request(r.method, r.path, body=r.body, headers=r.headers)
    resp = conn.getresponse()
    return resp.status, resp.read()


def run_load(port: int, requests: Sequence[Request], concurrency: int,
             timeout: float = 30.0) -> tuple[list[Result], float]:
    """Send every request once, ``concurrency`` threads at a time, each on its own
    keep-alive connection. Returns the results (in request order) and the wall time."""
    counter = itertools.count()
    results: list[Result | None] = [None] * len(requests)
    start_gate = threading.Barrier(concurrency + 1)

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.connect()
        start_gate.wait()
        while True:
            i = next(counter)
            if i >= len(requests):
                break
            t0 = time.perf_counter()
            try:
                status, body = _call(conn, requests[i])
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
                status, body = 0, repr(exc).encode()
            t1 = time.perf_counter()
            results[i] = Result(i, status, t1 - t0, body, t0, t1)
        conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    start_gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return [r for r in results if r is not None], wall


def run_burst(port: int, requests: Sequence[Request], timeout: float = 30.0
              ) -> tuple[list[Result], float]:
    """One thread and one already-open connection per request; all are released at once
    by a barrier. Latency is measured from the common release instant."""
    n = len(requests)
    results: list[Result | None] = [None] * n
    gate = threading.Barrier(n + 1)
    release: list[float] = [0.0]

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.connect()
        gate.wait()
        t0 = time.perf_counter()
        try:
            status, body = _call(conn, requests[i])
        except (OSError, http.client.HTTPException) as exc:
            status, body = 0, repr(exc).encode()
        t1 = time.perf_counter()
        results[i] = Result(i, status, t1 - release[0], body, t0, t1)
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    release[0] = time.perf_counter()
    gate.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - release[0]
    return [r for r in results if r is not None], wall


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return s[k]


# --------------------------------------------------------------------------- CPU


def _proc_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return int(parts[11]) + int(parts[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return out


def _machine() -> tuple[int, int]:
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    idle = cpu[3] + cpu[4]
    return sum(cpu) - idle, sum(cpu)


class CpuMeter:
    """CPU used between ``start()`` and ``stop()``: this process (the load generator),
    the server's process tree, and the whole machine (all cores), in cores."""

    def __init__(self, server_pid: int, database: str | None = None) -> None:
        self.server_pid = server_pid
        self.database = database
        self.hz = os.sysconf("SC_CLK_TCK")

    def _backends(self) -> dict[int, int]:
        """CPU ticks of the PostgreSQL backends serving ``database`` (their process title
        names it), so the database's share can be told from other load on the machine."""
        out: dict[int, int] = {}
        if not self.database:
            return out
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    title = f.read()
            except OSError:
                continue
            if title.startswith(b"postgres:") and self.database.encode() in title:
                out[int(name)] = _proc_ticks(int(name))
        return out

    def _server(self) -> int:
        pids = [self.server_pid]
        for p in list(pids):
            pids.extend(_children(p))
        return sum(_proc_ticks(p) for p in pids)

    def start(self) -> None:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        self._client = ru.ru_utime + ru.ru_stime
        self._server0 = self._server()
        self._pg0 = self._backends()
        self._busy0, self._total0 = _machine()
        self._t0 = time.perf_counter()

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self._t0
        ru = resource.getrusage(resource.RUSAGE_SELF)
        busy, total = _machine()
        ncpu = os.cpu_count() or 1
        client = (ru.ru_utime + ru.ru_stime - self._client) / wall
        server = (self._server() - self._server0) / self.hz / wall
        pg1 = self._backends()
        postgres = sum(t - self._pg0.get(pid, 0) for pid, t in pg1.items()) / self.hz / wall
        machine = (busy - self._busy0) / max(1, total - self._total0) * ncpu
        return {"client": client, "server": server, "postgres": postgres, "machine": machine,
                "other": max(0.0, machine - client - server - postgres), "cores": ncpu,
                "wall": wall}


def cpu_line(cpu: dict[str, float]) -> str:
    return (f"CPU (cores of {cpu['cores']:.0f}): load generator {cpu['client']:.2f}, "
            f"gunicorn {cpu['server']:.2f}, PostgreSQL backends {cpu['postgres']:.2f}, "
            f"other load {cpu['other']:.2f}, machine {cpu['machine']:.2f}")


def cost_ms(cpu: dict[str, float], rate: float) -> tuple[float, float, float]:
    """CPU milliseconds per request of (load generator, gunicorn, PostgreSQL backends)."""
    return (cpu["client"] / rate * 1e3, cpu["server"] / rate * 1e3,
            cpu["postgres"] / rate * 1e3)


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Bench:
    """A fresh database with one installed shop, and a ``consultbook serve`` on it."""

    def __init__(self, server_url: str = DEFAULT_SERVER, extra_env: dict[str, str] | None = None
                 ) -> None:
        self.server_url = make_url(server_url)
        self.name = f"consultbook_bench_{uuid.uuid4().hex[:10]}"
        self.url = self.server_url.set(database=self.name).render_as_string(hide_password=False)
        self.tmp = tempfile.mkdtemp(prefix="consultbook-bench-")
        # No broker from the caller's environment (each worker runs the embedded one);
        # ``extra_env`` may name one (the production topology of bench_flash_sale.py).
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "CONSULTBOOK_BROKER_URL"},
            "CONSULTBOOK_DATABASE_URL": self.url,
            "SHOPIFY_API_KEY": API_KEY,
            "SHOPIFY_API_SECRET": API_SECRET,
            "CONSULTBOOK_ENCRYPTION_KEYS": generate_key(),
            "CONSULTBOOK_OUTBOX_DIR": os.path.join(self.tmp, "outbox"),
            # The server talks to PostgreSQL directly (no PgBouncer): as operators would
            # run it so (docs/operations.md); the caller's environment may say otherwise.
            "CONSULTBOOK_DATABASE_PREPARED_STATEMENTS": os.environ.get(
                "CONSULTBOOK_DATABASE_PREPARED_STATEMENTS", "true"),
            **(extra_env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self.port = 0
        self.log_path = os.path.join(self.tmp, "serve.log")

    # -- database ----------------------------------------------------------------------

    def __enter__(self) -> Bench:
        admin = create_engine(self.server_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        admin.dispose()
        self.cli("migrate")
        self.cli("shop", "install", DOMAIN, "--timezone", "Europe/Berlin")
        self.engine = create_engine(self.url)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_server()
        self.engine.dispose()
        admin = create_engine(self.server_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def cli(self, *args: str) -> str:
        exe = shutil.which("consultbook") or "consultbook"
        done = subprocess.run([exe, *args], env=self.env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"consultbook {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def sql(self, query: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(query), params))

    # -- server ------------------------------------------------------------------------

    def start_server(self, workers: int) -> None:
        self.stop_server()
        self.port = free_port()
        exe = shutil.which("consultbook") or "consultbook"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [exe, "serve", "--workers", str(workers), "--port", str(self.port)],
            env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"consultbook serve exited: {self.server_log()[-2000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    # every worker must have booted (each builds its own app)
                    if len(_children(self.proc.pid)) >= workers:
                        time.sleep(1.0)
                        return
                conn.close()
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("consultbook serve did not become healthy in 60 s")

    def stop_server(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None

    def server_log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            return resp.status, raw

    # -- shop set-up -------------------------------------------------------------------

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        token = encode_session_token(DOMAIN, api_key=API_KEY, api_secret=API_SECRET,
                                     now=int(time.time()))
        status, doc = self.request(method, "/admin/api" + path, body,
                                   {"Authorization": f"Bearer {token}"})
        if status >= 300:
            raise RuntimeError(f"{method} {path} -> {status} {doc}")
        return doc

    def catalog(self, experts: int) -> tuple[str, list[str]]:
        """One 30-minute service and ``experts`` experts working 00:00-24:00 every day."""
        svc = self.admin("POST", "/services", {"title": "Consultation", "duration_minutes": 30,
                                               "variant_id": 4242})
        weekly = {d: [["00:00", "24:00"]]
                  for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
        ids = []
        for n in range(experts):
            e = self.admin("POST", "/experts", {"name": f"Expert {n}",
                                                "email": f"expert{n}@example.com",
                                                "services": [svc["id"]]})
            self.admin("PUT", f"/experts/{e['id']}/schedule", {"weekly": weekly, "overrides": []})
            ids.append(e["id"])
        return svc["id"], ids

    def slots(self, service: str, days: int) -> list[dict[str, str]]:
        """Every offered slot (all experts) from tomorrow (shop time) for ``days`` days."""
        tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
        status, doc = self.request("GET", "/proxy/availability?" + proxy_query(
            {"service": service, "start": tomorrow, "days": str(days)}))
        if status != 200:
            raise RuntimeError(f"availability -> {status} {doc}")
        return list(doc["slots"])


def proxy_query(params: dict[str, str] | None = None, **extra: str) -> str:
    """A signed App Proxy query string for the bench shop, timestamped now."""
    signed = {**(params or {}), "shop": DOMAIN, "path_prefix": "/apps/consult",
              "timestamp": str(int(time.time())), **extra}
    signed["signature"] = sign_proxy(signed, API_SECRET)
    return urlencode(signed)


def hold_request(service: str, expert: str, start: str, customer: str) -> Request:
    """``POST /proxy/holds`` for one slot, as the signed logged-in ``customer``."""
    body = json.dumps({"service": service, "expert": expert, "start": start}).encode()
    return Request("POST", "/proxy/holds?" + proxy_query(logged_in_customer_id=customer), body,
                   {"Content-Type": "application/json", "X-Forwarded-For": CLIENT_ADDR})


def header() -> str:
    return (f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
            f"load average before: {loadavg()}")
