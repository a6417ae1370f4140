"""What the shopper sees and hears after an htmx action in a real browser: an answer htmx does
not swap (an error, or none at all) is shown and announced and leaves no unsaved state on the
page; the listing's filters send one request per change."""
from __future__ import annotations

import re
import sqlite3

import pytest
from playwright.sync_api import Page, expect

from .flows import (
    apply_coupon,
    assert_same_page,
    cart_count,
    change_quantity,
    choose_variant_and_add,
    mark_page,
    money,
    open_variant_product,
    ready,
)

pytestmark = pytest.mark.e2e


def _cart_with_one_item(page: Page, shop) -> None:
    open_variant_product(page, shop)
    ready(page)
    page.get_by_role("button", name="Add to cart").click()
    expect(page.locator("#cart-link")).to_have_text("Cart (1)")
    page.goto(shop("/cart"))
    mark_page(page)


def test_an_error_answer_to_a_cart_action_is_shown_and_the_quantity_put_back(shop, page):
    _cart_with_one_item(page, shop)
    quantity = page.get_by_role("spinbutton", name=re.compile("^Quantity"))
    line_total = page.locator(".cart-line .line-total").inner_text()
    toast = page.locator("#toasts .flash-error")
    live = page.locator("#live")

    # A body over the shop's limit (413): the shop's own words, on screen and read out.
    page.evaluate("document.getElementById('coupon-code').value = 'x'.repeat(5 * 1024 * 1024)")
    page.get_by_role("button", name="Apply", exact=True).click()
    expect(toast).to_be_visible()
    expect(toast).to_contain_text("The request is too large")
    expect(live).to_contain_text("The request is too large")
    expect(page.locator("#coupon-box")).not_to_contain_text("applied")

    # A server error (500) and no answer at all: the field shows the saved quantity again.
    for failure, said in [(lambda route: route.fulfill(status=500, body="boom",
                                                       content_type="text/plain"),
                           "Something went wrong. Please try again."),
                          (lambda route: route.abort(),
                           "The shop could not be reached. Check your connection")]:
        page.route("**/cart/lines/*/update", failure)
        quantity.fill("3")
        page.get_by_role("button", name=re.compile(r"^Update quantity of ")).click()
        expect(toast).to_contain_text(said)
        expect(live).to_contain_text(said)
        expect(quantity).to_have_value("1")
        page.unroute("**/cart/lines/*/update")
    assert page.locator(".cart-line .line-total").inner_text() == line_total

    # The session ended meanwhile (as after logging in from another tab): the form's token is
    # stale (400). The shopper is asked to reload, and the message stays until then.
    page.context.clear_cookies()
    quantity.fill("2")
    page.get_by_role("button", name=re.compile(r"^Update quantity of ")).click()
    expect(toast).to_have_text("Your form expired or was sent from elsewhere. "
                               "Please reload the page and try again.")
    expect(live).to_contain_text("Please reload the page")
    expect(quantity).to_have_value("1")
    assert cart_count(page) == 1
    assert money(page.locator(".cart-line .line-total").inner_text()) == money(line_total)
    page.wait_for_timeout(9000)  # longer than a notice that fades
    expect(toast).to_be_visible()
    assert_same_page(page)


def test_an_option_the_shop_could_not_show_is_unchosen_again(shop, page):
    open_variant_product(page, shop)
    mark_page(page)
    options = page.get_by_role("group", name="Choose an option").get_by_role("radio")
    chosen = page.locator("input[name=variant_id]:checked").get_attribute("id")
    other = next(options.nth(i) for i in range(options.count())
                 if options.nth(i).is_enabled() and options.nth(i).get_attribute("id") != chosen)
    page.route(re.compile(r"/p/[^?]+\?variant="), lambda route: route.abort())
    other.click()
    expect(page.locator("#toasts .flash-error")).to_contain_text("could not be reached")
    expect(page.locator(f"#{chosen}")).to_be_checked()
    expect(other).not_to_be_checked()
    assert_same_page(page)


