"""The cart through the test client: every action as a plain post (303) and as an htmx post
(fragment with out-of-band parts), bad input, and the same numbers the services compute."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from markupsafe import escape

from shop.extensions import db
from shop.models import CartLine, Variant, utcnow
from tests import factories as f
from tests.conftest import csrf_token

HX = {"HX-Request": "true"}

# htmx's notice area over the page, emptied out of band.
NO_TOAST = '<div id="toasts" class="toasts" aria-hidden="true" data-hx-swap-oob="true"></div>'


@pytest.fixture
def goods(app):
    return {
        "mug": f.variant_of(f.product("Mug", price="12.00", stock=5, slug="mug")),
        "tee": f.variant_of(f.product("Tee", price="20.00", stock=2, slug="tee")),
    }


def add(client, variant_id, quantity="1", headers=None, token=None):
    token = token or csrf_token(client, "/products")
    return client.post(
        "/cart/add",
        data={"variant_id": variant_id, "quantity": quantity, "csrf_token": token},
        headers=headers or {},
    )


def line_id(client) -> int:
    return int(
        re.search(r'id="cart-line-(\d+)"', client.get("/cart").get_data(as_text=True)).group(1)
    )


def test_add_without_javascript_redirects_to_the_cart(client, goods):
    response = add(client, goods["mug"].id, "2")
    assert response.status_code == 303 and response.headers["Location"].endswith("/cart")
    html = client.get("/cart").get_data(as_text=True)
    assert "Added Mug to your cart." in html
    assert 'Cart <span class="cart-count">(2)</span>' in html
    assert "$24.00" in html


def test_add_with_htmx_answers_oob_count_and_announcement(client, goods):
    response = add(client, goods["mug"].id, "3", headers=HX)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html
    assert 'id="cart-link"' in html and 'hx-swap-oob="true"' in html and "(3)" in html
    assert 'id="live"' in html and "Added Mug to your cart." in html


def test_an_add_says_what_it_added_though_the_line_is_taken_at_once(client, goods, app,
                                                                    monkeypatch):
    """The login in another tab (the guest's lines join the customer's cart) or an order
    placed may take the line the moment the add has committed: the add is done and says so.
    It answered 500: the line was read again after the commit, and was gone."""
    from sqlalchemy import delete

    from shop.services import cart as carts

    real = carts.retrying

    def then_taken(action, *args, **kwargs):
        done = real(action, *args, **kwargs)
        with app.app_context():  # another request, committed right after the add
            db.session.execute(delete(CartLine))
            db.session.commit()
        return done

    token = csrf_token(client, "/products")
    monkeypatch.setattr(carts, "retrying", then_taken)
    response = add(client, goods["mug"].id, "2", token=token)
    assert response.status_code == 303 and response.headers["Location"].endswith("/cart")
    htmx = add(client, goods["tee"].id, "1", headers=HX, token=token)
    assert htmx.status_code == 200 and "Added Tee to your cart." in htmx.get_data(as_text=True)
    monkeypatch.undo()
    assert "Added Mug to your cart." in client.get("/cart").get_data(as_text=True)


def test_a_new_guests_first_adds_sent_at_once_land_in_one_cart(app, goods):
    """Two quick clicks on the listing send two adds with the same new session: each made a
    cart of its own, both answered "Added ...", and the cookie of the answer that came last
    named a cart holding one item (5 runs in 5 in an audit). Both adds now name the same
    cart, whichever answer's cookie the browser keeps. Fails on the old code."""
    first = app.test_client()
    token = csrf_token(first, "/products")  # the session: a CSRF secret, no cart yet
    second = app.test_client()
    second.set_cookie("session", first.get_cookie("session", domain="shop.test").value,
                      domain="shop.test")
    assert add(first, goods["mug"].id, "1", headers=HX, token=token).status_code == 200
    assert add(second, goods["tee"].id, "1", headers=HX, token=token).status_code == 200
    for browser in (first, second):  # whichever answer came last
        html = browser.get("/cart").get_data(as_text=True)
        assert 'Cart <span class="cart-count">(2)</span>' in html
        assert "Mug" in html and "Tee" in html
    other = app.test_client()  # another guest still has a cart of their own
    add(other, goods["mug"].id, "1")
    assert 'Cart <span class="cart-count">(1)</span>' in other.get("/cart").get_data(
        as_text=True)


def test_a_new_guests_first_add_sent_while_they_log_in_joins_the_account(app, goods):
    """Two tabs of a new guest: an add in one while they log in in the other. The login's
    cookie did not name the add's cart yet, so only the session's cart (none) joined the
    account, and the item the shop said it had added was left in a cart no one had (8 runs in
    8 in an audit). The login also merges the cart the session's first add names. Fails on
    the old code."""
    from tests.conftest import AuthActions

    f.user("tabs@example.com")
    login_tab = app.test_client()
    token = csrf_token(login_tab, "/account/login")
    add_tab = app.test_client()
    add_tab.set_cookie("session", login_tab.get_cookie("session", domain="shop.test").value,
                       domain="shop.test")
    assert add(add_tab, goods["mug"].id, "1", token=token).status_code == 303
    AuthActions(login_tab).login("tabs@example.com")
    html = login_tab.get("/cart").get_data(as_text=True)
    assert 'Cart <span class="cart-count">(1)</span>' in html and "Mug" in html


@pytest.mark.parametrize("quantity", ["0", "-1", "abc", "100", "", "1.5", "99999999999999999999",
                                      "\u00b2", "9" * 5000])
def test_bad_quantity_is_refused_and_changes_nothing(client, goods, quantity):
    # 100 is a whole number past the mug's stock: what can be ordered is said.
    message = ("Only 5 left in stock." if quantity == "100"
               else "Enter a whole number from 1 to 99.")
    response = add(client, goods["mug"].id, quantity)
    assert response.status_code == 303
    assert message in client.get("/cart").get_data(as_text=True)
    assert db.session.query(CartLine).count() == 0
    htmx = add(client, goods["mug"].id, quantity, headers=HX).get_data(as_text=True)
    assert 'id="toasts"' in htmx and message in htmx


def test_a_cards_refused_add_shows_over_the_listing_with_htmx(client, goods):
    """A card's "Add to cart" has no field to put a refusal beside: with htmx the message
    fills the page's notice area (#toasts, on every page) and the live region, instead of
    a product page's quantity field that a listing does not have (nothing was seen)."""
    listing = client.get("/products").get_data(as_text=True)
    assert '<div id="toasts" class="toasts" aria-hidden="true"></div>' in listing
    assert 'id="quantity-error"' not in listing
    add(client, goods["tee"].id, "2")
    html = add(client, goods["tee"].id, "1", headers=HX).get_data(as_text=True)  # 2 in stock
    assert re.search(r'<div id="toasts" class="toasts" aria-hidden="true" '
                     r'data-hx-swap-oob="true"><p class="flash flash-error">Only 2 left[^<]*</p>',
                     html), html
    assert 'id="live"' in html and "Only 2 left" in html
    assert 'id="quantity-field"' not in html and 'id="quantity-error"' not in html


