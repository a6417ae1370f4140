"""Browser tests: the shop served by gunicorn on loopback with a fresh SQLite database, driven
by Debian's Chromium through Playwright. Without the tools the tests are skipped with a clear
reason, unless E2E_REQUIRED=1 (CI), where a missing tool is a failure."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from .server import ROOT, Shop, serve

TOOLS = ROOT / "tests" / "e2e" / ".tools" / "node_modules"
AXE_JS = TOOLS / "axe-core" / "axe.min.js"
VNU_JAR = TOOLS / "vnu-jar" / "build" / "dist" / "vnu.jar"
CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


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
