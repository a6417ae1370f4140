"""What a shopper sees at a phone's size (390x844, touch) and a desktop's (1280x800): the part
of a page a link or the keyboard leads to is on screen, not under the header that stays at
the top of the window."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

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