def test_more_than_in_stock_is_refused(client, goods):
    add(client, goods["tee"].id, "2")
    response = add(client, goods["tee"].id, "1", headers=HX)
    assert "Only 2 left in stock." in response.get_data(as_text=True)
    assert db.session.query(CartLine).one().quantity == 2


def test_an_add_refused_for_stock_says_how_many_the_cart_already_has(client, goods):
    """Adding 2 of 5 with 4 already in the cart was refused with "Only 5 left in stock.",
    which reads as if 2 more could be had: the message now says what the cart holds."""
    add(client, goods["mug"].id, "4")
    response = add(client, goods["mug"].id, "2", headers=HX)
    assert "Only 5 left in stock. Your cart already has 4." in response.get_data(as_text=True)
    plain = add(client, goods["mug"].id, "2")  # a card's form: the message over the cart
    assert plain.status_code == 303
    assert "Only 5 left in stock. Your cart already has 4." in client.get("/cart").get_data(
        as_text=True)
    assert db.session.query(CartLine).one().quantity == 4


def test_unknown_variant_is_refused(client, goods):
    html = add(client, 999999, "1", headers=HX).get_data(as_text=True)
    assert "That product option does not exist." in html
    html = add(client, "", "1", headers=HX).get_data(as_text=True)
    assert "Choose a product option." in html


def product_form(client, slug: str) -> dict[str, str]:
    """The hidden fields of a product page's "Add to cart" form, as the page sends them."""
    page = client.get(f"/p/{slug}").get_data(as_text=True)
    form = re.search(r'<form class="add-to-cart".*?</form>', page, re.S).group(0)
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form))


@pytest.mark.parametrize(("quantity", "message"), [
    ("1.5", "Enter a whole number from 1 to 99."),
    ("9", "Only 5 left in stock."),
])
def test_a_refused_add_without_javascript_is_shown_under_the_quantity(client, goods, quantity,
                                                                     message):
    """Without JavaScript, a quantity the product page's form cannot add brings that page back
    (422) with the message under the quantity, marked invalid, keeping what was typed."""
    response = client.post("/cart/add", data={**product_form(client, "mug"),
                                              "quantity": quantity})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert f'<p id="quantity-error" class="field-error">{message}</p>' in page
    assert (f'<input id="quantity" type="number" name="quantity" value="{quantity}" '
            in page)
    assert 'aria-describedby="quantity-error" aria-invalid="true"' in page
    assert "flash-error" not in page
    # Said at the top too, where a screen reader starts, linking to the field (as the cart
    # page says it): the message was beside the field only.
    assert ('<div class="notice notice-error" role="alert">\n  <p>Nothing was added to your '
            'cart. Please correct the field marked below: <a href="#quantity">Quantity</a>.'
            '</p>') in page
    assert page.index('role="alert"') < page.index('class="breadcrumbs"')
    assert db.session.query(CartLine).count() == 0
    # A page that refused nothing says nothing.
    assert "Nothing was added" not in client.get("/p/mug").get_data(as_text=True)


def test_an_add_past_a_lines_maximum_is_shown_under_the_quantity(client, app):
    """2 in the cart and 98 more asked: a line holds at most 99, said under the quantity field
    without JavaScript (the page again, 422) and with htmx (the field swapped in); the cart
    keeps its 2."""
    f.product("Big Mug", slug="big-mug", stock=500)
    assert client.post("/cart/add", data={**product_form(client, "big-mug"),
                                          "quantity": "2"}).status_code == 303
    message = '<p id="quantity-error" class="field-error">A cart line holds at most 99.</p>'
    response = client.post("/cart/add", data={**product_form(client, "big-mug"),
                                              "quantity": "98"})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert message in page and 'value="98"' in page and 'aria-invalid="true"' in page
    assert "flash-error" not in page
    htmx = client.post("/cart/add", data={**product_form(client, "big-mug"), "quantity": "98"},
                       headers=HX)
    html = htmx.get_data(as_text=True)
    assert htmx.status_code == 200 and "<html" not in html
    assert oob_slots(html) == ("", "A cart line holds at most 99.")
    # The message is beside the field; the notice over the page is emptied (no earlier add's).
    assert message in html and NO_TOAST in html
    assert db.session.query(CartLine).one().quantity == 2


def test_a_refused_add_without_javascript_keeps_the_option_chosen(client, app):
    """The option the shopper chose stays chosen; no option at all (the one preselected by the
    link is sold out, so the browser sends none) is said under the options."""
    tee = f.product("Tee", slug="tee", variants=[
        {"options": {"size": "S"}, "stock": 3}, {"options": {"size": "M"}, "stock": 0},
        {"options": {"size": "L"}, "stock": 4}])
    small, medium, large = (f.variant_of(tee, i).id for i in range(3))
    form = product_form(client, "tee")
    page = client.post("/cart/add", data={**form, "variant_id": large, "quantity": "7"}
                       ).get_data(as_text=True)
    assert f'id="variant-{large}" name="variant_id" value="{large}" checked' in page
    assert '<p id="quantity-error" class="field-error">Only 4 left in stock.</p>' in page
    response = client.post("/cart/add", data={**product_form(client, f"tee?variant={medium}"),
                                              "quantity": "1"})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert '<p id="variant-error" class="field-error">Choose a product option.</p>' in page
    assert 'class="variants has-error" aria-describedby="variant-error"' in page
    assert ('Please correct the field marked below: '
            f'<a href="#variant-{small}">Choose an option</a>.') in page
    assert db.session.query(CartLine).count() == 0


def test_a_refused_add_with_htmx_marks_the_quantity_field(client, goods):
    response = client.post("/cart/add", data={**product_form(client, "mug"), "quantity": "9"},
                           headers=HX)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html
    assert re.search(r'<div id="quantity-field"[^>]*data-hx-swap-oob="true"', html)
    assert 'value="9"' in html and 'aria-invalid="true"' in html
    assert '<p id="quantity-error" class="field-error">Only 5 left in stock.</p>' in html
    added = client.post("/cart/add", data={**product_form(client, "mug"), "quantity": "2"},
                        headers=HX).get_data(as_text=True)
    assert re.search(r'<div id="quantity-field"[^>]*data-hx-swap-oob="true"', added)
    assert 'aria-invalid' not in added and '<p id="quantity-error" class="field-error"></p>' \
        in added


def oob_slots(html: str) -> tuple[str, str]:
    """The product page's "Add to cart" message slots in an htmx answer: the option choice's
    message and the quantity field's, as they would be swapped in ("" when cleared)."""
    option = re.search(r'<p id="variant-error" class="field-error" data-hx-swap-oob="true">'
                       r'([^<]*)</p>', html)
    quantity = re.search(r'<div id="quantity-field"[^>]*data-hx-swap-oob="true">.*?'
                         r'<p id="quantity-error" class="field-error">([^<]*)</p>', html, re.S)
    assert option and quantity, html
    return option.group(1), quantity.group(1)


