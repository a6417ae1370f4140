"""What a shopper sees at a phone's size (390x844, touch) and a desktop's (1280x800): the part
of a page a link or the keyboard leads to is on screen, not under the header that stays at
the top of the window."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .flows import CUSTOMER_PASSWORD, fill_details, register, unique_email

pytestmark = pytest.mark.e2e

SIZES = {"phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True,
                   "has_touch": True},
         "desktop": {"viewport": {"width": 1280, "height": 800}}}

# Where an element is, against the bottom of the header (sticky: always at the window's top).
BELOW_HEADER = """el => {
  const header = document.querySelector('.site-header').getBoundingClientRect();
  const box = el.getBoundingClientRect();
  return {top: Math.round(box.top), bottom: Math.round(box.bottom),
          header: Math.round(header.bottom)};
}"""


def _a_mug_in_the_cart(page, shop) -> None:
    """A card's "Add to cart" (in place with htmx, or a post that lands on the cart)."""
    page.goto(shop("/c/mugs"))
    page.wait_for_load_state("load")
    page.get_by_role("button", name=re.compile("^Add to cart: ")).first.click()
    expect(page.locator("#cart-link")).to_have_text("Cart (1)")


@pytest.mark.parametrize("js", [True, False], ids=["js", "no-js"])
@pytest.mark.parametrize("size", SIZES)
def test_a_field_an_error_links_to_lands_below_the_header(shop, new_context, size, js):
    """The checkout's "Please correct the fields marked below" links to each field. Followed,
    a link scrolled its field to the window's top edge, where the header (sticky) covers it:
    on a phone the header is 160 px tall, and the field and its message were out of sight
    behind it. The field now lands below the header (scroll-padding: the header's height,
    measured by shop.js, or its usual height without scripts)."""
    page = new_context(java_script_enabled=js, **SIZES[size]).new_page()
    _a_mug_in_the_cart(page, shop)
    page.goto(shop("/checkout"))
    page.get_by_role("button", name="Review order").click()
    links = page.locator(".notice-error li a")
    expect(links.first).to_be_visible()
    hidden = {}
    for i in range(links.count()):
        link = links.nth(i)
        target = link.get_attribute("href")
        page.evaluate("window.scrollTo(0, 0)")
        link.click()
        expect(page).to_have_url(re.compile(re.escape(target) + "$"))
        box = page.locator(target).evaluate(BELOW_HEADER)
        if box["top"] < box["header"]:
            hidden[target] = box
        # Its label above it too: what the field is for, not only the message under it.
        label = page.locator(f"label[for='{target[1:]}']").evaluate(BELOW_HEADER)
        if label["top"] < label["header"]:
            hidden[f"the label of {target}"] = label
    assert len(hidden) == 0, f"fields under the header after following their link: {hidden}"


@pytest.mark.parametrize("size", SIZES)
def test_a_control_focused_backwards_is_not_under_the_header(shop, new_context, size):
    """WCAG 2.4.11 (focus not obscured): Shift+Tab up through the checkout's form moves focus to
    controls above; the browser scrolls one into view only when it is out of the window, so a
    control just under the header (sticky) was focused out of sight."""
    page = new_context(java_script_enabled=False, **SIZES[size]).new_page()
    _a_mug_in_the_cart(page, shop)
    page.goto(shop("/checkout"))
    page.get_by_role("button", name="Review order").focus()
    hidden = []
    for _ in range(14):
        page.keyboard.press("Shift+Tab")
        box = page.evaluate("() => document.activeElement.id")
        if not box:
            continue
        where = page.locator(f"#{box}").evaluate(BELOW_HEADER)
        if where["bottom"] <= where["header"]:
            hidden.append(f"#{box} {where}")
    assert not hidden, "focused controls entirely under the header:\n" + "\n".join(hidden)


