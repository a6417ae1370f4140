"""A guest buys a product with options, with JavaScript on (htmx updates in place) and off."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .flows import buy_variant_product, ready, unique_email

pytestmark = pytest.mark.e2e


def test_guest_buys_a_variant_with_javascript(shop, page):
    number, chosen = buy_variant_product(page, shop, unique_email("guest-js"), js=True)
    expect(page.locator(".order-lines")).to_contain_text(chosen.name)
    expect(page.locator(".order-lines")).to_contain_text(chosen.variant.split(" / ")[0])
    expect(page.locator(".totals")).to_contain_text("WELCOME10")
    expect(page.locator("#cart-link")).to_have_text("Cart (0)")
    assert number and number in page.url


def test_guest_buys_a_variant_without_javascript(shop, new_context):
    page = new_context(java_script_enabled=False).new_page()
    number, chosen = buy_variant_product(page, shop, unique_email("guest-nojs"), js=False)
    expect(page.locator(".order-lines")).to_contain_text(chosen.name)
    expect(page.locator(".totals")).to_contain_text("WELCOME10")
    expect(page.locator("#cart-link")).to_have_text("Cart (0)")
    assert number in page.url


def test_back_button_returns_to_the_previous_filter(shop, page):
    page.goto(shop("/products"))
    ready(page)
    heading = page.locator("#results-heading")
    everything = heading.inner_text()
    page.get_by_label("Category").select_option("mugs")
    expect(page).to_have_url(re.compile(r"category=mugs"))
    expect(heading).not_to_have_text(everything)
    page.go_back()
    expect(page).to_have_url(shop("/products"))
    expect(heading).to_have_text(everything)
    expect(page.get_by_label("Category")).to_have_value("")
    page.go_forward()
    expect(page).to_have_url(re.compile(r"category=mugs"))
    expect(page.get_by_label("Category")).to_have_value("mugs")


def test_back_to_a_refused_filter_puts_that_page_back(shop, page):
    """A pages audit: Back to a listing address whose filter was refused (min_price=-1) kept
    the page the shopper left on screen under the refused page's address (htmx puts back only
    a 2xx answer, and the full page answers 400). Now the refused page comes back, its
    message beside the field. Fails on the old code."""
    page.goto(shop("/products"))
    ready(page)
    heading = page.locator("#results-heading")
    everything = heading.inner_text()
    low = page.get_by_label("Min", exact=True)
    low.fill("-1")
    low.press("Tab")
    expect(page.locator("#min_price-error")).to_have_text("Enter a price such as 10 or 24.99.")
    expect(page).to_have_url(re.compile(r"min_price=-1"))
    page.get_by_label("Category").select_option("mugs")
    expect(page).to_have_url(re.compile(r"category=mugs"))
    expect(heading).not_to_have_text(everything)
    page.go_back()
    expect(page).to_have_url(re.compile(r"min_price=-1"))
    expect(page.get_by_label("Category")).to_have_value("")
    expect(heading).to_have_text(everything)
    expect(page.locator("#min_price-error")).to_have_text("Enter a price such as 10 or 24.99.")
    expect(low).to_have_value("-1")