def test_an_add_with_htmx_clears_the_message_of_an_earlier_refusal(client, app):
    """With htmx, "Add to cart" refused for want of an option put "Choose a product option."
    under the options, and an add that then succeeded (the option chosen) left it there: the
    answer swapped the quantity field only. Every answer to the product page's form now fills
    or clears both message slots, a success and a refusal for the other field alike."""
    tee = f.product("Tee", slug="tee", variants=[
        {"options": {"size": "S"}, "stock": 3}, {"options": {"size": "M"}, "stock": 0},
        {"options": {"size": "L"}, "stock": 4}])
    large, medium = f.variant_of(tee, 2).id, f.variant_of(tee, 1).id
    # The link's option is sold out: the page shows it chosen but disabled, so none is sent.
    form = product_form(client, f"tee?variant={medium}")
    refused = client.post("/cart/add", data={**form, "quantity": "1"}, headers=HX)
    assert refused.status_code == 200
    assert oob_slots(refused.get_data(as_text=True)) == ("Choose a product option.", "")
    added = client.post("/cart/add", data={**form, "variant_id": large, "quantity": "1"},
                        headers=HX).get_data(as_text=True)
    assert "Added Tee (L) to your cart." in added
    assert ('<div id="toasts" class="toasts" aria-hidden="true" data-hx-swap-oob="true">'
            '<p class="flash flash-success">Added Tee (L) to your cart.</p></div>') in added
    assert oob_slots(added) == ("", "")
    # A refusal of the quantity clears the option's message, and the other way round.
    client.post("/cart/add", data={**form, "quantity": "1"}, headers=HX)
    too_many = client.post("/cart/add", data={**form, "variant_id": large, "quantity": "9"},
                           headers=HX).get_data(as_text=True)
    assert oob_slots(too_many) == ("", "Only 4 left in stock. Your cart already has 1.")
    no_option = client.post("/cart/add", data={**form, "quantity": "1"},
                            headers=HX).get_data(as_text=True)
    assert oob_slots(no_option) == ("Choose a product option.", "")
    assert NO_TOAST in no_option and 'aria-invalid' not in no_option
    assert db.session.query(CartLine).one().quantity == 1


@pytest.mark.parametrize("slug", ["mug", "tee"])
def test_every_product_page_has_the_option_message_slot_htmx_fills(client, app, slug):
    """The option's message slot that htmx's answers swap in out of band is on the page, as
    the page has it, for a product with options and for one without (else htmx has nowhere
    to put or clear the message and logs an error)."""
    f.product("Mug", slug="mug")
    f.product("Tee", slug="tee", variants=[{"options": {"size": "S"}}, {"options": {"size": "M"}}])
    page = client.get(f"/p/{slug}").get_data(as_text=True)
    assert page.count('<p id="variant-error" class="field-error"></p>') == 1
    html = client.post("/cart/add", data={**product_form(client, slug), "quantity": "abc"},
                       headers=HX).get_data(as_text=True)
    assert '<p id="variant-error" class="field-error" data-hx-swap-oob="true"></p>' in html


@pytest.mark.parametrize("typed", ["abc", "\u00b2", "1,5", "<b>", "9" * 5000],
                         ids=["letters", "superscript", "comma", "markup", "5000-digits"])
def test_a_refused_quantity_no_number_field_can_hold_shows_the_value_before(client, goods, typed):
    """A typed quantity that is no number (only a script can send one: a number field sends
    digits or nothing) was written back into the number field as typed, which browsers blank
    and the HTML checker refuses (thousands of digits were cut to 20, another number). The
    field now shows its value before, with the message: 1 on the product page (with and
    without htmx), the line's quantity in the cart."""
    form = product_form(client, "mug")
    field = '<input id="quantity" type="number" name="quantity" value="1" '
    page = client.post("/cart/add", data={**form, "quantity": typed})
    assert page.status_code == 422
    html = page.get_data(as_text=True)
    assert field in html and 'aria-invalid="true"' in html
    assert ('<p id="quantity-error" class="field-error">Enter a whole number from 1 to 99.</p>'
            in html)
    htmx = client.post("/cart/add", data={**form, "quantity": typed}, headers=HX)
    assert htmx.status_code == 200 and field in htmx.get_data(as_text=True)
    add(client, goods["mug"].id, "2")
    lid = line_id(client)
    cart = client.post(f"/cart/lines/{lid}/update",
                       data={"quantity": typed, "csrf_token": csrf_token(client, "/cart")})
    assert cart.status_code == 422
    html = cart.get_data(as_text=True)
    assert f'id="qty-{lid}" type="number" name="quantity" value="2" ' in html
    assert "Enter a whole number from 0 to 99." in html
    assert db.session.get(CartLine, lid).quantity == 2


def test_update_line_plain_and_htmx(client, goods):
    add(client, goods["mug"].id, "1")
    lid = line_id(client)
    token = csrf_token(client, "/cart")
    response = client.post(f"/cart/lines/{lid}/update", data={"quantity": "4", "csrf_token": token})
    assert response.status_code == 303
    assert db.session.get(CartLine, lid).quantity == 4
    response = client.post(
        f"/cart/lines/{lid}/update", data={"quantity": "3", "csrf_token": token}, headers=HX
    )
    html = response.get_data(as_text=True)
    assert "<html" not in html and html.lstrip().startswith(
        f'<li class="cart-line" id="cart-line-{lid}"'
    )
    assert re.search(r'id="cart-totals"[^>]*hx-swap-oob="true"', html)
    assert "(3)" in html and "Quantity of Mug updated to 3." in html
    assert "$36.00" in html


def test_a_quantity_field_is_not_put_back_by_the_browser(client, goods):
    """A line's quantity field shows the quantity saved: a browser that put back one typed
    but not sent, when the shopper comes Back to the cart, showed it beside the saved line's
    total (tests/e2e: test_back_to_the_cart_shows_the_quantities_saved)."""
    add(client, goods["mug"].id, "2")
    lid = line_id(client)
    for html in (client.get("/cart").get_data(as_text=True),
                 client.post(f"/cart/lines/{lid}/update",
                             data={"quantity": "3", "csrf_token": csrf_token(client, "/cart")},
                             headers=HX).get_data(as_text=True)):
        field = re.search(rf'<input id="qty-{lid}"[^>]*>', html).group()
        assert 'autocomplete="off"' in field


def test_update_beyond_stock_keeps_the_line(client, goods):
    add(client, goods["tee"].id, "1")
    lid = line_id(client)
    token = csrf_token(client, "/cart")
    html = client.post(
        f"/cart/lines/{lid}/update", data={"quantity": "5", "csrf_token": token}, headers=HX
    ).get_data(as_text=True)
    assert "Only 2 left in stock." in html and 'aria-invalid="true"' in html
    assert db.session.get(CartLine, lid).quantity == 1


def test_remove_line_plain_and_htmx_empties_the_cart(client, goods):
    add(client, goods["mug"].id, "1")
    add(client, goods["tee"].id, "1")
    token = csrf_token(client, "/cart")
    ids = [
        int(x)
        for x in re.findall(r'id="cart-line-(\d+)"', client.get("/cart").get_data(as_text=True))
    ]
    assert (
        client.post(f"/cart/lines/{ids[0]}/remove", data={"csrf_token": token}).status_code == 303
    )
    # The line that went is named, as a quantity change names its line ("Item removed" was
    # all a shopper with several lines, or a screen reader, was told).
    assert "Removed Mug from your cart." in client.get("/cart").get_data(as_text=True)
    html = client.post(
        f"/cart/lines/{ids[1]}/remove", data={"csrf_token": token}, headers=HX
    ).get_data(as_text=True)
    assert re.search(r'<div id="live"[^>]*>Removed Tee from your cart.</div>', html)
    assert re.search(r'id="cart-main"[^>]*hx-swap-oob="true"', html)
    assert "Your cart is empty." in html
    assert "(0)" in html
    assert db.session.query(CartLine).count() == 0