def test_enter_in_a_filter_field_sends_one_request_and_one_history_entry(shop, page):
    page.goto(shop("/products"))
    mark_page(page)
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url)
            if "/products?" in request.url else None)
    start = page.url
    for label, typed, wanted in [("Search", "mug", "q=mug"), ("Min", "10", "min_price=10")]:
        sent.clear()
        entries = page.evaluate("history.length")
        page.get_by_label(label, exact=True).fill(typed)
        page.get_by_label(label, exact=True).press("Enter")
        expect(page).to_have_url(re.compile(wanted))
        expect(page.locator("#live")).to_contain_text("products found")
        page.wait_for_timeout(500)  # a second request would be on its way by now
        assert len(sent) == 1 and wanted in sent[0], sent
        assert page.evaluate("history.length") == entries + 1
    page.go_back()
    expect(page).to_have_url(re.compile(r"q=mug"))
    expect(page).not_to_have_url(re.compile(r"min_price=10"))
    page.go_back()
    expect(page).to_have_url(start)
    assert_same_page(page)


LONG_EMAIL = "christopher.montgomery45c.{}@outlook-mail-example.com"
LONG_WORD = "Donaudampfschifffahrtselektrizitaetenhauptbetriebswerk"


def _too_wide(page: Page) -> list[int] | None:
    widths = page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
    return widths if widths[0] > widths[1] else None


def test_long_text_the_shopper_typed_wraps_at_phone_width(shop, new_context):
    """WCAG 1.4.10 with what shoppers really type: a long email address, a pasted link."""
    import uuid

    from .flows import choose_variant_and_add, fill_checkout, place_order, register

    email = LONG_EMAIL.format(uuid.uuid4().hex[:8])
    page = new_context(viewport={"width": 375, "height": 740}).new_page()
    too_wide = {}
    for query in (LONG_WORD, "https://example.com/some/pasted/link/to/a-product-page"):
        page.goto(shop(f"/products?q={query}"))
        too_wide[f"search {query}"] = _too_wide(page)
        ready(page)
        page.get_by_label("Search", exact=True).fill(query + "s")
        page.get_by_label("Search", exact=True).press("Enter")
        expect(page.locator("#listing-title")).to_contain_text(query + "s")
        too_wide[f"search {query} (htmx)"] = _too_wide(page)

    open_variant_product(page, shop)
    choose_variant_and_add(page)
    page.goto(shop("/cart"))
    fill_checkout(page, email)
    too_wide["review"] = _too_wide(page)
    place_order(page)
    too_wide["order"] = _too_wide(page)

    page.goto(shop("/account/password/forgot"))
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name=re.compile("link", re.I)).click()
    expect(page.locator(".flash")).to_contain_text(email)
    too_wide["forgot password sent"] = _too_wide(page)

    register(page, shop, email)
    too_wide["account"] = _too_wide(page)
    too_wide = {name: widths for name, widths in too_wide.items() if widths}
    assert not too_wide, f"wider than the phone (scroll width, window width): {too_wide}"


def test_a_price_filter_is_marked_invalid_exactly_while_its_message_shows(shop, page):
    page.goto(shop("/products?min_price=abc"))
    mark_page(page)
    low, high = page.get_by_label("Min", exact=True), page.get_by_label("Max", exact=True)
    expect(low).to_have_attribute("aria-invalid", "true")
    low.fill("5")
    low.press("Tab")
    expect(page.locator("#min_price-error")).to_have_text("")
    expect(page).to_have_url(re.compile(r"min_price=5"))
    expect(low).not_to_have_attribute("aria-invalid", re.compile(".*"))
    high.fill("x")
    high.press("Tab")
    expect(page.locator("#max_price-error")).to_have_text("Enter a price such as 10 or 24.99.")
    expect(high).to_have_attribute("aria-invalid", "true")
    expect(low).not_to_have_attribute("aria-invalid", re.compile(".*"))
    assert_same_page(page)


FOCUSED = """() => { const el = document.activeElement;
  return el && el !== document.body ? (el.id || el.closest('[id]')?.id || el.tagName) + ' '
         + (el.innerText || el.value || '').trim() : 'BODY'; }"""


def _focused(page: Page) -> str:
    return page.evaluate(FOCUSED)


