"""What a shopper does, step by step, in the browser; shared by the browser tests."""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from decimal import Decimal

from playwright.sync_api import Page, expect

from .server import Shop

MARKER = "__e2eNoReload"
ADDRESS = {"name": "Ada Lovelace", "line1": "12 Analytical Row", "city": "Springfield",
           "postal_code": "62701"}
CUSTOMER_PASSWORD = "plum-tree-4711"
MONEY = re.compile(r"-?\$?([0-9][0-9,]*\.[0-9]{2})")


def money(text: str) -> Decimal:
    """The first amount in a text such as "$48.00" or "−$4.80"."""
    match = MONEY.search(text.replace("\u2212", "-"))
    assert match, f"no amount in {text!r}"
    return Decimal(match.group(1).replace(",", ""))


def unique_email(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


def ready(page: Page) -> None:
    """Wait until the page's deferred scripts (htmx) have run: an interaction sooner would be a
    plain form post, as for a shopper without JavaScript."""
    page.wait_for_load_state("load")
    page.wait_for_function("() => window.htmx !== undefined")


def mark_page(page: Page) -> None:
    """Tag the current document; the tag survives htmx swaps but not a page load."""
    ready(page)
    page.evaluate(f"window.{MARKER} = true")


def assert_same_page(page: Page) -> None:
    """No full page load happened since mark_page()."""
    assert page.evaluate(f"window.{MARKER} === true"), "a full page load happened"


def cart_count(page: Page) -> int:
    text = page.locator("#cart-link").inner_text()
    match = re.search(r"\((\d+)\)", text)
    assert match, f"no count in the cart link {text!r}"
    return int(match.group(1))


@dataclass
class Chosen:
    """The product and variant a shopper picked."""

    name: str
    variant: str
    url: str


def open_variant_product(page: Page, shop: Shop, js: bool = True) -> str:
    """Browse to All products, filter to in-stock T-shirts, open the first product.

    With JavaScript, the filter must update the grid in place and push the URL."""
    page.goto(shop("/"))
    page.get_by_role("navigation", name="Categories").get_by_role(
        "link", name="All products").click()
    expect(page.get_by_role("heading", level=1, name="All products")).to_be_visible()
    heading = page.locator("#results-heading")
    before = heading.inner_text()
    if js:
        mark_page(page)
        entries = page.evaluate("history.length")
        page.get_by_label("Category").select_option("t-shirts")
        expect(page).to_have_url(re.compile(r"/products\?.*category=t-shirts"))
        expect(heading).not_to_have_text(before)
        page.get_by_label("In stock only").check()
        expect(page).to_have_url(re.compile(r"in_stock=true"))
        assert_same_page(page)
        assert page.evaluate("history.length") == entries + 2, "each filter pushes a URL"
    else:
        page.get_by_label("Category").select_option("t-shirts")
        page.get_by_label("In stock only").check()
        page.get_by_role("button", name="Apply filters").click()
        expect(page).to_have_url(re.compile(r"/products\?.*category=t-shirts.*in_stock=true"))
    expect(heading).not_to_have_text(before)
    grid = page.locator("#product-grid")
    first = grid.locator(".card-title a").first
    name = first.inner_text().strip()
    first.click()
    expect(page.get_by_role("heading", level=1, name=name)).to_be_visible()
    return name


def choose_variant_and_add(page: Page, js: bool = True) -> str:
    """Pick an in-stock option other than the preselected one and add it to the cart."""
    options = page.get_by_role("group", name="Choose an option").get_by_role("radio")
    enabled = [options.nth(i) for i in range(options.count()) if options.nth(i).is_enabled()]
    assert len(enabled) >= 2, "the product should offer several options"
    choice = enabled[1]
    choice.check()
    label = page.locator(f"label[for='{choice.get_attribute('id')}']").inner_text()
    variant = label.split("$")[0].strip()
    before = cart_count(page)
    if js:
        mark_page(page)
        page.get_by_role("button", name="Add to cart").click()
        expect(page.locator("#cart-link")).to_have_text(re.compile(rf"\({before + 1}\)"))
        expect(page.locator("#live")).to_contain_text("to your cart")
        assert_same_page(page)
    else:
        page.get_by_role("button", name="Add to cart").click()
        expect(page).to_have_url(re.compile(r"/cart$"))
        expect(page.locator(".flash")).to_contain_text("to your cart")
        assert cart_count(page) == before + 1
    return variant


def change_quantity(page: Page, quantity: int, js: bool = True) -> None:
    """On the cart page: set the first line's quantity and press Update."""
    line = page.locator(".cart-line").first
    unit = money(line.locator(".line-unit").inner_text())
    count_before = cart_count(page)
    old_qty = int(line.get_by_role("spinbutton").input_value())
    subtotal_before = money(page.locator("#cart-totals dt:text-is('Subtotal') + dd").inner_text())
    if js:
        mark_page(page)
    line.get_by_role("spinbutton").fill(str(quantity))
    line.get_by_role("button", name="Update").click()
    line = page.locator(".cart-line").first
    expect(line.locator(".line-total")).to_contain_text(f"{unit * quantity:,.2f}")
    expect(page.locator("#cart-link")).to_have_text(
        re.compile(rf"\({count_before - old_qty + quantity}\)"))
    expected_subtotal = subtotal_before + unit * (quantity - old_qty)
    expect(page.locator("#cart-totals dt:text-is('Subtotal') + dd")).to_contain_text(
        f"{expected_subtotal:,.2f}")
    if js:
        expect(page.locator("#live")).to_contain_text(f"updated to {quantity}")
        assert_same_page(page)
    else:
        expect(page.locator(".flash")).to_contain_text(f"updated to {quantity}")


def apply_coupon(page: Page, code: str = "WELCOME10", js: bool = True) -> None:
    """On the cart page: apply a coupon; the discount shows in the totals."""
    subtotal = money(page.locator("#cart-totals dt:text-is('Subtotal') + dd").inner_text())
    if js:
        mark_page(page)
    page.get_by_label("Coupon code").fill(code)
    page.get_by_role("button", name="Apply", exact=True).click()
    discount = page.locator("#cart-totals .discount dd")
    expect(discount).to_contain_text(f"{(subtotal / 10).quantize(Decimal('0.01')):,.2f}")
    expect(page.locator("#coupon-box")).to_contain_text(f"{code} applied")
    if js:
        expect(page.locator("#live")).to_contain_text(f"Coupon {code} applied")
        assert_same_page(page)


def fill_checkout(page: Page, email: str | None, save_address: bool = False) -> None:
    """From the cart, the details step: contact, address, standard shipping, manual payment;
    ends on the review step."""
    page.get_by_role("link", name="Checkout", exact=True).click()
    expect(page.get_by_role("heading", level=1, name="Checkout")).to_be_visible()
    fill_details(page, email)
    if save_address:
        page.get_by_label("Save this address to my account").check()
    page.get_by_role("button", name="Review order").click()
    expect(page.get_by_role("heading", level=1, name="Review your order")).to_be_visible()


def fill_details(page: Page, email: str | None) -> None:
    """Fill the checkout details form (email only for a guest)."""
    if email is not None:
        page.get_by_label("Email").fill(email)
    page.get_by_label("Full name").fill(ADDRESS["name"])
    page.get_by_label("Address line 1").fill(ADDRESS["line1"])
    page.get_by_label("City").fill(ADDRESS["city"])
    page.get_by_label("Postal code").fill(ADDRESS["postal_code"])
    page.get_by_label("Country").select_option("US")
    page.get_by_role("radio", name=re.compile("^Standard")).check()
    page.get_by_role("radio", name=re.compile("^Bank transfer or pay on delivery")).check()


def place_order(page: Page) -> tuple[str, Decimal]:
    """The review step: "Place order"; returns the order number and the total confirmed."""
    total = money(page.locator(".checkout-summary .grand-total dd").inner_text())
    page.get_by_role("button", name="Place order").click()
    heading = page.get_by_role("heading", level=1, name=re.compile(r"^Order "))
    expect(heading).to_be_visible()
    number = heading.inner_text().removeprefix("Order ").strip()
    expect(page.locator(".order-status")).to_contain_text("Awaiting payment")
    expect(page.locator(".grand-total dd")).to_contain_text(f"{total:,.2f}")
    return number, total


def buy_variant_product(page: Page, shop: Shop, email: str | None, js: bool = True,
                        coupon: bool = True, save_address: bool = False) -> tuple[str, Chosen]:
    """The whole purchase: browse, filter, product, option, cart, quantity, coupon, checkout."""
    name = open_variant_product(page, shop, js=js)
    url = page.url
    variant = choose_variant_and_add(page, js=js)
    page.get_by_role("link", name=re.compile(r"^Cart \(")).click()
    expect(page.get_by_role("heading", level=1, name="Your cart")).to_be_visible()
    line = page.locator(".cart-line").filter(has_text=name)
    expect(line).to_contain_text(variant)
    change_quantity(page, 2, js=js)
    if coupon:
        apply_coupon(page, js=js)
    fill_checkout(page, email, save_address=save_address)
    number, _ = place_order(page)
    return number, Chosen(name, variant, url)


def register(page: Page, shop: Shop, email: str, name: str = "Grace Hopper") -> None:
    """Create an account through the header's Register link; ends on the account page."""
    page.goto(shop("/"))
    page.get_by_role("navigation", name="Account").get_by_role("link", name="Register").click()
    page.get_by_label(re.compile(r"^Name\b")).fill(name)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(CUSTOMER_PASSWORD)
    page.get_by_label("Repeat password").fill(CUSTOMER_PASSWORD)
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_role("heading", level=1, name="Your account")).to_be_visible()
    expect(page.locator(".flash")).to_contain_text("Your account is ready")


def log_in(page: Page, shop: Shop, email: str, password: str = CUSTOMER_PASSWORD) -> None:
    """Log in through the header's link and the form."""
    page.goto(shop("/"))
    page.get_by_role("navigation", name="Account").get_by_role("link", name="Log in").click()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def log_out(page: Page) -> None:
    """Log out with the header's button."""
    page.get_by_role("button", name="Log out").click()
    expect(page.locator(".flash")).to_contain_text("You are logged out")