@pytest.mark.parametrize("quantity", ["\u00b2", "9" * 5000])
def test_update_to_a_number_int_cannot_read_is_refused(client, goods, quantity):
    """A superscript digit or thousands of digits are not quantities: a message, not a 500."""
    add(client, goods["mug"].id, "1")
    lid = line_id(client)
    token = csrf_token(client, "/cart")
    response = client.post(f"/cart/lines/{lid}/update",
                           data={"quantity": quantity, "csrf_token": token})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert (f'<p id="line-error-{lid}" class="field-error line-error">'
            "Enter a whole number from 0 to 99.</p>") in page
    assert db.session.get(CartLine, lid).quantity == 1


def test_a_refused_quantity_without_javascript_is_shown_under_its_line(client, goods):
    """Without JavaScript, a quantity the cart refuses brings the cart page back (422) with
    the message under that line's quantity, which keeps what was typed; the other lines and
    the cart are unchanged. A line that is gone has no field: the message is a notice."""
    add(client, goods["tee"].id, "1")
    add(client, goods["mug"].id, "2")
    tee, mug = (int(x) for x in re.findall(r'id="cart-line-(\d+)"',
                                           client.get("/cart").get_data(as_text=True)))
    token = csrf_token(client, "/cart")
    response = client.post(f"/cart/lines/{tee}/update", data={"quantity": "5",
                                                              "csrf_token": token})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert f'<p id="line-error-{tee}" class="field-error line-error">Only 2 left in stock.</p>' \
        in page
    assert f'id="qty-{tee}" type="number" name="quantity" value="5"' in page
    assert f'id="qty-{mug}" type="number" name="quantity" value="2"' in page
    assert f'<p id="line-error-{mug}" class="field-error line-error"></p>' in page
    assert db.session.get(CartLine, tee).quantity == 1
    gone = client.post(f"/cart/lines/{tee + mug + 1000}/update",
                       data={"quantity": "1", "csrf_token": token})
    assert gone.status_code == 303


@pytest.mark.parametrize("typed, message", [
    ("5", "Only 2 left in stock."),
    ("100", "Only 2 left in stock."),
    ("1.5", "Enter a whole number from 0 to 99."),
    ("-1", "Enter a whole number from 0 to 99."),
    ("", "Enter a whole number from 0 to 99."),
], ids=["beyond-stock", "above-line-limit-and-stock", "fraction", "negative", "empty"])
def test_a_refused_quantity_with_htmx_keeps_what_was_typed(client, goods, typed, message):
    """With htmx, the refused line came back showing the saved quantity, so the shopper no
    longer saw what they had typed beside the message about it; now, as without JavaScript,
    the field keeps what was typed, marked invalid and described by the message, and nothing
    is saved (the totals and the header's count are the saved line's)."""
    add(client, goods["tee"].id, "1")
    add(client, goods["mug"].id, "2")
    tee, mug = (int(x) for x in re.findall(r'id="cart-line-(\d+)"',
                                           client.get("/cart").get_data(as_text=True)))
    token = csrf_token(client, "/cart")
    response = client.post(f"/cart/lines/{tee}/update",
                           data={"quantity": typed, "csrf_token": token}, headers=HX)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith(f'<li class="cart-line" id="cart-line-{tee}"')
    assert (f'<input id="qty-{tee}" type="number" name="quantity" value="{typed}" min="0" '
            f'max="2" inputmode="numeric" autocomplete="off" '
            f'aria-describedby="line-error-{tee}" aria-invalid="true">') in html
    assert f'<p id="line-error-{tee}" class="field-error line-error">{message}</p>' in html
    assert 'Cart <span class="cart-count">(3)</span>' in html and "$44.00" in html
    assert db.session.get(CartLine, tee).quantity == 1
    assert db.session.get(CartLine, mug).quantity == 2


def test_two_options_of_one_product_are_told_apart_by_their_controls_and_messages(client,
                                                                                   app):
    """Two sizes of one tee in the cart: each line's quantity field and Remove button had the
    same name ("Quantity of Tee", "Remove Tee"), a change was announced as "Quantity of Tee
    updated to 2.", and the cart's summary of problems said "Only 1 of Tee left" without
    saying which: a shopper hearing them could not tell the lines apart. Each now names the
    option too, as "Added Tee (M) to your cart." does; a product without options is named
    alone."""
    tee = f.product("Tee", price="20.00", variants=[
        {"options": {"size": "S"}, "stock": 5}, {"options": {"size": "M"}, "stock": 5}])
    mug = f.product("Mug", price="12.00", stock=5)
    for variant in (f.variant_of(tee, 0), f.variant_of(tee, 1), f.variant_of(mug)):
        add(client, variant.id, "2")
    small, medium, plain = (int(x) for x in re.findall(
        r'id="cart-line-(\d+)"', client.get("/cart").get_data(as_text=True)))
    page = client.get("/cart").get_data(as_text=True)
    for line, name in ((small, "Tee (S)"), (medium, "Tee (M)"), (plain, "Mug")):
        assert (f'<label for="qty-{line}">Quantity<span class="visually-hidden"> of {name}'
                '</span></label>') in page
        assert f'Remove<span class="visually-hidden"> {name}</span></button>' in page
    token = csrf_token(client, "/cart")
    html = client.post(f"/cart/lines/{medium}/update", data={"quantity": "3",
                                                             "csrf_token": token},
                       headers=HX).get_data(as_text=True)
    assert re.search(r'<div id="live"[^>]*>Quantity of Tee \(M\) updated to 3\.</div>', html)
    client.post(f"/cart/lines/{plain}/update", data={"quantity": "1", "csrf_token": token})
    assert "Quantity of Mug updated to 1." in client.get("/cart").get_data(as_text=True)
    f.variant_of(tee, 1).stock_quantity = 1
    db.session.commit()
    page = client.get("/cart").get_data(as_text=True)
    problems = re.search(r'<div id="cart-problems">.*?</div>\s*</div>', page, re.S).group()
    assert "Only 1 of Tee (M) left; please lower the quantity." in problems