def test_focus_lands_on_purpose_after_cart_and_listing_swaps(shop, page):
    page.goto(shop("/products?category=mugs"))
    ready(page)
    cards = page.locator(".card").filter(has=page.get_by_role(
        "button", name=re.compile(r"^Add to cart: ")))
    names = [cards.nth(i).locator(".card-title a").inner_text().strip() for i in range(2)]
    for i, name in enumerate(names):
        cards.nth(i).get_by_role("button", name=f"Add to cart: {name}").click()
        expect(page.locator("#cart-link")).to_have_text(f"Cart ({i + 1})")
    page.goto(shop("/cart"))
    mark_page(page)
    # htmx wires up swapped-in content when it settles (20 ms later by default): focus must not
    # land on a control before then, or a quick Enter posts the form without htmx. A longer
    # settle makes that window wide enough to hit every time.
    page.evaluate("htmx.config.defaultSettleDelay = 400")

    page.get_by_label("Coupon code").fill("WELCOME10")
    page.get_by_label("Coupon code").press("Enter")
    expect(page.locator("#coupon-box")).to_contain_text("WELCOME10 applied")
    expect(page.get_by_role("button", name="Remove coupon WELCOME10")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_label("Coupon code")).to_be_focused()

    first_remove = page.get_by_role("button", name=f"Remove {names[0]}")
    first_remove.focus()
    page.keyboard.press("Enter")
    expect(page.locator(".cart-line")).to_have_count(1)
    expect(page.locator(".cart-line").get_by_role("link", name=names[1])).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("spinbutton", name=f"Quantity of {names[1]}")).to_be_focused()
    page.get_by_role("button", name=f"Remove {names[1]}").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#cart-main")).to_contain_text("Your cart is empty.")
    expect(page.locator("#cart-main .htmx-settling")).to_have_count(0)
    assert _focused(page) != "BODY"
    assert_same_page(page)

    page.goto(shop("/products"))
    mark_page(page)
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Next").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"page=2"))
    expect(page.locator("#results-heading")).to_be_focused()
    assert_same_page(page)


def test_focus_lands_on_purpose_after_account_and_review_swaps(shop, page):
    from .flows import ADDRESS, buy_variant_product, register, unique_email

    register(page, shop, unique_email("focus"))
    number, bought = buy_variant_product(page, shop, email=None, save_address=True)
    with sqlite3.connect(shop.log.parent / "shop.db") as db:  # paid: the buyer may review
        db.execute("UPDATE orders SET status = 'paid' WHERE number = ?", (number,))
    page.goto(shop("/account/addresses/new"))
    page.get_by_label("Full name").fill("Charles Babbage")
    page.get_by_label("Address line 1").fill("1 Difference Lane")
    page.get_by_label("City").fill(ADDRESS["city"])
    page.get_by_label("Postal code").fill(ADDRESS["postal_code"])
    page.get_by_label("Country").select_option("US")
    page.get_by_role("button", name="Save address").click()
    expect(page.get_by_role("button", name=re.compile("^Make default"))).to_have_count(1)
    mark_page(page)
    page.get_by_role("button", name=re.compile("^Make default")).focus()
    page.keyboard.press("Enter")
    expect(page.locator("#live")).not_to_be_empty()
    expect(page.locator("#addresses-heading")).to_be_focused()

    page.goto(bought.url)
    mark_page(page)
    page.get_by_label("4 stars").check()
    page.get_by_label("Title").fill("Sturdy and soft")
    page.get_by_role("button", name="Submit review").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#review-form")).not_to_contain_text("Your rating")
    expect(page.locator("#review-form")).to_be_focused()
    assert_same_page(page)


def test_a_new_shipping_estimate_and_a_page_of_results_are_announced(shop, page):
    _cart_with_one_item(page, shop)
    live = page.locator("#live")
    shipping = page.locator("#cart-totals dt:text-is('Shipping') + dd")
    page.get_by_label("Shipping estimate").select_option("express")
    expect(live).to_contain_text("Shipping estimate: Express (1-2 business days), ")
    total = page.locator("#cart-totals .grand-total dd").inner_text()
    expect(live).to_contain_text(f"Total {total}.")
    assert shipping.inner_text().lower() in live.inner_text().lower()  # $15.00, or free
    page.get_by_label("Shipping estimate").select_option("standard")
    expect(live).to_contain_text("Standard (3-5 business days)")
    expect(page.get_by_label("Shipping estimate")).to_have_value("standard")

    page.goto(shop("/products"))
    mark_page(page)
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Next").click()
    expect(live).to_have_text(re.compile(r"^\d+ products found, page 2 of \d+$"))
    assert_same_page(page)