@pytest.mark.parametrize("size", SIZES)
def test_a_button_in_a_table_keeps_its_word_whole(shop, new_context, size):
    """The account's API tokens: a table's cells may break a long word (td's overflow-wrap:
    anywhere, for product names), and a button in a cell took that on: "Revoke" was squeezed
    into a column 13 px wide on a phone, one letter a line, a target 13x130 px to tap (and
    "Rev-oke" on two lines on a desktop). A button's word is now whole; the other columns make
    room."""
    page = new_context(**SIZES[size]).new_page()
    email = unique_email("tokens")
    register(page, shop, email)
    made = page.request.post(shop("/api/v1/auth/token"), data={
        "email": email, "password": CUSTOMER_PASSWORD, "name": "My phone app"})
    assert made.status == 201, made.text()
    page.goto(shop("/account"))
    revoke = page.get_by_role("button", name=re.compile("^Revoke")).first
    box = revoke.bounding_box()
    # The lines the word "Revoke" (the button's text before its hidden words) is laid out on.
    lines = revoke.evaluate("""el => { const range = document.createRange();
        range.selectNodeContents(el.firstChild); return range.getClientRects().length; }""")
    assert lines == 1 and box["width"] >= 24 and box["height"] >= 24, (
        f"'Revoke' is {box['width']:.0f}x{box['height']:.0f} px on {lines} lines")
    widths = page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
    assert widths[0] <= widths[1], f"the account page is wider than the phone: {widths}"


def test_navigation_links_are_big_enough_to_tap_on_a_phone(shop, new_context):
    """WCAG 2.5.8 on a phone: the header's category links (the shop's main navigation there)
    were 18 px tall, the footer's 22 px ("API" 23x22), the breadcrumbs' and "Clear filters"
    16 px: small to hit with a thumb. Each is now at least 24x24 CSS px to tap, looking the
    same."""
    page = new_context(**SIZES["phone"]).new_page()
    small = {}
    for path in ("/c/t-shirts", "/products"):
        page.goto(shop(path))
        for found in page.evaluate("""() => Array.from(document.querySelectorAll(
                '.category-nav a, .site-footer a, .breadcrumbs a, .reset-link'), a => {
              const box = a.getBoundingClientRect();
              return [a.innerText.trim(), Math.round(box.width * 10) / 10,
                      Math.round(box.height * 10) / 10];
            })"""):
            text, width, height = found
            if width < 24 or height < 24:
                small[f"{path} {text!r}"] = f"{width}x{height}"
    assert not small, f"links smaller than 24x24 CSS px on a phone: {small}"


@pytest.mark.parametrize("step", ["details", "review"])
def test_an_amount_in_the_order_summary_stays_on_one_line_on_a_phone(shop, new_context, step):
    """The checkout's "Your order" beside the form and on the review page: on a phone a line's
    name took the room and its amount broke in two ("$63." over "98"), as a long word may
    break. The amount now keeps its width and the name wraps beside it."""
    page = new_context(**SIZES["phone"]).new_page()
    page.goto(shop("/c/t-shirts"))
    page.wait_for_load_state("load")
    page.locator("#product-grid .card-title a").first.click()
    page.get_by_label("Quantity").fill("2")
    page.get_by_role("button", name="Add to cart").click()
    expect(page.locator("#cart-link")).to_have_text("Cart (2)")
    page.goto(shop("/checkout"))
    if step == "review":
        fill_details(page, unique_email("summary"))
        page.get_by_role("button", name="Review order").click()
        expect(page.get_by_role("heading", level=1, name="Review your order")).to_be_visible()
    amounts = page.locator(".summary-lines li > :last-child")
    expect(amounts.first).to_be_visible()
    broken = {}
    for i in range(amounts.count()):
        lines = amounts.nth(i).evaluate("""el => { const range = document.createRange();
            range.selectNodeContents(el); return new Set(Array.from(range.getClientRects(),
            r => Math.round(r.top))).size; }""")
        if lines != 1:
            broken[amounts.nth(i).inner_text()] = lines
    assert not broken, f"amounts broken over several lines (lines): {broken}"
