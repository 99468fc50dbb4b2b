"""Copy the storefront calendar's script and style into the theme app extension.

The calendar is one code base: web/static/booking.{js,css} serve the App Proxy page and the
demo; extensions/consultbook-booking/assets/ ship the same files to Shopify's CDN for the
product-page block. Run this after changing either of the web/static files:

    python3 scripts/sync_extension_assets.py
"""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "extensions/consultbook-booking/assets"
PAIRS = {
    ROOT / "web/static/booking.js": ASSETS / "consultbook-booking.js",
    ROOT / "web/static/booking.css": ASSETS / "consultbook-booking.css",
}


def main() -> None:
    for source, target in PAIRS.items():
        shutil.copyfile(source, target)
        print(f"{source.relative_to(ROOT)} -> {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
