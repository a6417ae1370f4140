"""The product page's "Add to cart" messages in the browser, with htmx swapping them in place."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from .flows import assert_same_page, cart_count, mark_page
from .server import Shop

pytestmark = pytest.mark.e2e


def product_with_a_sold_out_option(page: Page, shop: Shop) -> tuple[str, str]:
    """A product page (URL) of the demo catalogue with a sold-out option and others in stock,
    and that option's id."""
    page.goto(shop("/c/clothing?in_stock=true"))
    links = page.locator("#product-grid .card-title a")
    urls = [links.nth(i).get_attribute("href") for i in range(links.count())]
    for url in urls:
        page.goto(shop(url))
        sold_out = page.locator("input[name=variant_id]:disabled")
        if sold_out.count() and page.locator("input[name=variant_id]:enabled").count():
            return page.url, sold_out.first.get_attribute("value")
    raise AssertionError("no product with a sold-out option among the in-stock clothing")


def test_an_add_clears_the_message_of_the_refused_one_before(shop, page):
    """A link to a sold-out option shows it chosen but disabled, so "Add to cart" sends none:
    "Choose a product option." under the options. Once the shopper chooses one, the add
    succeeds in place and the message goes (it stayed, on the old code)."""
    url, sold_out = product_with_a_sold_out_option(page, shop)
    page.goto(f"{url}?variant={sold_out}")
    mark_page(page)
    before = cart_count(page)
    message = page.locator("#variant-error")
    page.get_by_role("button", name="Add to cart").click()
    expect(message).to_have_text("Choose a product option.")
    expect(message).to_be_visible()
    page.get_by_role("group", name="Choose an option").locator(
        "input[name=variant_id]:enabled").first.check()
    page.get_by_role("button", name="Add to cart").click()
    expect(page.locator("#cart-link")).to_have_text(re.compile(rf"\({before + 1}\)"))
    expect(page.locator("#live")).to_contain_text("to your cart")
    expect(message).to_have_text("")
    expect(message).to_be_hidden()
    assert_same_page(page)


@pytest.mark.parametrize("js", [True, False], ids=["js", "no-js"])
def test_choosing_an_option_shows_its_price_and_sku(shop, new_context, js):
    """Choosing another option puts its price, stock and SKU in the price area: with htmx in
    place (the URL follows, the page stays), without JavaScript through its "Show" link."""
    page = new_context(java_script_enabled=js).new_page()
    page.goto(shop("/p/everyday-organic-cotton-tee"))
    summary = page.locator("#variant-summary")
    options = page.get_by_role("group", name="Choose an option").get_by_role("radio")
    chosen = next(options.nth(i) for i in range(options.count())
                  if options.nth(i).is_enabled() and not options.nth(i).is_checked())
    variant_id = chosen.get_attribute("value")
    label = page.locator(f"label[for='{chosen.get_attribute('id')}']")
    price = label.locator(".variant-meta").inner_text().split("·")[0].strip()
    before = summary.inner_text()
    if js:
        mark_page(page)
        chosen.check()
        expect(page).to_have_url(re.compile(rf"\?variant={variant_id}$"))
        assert_same_page(page)
    else:
        page.locator(f"a.variant-link[href$='?variant={variant_id}']").click()
        expect(page).to_have_url(re.compile(rf"\?variant={variant_id}$"))
    expect(summary).not_to_have_text(before)
    expect(summary.locator(".price-large")).to_contain_text(price)
    expect(page.get_by_role("radio", checked=True)).to_have_attribute("value", variant_id)
