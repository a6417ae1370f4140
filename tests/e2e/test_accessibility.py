"""Accessibility in a real browser: axe-core finds no serious or critical WCAG problem on the
shop's pages; a purchase works with the keyboard alone; focus is visible; changes are announced
through the polite live region, which is updated in place."""
from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from .conftest import AXE_JS
from .flows import (
    ADDRESS,
    assert_same_page,
    cart_count,
    fill_checkout,
    mark_page,
    money,
    open_variant_product,
    place_order,
    ready,
    unique_email,
)

pytestmark = pytest.mark.e2e
BLOCKING = ("serious", "critical")

ACTIVE = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const label = el.labels && el.labels.length ? el.labels[0].innerText : "";
  const style = getComputedStyle(el);
  const box = el.getBoundingClientRect();
  return {tag: el.tagName.toLowerCase(), id: el.id, type: el.type || "",
          name: el.getAttribute("name") || "", checked: !!el.checked,
          text: (el.getAttribute("aria-label") || label || el.innerText || "").trim(),
          outlineStyle: style.outlineStyle, outlineWidth: parseFloat(style.outlineWidth) || 0,
          boxShadow: style.boxShadow, width: box.width, height: box.height,
          inViewport: box.bottom > 0 && box.right > 0 && box.top < innerHeight
                      && box.left < innerWidth};
}"""


def axe_problems(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the current page, one line per node."""
    page.add_script_tag(path=str(AXE_JS))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    lines = []
    for violation in result["violations"]:
        if violation["impact"] not in BLOCKING:
            continue
        for node in violation["nodes"][:5]:
            lines.append(f"{violation['impact']} {violation['id']} ({violation['help']}): "
                         f"{' '.join(map(str, node['target']))}: "
                         f"{node.get('failureSummary', '').splitlines()[-1].strip()}")
    return lines


def test_pages_have_no_serious_or_critical_axe_violations(tour):
    problems: dict[str, list[str]] = {}
    for name, (context, url) in tour.pages.items():
        page = context.new_page()
        try:
            response = page.goto(url)
            assert response is not None and response.status == 200, f"{name}: {url}"
            found = axe_problems(page)
            if found:
                problems[f"{name} ({url})"] = found
        finally:
            page.close()
    assert not problems, "axe-core found serious or critical violations:\n" + "\n".join(
        f"- {where}:\n    " + "\n    ".join(lines) for where, lines in problems.items())


def test_pages_reflow_at_phone_width(tour):
    """WCAG 1.4.10: at 390 CSS pixels nothing needs sideways scrolling."""
    too_wide = {}
    for name, (context, url) in tour.pages.items():
        page = context.new_page()
        try:
            page.set_viewport_size({"width": 390, "height": 844})
            page.goto(url)
            widths = page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
            if widths[0] > widths[1]:
                too_wide[name] = widths
        finally:
            page.close()
    assert not too_wide, f"pages wider than a phone (scroll width, window width): {too_wide}"


# A category and a product named with long words (German compounds), written into the running
# shop's database by the app's own models, as the back office would save them.
_LONG_NAMES = """
from shop.extensions import db
from shop.models import Category, Product, Variant
from shop.services.catalog import refresh_product_prices
from wsgi import app

with app.app_context():
    parent = Category(name="Rindfleischetikettierungsüberwachungsaufgabenübertragungsgesetz",
                      slug="e2e-long-category", position=90,
                      description="Lebensmittelüberwachungsbehördenzuständigkeitsverordnung")
    db.session.add(parent)
    db.session.flush()
    child = Category(name="Grundstücksverkehrsgenehmigungszuständigkeitsübertragungsverordnung",
                     slug="e2e-long-child", parent_id=parent.id, position=1)
    db.session.add(child)
    db.session.flush()
    product = Product(name="Donaudampfschifffahrtsgesellschaftskapitänsmütze Deluxe",
                      slug="e2e-long-word", description="Eine Mütze.", category_id=child.id,
                      active=True)
    db.session.add(product)
    db.session.flush()
    db.session.add(Variant(product_id=product.id, sku="E2E-LONG-1", options={}, price=12,
                           stock_quantity=5))
    db.session.flush()
    refresh_product_prices([product.id])
    db.session.commit()
"""


