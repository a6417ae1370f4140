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
