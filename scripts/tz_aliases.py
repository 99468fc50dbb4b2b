"""Generate the storefront calendar's time-zone alias table from the tz database.

Browsers name zones the way ICU does, and ICU keeps many old names: Chromium reports
``Asia/Calcutta`` for India, ``Europe/Kiev`` for Ukraine. The server, the mails and the
zone picker use the tz database's current names (``Asia/Kolkata``), so the calendar
resolves every name through a table of the tz database's links (its ``backward`` file
and merged zones, as compiled into ``tzdata.zi``), generated here, inlined into
web/static/booking.js between the ``BEGIN/END GENERATED tz-aliases`` lines.

A link is an alias unless its own name is a country's zone in ``zone.tab`` or
``zone1970.tab`` (``Europe/Oslo`` links to ``Europe/Berlin`` since 2022 but is still the
name a Norwegian expects to see), and links to ``Etc/UTC`` resolve to ``UTC``.
The data come from the ``tzdata`` package (a dependency of the project), so every
machine generates the same table for the same tzdata release.

    python3 scripts/tz_aliases.py          # rewrite the table in booking.js
    python3 scripts/tz_aliases.py --check  # exit 1 if it is out of date

Run scripts/sync_extension_assets.py afterwards to copy booking.js into the theme
extension (it does this itself when called without --check).
"""

from __future__ import annotations

import json
import re
import sys
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOOKING_JS = ROOT / "web/static/booking.js"
BEGIN = "  // BEGIN GENERATED tz-aliases"
END = "  // END GENERATED tz-aliases"


def _zoneinfo_text(name: str) -> str:
    return (resources.files("tzdata") / "zoneinfo" / name).read_text(encoding="utf-8")


def tzdata_version() -> str:
    import tzdata

    return str(tzdata.IANA_VERSION)


def aliases() -> dict[str, str]:
    """``{old name: current name}`` for every tz database link that is not a country's
    zone itself; chains are followed to a zone."""
    links: dict[str, str] = {}
    zones: set[str] = set()
    for line in _zoneinfo_text("tzdata.zi").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "Z":
            zones.add(parts[1])
        elif len(parts) == 3 and parts[0] == "L":
            links[parts[2]] = parts[1]
    countries: set[str] = set()
    for tab in ("zone.tab", "zone1970.tab"):
        for line in _zoneinfo_text(tab).splitlines():
            if line and not line.startswith("#"):
                countries.add(line.split("\t")[2])
    out: dict[str, str] = {}
    for alias, target in links.items():
        if alias in countries or alias == "UTC":
            continue
        seen = 0
        while target in links and target not in countries and seen < 8:
            target, seen = links[target], seen + 1
        if target == "Etc/UTC":
            target = "UTC"
        if target != alias and (target in zones or target in countries or target == "UTC"):
            out[alias] = target
    return dict(sorted(out.items()))


def generated_block() -> str:
    table = json.dumps(aliases(), separators=(",", ":"), sort_keys=True)
    return (f"{BEGIN}: scripts/tz_aliases.py from tzdata {tzdata_version()}\n"
            f"  var TZ_ALIASES = {table};\n{END}")


def replace_block(text: str, begin: str, end: str, block: str) -> str:
    """``text`` with the lines from ``begin`` to ``end`` (both included) replaced."""
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{begin!r} … {end!r} not found")
    return pattern.sub(lambda _m: block, text, count=1)


def main(argv: list[str]) -> int:
    text = BOOKING_JS.read_text(encoding="utf-8")
    new = replace_block(text, BEGIN, END, generated_block())
    if "--check" in argv:
        if new != text:
            print("web/static/booking.js: the tz alias table is out of date; "
                  "run python3 scripts/tz_aliases.py", file=sys.stderr)
            return 1
        return 0
    BOOKING_JS.write_text(new, encoding="utf-8")
    print(f"{BOOKING_JS.relative_to(ROOT)}: {len(aliases())} aliases (tzdata {tzdata_version()})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