def test_a_form_the_cart_refused_without_javascript_is_said_at_the_top(client, goods):
    """Without JavaScript a refused quantity or coupon brings the cart page back (422) with
    the message beside its field only: the page gave no sign at its top, where the shopper
    (and a screen reader) starts, that anything was refused, unlike the shop's other forms
    ("Please correct the fields marked below."). It now says so in an alert there, with a
    link to the field; the cart's own page and htmx's answers have none."""
    f.coupon("WELCOME10", "percent", "10")
    add(client, goods["tee"].id, "1")
    lid = line_id(client)
    token = csrf_token(client, "/cart")
    notice = re.compile(r'<div class="notice notice-error" role="alert">(.*?)</div>', re.S)
    assert not notice.search(client.get("/cart").get_data(as_text=True))
    page = client.post(f"/cart/lines/{lid}/update",
                       data={"quantity": "5", "csrf_token": token}).get_data(as_text=True)
    said = notice.search(page)
    assert said and said.group(1).strip() == (
        '<p>Your cart was not changed. Please correct the field marked below: '
        f'<a href="#qty-{lid}">Quantity of Tee</a>.</p>')
    assert page.index(said.group(0)) < page.index(f'id="cart-line-{lid}"')
    page = client.post("/cart/coupon",
                       data={"code": "nope", "csrf_token": token}).get_data(as_text=True)
    said = notice.search(page)
    assert said and said.group(1).strip() == (
        '<p>Your cart was not changed. Please correct the field marked below: '
        '<a href="#coupon-code">Coupon code</a>.</p>')
    for path, data in ((f"/cart/lines/{lid}/update", {"quantity": "5"}),
                       ("/cart/coupon", {"code": "nope"})):
        html = client.post(path, data={**data, "csrf_token": token},
                           headers=HX).get_data(as_text=True)
        assert not notice.search(html), path


@pytest.mark.parametrize("typed", ["2.5", "2.0", "1e1"])
def test_a_quantity_that_is_no_whole_number_is_told_so(client, goods, typed):
    """A number field sends 2.5, 2.0 or 1e1 as typed (each a number it accepts), and the cart
    answered "Enter a whole number from 0 to 99." of a number in that range: the shopper could not
    tell what was wrong. The message now asks for a whole number, on the product page and in
    the cart, with htmx and without."""
    page = client.post("/cart/add", data={"variant_id": goods["mug"].id, "quantity": typed,
                                          "product": "mug",
                                          "csrf_token": csrf_token(client, "/p/mug")})
    assert "Enter a whole number from 1 to 99." in page.get_data(as_text=True)
    add(client, goods["mug"].id, "1")
    lid = line_id(client)
    token = csrf_token(client, "/cart")
    for headers in ({}, HX):
        html = client.post(f"/cart/lines/{lid}/update", data={"quantity": typed,
                                                              "csrf_token": token},
                           headers=headers).get_data(as_text=True)
        assert (f'<p id="line-error-{lid}" class="field-error line-error">'
                "Enter a whole number from 0 to 99.</p>") in html
    assert db.session.get(CartLine, lid).quantity == 1


def test_each_lines_update_button_names_its_line(client, goods):
    """Every line's button was named "Update" alone, so a screen reader's list of buttons read
    "Update, Remove Mug, Update, Remove Tee": which Update was which? It now reads "Update
    quantity of Mug" (the words after "Update" unseen), as "Remove Mug" names its line."""
    add(client, goods["mug"].id, "1")
    add(client, goods["tee"].id, "1")
    page = client.get("/cart").get_data(as_text=True)
    buttons = re.findall(r'<button id="update-\d+"[^>]*>(.*?)</button>', page)
    assert buttons == ['Update<span class="visually-hidden"> quantity of Mug</span>',
                       'Update<span class="visually-hidden"> quantity of Tee</span>']


def test_zero_quantity_update_removes_the_line(client, goods):
    add(client, goods["mug"].id, "1")
    lid = line_id(client)
    token = csrf_token(client, "/cart")
    client.post(f"/cart/lines/{lid}/update", data={"quantity": "0", "csrf_token": token})
    assert db.session.query(CartLine).count() == 0
    assert "Removed Mug from your cart." in client.get("/cart").get_data(as_text=True)


def test_someone_elses_line_is_not_found(app, goods):
    alice, bob = app.test_client(), app.test_client()
    add(alice, goods["mug"].id, "1")
    lid = line_id(alice)
    add(bob, goods["tee"].id, "1")
    token = csrf_token(bob, "/cart")
    bob.post(f"/cart/lines/{lid}/remove", data={"csrf_token": token})
    assert "That line is not in your cart." in bob.get("/cart").get_data(as_text=True)
    assert db.session.get(CartLine, lid) is not None


def test_coupon_apply_and_remove(client, goods):
    f.coupon("WELCOME10", "percent", "10")
    add(client, goods["mug"].id, "2")
    token = csrf_token(client, "/cart")
    html = client.post(
        "/cart/coupon", data={"code": " welcome10 ", "csrf_token": token}, headers=HX
    ).get_data(as_text=True)
    assert html.lstrip().startswith('<div id="coupon-box"')
    assert "Coupon <strong>WELCOME10</strong> applied." in html
    assert "−$2.40" in html  # 10% of $24.00
    assert client.post("/cart/coupon/remove", data={"csrf_token": token}).status_code == 303
    assert "Discount" not in client.get("/cart").get_data(as_text=True)


def test_a_coupon_code_is_accent_sensitive_on_every_database(client, goods):
    """MySQL's usual collation ignores accents: WÉLCOME10 found WELCOME10 there (SQLite
    refused it), and the two codes could not both exist (migration 0023)."""
    f.coupon("WELCOME10", "percent", "10")
    add(client, goods["mug"].id, "2")
    token = csrf_token(client, "/cart")
    html = client.post("/cart/coupon", data={"code": "wélcome10", "csrf_token": token},
                       headers=HX).get_data(as_text=True)
    assert "That coupon code is not valid." in html
    f.coupon("WÉLCOME10", "percent", "20")  # not the same code: both exist
    html = client.post("/cart/coupon", data={"code": "wélcome10", "csrf_token": token},
                       headers=HX).get_data(as_text=True)
    assert "Coupon <strong>WÉLCOME10</strong> applied." in html and "−$4.80" in html
    decomposed = "we\u0301lcome10"  # É typed as E and a combining accent: the same code
    html = client.post("/cart/coupon", data={"code": decomposed, "csrf_token": token},
                       headers=HX).get_data(as_text=True)
    assert "Coupon <strong>WÉLCOME10</strong> applied." in html


def test_a_coupon_code_typed_full_width_or_pasted_with_a_zero_width_space_is_found(
        client, goods):
    """ＷＥＬＣＯＭＥ１０ (a Japanese input method's full-width letters) and WELCOME10 pasted
    with a zero-width space were "not valid", though a quantity typed in full-width digits is
    taken: the code is now also looked for in its plain form, and the cart keeps the code as
    stored."""
    f.coupon("WELCOME10", "percent", "10")
    add(client, goods["mug"].id, "2")
    token = csrf_token(client, "/cart")
    for typed in ("ＷＥＬＣＯＭＥ１０", "\u200bWELCOME10", "WEL\ufeffCOME10", "ｗｅｌｃｏｍｅ１０"):
        html = client.post("/cart/coupon", data={"code": typed, "csrf_token": token},
                           headers=HX).get_data(as_text=True)
        assert "Coupon <strong>WELCOME10</strong> applied." in html, typed
        assert "−$2.40" in html
    # Still no code is two codes: an accent is not a compatibility form.
    html = client.post("/cart/coupon", data={"code": "ＷÉＬＣＯＭＥ１０", "csrf_token": token},
                       headers=HX).get_data(as_text=True)
    assert "That coupon code is not valid." in html