def test_catalogue_pages_with_long_words_in_names_reflow_at_phone_width(shop, new_context):
    """WCAG 1.4.10 with a product or category named with a long word: the product page's
    columns, the listing's filter (its category list) and a category's subcategory links were
    as wide as the longest word, so a phone had to scroll sideways (758 px of page in a
    390 px window on the product page), and so were the cart's line and the checkout's
    summary. The word now wraps."""
    import subprocess
    import sys

    from .server import ROOT, _server_env

    subprocess.run([sys.executable, "-c", _LONG_NAMES], cwd=ROOT, check=True, timeout=120,
                   env=_server_env(shop.log.parent), capture_output=True)
    page = new_context(viewport={"width": 390, "height": 844}).new_page()
    too_wide = {}
    for path in ("/p/e2e-long-word", "/c/e2e-long-category", "/c/e2e-long-child",
                 "/products?category=e2e-long-child", "/products?q=donaudampf"):
        page.goto(shop(path))
        assert "Donaudampfschifffahrtsgesellschaftskapitänsmütze" in page.content(), path
        widths = page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
        if widths[0] > widths[1]:
            too_wide[path] = widths
    # The same product in the cart and the checkout's summary: the cart was 588 px wide and
    # the checkout 497 px in a 390 px window (its line's name and the summary's line).
    page.goto(shop("/p/e2e-long-word"))
    page.get_by_role("button", name="Add to cart").click()
    expect(page.locator("#cart-link")).to_have_text("Cart (1)")
    def measure(what: str) -> None:
        assert "Donaudampfschifffahrtsgesellschaftskapitänsmütze" in page.content(), what
        widths = page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
        if widths[0] > widths[1]:
            too_wide[what] = widths

    page.goto(shop("/checkout"))
    measure("/checkout")
    page.goto(shop("/cart"))
    measure("/cart")
    fill_checkout(page, unique_email("long-word"))
    measure("the review")
    place_order(page)
    measure("the order's page")
    assert not too_wide, f"pages wider than a phone (scroll width, window width): {too_wide}"


def test_pages_after_htmx_updates_have_no_serious_axe_violations(shop, new_context):
    page = new_context(bypass_csp=True).new_page()
    open_variant_product(page, shop, js=True)
    ready(page)
    page.get_by_role("button", name="Add to cart").click()
    expect(page.locator("#cart-link")).to_have_text("Cart (1)")
    page.goto(shop("/products"))
    ready(page)
    page.get_by_label("Sort by").select_option("-price")
    expect(page).to_have_url(re.compile(r"sort=-price"))
    expect(page.locator("#live")).to_contain_text("products found")
    assert axe_problems(page) == []


def _active(page: Page) -> dict | None:
    return page.evaluate(ACTIVE)


def tab_to(page: Page, wanted: Callable[[dict], bool], what: str, *, backwards: bool = False,
           limit: int = 150) -> dict:
    """Press Tab (or Shift+Tab) until the focused element is the wanted one."""
    key = "Shift+Tab" if backwards else "Tab"
    seen = []
    for _ in range(limit):
        page.keyboard.press(key)
        active = _active(page)
        if active and wanted(active):
            return active
        if active:
            seen.append(f"{active['tag']}#{active['id']} {active['text'][:30]!r}")
    raise AssertionError(f"{what} never got the focus; focus went through: {seen[-20:]}")


def named(text: str, tag: str | None = None) -> Callable[[dict], bool]:
    return lambda a: a["text"] == text and (tag is None or a["tag"] == tag)


def field(label: str) -> Callable[[dict], bool]:
    return lambda a: a["tag"] in ("input", "select") and a["text"].startswith(label)


def test_keyboard_only_purchase(shop, page):
    page.goto(shop("/"))
    first = tab_to(page, lambda a: True, "the first focusable element")
    assert first["text"] == "Skip to content", "the first Tab should reach the skip link"
    page.keyboard.press("Enter")
    tab_to(page, named("All products", "a"), "the All products link")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1, name="All products")).to_be_visible()

    # A product with options: its title link, then its product page.
    card = page.locator(".card").filter(
        has=page.get_by_role("link", name=re.compile("^Choose options for"))).first
    title = card.locator(".card-title a").inner_text().strip()
    tab_to(page, named(title, "a"), f"the link to {title}")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1, name=title)).to_be_visible()

    mark_page(page)
    option = tab_to(page, lambda a: a["type"] == "radio", "the option radio group")
    assert option["checked"], "Tab should land on the selected option"
    page.keyboard.press("Space")
    tab_to(page, named("Add to cart", "button"), "the Add to cart button")
    page.keyboard.press("Enter")
    expect(page.locator("#cart-link")).to_have_text("Cart (1)")
    assert _active(page)["text"] == "Add to cart", "focus should stay on the button"
    assert_same_page(page)

    tab_to(page, lambda a: a["id"] == "cart-link", "the header's cart link", backwards=True)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1, name="Your cart")).to_be_visible()

    mark_page(page)
    quantity = tab_to(page, field("Quantity"), "the line's quantity field")
    page.keyboard.type("3")
    page.keyboard.press("Enter")
    expect(page.locator("#cart-link")).to_have_text("Cart (3)")
    after = _active(page)
    assert after is not None and after["id"] == quantity["id"], (
        f"focus should stay on the quantity field after the update, not {after}")
    assert_same_page(page)

    tab_to(page, field("Coupon code"), "the coupon field")
    page.keyboard.type("WELCOME10")
    page.keyboard.press("Enter")
    expect(page.locator("#coupon-box")).to_contain_text("WELCOME10 applied")
    expect(page.locator("#cart-totals .discount")).to_be_visible()

    tab_to(page, named("Checkout", "a"), "the Checkout link")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1, name="Checkout")).to_be_visible()
    for label, value in [("Email", unique_email("keyboard")), ("Full name", ADDRESS["name"]),
                         ("Address line 1", ADDRESS["line1"]), ("City", ADDRESS["city"]),
                         ("Postal code", ADDRESS["postal_code"])]:
        tab_to(page, field(label), f"the {label} field")
        page.keyboard.type(value)
    tab_to(page, named("Review order", "button"), "the Review order button")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1, name="Review your order")).to_be_visible()

    tab_to(page, named("Place order", "button"), "the Place order button")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1, name=re.compile(r"^Order "))).to_be_visible()
    expect(page.locator(".order-status")).to_contain_text("Awaiting payment")
    expect(page.locator(".order-lines")).to_contain_text(title)


