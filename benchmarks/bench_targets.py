"""Every speed figure beside its target, in one table.

Run: ``python benchmarks/bench_targets.py`` (the whole set, as ``docs/benchmarks.md``
reports it; tens of minutes on 2 cores) or ``--quick`` (small sizes, a few minutes: for a
smoke test, not for the note). ``--only slots,holds`` runs a subset; ``--keep DIR``
keeps each benchmark's JSON and printed output there, and ``--read DIR`` builds the table
from such a folder instead of running anything. ``--postgres URL`` and ``--redis URL``
name the servers (defaults: the local ones, Redis DB 6); ``--json PATH`` writes the
table as JSON too.

It runs, one after the other (never at once: they share the machine's cores), each
benchmark with ``--json PATH`` and reads that file; a script whose ``--help`` offers no
``--json`` is read from its printed output instead:

* ``bench_slots.py`` -- the slot engine against the bare reference sweep at every size
  (target: within 1.5x), and the engine's own medians;
* ``bench_availability.py`` -- 31 days, 20 connections: req/s (>= 1,500) and p99
  (<= 50 ms); with its history option where it has one, p50 at 2,000,000 claims against
  an empty table (within 1.2x);
* ``bench_holds.py`` -- holds on distinct slots, 2 workers (>= 600/s);
* ``bench_webhooks.py`` -- ingest with half duplicates, 2 workers (>= 500/s, p99 <= 100 ms);
* ``bench_flash_sale.py`` -- 500 customers on 10 slots (exactly 10 holds won and 10 live
  claims, no 5xx, p99 of every answer <= 1 s);
* ``tests/test_two_instances.py`` (``--no-tests`` skips it) -- two ``serve`` instances
  behave as one deployment.

The load average is printed before each run: figures taken on a loaded machine are low.
Exits 1 if a target is missed or a figure could not be measured.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _harness import DEFAULT_SERVER, loadavg  # noqa: E402

DEFAULT_REDIS = "redis://127.0.0.1:6379/6"
BUSY_LOAD = 2.5  # a 1-minute load average above this makes throughput figures unfair


@dataclass
class Figure:
    figure: str
    measured: str
    target: str
    met: bool | None  # None: not measured


@dataclass
class Bench:
    name: str
    script: str
    full: list[str]
    quick: list[str]
    database: bool  # takes --postgres
    read: Callable[[dict[str, Any] | None, str], list[Figure]]


# --------------------------------------------------------------------------- readers


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def missing(figure: str, target: str, why: str) -> Figure:
    return Figure(figure, f"not measured ({why})", target, None)


def read_slots(doc: dict[str, Any] | None, out: str) -> list[Figure]:
    target = "<= 1.5x at every size"
    name = "slot engine / bare reference sweep, worst size"
    figures: list[Figure] = []
    ratios: list[tuple[str, float]] = []
    rows = list((doc or {}).get("rows", [])) + list((doc or {}).get("reference", []))
    for r in rows:
        ratio = _num(r.get("reference_ratio"))
        if ratio is None:
            ratio = _num(r.get("ratio"))
        if ratio is None and _num(r.get("reference_ms")) and _num(r.get("median_ms")):
            ratio = r["median_ms"] / r["reference_ms"]
        if ratio is not None:
            ratios.append((str(r.get("scenario") or r.get("size") or "?"), ratio))
    lines = out.splitlines()
    if not ratios and any("ratio" in ln for ln in lines[:3]):
        # printed table with a ratio column last: "<scenario>  ...  0.50 ok|MISSED"
        for line in lines:
            m = re.search(r"\s(\d+\.\d+)\s+(ok|MISSED)\s*$", line)
            if m:
                ratios.append((re.split(r"\s{2,}", line.strip())[0], float(m.group(1))))
    if ratios:
        where, worst = max(ratios, key=lambda t: t[1])
        figures.append(Figure(name, f"{worst:.2f}x ({where}; {len(ratios)} sizes)", target,
                              worst <= 1.5))
    else:
        figures.append(missing(name, target, "bench_slots.py reports no reference ratio"))
    for r in (doc or {}).get("rows", []):
        if _num(r.get("target_ms")) is not None:
            figures.append(Figure(f"slot engine, {r['scenario']}, median",
                                  f"{r['median_ms']:.3f} ms", f"<= {r['target_ms']:g} ms",
                                  bool(r["median_ms"] <= r["target_ms"])))
    return figures


def read_availability(doc: dict[str, Any] | None, out: str) -> list[Figure]:
    rps_t, p99_t = ">= 1500 req/s", "<= 50 ms"
    row: dict[str, Any] | None = None
    for r in (doc or {}).get("rows", []):
        if re.fullmatch(r"availability, \d+ clients", str(r.get("scenario"))) \
                and not str(r["scenario"]).startswith("availability, 1 "):
            row = r
    if row is None:
        m = re.search(r"^availability, (\d+) clients\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+"
                      r"([\d.]+)", out, re.M)
        if m and m.group(1) != "1":
            row = {"scenario": f"availability, {m.group(1)} clients",
                   "rps": float(m.group(2)), "p99": float(m.group(5))}
    figures = []
    if row is None:
        figures += [missing("availability 31 days, 20 connections", rps_t, "no such row"),
                    missing("availability 31 days, 20 connections, p99", p99_t,
                            "no such row")]
    else:
        figures += [Figure(f"{row['scenario']} (31 days), req/s", f"{row['rps']:.0f}", rps_t,
                           row["rps"] >= 1500),
                    Figure(f"{row['scenario']} (31 days), p99", f"{row['p99']:.1f} ms",
                           p99_t, row["p99"] <= 50)]
    hist_t = "<= 1.2x"
    hist_name = "availability p50, 2,000,000 claims / empty table"
    hist = (doc or {}).get("history")
    ratio = None
    if isinstance(hist, dict):
        ratio = _num(hist.get("p50_ratio"))
        if ratio is None:
            full, empty = _num(hist.get("full_p50_ms")), _num(hist.get("empty_p50_ms"))
            ratio = full / empty if full and empty else None
    if ratio is None:  # rows "<label>" and "<label>, history" (bench_availability --history)
        rows = {str(r.get("scenario")): r for r in (doc or {}).get("rows", [])}
        ratios = [float(r["p50"]) / float(rows[k[:-len(", history")]]["p50"])
                  for k, r in rows.items()
                  if k.endswith(", history") and k[:-len(", history")] in rows]
        if not ratios:
            ratios = [float(x) for x in re.findall(r"p50 (\d+(?:\.\d+)?)x of empty", out)]
        ratio = max(ratios) if ratios else None
    figures.append(Figure(hist_name, f"{ratio:.2f}x", hist_t, ratio <= 1.2)
                   if ratio is not None else
                   missing(hist_name, hist_t, "no history run in bench_availability.py"))
    return figures


def _workers2(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("workers") == 2] or rows


def _runs(rates: list[float]) -> str:
    return (f"{statistics.median(rates):.0f}"
            + (f" (runs {', '.join(f'{x:.0f}' for x in rates)})" if len(rates) > 1 else ""))


def read_holds(doc: dict[str, Any] | None, out: str) -> list[Figure]:
    target, name = ">= 600/s", "holds on distinct slots, 2 workers, holds/s"
    rates = [float(r["rate"]) for r in _workers2(list((doc or {}).get("distinct", [])))]
    if not rates:
        rates = [float(x) for x in re.findall(r"workers=2 run=\d+ \(a\): (\d+) holds/s", out)]
    if not rates:
        return [missing(name, target, "no distinct-slot run")]
    figures = [Figure(name, _runs(rates), target, statistics.median(rates) >= 600)]
    rounds = _workers2(list((doc or {}).get("one_slot", [])))
    if rounds:
        figures.append(Figure("holds, 200 clients on one slot: rounds with one winner",
                              f"{sum(1 for r in rounds if r.get('ok'))}/{len(rounds)}",
                              "all", all(r.get("ok") for r in rounds)))
    return figures


def read_webhooks(doc: dict[str, Any] | None, out: str) -> list[Figure]:
    rate_t, p99_t = ">= 500/s", "<= 100 ms"
    rows = _workers2(list((doc or {}).get("rows", [])))
    rates = [float(r["rate"]) for r in rows]
    p99s = [float(r["p99"]) * 1e3 for r in rows]
    if not rows:
        for m in re.finditer(r"workers=2 run=\d+: (\d+) deliveries/s, p50 [\d.]+ ms, "
                             r"p99 ([\d.]+) ms", out):
            rates.append(float(m.group(1)))
            p99s.append(float(m.group(2)))
    name = "webhook ingest, half duplicates, 2 workers"
    if not rates:
        return [missing(f"{name}, deliveries/s", rate_t, "no run"),
                missing(f"{name}, p99", p99_t, "no run")]
    p99 = statistics.median(p99s)
    return [Figure(f"{name}, deliveries/s", _runs(rates), rate_t,
                   statistics.median(rates) >= 500),
            Figure(f"{name}, p99", f"{p99:.1f} ms", p99_t, p99 <= 100)]


def read_flash(doc: dict[str, Any] | None, out: str) -> list[Figure]:
    if doc is None:  # printed check table: "<check> <measured> <target> yes|NO"
        checks = {}
        for m in re.finditer(r"^(.+?)\s+(\S+)\s+(\S+)\s+(yes|NO)$", out, re.M):
            checks[m.group(1).strip()] = {"measured": m.group(2), "target": m.group(3),
                                          "met": m.group(4) == "yes"}
        doc = {"checks": checks} if checks else None
    if doc is None:
        return [missing("flash sale", "10 won, 0 5xx, p99 <= 1 s", "no output")]
    c = doc.get("checks", {})
    n = doc.get("customers", "?")
    slots = doc.get("slots", c.get("holds won", {}).get("target", "?"))

    def fig(key: str, label: str, target: str) -> Figure:
        if key not in c:
            return missing(label, target, f"no {key!r} check")
        return Figure(label, str(c[key]["measured"]), target, bool(c[key]["met"]))

    return [fig("holds won", f"flash sale ({n} customers, {slots} slots): holds won",
                f"exactly {slots}"),
            fig("live claims after", "flash sale: live claims after (one per slot)",
                f"exactly {slots}"),
            fig("5xx answers", "flash sale: 5xx answers", "0"),
            fig("dropped connections", "flash sale: dropped connections", "0"),
            Figure("flash sale: p99 of every answer",
                   f"{float(c['p99 of every answer, s']['measured']) * 1e3:.0f} ms",
                   "<= 1000 ms", bool(c["p99 of every answer, s"]["met"]))
            if "p99 of every answer, s" in c else
            missing("flash sale: p99 of every answer", "<= 1000 ms", "no p99")]


BENCHES = [
    Bench("slots", "bench_slots.py", [], ["--runs", "50"], False, read_slots),
    Bench("availability", "bench_availability.py", [], ["--duration", "3"], True,
          read_availability),
    Bench("holds", "bench_holds.py", ["--workers", "2"],
          ["--workers", "2", "--repeat", "1", "--holds", "300", "--rounds", "1",
           "--warmup", "50"], True, read_holds),
    Bench("webhooks", "bench_webhooks.py", ["--workers", "2"],
          ["--workers", "2", "--repeat", "1", "--orders", "200", "--warmup", "20"], True,
          read_webhooks),
    Bench("flash_sale", "bench_flash_sale.py", [], ["--customers", "100"], True,
          read_flash),
]


# --------------------------------------------------------------------------- running


def offers(script: Path, option: str) -> bool:
    """Whether ``script --help`` lists ``option``."""
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", done.stdout) is not None


def run_bench(b: Bench, args: argparse.Namespace, folder: Path
              ) -> tuple[dict[str, Any] | None, str]:
    script = HERE / b.script
    cmd = [sys.executable, str(script), *(b.quick if args.quick else b.full)]
    if b.database:
        cmd += ["--postgres", args.postgres]
    if b.name == "flash_sale":
        cmd += ["--redis", args.redis]
    if b.name == "availability" and not args.quick:
        if offers(script, "--history"):  # 2,000,000 past claims, 50,000 of the expert
            cmd += ["--history", "2000000"]
    out_json = folder / f"{b.name}.json"
    out_json.unlink(missing_ok=True)
    if offers(script, "--json"):
        cmd += ["--json", str(out_json)]
    print(f"== {b.name}: {' '.join(cmd[1:])}  (load average {loadavg()})", flush=True)
    if float(loadavg().split()[0]) > BUSY_LOAD:
        print(f"   warning: load average above {BUSY_LOAD}: throughput figures will be low")
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          timeout=args.timeout)
    (folder / f"{b.name}.txt").write_text(done.stdout + done.stderr)
    print(f"   exit {done.returncode} after {time.monotonic() - t0:.0f} s", flush=True)
    if done.returncode not in (0, 1):
        print("   " + (done.stderr.strip().splitlines() or ["(no error output)"])[-1])
    return load(folder, b.name)


def load(folder: Path, name: str) -> tuple[dict[str, Any] | None, str]:
    doc = None
    path = folder / f"{name}.json"
    if path.exists():
        try:
            doc = json.loads(path.read_text())
        except ValueError:
            doc = None
    txt = folder / f"{name}.txt"
    return doc, txt.read_text(errors="replace") if txt.exists() else ""


def run_two_instances(args: argparse.Namespace, folder: Path) -> Figure:
    name, target = "two serve instances over one PostgreSQL and Redis", "all pass"
    txt = folder / "two_instances.txt"
    if not args.read:
        env = {**os.environ, "CONSULTBOOK_TEST_POSTGRES_URL": args.postgres,
               "CONSULTBOOK_TEST_REDIS_URL": args.redis}
        print(f"== two_instances: pytest tests/test_two_instances.py  (load average "
              f"{loadavg()})", flush=True)
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly",
                               "tests/test_two_instances.py"], capture_output=True, text=True,
                              cwd=ROOT, env=env, timeout=args.timeout)
        txt.write_text(done.stdout + done.stderr)
    if not txt.exists():
        return missing(name, target, "not run")
    last = [ln for ln in txt.read_text().splitlines() if ln.strip()][-1:] or [""]
    summary = re.sub(r"^=+\s*|\s*=+$", "", last[0])
    passed = re.search(r"(\d+) passed", summary)
    bad = re.search(r"\d+ (failed|error|skipped)", summary)
    return Figure(name, summary or "no summary", target, bool(passed) and not bad)


def main() -> int:
    p = argparse.ArgumentParser(description="speed figures beside their targets")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    p.add_argument("--only", help="comma-separated subset of: "
                   + ", ".join(b.name for b in BENCHES) + ", two_instances")
    p.add_argument("--no-tests", action="store_true",
                   help="leave out tests/test_two_instances.py")
    p.add_argument("--keep", metavar="DIR", help="keep each benchmark's JSON and output here")
    p.add_argument("--read", metavar="DIR",
                   help="build the table from a --keep folder; run nothing")
    p.add_argument("--postgres", default=DEFAULT_SERVER)
    p.add_argument("--redis", default=DEFAULT_REDIS)
    p.add_argument("--timeout", type=float, default=3600, help="seconds per benchmark")
    p.add_argument("--json", metavar="PATH", help="also write the table here as JSON")
    args = p.parse_args()
    names = [b.name for b in BENCHES] + ["two_instances"]
    only = set(names if not args.only else args.only.split(","))
    unknown = only - set(names)
    if unknown:
        p.error(f"--only: unknown {', '.join(sorted(unknown))}")
    if args.no_tests:
        only.discard("two_instances")

    if args.read:
        folder = Path(args.read)
        if not folder.is_dir():
            p.error(f"--read: {folder} is not a folder")
    else:
        folder = Path(args.keep) if args.keep else Path(
            tempfile.mkdtemp(prefix="consultbook-bench-targets-"))
        folder.mkdir(parents=True, exist_ok=True)

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
          f"{loadavg()}; {'quick' if args.quick else 'full'} run"
          + (f", read from {folder}" if args.read else f", outputs in {folder}"))
    figures: list[Figure] = []
    for b in BENCHES:
        if b.name not in only:
            continue
        doc, out = load(folder, b.name) if args.read else run_bench(b, args, folder)
        figures += b.read(doc, out)
    if "two_instances" in only:
        figures.append(run_two_instances(args, folder))

    width = max(len(f.figure) for f in figures) if figures else 6
    mwidth = max([len(f.measured) for f in figures] + [8])
    print()
    print(f"{'figure':<{width}} | {'measured':<{mwidth}} | {'target':<22} | met")
    print(f"{'-' * width}-+-{'-' * mwidth}-+-{'-' * 22}-+----")
    for f in figures:
        met = "?" if f.met is None else ("yes" if f.met else "NO")
        print(f"{f.figure:<{width}} | {f.measured:<{mwidth}} | {f.target:<22} | {met}")
    print(f"load average after: {loadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"quick": args.quick, "figures": [asdict(f) for f in figures]}, indent=2) + "\n")
    return 0 if figures and all(f.met for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
