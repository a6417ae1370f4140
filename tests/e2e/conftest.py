"""Browser tests: the shop served by gunicorn on loopback with a fresh SQLite database, driven
by Debian's Chromium through Playwright. Without the tools the tests are skipped with a clear
reason, unless E2E_REQUIRED=1 (CI), where a missing tool is a failure."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from .server import ROOT, Shop, serve

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext

TOOLS = ROOT / "tests" / "e2e" / ".tools" / "node_modules"
AXE_JS = TOOLS / "axe-core" / "axe.min.js"
VNU_JAR = TOOLS / "vnu-jar" / "build" / "dist" / "vnu.jar"
CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


E2E_DIR = ROOT / "tests" / "e2e"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder drives a browser: mark it `e2e` (`-m "not e2e"` skips them)."""
    for item in items:
        if E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.e2e)


def missing_tools() -> list[str]:
    """What the browser tests need and this machine lacks."""
    missing = []
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"Chromium ({CHROMIUM})")
    if shutil.which("java") is None:
        missing.append("Java (for the Nu Html Checker)")
    if not AXE_JS.is_file():
        missing.append(f"axe-core ({AXE_JS.relative_to(ROOT)})")
    if not VNU_JAR.is_file():
        missing.append(f"vnu-jar ({VNU_JAR.relative_to(ROOT)})")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright Python package (requirements-dev.txt)")
    return missing


@pytest.fixture(scope="session", autouse=True)
def e2e_tools() -> None:
    """Skip (or, with E2E_REQUIRED=1, fail) every browser test when a tool is missing."""
    missing = missing_tools()
    if not missing:
        return
    message = (f"e2e browser tests SKIPPED: missing {', '.join(missing)}; "
               f"run `bash tests/e2e/install-tools.sh` (E2E_REQUIRED=1 makes this a failure)")
    if os.environ.get("E2E_REQUIRED") == "1":
        pytest.fail(f"e2e browser tests are required (E2E_REQUIRED=1) but cannot run: "
                    f"missing {', '.join(missing)}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def shop(e2e_tools, tmp_path_factory) -> Iterator[Shop]:
    """A migrated, seeded shop under gunicorn (2 workers) on a free loopback port."""
    with serve(tmp_path_factory.mktemp("e2e-shop")) as running:
        yield running


@pytest.fixture(autouse=True)
def no_server_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test during which the shop logged an unhandled error (a 500), showing it."""
    if "shop" not in request.fixturenames:
        yield
        return
    shop: Shop = request.getfixturevalue("shop")
    offset = shop.log_size()
    yield
    errors = shop.errors_since(offset)
    if errors:
        pytest.fail(f"the shop logged unhandled errors during this test:\n{errors[-6000:]}",
                    pytrace=False)


@pytest.fixture(scope="session")
def browser(e2e_tools):
    """One headless Chromium for the session (the system browser; Playwright cannot download)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def new_context(browser):
    """Make browser profiles (own cookies; java_script_enabled=False for a no-JS shopper);
    all are closed after the test."""
    made = []

    def factory(**options):
        options.setdefault("viewport", {"width": 1280, "height": 900})
        ctx = browser.new_context(locale="en-US", **options)
        ctx.set_default_timeout(10_000)
        ctx.set_default_navigation_timeout(20_000)
        made.append(ctx)
        return ctx

    yield factory
    for ctx in made:
        ctx.close()


@pytest.fixture
def page(new_context):
    """A page in a fresh profile with JavaScript on."""
    return new_context().new_page()


@dataclass
class Tour:
    """The shop's pages in a realistic state: a guest with a cart (coupon applied) at the review
    step, and a customer with an order. `pages` maps a name to (browser profile, URL)."""

    pages: dict[str, tuple[BrowserContext, str]] = field(default_factory=dict)


@pytest.fixture(scope="session")
def tour(shop, browser) -> Iterator[Tour]:
    """Walk a guest and a customer to every page worth checking (axe runs in the page, so these
    profiles bypass the CSP to let the tests inject it)."""
    from . import flows

    options = {"viewport": {"width": 1280, "height": 900}, "locale": "en-US", "bypass_csp": True}
    guest = browser.new_context(**options)
    customer = browser.new_context(**options)
    for ctx in (guest, customer):
        ctx.set_default_timeout(10_000)
        ctx.set_default_navigation_timeout(20_000)
    try:
        page = customer.new_page()
        flows.register(page, shop, flows.unique_email("tour-customer"))
        _, bought = flows.buy_variant_product(page, shop, email=None, save_address=True)
        order_url = page.url
        page.close()

        page = guest.new_page()
        flows.open_variant_product(page, shop)
        product_url = page.url
        flows.choose_variant_and_add(page)
        page.goto(shop("/cart"))
        flows.apply_coupon(page)
        flows.fill_checkout(page, flows.unique_email("tour-guest"))
        page.close()

        result = Tour()
        for name, path in [("home", "/"), ("listing", "/products"),
                           ("search", "/products?q=mug&sort=price&in_stock=true"),
                           ("category", "/c/clothing"), ("product", product_url),
                           ("cart", "/cart"), ("checkout", "/checkout"),
                           ("review", "/checkout/review"), ("login", "/account/login"),
                           ("register", "/account/register"),
                           ("forgot-password", "/account/password/forgot"),
                           ("reviews", bought.url + "/reviews")]:
            result.pages[name] = (guest, path if path.startswith("http") else shop(path))
        for name, path in [("account", "/account"), ("order", order_url),
                           ("account-orders", "/account/orders"), ("profile", "/account/profile"),
                           ("change-password", "/account/password"),
                           ("new-address", "/account/addresses/new"),
                           ("product-to-review", bought.url),
                           ("new-review", bought.url + "/reviews/new")]:
            result.pages[name] = (customer, path if path.startswith("http") else shop(path))
        yield result
    finally:
        guest.close()
        customer.close()