def _focus_problems(page: Page, stops: int) -> list[str]:
    problems = []
    for _ in range(stops):
        page.keyboard.press("Tab")
        a = _active(page)
        if a is None:
            continue
        where = f"{a['tag']}#{a['id']} {a['text'][:40]!r}"
        ring = (a["outlineStyle"] != "none" and a["outlineWidth"] >= 2) or a["boxShadow"] != "none"
        if not ring:
            problems.append(f"{where}: no focus indicator (outline {a['outlineStyle']} "
                            f"{a['outlineWidth']}px, box-shadow {a['boxShadow']})")
        if a["width"] < 2 or a["height"] < 2 or not a["inViewport"]:
            problems.append(f"{where}: focused but not visible on screen")
    return problems


def test_focus_is_always_visible(shop, page):
    open_variant_product(page, shop)
    ready(page)
    page.get_by_role("button", name="Add to cart").click()
    expect(page.locator("#cart-link")).to_have_text("Cart (1)")
    problems = []
    for path, stops in [("/", 30), (page.url.removeprefix(shop.url), 40), ("/cart", 40),
                        ("/checkout", 40)]:
        page.goto(shop(path))
        problems += [f"{path}: {p}" for p in _focus_problems(page, stops)]
    assert not problems, "\n".join(problems)


def test_live_region_announces_changes_in_place(shop, page):
    page.goto(shop("/products"))
    live = page.locator("#live")
    expect(live).to_have_attribute("role", "status")
    expect(live).to_have_attribute("aria-live", "polite")
    # Screen readers announce changes to a live region already on the page, not a new one:
    # tag the element and check the same element carries each announcement.
    page.evaluate("document.getElementById('live').dataset.e2e = 'original'")
    mark_page(page)

    page.get_by_label("Category").select_option("mugs")
    expect(live).to_have_text(re.compile(r"^\d+ products found$"))
    total = int(re.match(r"\d+", live.inner_text()).group())
    expect(page.locator("#results-heading")).to_contain_text(f"{total} product")

    add = re.compile(r"^Add to cart: ")
    card = page.locator(".card").filter(has=page.get_by_role("button", name=add)).first
    name = card.locator(".card-title a").inner_text().strip()
    before = cart_count(page)
    card.get_by_role("button", name=f"Add to cart: {name}").click()
    expect(live).to_have_text(f"Added {name} to your cart.")
    assert cart_count(page) == before + 1
    assert_same_page(page)
    assert page.evaluate("document.getElementById('live').dataset.e2e") == "original", (
        "the live region was replaced instead of updated")
    assert page.locator("[aria-live]").count() == 1


def test_cart_totals_follow_a_quantity_change(shop, page):
    open_variant_product(page, shop)
    ready(page)
    page.get_by_role("button", name="Add to cart").click()
    expect(page.locator("#cart-link")).to_have_text("Cart (1)")
    page.goto(shop("/cart"))
    unit = money(page.locator(".cart-line .line-unit").inner_text())
    page.evaluate("document.getElementById('live').dataset.e2e = 'original'")
    mark_page(page)
    page.get_by_role("spinbutton", name=re.compile("^Quantity")).fill("4")
    page.get_by_role("button", name=re.compile(r"^Update quantity of ")).click()
    expect(page.locator("#live")).to_contain_text("updated to 4")
    expect(page.locator("#cart-totals")).to_contain_text(f"{unit * 4:,.2f}")
    assert page.evaluate("document.getElementById('live').dataset.e2e") == "original"
    assert_same_page(page)