@pytest.mark.parametrize(
    "setup,message",
    [
        ({}, "That coupon code is not valid."),
        ({"active": False}, "That coupon is no longer active."),
        ({"ends_at": utcnow() - timedelta(days=1)}, "That coupon has expired."),
        ({"starts_at": utcnow() + timedelta(days=1)}, "That coupon is not valid yet."),
        ({"min_subtotal": "100.00"}, "That coupon needs a subtotal of at least $100.00."),
        ({"usage_limit": 0}, "That coupon has been used up."),
    ],
)
def test_coupon_problems_are_shown_next_to_the_field(client, goods, setup, message):
    from decimal import Decimal

    if setup:
        values = dict(setup)
        if "min_subtotal" in values:
            values["min_subtotal"] = Decimal(values["min_subtotal"])
        f.coupon("SPECIAL", **values)
    add(client, goods["mug"].id, "1")
    token = csrf_token(client, "/cart")
    html = client.post(
        "/cart/coupon", data={"code": "special", "csrf_token": token}, headers=HX
    ).get_data(as_text=True)
    assert message in html and 'id="coupon-error"' in html and 'value="special"' in html
    # Without JavaScript: the cart page again (422), the message under the field, the code
    # kept, no coupon applied.
    plain = client.post("/cart/coupon", data={"code": "special", "csrf_token": token})
    assert plain.status_code == 422
    page = plain.get_data(as_text=True)
    assert f'<p id="coupon-error" class="field-error">{escape(message)}</p>' in page
    assert 'value="special" autocomplete="off" aria-describedby="coupon-error" ' \
        'aria-invalid="true"' in page
    assert "<h1>Your cart</h1>" in page and "Discount" not in page


def test_expired_coupon(client, goods):
    from datetime import timedelta

    from shop.models import utcnow

    f.coupon("OLD", ends_at=utcnow() - timedelta(days=1))
    add(client, goods["mug"].id, "1")
    token = csrf_token(client, "/cart")
    html = client.post(
        "/cart/coupon", data={"code": "old", "csrf_token": token}, headers=HX
    ).get_data(as_text=True)
    assert "That coupon has expired." in html


def test_post_without_csrf_is_refused_and_changes_nothing(client, goods):
    response = client.post("/cart/add", data={"variant_id": goods["mug"].id, "quantity": "1"})
    assert response.status_code == 400
    assert db.session.query(CartLine).count() == 0


def test_shipping_estimate(client, goods):
    add(client, goods["mug"].id, "1")
    standard = client.get("/cart").get_data(as_text=True)
    express = client.get("/cart?shipping=express").get_data(as_text=True)
    assert "$5.00" in standard and "$15.00" in express


def test_cart_totals_match_the_pricing_service(app, client, goods):
    from shop.services import cart as carts
    from shop.services.cart import CartOwner

    add(client, goods["mug"].id, "3")
    with client.session_transaction() as session:
        token = session["cart_token"]
    view = carts.view(CartOwner(token=token))
    html = client.get("/cart").get_data(as_text=True)
    for amount in (view.quote.subtotal, view.quote.tax, view.quote.total):
        assert f"${amount:,.2f}" in html


def test_stock_dropping_below_the_cart_is_reported(client, goods):
    add(client, goods["mug"].id, "4")
    variant = db.session.get(Variant, goods["mug"].id)
    variant.stock_quantity = 2
    db.session.commit()
    assert "Only 2 of Mug left; please lower the quantity." in client.get("/cart").get_data(
        as_text=True
    )


def test_the_htmx_quantity_field_is_the_product_pages_own(client, goods):
    """cart/_quantity_field.html, which htmx's answers swap into the product page, repeats
    the page's quantity field (the page does not include it, to stay cheap): both must stay
    the same markup (but for indentation), accepted or refused."""
    def field(html: str) -> str:
        found = re.search(r'<div id="quantity-field".*?</div>', html, re.S).group(0)
        return re.sub(r">\s+<", "><", found.replace(' data-hx-swap-oob="true"', ""))

    token = csrf_token(client, "/p/mug")
    form = {"variant_id": goods["mug"].id, "product": "mug", "csrf_token": token}
    accepted = client.post("/cart/add", headers=HX, data={**form, "quantity": "1"})
    assert field(accepted.get_data(as_text=True)) == \
        field(client.get("/p/mug").get_data(as_text=True))
    refused = client.post("/cart/add", headers=HX, data={**form, "quantity": "abc"})
    page = client.post("/cart/add", data={**form, "quantity": "abc"})
    assert page.status_code == 422
    assert 'aria-invalid="true"' in field(refused.get_data(as_text=True))
    assert field(refused.get_data(as_text=True)) == field(page.get_data(as_text=True))


def test_an_htmx_line_change_updates_the_carts_problems_and_its_coupon(client, goods):
    """With htmx, a quantity change swapped the line and the totals only: the notice over the
    lines kept saying "Only 1 of Tee left; please lower the quantity." after it was lowered,
    and the coupon box kept saying "applied." when the change took the subtotal under the
    coupon's minimum (the totals showed no discount). Both are now sent out of band."""
    from decimal import Decimal

    f.coupon("OVER40", min_subtotal=Decimal("40.00"))
    add(client, goods["mug"].id, "3")
    add(client, goods["tee"].id, "2")
    token = csrf_token(client, "/cart")
    client.post("/cart/coupon", data={"code": "over40", "csrf_token": token})
    variant = db.session.get(Variant, goods["tee"].id)
    variant.stock_quantity = 1
    db.session.commit()
    page = client.get("/cart").get_data(as_text=True)
    assert "Only 1 of Tee left; please lower the quantity." in page
    tee, mug = (db.session.query(CartLine).filter_by(variant_id=goods[name].id).one().id
                for name in ("tee", "mug"))
    # The line's own problem is tied to its quantity field, which is marked invalid (it
    # pointed at the empty message slot only).
    assert f'<p id="line-problem-{tee}" class="field-error">' in page
    assert f'aria-describedby="line-error-{tee} line-problem-{tee}" aria-invalid="true">' in page
    assert f'aria-describedby="line-error-{mug}">' in page
    html = client.post(f"/cart/lines/{tee}/update", data={"quantity": "1", "csrf_token": token},
                       headers=HX).get_data(as_text=True)
    assert '<div id="cart-problems" data-hx-swap-oob="true">' in html
    assert "Only 1 of Tee left" not in html
    assert "Coupon <strong>OVER40</strong> applied." in html  # $36 + $20: over the minimum
    html = client.post(f"/cart/lines/{mug}/update", data={"quantity": "1", "csrf_token": token},
                       headers=HX).get_data(as_text=True)  # $12 + $20: under it
    assert re.search(r'<div id="coupon-box" class="coupon-box" data-hx-swap-oob="true">\s*'
                     r'<p class="coupon-applied">Coupon <strong>OVER40</strong> cannot be used. '
                     r'That coupon needs a subtotal of at least \$40.00.</p>', html)
    assert "Discount" not in html
    # ... and the live region says so too, not only the quantity.
    assert re.search(r'<div id="live"[^>]*>Quantity of Mug updated to 1\. Coupon OVER40 cannot '
                     r'be used\. That coupon needs a subtotal of at least \$40\.00\.</div>', html)


