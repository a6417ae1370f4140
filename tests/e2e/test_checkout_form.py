"""Checkout's details form in the browser: with JavaScript, a refused form is swapped in place
(each message beside its field, what was typed kept); accepted, it opens the review page."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .flows import (
    ADDRESS,
    assert_same_page,
    choose_variant_and_add,
    fill_details,
    mark_page,
    open_variant_product,
    unique_email,
)

pytestmark = pytest.mark.e2e


def test_a_refused_details_form_is_corrected_in_place(shop, page):
    open_variant_product(page, shop)
    choose_variant_and_add(page)
    page.goto(shop("/checkout"))
    fill_details(page, "not-an-email")
    page.get_by_label("City").fill("")
    mark_page(page)
    page.get_by_role("button", name="Review order").click()
    expect(page.locator("#email-error")).to_have_text("Enter a valid email address.")
    expect(page.locator("#city-error")).to_have_text("Enter the city.")
    expect(page.get_by_role("alert")).to_contain_text("Please correct the fields marked below.")
    expect(page.get_by_label("Email")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Email")).to_have_value("not-an-email")
    expect(page.get_by_label("Full name")).to_have_value(ADDRESS["name"])
    expect(page.get_by_role("button", name="Review order")).to_be_focused()
    assert_same_page(page)
    page.get_by_label("Email").fill(unique_email("corrected"))
    page.get_by_label("City").fill(ADDRESS["city"])
    page.get_by_role("button", name="Review order").click()
    expect(page.get_by_role("heading", level=1, name="Review your order")).to_be_visible()
    expect(page).to_have_url(shop("/checkout/review"))
    expect(page.locator("address")).to_contain_text(ADDRESS["city"])


def test_the_summary_beside_the_details_follows_the_shipping_method_chosen(shop, page):
    """Express chosen on the details form: the order summary beside it kept the standard
    shipping and its total until the form was sent. It now follows each choice, read out,
    and the review confirms the same total."""
    import re

    open_variant_product(page, shop)
    choose_variant_and_add(page)
    page.goto(shop("/checkout"))
    mark_page(page)
    shipping = page.locator("#checkout-summary dt:text-is('Shipping') + dd")
    total = page.locator("#checkout-summary .grand-total dd")
    standard, standard_total = shipping.inner_text(), total.inner_text()
    page.get_by_role("radio", name=re.compile("^Express")).check()
    expect(shipping).to_have_text("$15.00")
    expect(total).not_to_have_text(standard_total)
    express_total = total.inner_text()
    expect(page.locator("#live")).to_have_text(
        f"Shipping: Express (1-2 business days), $15.00. Total {express_total}.")
    page.get_by_role("radio", name=re.compile("^Standard")).check()
    expect(shipping).to_have_text(standard)
    expect(total).to_have_text(standard_total)
    page.get_by_role("radio", name=re.compile("^Express")).check()
    expect(total).to_have_text(express_total)
    assert_same_page(page)
    fill_details(page, unique_email("summary"))
    page.get_by_role("radio", name=re.compile("^Express")).check()
    page.get_by_role("button", name="Review order").click()
    expect(page.get_by_role("heading", level=1, name="Review your order")).to_be_visible()
    expect(page.locator("#checkout-summary .grand-total dd")).to_have_text(express_total)


def test_the_shipping_method_chosen_holds_after_back_and_refresh(shop, page):
    """Express chosen with htmx, then "Log in" and Back: the page came from the shop priced
    with Standard, and the browser put Express back (a moment after the page loaded) beside a
    summary priced with Standard; a refresh lost the choice. The page's address now carries
    the method chosen (replaced), so the summary and the choice agree."""
    import re

    open_variant_product(page, shop)
    choose_variant_and_add(page)
    page.goto(shop("/checkout"))
    shipping = page.locator("#checkout-summary dt:text-is('Shipping') + dd")
    express = page.get_by_role("radio", name=re.compile("^Express"))
    page.get_by_label("Full name").fill(ADDRESS["name"])
    express.check()
    expect(shipping).to_have_text("$15.00")
    entries = page.evaluate("history.length")
    expect(page).to_have_url(re.compile(r"/checkout\?shipping_method=express$"))
    assert page.evaluate("history.length") == entries
    page.get_by_role("link", name="Log in").last.click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile("Log in"))
    page.go_back()
    expect(express).to_be_checked()
    expect(shipping).to_have_text("$15.00")
    page.wait_for_timeout(500)  # a browser puts fields back a moment after the page loads
    expect(express).to_be_checked()
    expect(shipping).to_have_text("$15.00")
    page.reload()
    expect(express).to_be_checked()
    expect(shipping).to_have_text("$15.00")