@pytest.mark.parametrize("js", [True, False], ids=["js", "no-js"])
def test_the_shipping_estimate_chosen_is_kept_by_cart_actions_and_checkout(shop, new_context,
                                                                            js):
    """Express chosen as the cart's estimate: with htmx, a quantity change or a coupon
    applied or removed answered totals with standard shipping while the choice read Express;
    without JavaScript, each went back to a cart set to Standard; and the checkout started
    with Standard. The estimate now holds through them all, and the checkout starts with it."""
    page = new_context(java_script_enabled=js).new_page()
    open_variant_product(page, shop, js=js)
    choose_variant_and_add(page, js=js)
    page.goto(shop("/cart"))
    estimate = page.get_by_label("Shipping estimate")
    shipping = page.locator("#cart-totals dt:text-is('Shipping') + dd")
    standard = shipping.inner_text()
    estimate.select_option("express")
    if not js:
        page.get_by_role("button", name="Update estimate").click()
    expect(shipping).not_to_have_text(standard)
    express = shipping.inner_text()

    def still_express() -> None:
        expect(estimate).to_have_value("express")
        expect(shipping).to_have_text(express)

    change_quantity(page, 2, js=js)
    still_express()
    apply_coupon(page, js=js)
    still_express()
    page.get_by_role("button", name="Remove coupon WELCOME10").click()
    expect(page.locator("#cart-totals .discount")).to_have_count(0)
    still_express()
    page.get_by_role("link", name="Checkout", exact=True).click()
    expect(page.get_by_label(re.compile(r"^Express"))).to_be_checked()


def test_add_to_cart_right_after_choosing_an_option_is_announced_last(shop, page):
    """Choosing an option asks the shop for its price and stock; "Add to cart" pressed before
    that answer came back ran alongside it, and the option's answer, arriving last, replaced
    "added to your cart" in the live region (and once failed CI). The add now waits for the
    option's answer (hx-sync on the form): the summary shows the option, then the add is said."""
    open_variant_product(page, shop)
    ready(page)
    mark_page(page)
    options = page.get_by_role("group", name="Choose an option").get_by_role("radio")
    chosen = page.locator("input[name=variant_id]:checked").get_attribute("id")
    other = next(options.nth(i) for i in range(options.count())
                 if options.nth(i).is_enabled() and options.nth(i).get_attribute("id") != chosen)

    def slowly(route) -> None:
        page.wait_for_timeout(600)  # the option's answer comes after the add's
        route.continue_()

    page.route(re.compile(r"/p/[^?]+\?variant="), slowly)
    before = cart_count(page)
    other.check()
    page.get_by_role("button", name="Add to cart").click()
    expect(page.locator("#cart-link")).to_have_text(re.compile(rf"\({before + 1}\)"))
    expect(page.locator("#live")).to_contain_text("to your cart")
    page.wait_for_timeout(900)  # had the option's answer come last, it would show by now
    expect(page.locator("#live")).to_contain_text("to your cart")
    assert_same_page(page)


