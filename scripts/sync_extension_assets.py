"""Keep the storefront calendar's generated parts and the theme app extension in sync.

The calendar is one code base: web/static/booking.{js,css} serve the App Proxy page and the
demo; extensions/consultbook-booking/assets/ ship the same files to Shopify's CDN for the
product-page block. Its strings live in one message catalog per locale,
web/static/i18n/<locale>.json (en is the source; every other catalog has the same keys).
This script

* inlines the English catalog into booking.js (the strings used when a page passes
  none, between the ``BEGIN/END GENERATED i18n-en`` lines),
* writes the extension's locales/<locale>.json (en as en.default.json) from the catalogs,
  so Shopify picks the storefront's language for the block,
* writes the block's ``data-i18n`` capture (one ``'consultbook.<key>' | t`` per catalog
  key the script uses) between the ``generated i18n`` Liquid comments,
* copies booking.js and booking.css into the extension's assets, and manage.js (the
  manage page's and the my-bookings list's script) too,
* writes the my-bookings block's ``data-i18n`` capture the same way (its keys: ``my_*``
  the booking states ``m_status_*`` and ``failed``).

The manage page's strings (``m_*``) and the my-bookings list's (``my_*``) stay out of
booking.js and the booking block: the pages that use them inline their catalog, so the
booking block does not carry their weight.

Run it after changing any of them; ``--check`` changes nothing and exits 1 when something
is out of date (tests/browser/test_storefront_assets.py runs it):

    python3 scripts/sync_extension_assets.py [--check]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "web/static"
CATALOGS = STATIC / "i18n"
EXTENSION = ROOT / "extensions/consultbook-booking"
ASSETS = EXTENSION / "assets"
BLOCK = EXTENSION / "blocks/booking.liquid"
MY_BLOCK = EXTENSION / "blocks/my-bookings.liquid"
PAIRS = {
    STATIC / "booking.js": ASSETS / "consultbook-booking.js",
    STATIC / "booking.css": ASSETS / "consultbook-booking.css",
    STATIC / "manage.js": ASSETS / "consultbook-manage.js",
}
# Keys only the server-rendered page or the block's own Liquid use (not the script).
PAGE_ONLY = ("booking_heading", "book_title", "needs_js", "not_available", "choose_service",
             "no_service")
# Keys of the manage page and the my-bookings list (not the booking calendar's).
OTHER_PAGES = ("m_", "my_")
JS_BEGIN = "  // BEGIN GENERATED i18n-en"
JS_END = "  // END GENERATED i18n-en"
LIQUID_BEGIN = "{%- comment -%} generated i18n: begin {%- endcomment -%}"
LIQUID_END = "{%- comment -%} generated i18n: end {%- endcomment -%}"


def catalogs() -> dict[str, dict[str, str]]:
    """``{locale: {key: text}}`` for every shipped catalog, en first."""
    found = {p.stem: json.loads(p.read_text(encoding="utf-8"))
             for p in sorted(CATALOGS.glob("*.json"))}
    return {"en": found.pop("en"), **found}


def _replace(text: str, begin: str, end: str, block: str, where: Path) -> str:
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{where.relative_to(ROOT)}: {begin!r} … {end!r} not found")
    return pattern.sub(lambda _m: block, text, count=1)


def calendar_key(key: str) -> bool:
    """A string the booking calendar (booking.js and its block) uses."""
    return key not in PAGE_ONLY and not key.startswith(OTHER_PAGES)


def my_bookings_key(key: str) -> bool:
    return key.startswith(("my_", "m_status_")) or key == "failed"


def booking_js(text: str, en: dict[str, str]) -> str:
    script_keys = {k: v for k, v in en.items() if calendar_key(k)}
    body = json.dumps(script_keys, ensure_ascii=False, indent=2).replace("\n", "\n  ")
    block = (f"{JS_BEGIN}: scripts/sync_extension_assets.py from web/static/i18n/en.json\n"
             f"  var EN = {body};\n{JS_END}")
    return _replace(text, JS_BEGIN, JS_END, block, STATIC / "booking.js")


def block_liquid(text: str, en: dict[str, str], wanted: Any = calendar_key,
                 where: Path = BLOCK) -> str:
    keys = [k for k in en if wanted(k)]
    lines = ",\n".join(f"    {json.dumps(k)}: {{{{ 'consultbook.{k}' | t | json }}}}" for k in keys)
    block = f"{LIQUID_BEGIN}\n  {{\n{lines}\n  }}\n  {LIQUID_END}"
    return _replace(text, LIQUID_BEGIN, LIQUID_END, block, where)


def locale_file(catalog: dict[str, str]) -> str:
    return json.dumps({"consultbook": catalog}, ensure_ascii=False, indent=2) + "\n"


def wanted() -> dict[Path, str]:
    """Every generated file and its content."""
    cats = catalogs()
    en = cats["en"]
    for name, cat in cats.items():
        if set(cat) != set(en):
            raise SystemExit(f"web/static/i18n/{name}.json: keys differ from en.json: "
                             f"{sorted(set(cat) ^ set(en))}")
    js = booking_js((STATIC / "booking.js").read_text(encoding="utf-8"), en)
    out: dict[Path, str] = {STATIC / "booking.js": js}
    out[PAIRS[STATIC / "booking.js"]] = js
    for source in (STATIC / "booking.css", STATIC / "manage.js"):
        out[PAIRS[source]] = source.read_text(encoding="utf-8")
    out[BLOCK] = block_liquid(BLOCK.read_text(encoding="utf-8"), en)
    out[MY_BLOCK] = block_liquid(MY_BLOCK.read_text(encoding="utf-8"), en, my_bookings_key,
                                 MY_BLOCK)
    for name, cat in cats.items():
        file = "en.default.json" if name == "en" else f"{name}.json"
        out[EXTENSION / "locales" / file] = locale_file(cat)
    return out


def main(argv: list[str]) -> int:
    stale = []
    for path, content in wanted().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == content:
            continue
        stale.append(path)
        if "--check" not in argv:
            path.write_text(content, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    if stale and "--check" in argv:
        print("out of date (run python3 scripts/sync_extension_assets.py): "
              + ", ".join(str(p.relative_to(ROOT)) for p in stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
