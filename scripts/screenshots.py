"""Screenshots of the shop's main pages at phone (390x844) and desktop (1280x900) widths, for the
README: docs/screenshots/<page>-<width>.png.

    .venv/bin/python scripts/screenshots.py

Serves a fresh demo shop (tests/e2e/server.py: SQLite in a temporary folder, gunicorn on a free
loopback port) and walks a guest through a purchase in Debian's Chromium. Needs what the browser
tests need: `bash tests/e2e/install-tools.sh`."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import Page, sync_playwright  # noqa: E402

from tests.e2e import flows  # noqa: E402
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.e2e.server import Shop, serve  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
WIDTHS = {"phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True,
                    "has_touch": True},
          "desktop": {"viewport": {"width": 1280, "height": 900}}}
PAGES = ("home", "listing", "product", "cart", "checkout", "order")


def shoot(page: Page, name: str, width: str) -> Path:
    """Save the top of the current page (what a shopper sees first)."""
    page.wait_for_load_state("load")
    page.evaluate("window.scrollTo(0, 0)")
    path = OUT / f"{name}-{width}.png"
    page.screenshot(path=str(path))
    return path


def walk(page: Page, shop: Shop, width: str) -> list[Path]:
    """A guest's purchase, with a screenshot at each main page."""
    taken = []
    page.goto(shop("/"))
    taken.append(shoot(page, "home", width))
    flows.open_variant_product(page, shop)
    product = page.url
    page.goto(shop("/products?category=clothing&in_stock=true"))
    taken.append(shoot(page, "listing", width))
    page.goto(product)
    flows.choose_variant_and_add(page)
    taken.append(shoot(page, "product", width))
    page.goto(shop("/cart"))
    flows.change_quantity(page, 2)
    flows.apply_coupon(page)
    taken.append(shoot(page, "cart", width))
    page.get_by_role("link", name="Checkout", exact=True).click()
    flows.fill_details(page, "ada@example.com")
    taken.append(shoot(page, "checkout", width))
    page.get_by_role("button", name="Review order").click()
    flows.place_order(page)
    taken.append(shoot(page, "order", width))
    return taken


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="shop-screens-") as tmp, serve(Path(tmp)) as shop, \
            sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for width, options in WIDTHS.items():
                context = browser.new_context(locale="en-US", **options)
                context.set_default_timeout(15_000)
                for path in walk(context.new_page(), shop, width):
                    print(path.relative_to(ROOT))
                context.close()
        finally:
            browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
