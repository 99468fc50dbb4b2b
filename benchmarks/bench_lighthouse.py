"""Built-for-Shopify performance, measured with Lighthouse on the demo.

    python3 benchmarks/bench_lighthouse.py [--runs 3] [--json out.json]

Starts `consultbook demo` on a free port (throw-away SQLite database and outbox), books a
few consultations through the demo store (so the admin has something to show), then runs
the npm ``lighthouse`` package (installed on first use into
``~/.cache/consultbook-bench/lighthouse``, never into the repository) against Debian's
Chromium, headless, with every background fetch of the browser switched off: the
machine may have no internet and nothing here needs it.

What it measures, each the median of ``--runs`` Lighthouse runs:

* the embedded admin's home and bookings pages (``/admin?embedded=1...#home``,
  ``#bookings``: the page Shopify frames), desktop preset: LCP, CLS and TBT (the lab
  proxy for INP). Targets: LCP <= 2.5 s, CLS <= 0.1, TBT <= 200 ms.
* the demo product page with the booking block and the same page without it
  (``?block=off``), Lighthouse's default mobile preset as Shopify's theme check uses:
  the performance score of each and the drop. Target: drop <= 10 points.

Prints a table ``figure | value | target | met`` and exits 1 when a target is missed
(``--no-fail`` to exit 0 anyway).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from demo_process import DEMO_TZ, demo_tomorrow, start_demo

ROOT = Path(__file__).resolve().parent.parent
LIGHTHOUSE_VERSION = "12.8.2"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "consultbook-bench"
CHROMIUM = os.environ.get("CHROME_PATH", "/usr/bin/chromium")
DEMO_SHOP = "consultbook-demo.myshopify.com"
STORE = "/demo/store"
INTRO = "Intro call (30 min)"
DEEP = "Deep-dive session (60 min)"
CHROME_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--no-default-browser-check", "--disable-default-apps", "--disable-extensions",
    "--disable-domain-reliability", "--disable-client-side-phishing-detection",
    "--disable-features=OptimizationHints,MediaRouter,Translate,AutofillServerCommunication",
    "--metrics-recording-only", "--safebrowsing-disable-auto-update",
    "--disable-dev-shm-usage",
]


# --------------------------------------------------------------------------- lighthouse


def lighthouse_bin() -> Path:
    """The ``lighthouse`` CLI from npm, installed into the cache folder on first use."""
    given = os.environ.get("CONSULTBOOK_BENCH_LIGHTHOUSE")
    if given:
        return Path(given)
    prefix = CACHE / "lighthouse"
    cli = prefix / "node_modules" / ".bin" / "lighthouse"
    have = prefix / "node_modules" / "lighthouse" / "package.json"
    if not (cli.exists() and have.is_file()
            and json.loads(have.read_text())["version"] == LIGHTHOUSE_VERSION):
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit("npm is not installed (apt-get install npm): it brings Lighthouse")
        prefix.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(prefix),
             f"lighthouse@{LIGHTHOUSE_VERSION}"], capture_output=True, text=True, timeout=600)
        if done.returncode != 0 or not cli.exists():
            raise SystemExit(f"npm could not install lighthouse@{LIGHTHOUSE_VERSION}:\n"
                             + done.stderr[-2000:])
    return cli


def run_lighthouse(cli: Path, url: str, preset: str, workdir: Path, tag: str) -> dict[str, Any]:
    """One Lighthouse run (performance only); the JSON report."""
    out = workdir / f"{tag}.json"
    cmd = [str(cli), url, "--quiet", "--output=json", f"--output-path={out}",
           "--only-categories=performance", "--disable-full-page-screenshot",
           f"--chrome-flags={' '.join(CHROME_FLAGS)}", "--max-wait-for-load=30000"]
    if preset == "desktop":
        cmd.append("--preset=desktop")
    env = {**os.environ, "CHROME_PATH": CHROMIUM}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    if done.returncode != 0 or not out.is_file():
        raise SystemExit(f"lighthouse failed on {url}:\n{done.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(out.read_text())
    if report.get("runtimeError"):
        raise SystemExit(f"lighthouse on {url}: {report['runtimeError']}")
    return report


@dataclass
class Sample:
    score: float  # 0..100
    lcp_ms: float
    cls: float
    tbt_ms: float
    fcp_ms: float


def sample(report: dict[str, Any]) -> Sample:
    audits = report["audits"]

    def num(name: str) -> float:
        value = audits[name].get("numericValue")
        if value is None:
            raise SystemExit(f"lighthouse gave no {name}: {audits[name].get('errorMessage')}")
        return float(value)

    return Sample(score=round(100 * float(report["categories"]["performance"]["score"] or 0), 1),
                  lcp_ms=num("largest-contentful-paint"), cls=num("cumulative-layout-shift"),
                  tbt_ms=num("total-blocking-time"), fcp_ms=num("first-contentful-paint"))


def diagnostics(report: dict[str, Any], limit: int = 6) -> list[str]:
    """What Lighthouse says costs the most (opportunities and failing diagnostics)."""
    out = []
    for audit in report["audits"].values():
        score = audit.get("score")
        if score is None or score >= 0.9 or audit.get("scoreDisplayMode") not in (
                "numeric", "binary", "metricSavings"):
            continue
        if audit["id"] in ("largest-contentful-paint", "cumulative-layout-shift",
                           "total-blocking-time", "first-contentful-paint", "speed-index",
                           "interactive", "max-potential-fid"):
            continue
        out.append(f"{audit['id']}: {audit.get('displayValue') or audit['title']}")
    return out[:limit]


# --------------------------------------------------------------------------- the demo


def services(workdir: Path) -> dict[str, str]:
    """title -> id, from what `consultbook demo` printed."""
    out = {}
    for line in (workdir / "server.log").read_text().splitlines():
        parts = line.strip().split(None, 2)
        if len(parts) == 3 and parts[0] == "service:":
            out[parts[2].strip()] = parts[1]
    return out


def book_some(base: str, service: str, variant_of: Callable[[str], str], count: int) -> int:
    """``count`` paid bookings through the demo store (hold, cart, checkout)."""
    made = 0
    start = demo_tomorrow().isoformat()
    slots = requests.get(f"{base}{STORE}/apps/consult/availability", timeout=20, params={
        "service": service, "start": start, "days": "14", "tz": DEMO_TZ}).json()["slots"]
    for i, slot in enumerate(slots[::5][:count]):
        shopper = requests.Session()
        r = shopper.post(f"{base}{STORE}/apps/consult/holds", timeout=20,
                         headers={"X-Forwarded-For": f"198.51.100.{10 + i}"},
                         json={"service": service, "expert": slot["expert"],
                               "start": slot["start"], "tz": DEMO_TZ})
        if r.status_code != 201:
            continue
        hold = r.json()
        shopper.post(f"{base}{STORE}/cart/add.js", timeout=20, json={"items": [{
            "id": int(variant_of(service)), "quantity": 1,
            "properties": hold.get("line_item_properties") or {"_hold": hold["hold"]}}]})
        r = shopper.post(f"{base}{STORE}/checkout", timeout=20, data={
            "first_name": f"Bench{i}", "last_name": "Customer",
            "email": f"bench{i}@example.com"})
        made += r.status_code == 200
    return made


# --------------------------------------------------------------------------- main


@dataclass
class Figure:
    name: str
    value: float
    shown: str
    target: str
    met: bool


def median(samples: list[Sample], attr: str) -> float:
    return float(statistics.median(getattr(s, attr) for s in samples))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="Lighthouse runs per page (median)")
    parser.add_argument("--json", metavar="PATH",
                        help="write the figures as JSON here ('-': stdout)")
    parser.add_argument("--keep-reports", metavar="DIR", help="keep every Lighthouse JSON report")
    parser.add_argument("--only", choices=("admin", "store"),
                        help="measure only the admin pages or only the product pages")
    parser.add_argument("--no-fail", action="store_true", help="exit 0 even if a target is missed")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is not there (apt-get install chromium, or CHROME_PATH)")
    cli = lighthouse_bin()
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        reports = Path(args.keep_reports) if args.keep_reports else workdir / "reports"
        reports.mkdir(parents=True, exist_ok=True)
        proc, base = start_demo(workdir)
        try:
            ids = services(workdir)
            variants = {ids[INTRO]: "4100000000001", ids[DEEP]: "4100000000002"}
            booked = book_some(base, ids[DEEP], variants.__getitem__, 4)
            host = "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvY29uc3VsdGJvb2stZGVtbw"
            admin = "/admin?" + urlencode({"embedded": "1", "shop": DEMO_SHOP, "host": host})
            product = f"{STORE}/products/{ids[INTRO]}"
            pages = {  # name -> (url, preset)
                "admin home": (f"{base}{admin}#home", "desktop"),
                "admin bookings": (f"{base}{admin}#bookings", "desktop"),
                "product with block": (f"{base}{product}", "mobile"),
                "product without block": (f"{base}{product}?block=off", "mobile"),
            }
            if args.only:
                pages = {n: v for n, v in pages.items()
                         if n.startswith("admin") == (args.only == "admin")}
            for url, _preset in pages.values():  # warm the server (first-request imports)
                requests.get(url.split("#")[0], timeout=20)
            samples: dict[str, list[Sample]] = {name: [] for name in pages}
            notes: dict[str, list[str]] = {}
            for run in range(args.runs):  # interleaved, so a burst of load hits all pages
                for name, (url, preset) in pages.items():
                    tag = f"{name.replace(' ', '-')}-{run + 1}"
                    report = run_lighthouse(cli, url, preset, reports, tag)
                    samples[name].append(sample(report))
                    notes[name] = diagnostics(report)
                    s = samples[name][-1]
                    print(f"  run {run + 1} {name}: score {s.score:.0f}, LCP {s.lcp_ms:.0f} ms, "
                          f"CLS {s.cls:.3f}, TBT {s.tbt_ms:.0f} ms", file=sys.stderr)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    load_after = os.getloadavg()

    figures: list[Figure] = []
    for name in [n for n in ("admin home", "admin bookings") if n in samples]:
        lcp, cls, tbt = (median(samples[name], a) for a in ("lcp_ms", "cls", "tbt_ms"))
        figures += [
            Figure(f"{name} LCP", lcp, f"{lcp / 1000:.2f} s", "<= 2.5 s", lcp <= 2500),
            Figure(f"{name} CLS", cls, f"{cls:.3f}", "<= 0.1", cls <= 0.1),
            Figure(f"{name} TBT", tbt, f"{tbt:.0f} ms", "<= 200 ms", tbt <= 200),
        ]
    with_block = without = delta = 0.0
    if "product with block" in samples:
        with_block = median(samples["product with block"], "score")
        without = median(samples["product without block"], "score")
        delta = without - with_block
        figures += [
            Figure("product page score with block (mobile)", with_block, f"{with_block:.0f}",
                   "-", True),
            Figure("product page score without block (mobile)", without, f"{without:.0f}",
                   "-", True),
            Figure("product page score delta", delta, f"{delta:.0f} points", "<= 10 points",
                   delta <= 10),
        ]
    width = max(len(f.name) for f in figures)
    lines = [f"{'figure':<{width}} | {'value':>12} | {'target':>12} | met",
             f"{'-' * width}-|-{'-' * 12}-|-{'-' * 12}-|----"]
    lines += [f"{f.name:<{width}} | {f.shown:>12} | {f.target:>12} | {'yes' if f.met else 'NO'}"
              for f in figures]
    print(f"Lighthouse {LIGHTHOUSE_VERSION}, {CHROMIUM}, median of {args.runs} run(s); "
          f"{booked} bookings seeded; load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after")
    print("\n".join(lines))
    for name, items in notes.items():
        if items:
            print(f"{name}, Lighthouse's top findings (last run): " + "; ".join(items))
    if args.json:
        doc = {"lighthouse": LIGHTHOUSE_VERSION, "chromium": CHROMIUM, "runs": args.runs,
               "load_average": {"before": load_before[0], "after": load_after[0]},
               "figures": [{"figure": f.name, "value": f.value, "target": f.target,
                            "met": f.met} for f in figures],
               "samples": {name: [s.__dict__ for s in ss] for name, ss in samples.items()},
               "findings": notes}
        text = json.dumps(doc, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0 if args.no_fail or all(f.met for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