def test_another_shipping_estimate_answers_htmx_with_the_totals_and_says_them(client, goods):
    add(client, goods["mug"].id, "2")
    response = client.get("/cart?shipping=express", headers=HX)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html
    assert html.lstrip().startswith('<div id="cart-totals" class="totals">')
    assert "HX-Request" in response.headers["Vary"]
    totals = re.search(r'<div id="cart-totals".*?</dl>', html, re.S).group()
    assert "$15.00" in totals  # express shipping
    live = re.search(r'<div id="live"[^>]*data-hx-swap-oob="innerHTML">([^<]*)</div>', html)
    assert live and live.group(1) == ("Shipping estimate: Express (1-2 business days), $15.00. "
                                      "Total $42.12.")  # tax on goods and shipping
    page = client.get("/cart?shipping=express").get_data(as_text=True)  # without JavaScript
    assert "<html" in page and re.search(r'<option value="express" selected>', page)


def test_another_shipping_estimate_is_the_cart_pages_address_with_htmx(client, goods):
    """With htmx, another shipping estimate changed the totals but not the page's address:
    refreshed, or gone back to from another page, the cart came from the server with standard
    shipping while the browser put the select back to Express. The estimate's form asks htmx
    to put its choice in the address (replace, not a new history entry), as the form without
    JavaScript does, and the cart at that address is priced with it."""
    add(client, goods["mug"].id, "2")
    page = client.get("/cart").get_data(as_text=True)
    form = re.search(r'<form class="shipping-estimate"[^>]*>', page).group()
    assert 'data-hx-get="/cart"' in form and 'data-hx-replace-url="true"' in form
    assert "data-hx-push-url" not in form
    express = client.get("/cart?shipping=express").get_data(as_text=True)
    assert '<option value="express" selected>' in express and _shipping_shown(express) == "$15.00"


def _shipping_shown(html: str) -> str:
    return re.search(r"<dt>Shipping</dt><dd>([^<]*)</dd>", html).group(1)


def _form_tags(html: str) -> dict[str, str]:
    """The cart's line and coupon forms' opening tags, by the path they post to."""
    return {m.group(1): m.group(0) for m in re.finditer(
        r'<form[^>]*action="(/cart/(?:lines/\d+/(?:update|remove)|coupon(?:/remove)?))'
        r'[^"]*"[^>]*>', html)}


def test_the_shipping_estimate_chosen_is_kept_by_every_cart_action(client, goods):
    """Express chosen in the cart's estimate: a quantity change, a coupon applied or removed,
    a line removed answered with standard shipping ("Free" over $50) while the choice still
    read Express (htmx sent no estimate), and without JavaScript the redirect back to the
    cart dropped ?shipping=. The forms now send the estimate chosen, with and without htmx."""
    f.coupon("TENOFF")
    add(client, goods["mug"].id, "3")
    add(client, goods["tee"].id, "1")
    page = client.get("/cart?shipping=express").get_data(as_text=True)
    assert _shipping_shown(page) == "$15.00"
    assert "Free" == _shipping_shown(client.get("/cart").get_data(as_text=True))  # $56: free
    forms = _form_tags(page)
    assert len(forms) == 5  # two lines' update and remove, the coupon's apply
    for path, tag in forms.items():
        # With htmx the choice on screen goes with the post ...
        assert 'data-hx-include="#shipping-method"' in tag, path
        assert f'data-hx-post="{path}"' in tag, path
        # ... and without it the page's own choice does.
        assert f'action="{path}?shipping=express"' in tag, path
    mug, tee = (db.session.query(CartLine).filter_by(variant_id=goods[name].id).one().id
                for name in ("mug", "tee"))

    # htmx: the included select sends shipping=express in the body.
    token = re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)
    hx = HX | {"X-CSRFToken": token}
    for path, data in ((f"/cart/lines/{mug}/update", {"quantity": "2"}),
                       ("/cart/coupon", {"code": "tenoff"}),
                       ("/cart/coupon/remove", {})):
        html = client.post(path, data={**data, "shipping": "express"}, headers=hx
                           ).get_data(as_text=True)
        assert _shipping_shown(html) == "$15.00", path
        assert 'href="/checkout?shipping=express"' in html, path
        for tag in _form_tags(html).values():  # the forms swapped in keep it too
            assert "?shipping=express" in tag and "#shipping-method" in tag

    # Without JavaScript: every action goes back to the cart with the estimate chosen.
    for path, data in ((f"/cart/lines/{mug}/update", {"quantity": "3"}),
                       ("/cart/coupon", {"code": "tenoff"}),
                       ("/cart/coupon", {"code": "NO-SUCH"}),
                       ("/cart/coupon/remove", {}),
                       (f"/cart/lines/{mug}/update", {"quantity": "abc"}),
                       (f"/cart/lines/{tee}/remove", {})):
        response = client.post(f"{path}?shipping=express", data={**data, "csrf_token": token})
        if response.status_code == 422:  # refused: the cart page again, as chosen
            html = response.get_data(as_text=True)
        else:
            assert response.status_code == 303, path
            assert response.headers["Location"] == "/cart?shipping=express", path
            html = client.get(response.headers["Location"]).get_data(as_text=True)
        assert '<option value="express" selected>' in html, path
        assert _shipping_shown(html) == "$15.00", path
        assert all("?shipping=express" in tag for tag in _form_tags(html).values()), path
    # An unknown method is the standard one; standard needs no word in the address.
    response = client.post(f"/cart/lines/{mug}/update?shipping=drone",
                           data={"quantity": "4", "csrf_token": token})
    assert response.headers["Location"] == "/cart"
    html = client.post(f"/cart/lines/{mug}/update", data={"quantity": "5", "shipping": "drone"},
                       headers=hx).get_data(as_text=True)
    assert _shipping_shown(html) == "Free" and 'href="/checkout?shipping=standard"' in html


def test_checkout_preselects_the_shipping_estimate_chosen_in_the_cart(client, goods):
    """/checkout chose Standard whatever the cart's estimate was: the cart's Checkout link
    says the method chosen, and the details form starts with it (a method the shop does not
    have: Standard)."""
    add(client, goods["mug"].id, "1")
    page = client.get("/cart?shipping=express").get_data(as_text=True)
    link = re.search(r'<a class="button[^"]*" href="(/checkout[^"]*)">Checkout</a>', page)
    assert link and link.group(1) == "/checkout?shipping=express"
    html = client.get(link.group(1)).get_data(as_text=True)
    assert re.search(r'<input type="radio" id="ship-express" [^>]*\bchecked\b', html)
    assert not re.search(r'<input type="radio" id="ship-standard" [^>]*\bchecked\b', html)
    assert "$15.00" in html  # the order summary is priced with it
    for path in ("/checkout?shipping=drone", "/checkout?shipping=standard", "/checkout"):
        html = client.get(path).get_data(as_text=True)
        assert re.search(r'<input type="radio" id="ship-standard" [^>]*\bchecked\b', html), path
    page = client.get("/cart").get_data(as_text=True)
    assert 'href="/checkout?shipping=standard">Checkout</a>' in page