@pytest.mark.parametrize("js", [True, False], ids=["js", "no-js"])
def test_a_refused_quantity_keeps_what_the_shopper_typed(shop, new_context, js):
    """A quantity the cart refuses (stock sold since the page was shown, a field left empty):
    without JavaScript the page came back with what was typed and the message beside it;
    with htmx the line came back showing the saved quantity, so the shopper could not see
    what they had typed. Both now keep it, marked invalid and described by the message, and
    save nothing."""
    page = new_context(java_script_enabled=js).new_page()
    open_variant_product(page, shop, js=js)
    choose_variant_and_add(page, js=js)
    page.goto(shop("/cart"))
    line = page.locator(".cart-line").first
    line_id = int(line.get_attribute("id").removeprefix("cart-line-"))
    quantity = line.get_by_role("spinbutton", name=re.compile("^Quantity"))
    assert int(quantity.get_attribute("max")) >= 2, "the option should have 2 in stock"
    line_total = line.locator(".line-total").inner_text()
    count = cart_count(page)
    database = shop.log.parent / "shop.db"
    with sqlite3.connect(database) as db:
        variant_id, stock = db.execute(
            "SELECT v.id, v.stock_quantity FROM cart_lines l JOIN variants v "
            "ON v.id = l.variant_id WHERE l.id = ?", (line_id,)).fetchone()
    try:
        with sqlite3.connect(database) as db:  # sold meanwhile: 1 left of the 2 shown
            db.execute("UPDATE variants SET stock_quantity = 1 WHERE id = ?", (variant_id,))
        for typed, said in [("2", "Only 1 left in stock."),
                            ("", "Enter a whole number from 0 to 99.")]:
            if js:
                mark_page(page)
            page.locator(f"#qty-{line_id}").fill(typed)
            page.locator(f"#update-{line_id}").click()
            message = page.locator(f"#line-error-{line_id}")
            expect(message).to_have_text(said)
            field = page.locator(f"#qty-{line_id}")
            expect(field).to_have_value(typed)
            expect(field).to_have_attribute("aria-invalid", "true")
            expect(field).to_have_accessible_description(said)
            if js:
                expect(page.locator("#live")).to_contain_text(said)
                assert_same_page(page)
            assert cart_count(page) == count
            assert page.locator(f"#cart-line-{line_id} .line-total").inner_text() == line_total
        with sqlite3.connect(database) as db:
            saved = db.execute("SELECT quantity FROM cart_lines WHERE id = ?",
                               (line_id,)).fetchone()[0]
        assert saved == 1
    finally:
        with sqlite3.connect(database) as db:
            db.execute("UPDATE variants SET stock_quantity = ? WHERE id = ?", (stock, variant_id))


def test_the_shipping_estimate_chosen_with_htmx_holds_after_back_and_refresh(shop, page):
    """Express chosen with htmx, then another page and Back (or a refresh): the cart came from
    the server priced with standard shipping, under a select the browser put back to Express.
    The cart's address now carries the estimate, so the select and the totals agree."""
    _cart_with_one_item(page, shop)
    estimate = page.get_by_label("Shipping estimate")
    shipping = page.locator("#cart-totals dt:text-is('Shipping') + dd")
    standard = shipping.inner_text()
    estimate.select_option("express")
    expect(page.locator("#live")).to_contain_text("Express")
    express = shipping.inner_text()
    assert express != standard
    entries = page.evaluate("history.length")
    expect(page).to_have_url(re.compile(r"/cart\?shipping=express$"))
    assert page.evaluate("history.length") == entries  # replaced, not a step more for Back
    page.locator(".cart-line .line-name a").first.click()
    expect(page.get_by_role("button", name="Add to cart")).to_be_visible()
    page.go_back()
    expect(estimate).to_have_value("express")
    expect(shipping).to_have_text(express)
    page.reload()
    expect(estimate).to_have_value("express")
    expect(shipping).to_have_text(express)
    expect(page.get_by_role("link", name="Checkout", exact=True)).to_have_attribute(
        "href", re.compile(r"shipping=express"))


@pytest.mark.parametrize("js", [True, False], ids=["js", "no-js"])
def test_back_to_the_cart_shows_the_quantities_saved(shop, new_context, js):
    """Back to the cart (fetched again from the shop), the browser put a quantity typed but
    not sent back in its field: it read 4 beside a line total (and a header count) of one.
    The field shows what the shop saved, which the browser now leaves as sent."""
    page = new_context(java_script_enabled=js).new_page()
    open_variant_product(page, shop, js=js)
    choose_variant_and_add(page, js=js)
    page.goto(shop("/cart"))
    line = page.locator(".cart-line").first
    quantity = line.get_by_role("spinbutton")
    saved, line_total = quantity.input_value(), line.locator(".line-total").inner_text()
    quantity.fill("4")  # not sent
    line.locator(".line-name a").click()
    expect(page.get_by_role("button", name="Add to cart")).to_be_visible()
    page.go_back()
    expect(page.locator(".cart-line").first.get_by_role("spinbutton")).to_have_value(saved)
    page.wait_for_timeout(500)  # a browser puts fields back a moment after the page loads
    expect(page.locator(".cart-line").first.get_by_role("spinbutton")).to_have_value(saved)
    assert page.locator(".cart-line .line-total").first.inner_text() == line_total


