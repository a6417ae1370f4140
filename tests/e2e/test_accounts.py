"""A customer registers, logs in, buys and finds the order in their account."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .flows import buy_variant_product, log_in, log_out, register, unique_email

pytestmark = pytest.mark.e2e


def test_customer_registers_logs_in_buys_and_sees_the_order(shop, page):
    email = unique_email("customer")
    register(page, shop, email)
    expect(page.get_by_role("region", name="Your orders")).to_contain_text("No orders yet")
    log_out(page)
    log_in(page, shop, email)

    number, chosen = buy_variant_product(page, shop, email=None, js=True)
    expect(page.locator(".notice")).to_contain_text(email)

    page.get_by_role("navigation", name="Account").get_by_role("link", name="Account").click()
    history = page.get_by_role("table", name=re.compile("Your orders"))
    row = history.get_by_role("row").filter(has_text=number)
    expect(row).to_contain_text("Awaiting payment")
    row.get_by_role("link", name=number).click()
    expect(page.get_by_role("heading", level=1, name=f"Order {number}")).to_be_visible()
    expect(page.locator(".order-lines")).to_contain_text(chosen.name)