def test_a_price_changed_since_it_was_added_is_said_once(client, app):
    """The cart and the review say when a line's price went up or down since the shopper
    added it, once; ordering is not held up by it."""
    from decimal import Decimal

    from shop.extensions import db
    from shop.models import Variant
    from tests import factories as f
    from tests.web.test_checkout import FORM, fill_cart

    lamp = f.variant_of(f.product("Desk Lamp", price="40.00", stock=5, slug="desk-lamp"))
    mug = f.variant_of(f.product("Mug", price="12.00", stock=5, slug="mug"))
    fill_cart(client, lamp.id, 1)
    fill_cart(client, mug.id, 2)
    assert "since you added it" not in client.get("/cart").get_data(as_text=True)

    db.session.get(Variant, lamp.id).price = Decimal("45.00")
    db.session.get(Variant, mug.id).price = Decimal("10.00")
    db.session.commit()
    page = client.get("/cart").get_data(as_text=True)
    assert "The price of Desk Lamp has gone up from $40.00 to $45.00 since you added it." in page
    assert "The price of Mug has gone down from $12.00 to $10.00 since you added it." in page
    assert "since you added it" not in client.get("/cart").get_data(as_text=True)  # said once

    # Changed again before the review: the review says it.
    db.session.get(Variant, lamp.id).price = Decimal("39.00")
    db.session.commit()
    from tests.conftest import csrf_token

    data = dict(FORM, csrf_token=csrf_token(client, "/checkout"))
    assert client.post("/checkout", data=data).status_code == 303
    review = client.get("/checkout/review").get_data(as_text=True)
    assert "has gone down from $45.00 to $39.00" in review and "Place order" in review
    assert "since you added it" not in client.get("/checkout/review").get_data(as_text=True)


def test_an_address_no_page_has_is_said_in_the_shops_words(client):
    """The shop's 404 page for an address no route has (a line id that is not a number)
    said Werkzeug's words; it now says the shop's."""
    token = csrf_token(client)
    for response in (client.get("/no-such-page"),
                     client.post("/cart/lines/abc/update", data={"csrf_token": token})):
        html = response.get_data(as_text=True)
        assert response.status_code == 404 and "Page not found" in html
        assert ('<p class="error-message">There is no page at this address. It may have '
                'moved, or the address may be mistyped.</p>') in html
        assert "requested URL" not in html


def test_a_line_no_longer_sold_takes_no_new_quantity(client, app):
    """A product taken off sale while in the cart: the line says "no longer sold; please
    remove it", yet a new quantity for it was taken ("Quantity of Lamp updated to 2.", 303),
    though no quantity of it can be ordered. It is now refused beside the line, nothing
    changed; 0 (or Remove) still takes it out."""
    lamp = f.product("Lamp", price="40.00", stock=5, slug="lamp")
    token = csrf_token(client, "/p/lamp")
    client.post("/cart/add", data={"variant_id": f.variant_of(lamp).id, "quantity": "1",
                                   "csrf_token": token})
    lamp.active = False
    db.session.commit()
    line_id = db.session.execute(db.select(CartLine.id)).scalar_one()
    refused = client.post(f"/cart/lines/{line_id}/update",
                          data={"quantity": "2", "csrf_token": token})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert (f'<p id="line-error-{line_id}" class="field-error line-error">Lamp is no longer '
            'sold; please remove it.</p>') in html
    htmx = client.post(f"/cart/lines/{line_id}/update", data={"quantity": "2",
                                                             "csrf_token": token},
                       headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "Lamp is no longer sold; please remove it." in htmx and "updated to" not in htmx
    assert db.session.execute(db.select(CartLine.quantity)).scalar_one() == 1
    removed = client.post(f"/cart/lines/{line_id}/update",
                          data={"quantity": "0", "csrf_token": token})
    assert removed.status_code == 303
    assert db.session.execute(db.select(CartLine.id)).first() is None


def test_a_quantity_past_the_stock_says_how_many_can_be_ordered(client, app):
    """3 left, and 150 typed: the product page and the cart (with htmx and without) said
    "Enter a whole number from 1 to 99." (0 to 99 in the cart), true of 50 too, which would
    be refused as well; and 98 more on a line of 2 was "A cart line holds at most 99.". Each
    now says what can be ordered ("Only 3 left in stock."), keeps what was typed and changes
    nothing, as a quantity from 4 to 99 did; in the API too. Where the stock is not the
    tighter limit, the line's maximum is still said."""
    from tests.web.api_support import error_of, make_shopper

    f.product("Few Lamp", slug="few-lamp", stock=3)
    many = f.variant_of(f.product("Many Mug", slug="many-mug", stock=500))
    only = '<p id="quantity-error" class="field-error">Only 3 left in stock.</p>'
    page = client.post("/cart/add", data={**product_form(client, "few-lamp"), "quantity": "150"})
    assert page.status_code == 422
    html = page.get_data(as_text=True)
    assert only in html and 'name="quantity" value="150"' in html
    htmx = client.post("/cart/add", data={**product_form(client, "few-lamp"),
                                          "quantity": "150"}, headers=HX)
    assert only in htmx.get_data(as_text=True)
    assert client.post("/cart/add", data={**product_form(client, "few-lamp"),
                                          "quantity": "2"}).status_code == 303
    more = client.post("/cart/add", data={**product_form(client, "few-lamp"), "quantity": "98"})
    assert ('<p id="quantity-error" class="field-error">Only 3 left in stock. Your cart '
            'already has 2.</p>') in more.get_data(as_text=True)
    lid = line_id(client)
    token = csrf_token(client, "/cart")
    for headers, status in (({}, 422), (HX, 200)):
        response = client.post(f"/cart/lines/{lid}/update",
                               data={"quantity": "150", "csrf_token": token}, headers=headers)
        assert response.status_code == status
        html = response.get_data(as_text=True)
        assert (f'<p id="line-error-{lid}" class="field-error line-error">'
                "Only 3 left in stock.</p>") in html
        assert f'id="qty-{lid}" type="number" name="quantity" value="150"' in html
    assert db.session.query(CartLine).one().quantity == 2
    # 500 in stock: the line's maximum is the limit, and said.
    assert add(client, many.id, "1").status_code == 303
    big = next(line.id for line in db.session.query(CartLine) if line.variant_id == many.id)
    html = client.post(f"/cart/lines/{big}/update", data={"quantity": "150", "csrf_token": token}
                       ).get_data(as_text=True)
    assert (f'<p id="line-error-{big}" class="field-error line-error">'
            "Enter a whole number from 0 to 99.</p>") in html
    html = client.post("/cart/add", data={**product_form(client, "many-mug"), "quantity": "150"}
                       ).get_data(as_text=True)
    assert '<p id="quantity-error" class="field-error">Enter a whole number from 1 to 99.</p>' \
        in html

    api = make_shopper(app).api
    lamp = db.session.query(Variant).join(Variant.product).filter_by(slug="few-lamp").one()
    added = api.post("/api/v1/cart/items", json={"variant_id": lamp.id, "quantity": 2})
    item = added.get_json()["items"][0]["id"]
    for response in (api.patch(f"/api/v1/cart/items/{item}", json={"quantity": 50}),
                     api.post("/api/v1/cart/items", json={"variant_id": lamp.id,
                                                          "quantity": 98})):
        assert response.status_code == 409
        error = error_of(response)
        assert error["code"] == "out_of_stock" and error["details"]["available"] == 3
        assert error["message"].startswith("Only 3 left in stock.")
    assert api.get("/api/v1/cart").get_json()["items"][0]["quantity"] == 2