def test_cart_answers_that_cross_on_the_way_leave_the_latest_totals(shop, page):
    """Two cart actions close together (one line's quantity updated, then another's): the
    first answer, held up on the way, came after the second and put back the totals and the
    header's count from before the second change. The cart's actions now go one at a time
    (hx-sync on the page's main part), so the last answer is the newest."""
    open_variant_product(page, shop)
    ready(page)
    mark_page(page)
    page.get_by_role("button", name="Add to cart").click()
    expect(page.locator("#cart-link")).to_have_text(re.compile(r"\(1\)"))
    choose_variant_and_add(page)
    page.goto(shop("/cart"))
    ready(page)
    mark_page(page)
    lines = page.locator(".cart-line")
    expect(lines).to_have_count(2)
    first, second = lines.nth(0), lines.nth(1)
    first_id = first.get_attribute("id").rsplit("-", 1)[1]
    units = [money(line.locator(".line-unit").inner_text()) for line in (first, second)]

    def held(route) -> None:
        answer = route.fetch()  # the shop has saved the change and priced the cart
        page.wait_for_timeout(1000)  # the answer comes after the next action's
        route.fulfill(response=answer)

    page.route(f"**/cart/lines/{first_id}/update", held)
    first.get_by_role("spinbutton").fill("2")
    first.get_by_role("button", name=re.compile("^Update")).click()
    page.wait_for_timeout(200)
    second.get_by_role("spinbutton").fill("3")
    second.get_by_role("button", name=re.compile("^Update")).click()
    subtotal = units[0] * 2 + units[1] * 3
    expect(page.locator("#cart-link")).to_have_text("Cart (5)", timeout=5000)
    page.wait_for_timeout(1500)  # had the held answer come last, it would show by now
    page.unroute(f"**/cart/lines/{first_id}/update")
    expect(page.locator("#cart-link")).to_have_text("Cart (5)")
    expect(page.locator("#cart-totals dt:text-is('Subtotal') + dd")).to_contain_text(
        f"{subtotal:,.2f}")
    assert_same_page(page)
    page.reload()
    expect(page.locator("#cart-totals dt:text-is('Subtotal') + dd")).to_contain_text(
        f"{subtotal:,.2f}")


@pytest.mark.parametrize("where", ["card", "product page"])
def test_an_add_to_cart_is_confirmed_on_screen(shop, new_context, where):
    """With htmx, "Add to cart" changed nothing on screen but the header's count ("Cart (1)",
    a few pixels at the top of a phone) and said "Added ... to your cart." to screen readers
    alone; without JavaScript the cart page shows that message. It now shows over the page
    (#toasts, fading), as a refused add's message does; an add then refused beside a field
    takes it away (the message beside the field is the news)."""
    page = new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                       has_touch=True).new_page()
    toast = page.locator("#toasts .flash")
    if where == "card":
        page.goto(shop("/c/mugs"))
        ready(page)
        add = re.compile("^Add to cart: ")
        card = page.locator(".card").filter(has=page.get_by_role("button", name=add)).first
        name = card.locator(".card-title a").inner_text().strip()
        card.get_by_role("button", name=add).click()
        expect(page.locator("#live")).to_have_text(f"Added {name} to your cart.")
        expect(toast).to_have_text(f"Added {name} to your cart.")
        expect(toast).to_be_visible()
        expect(toast).to_be_in_viewport()
        return
    name = open_variant_product(page, shop)
    choose_variant_and_add(page)
    said = page.locator("#live").inner_text()
    assert said.startswith(f"Added {name} (")
    expect(toast).to_have_text(said)
    expect(toast).to_be_visible()
    page.get_by_label("Quantity").fill("")  # refused beside the field
    page.get_by_role("button", name="Add to cart").click()
    expect(page.locator("#quantity-error")).not_to_be_empty()
    expect(toast).to_have_count(0)
