"""From purchase to parcel: a customer buys, staff see the sales chart in the back office, mark
the order paid and shipped with a tracking number, and the customer sees it."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from .flows import buy_variant_product, register, unique_email

pytestmark = pytest.mark.e2e


def staff_log_in(page: Page, shop) -> None:
    """Staff open /admin: the shop asks them to log in, then shows the dashboard."""
    page.goto(shop("/admin/"))
    expect(page).to_have_url(re.compile(r"/account/login\?next="))
    page.get_by_label("Email").fill(shop.staff_email)
    page.get_by_label("Password", exact=True).fill(shop.staff_password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", level=1, name="Dashboard")).to_be_visible()


def test_staff_ship_an_order_and_the_customer_sees_it(shop, new_context):
    customer = new_context().new_page()
    register(customer, shop, unique_email("parcel"))
    number, _ = buy_variant_product(customer, shop, email=None, coupon=False)
    order_url = customer.url

    staff = new_context().new_page()
    staff_log_in(staff, shop)
    chart = staff.locator("svg.chart")
    expect(chart).to_be_visible()
    expect(chart).to_have_attribute("role", "img")
    assert chart.locator("rect").count() > 0, "the sales chart has no bars"
    expect(staff.get_by_role("img", name=re.compile("Revenue per day"))).to_be_visible()

    staff.wait_for_load_state("load")  # the menus open with the back office's scripts
    staff.get_by_role("link", name="Sales").click()
    staff.get_by_role("link", name="Orders", exact=True).click()
    staff.get_by_role("textbox", name="Order, email").fill(number)
    staff.get_by_role("textbox", name="Order, email").press("Enter")
    row = staff.get_by_role("row").filter(has_text=number)
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Awaiting payment")
    row.get_by_role("link", name=number).click()
    expect(staff.get_by_role("heading", level=1, name=re.compile(f"Order {number}"))
           ).to_be_visible()
    status = staff.locator("#order-status")
    expect(status).to_have_text("Awaiting payment")

    staff.get_by_role("button", name="Mark paid").click()
    expect(status).to_have_text("Paid")
    staff.get_by_label("Carrier").fill("DHL")
    staff.get_by_label("Tracking number").fill("JD0146000031")
    staff.get_by_role("button", name="Mark shipped").click()
    expect(status).to_have_text("Shipped")

    customer.goto(order_url)
    expect(customer.locator(".order-status")).to_contain_text("Shipped")
    expect(customer.locator(".shipment")).to_contain_text("DHL")
    expect(customer.locator(".shipment")).to_contain_text("JD0146000031")
    expect(customer.locator(".timeline")).to_contain_text("Shipped")
    customer.get_by_role("navigation", name="Account").get_by_role("link", name="Account").click()
    expect(customer.get_by_role("row").filter(has_text=number)).to_contain_text("Shipped")
