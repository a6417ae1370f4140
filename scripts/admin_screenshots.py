"""Screenshots of the back office for docs/screenshots/: the dashboard and an order's detail
page, taken in headless Chromium from a freshly served shop with a 30-day sales history.

    .venv/bin/python scripts/admin_screenshots.py [--out docs/screenshots]

Fails (exit 1) if a page logs a console error, e.g. a Content-Security-Policy refusal.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.admin_flows import (  # noqa: E402
    admin_ready,
    screenshots_dir,
    seed_sales,
    staff_login,
    watch_console,
)
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.e2e.server import serve  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=screenshots_dir())
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="admin-shots-") as tmp, serve(Path(tmp)) as shop:
        sales = seed_sales(shop, orders_count=60)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1360, "height": 900},
                                        device_scale_factor=1, locale="en-US")
                problems = watch_console(page)
                staff_login(page, shop)
                admin_ready(page)
                page.screenshot(path=str(args.out / "admin-dashboard.png"), full_page=True)
                page.goto(shop(f"/admin/order/details/?id={sales.first('shipped')}"))
                admin_ready(page)
                page.screenshot(path=str(args.out / "admin-order.png"), full_page=True)
            finally:
                browser.close()
    if problems:
        print("console errors:\n" + "\n".join(problems), file=sys.stderr)
        return 1
    print(f"wrote {args.out / 'admin-dashboard.png'} and {args.out / 'admin-order.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
