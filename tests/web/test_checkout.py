"""Checkout through the pages: details, review, place order, confirmation, access to orders."""
from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from shop.extensions import db
from shop.models import ADDRESS_FIELDS, Address, CartLine, Order, Variant
from tests import factories as f
from tests.conftest import csrf_token

HX = {"HX-Request": "true"}

FORM = {"email": "guest@example.com", "name": "Ada Lovelace", "line1": "12 Analytical St",
        "line2": "", "city": "London", "region": "", "postal_code": "N1 7AA", "country": "GB",
        "phone": "", "shipping_method": "standard", "payment_method": "manual"}


@pytest.fixture
def lamp(app):
    return f.variant_of(f.product("Desk Lamp", price="40.00", stock=3, slug="desk-lamp"))


def fill_cart(client, variant_id, quantity=1):
    token = csrf_token(client, "/products")
    client.post("/cart/add", data={"variant_id": variant_id, "quantity": quantity,
                                   "csrf_token": token})


def review(client, headers=None, **changes):
    data = dict(FORM, **changes)
    data["csrf_token"] = csrf_token(client, "/checkout")
    return client.post("/checkout", data=data, headers=headers or {})


def reviewed(client):
    """What the review page's "Place order" form would send."""
    page = client.get("/checkout/review").get_data(as_text=True)
    token = re.search(r'name="token" value="([^"]+)"', page).group(1)
    total = re.search(r'name="expected_total" value="([^"]+)"', page).group(1)
    cart = re.search(r'name="reviewed_cart" value="([^"]+)"', page)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return {"token": token, "expected_total": total, "csrf_token": csrf,
            **({"reviewed_cart": cart.group(1)} if cart else {})}


def place(client, form=None):
    form = form or reviewed(client)
    return (client.post("/checkout/place", data=form), form["token"], form["expected_total"],
            form["csrf_token"])


def test_guest_checkout_end_to_end(client, lamp, outbox):
    fill_cart(client, lamp.id, 2)
    assert review(client).status_code == 303
    page = client.get("/checkout/review").get_data(as_text=True)
    assert "guest@example.com" in page and "12 Analytical St" in page and "Place order" in page
    response, *_ = place(client)
    assert response.status_code == 303
    location = response.headers["Location"]
    assert re.search(r"/orders/SO-[A-Z0-9]+\?token=", location)
    confirmation = client.get(location).get_data(as_text=True)
    order = db.session.execute(select(Order)).scalar_one()
    assert order.number in confirmation and "Awaiting payment" in confirmation
    assert "N1 7AA<br>United Kingdom</address>" in confirmation  # the country's name, as reviewed
    assert order.email == "guest@example.com" and order.total == order.subtotal + order.tax
    assert db.session.get(Variant, lamp.id).stock_quantity == 1
    assert "(0)" in client.get("/").get_data(as_text=True)  # cart emptied
    # The shipping method as the shopper chose it, not the shop's key for it.
    assert "Shipping: Standard (3-5 business days)" in confirmation
    assert "(standard)" not in confirmation
    [mail] = outbox.glob("*.eml")
    assert "Shipping, Standard (3-5 business days):" in mail.read_text()


def test_missing_fields_are_named_and_kept(client, lamp):
    fill_cart(client, lamp.id)
    response = review(client, email="nope", line1="", city="", country="ZZ")
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Enter a valid email address." in html
    assert "Enter the address line 1." in html and "Enter the city." in html
    assert "Choose a country" in html
    assert 'value="Ada Lovelace"' in html and 'value="nope"' in html  # kept what was typed
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 0


def test_a_postal_code_refused_is_said_beside_its_field(client, lamp):
    """The checkout shares the address rules with the API, which names the field
    `shipping_address.postal_code`; the page's field is still `postal_code`."""
    fill_cart(client, lamp.id)
    response = review(client, postal_code="!!!")
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert ('<p id="postal_code-error" class="field-error">A postal code has letters, digits, '
            'spaces and hyphens.</p>') in html
    assert 'aria-describedby="postal_code-error" aria-invalid="true"' in html
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 0


def test_a_country_left_unchosen_stays_unchosen(client, lamp):
    """The form sent back with "Enter the country." shows no country chosen, as the shopper
    left it, not the United States the first visit preselects."""
    fill_cart(client, lamp.id)
    assert '<option value="US" selected>' in client.get("/checkout").get_data(as_text=True)
    response = review(client, country="")
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert '<p id="country-error" class="field-error">Enter the country.</p>' in html
    assert re.search(r'<select id="country"[^>]*aria-invalid="true"', html)
    assert " selected>" not in html.split('<select id="country"')[1].split("</select>")[0]
    kept = review(client, country="FR", city="").get_data(as_text=True)
    assert '<option value="FR" selected>' in kept
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 0


def test_shipping_and_payment_messages_belong_to_their_choices(client, lamp):
    """A method the shop does not offer (payment by card once Stripe is switched off) is said
    in the error slot its group of choices refers to."""
    fill_cart(client, lamp.id)
    response = review(client, shipping_method="teleport", payment_method="stripe")
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    for key, message in (("shipping_method", "Choose standard or express shipping."),
                         ("payment_method", "Choose an available payment method.")):
        assert f'<fieldset class="has-error" aria-describedby="{key}-error">' in html
        assert f'<p id="{key}-error" class="field-error">{message}</p>' in html
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 0


def orders() -> int:
    return db.session.execute(select(func.count(Order.id))).scalar_one()


def test_place_order_refused_for_a_detail_says_it_beside_the_field(app, client, lamp):
    """"Place order" refused for a detail (card payment chosen, then Stripe switched off
    before the order was placed) sent the shopper to the details step with the message in a
    notice at the top, beside no field. It now shows the details form (422) with the message
    beside the field and the details as entered; with htmx, the same form as a fragment (200)
    that replaces the review page's main, at /checkout."""
    fill_cart(client, lamp.id)
    app.config["STRIPE_SECRET_KEY"] = "sk_test_on"
    assert review(client, payment_method="stripe").status_code == 303
    form = reviewed(client)
    app.config["STRIPE_SECRET_KEY"] = None
    message = '<p id="payment_method-error" class="field-error">Choose an available payment ' \
              'method.</p>'
    for headers, status in (({}, 422), (HX, 200)):
        response = client.post("/checkout/place", data=form, headers=headers)
        html = response.get_data(as_text=True)
        assert response.status_code == status, html
        assert message in html
        assert '<fieldset class="has-error" aria-describedby="payment_method-error">' in html
        assert 'id="name" name="name" type="text" value="Ada Lovelace"' in html
        assert 'id="line1" name="line1" type="text" value="12 Analytical St"' in html
        assert 'id="email" name="email" type="email" value="guest@example.com"' in html
        assert '<option value="GB" selected>' in html
        assert 'id="ship-standard" name="shipping_method" value="standard" checked' in html
        assert "flash-error" not in html
    assert "<html" not in html and '<h1>Checkout</h1>' in html
    assert response.headers["HX-Retarget"] == "#main"
    assert response.headers["HX-Push-Url"] == "/checkout"
    assert orders() == 0
    # Corrected, the order goes through.
    assert review(client, payment_method="manual").status_code == 303
    assert place(client)[0].status_code == 303 and orders() == 1


def test_place_order_refused_for_an_address_field_says_it_there(client, lamp):
    """An address kept since the details step that the rules refuse now: its message beside
    its field, the rest of the address as entered."""
    fill_cart(client, lamp.id)
    review(client)
    form = reviewed(client)
    with client.session_transaction() as sess:
        details = sess["checkout"]
        details["address"] = {**details["address"], "postal_code": ""}
        sess["checkout"] = details
    response = client.post("/checkout/place", data=form)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert '<p id="postal_code-error" class="field-error">Enter the postal code.</p>' in html
    assert 'id="postal_code" name="postal_code" type="text" value="" autocomplete="postal-code" ' \
           'required aria-describedby="postal_code-error" aria-invalid="true">' in html
    assert 'value="12 Analytical St"' in html and 'value="N1 7AA"' not in html
    assert '<p id="city-error" class="field-error"></p>' in html
    assert orders() == 0


def test_a_refused_detail_without_a_field_is_said_in_the_notice(client, auth, lamp):
    """A customer orders with the account's email, which the form has no field for: a message
    about it is in the notice at the top rather than lost."""
    f.user("shopper@example.com")
    auth.login("shopper@example.com")
    fill_cart(client, lamp.id)
    review(client)
    form = reviewed(client)
    with client.session_transaction() as sess:
        sess["checkout"] = {**sess["checkout"], "email": "not-an-email"}
    html = client.post("/checkout/place", data=form).get_data(as_text=True)
    notice = html.split('<div class="notice notice-error" role="alert">')[1].split("</div>")[0]
    assert "Enter a valid email address." in notice
    assert orders() == 0


def test_the_details_form_with_htmx(client, lamp):
    """With htmx the details form is swapped in place when refused (a fragment, 200: the form
    with each message beside its field and what was typed, the summary out of band), and a
    form accepted opens the review page (HX-Redirect)."""
    fill_cart(client, lamp.id)
    data = dict(FORM, email="nope", city="", shipping_method="express",
                csrf_token=csrf_token(client, "/checkout"))
    refused = client.post("/checkout", data=data, headers=HX)
    html = refused.get_data(as_text=True)
    assert refused.status_code == 200 and "<html" not in html
    assert html.lstrip().startswith('<form id="checkout-details"')
    assert 'data-hx-target="this" data-hx-swap="outerHTML"' in html
    assert '<p id="email-error" class="field-error">Enter a valid email address.</p>' in html
    assert '<p id="city-error" class="field-error">Enter the city.</p>' in html
    assert 'value="nope"' in html and 'value="Ada Lovelace"' in html
    assert 'id="ship-express" name="shipping_method" value="express" checked' in html
    assert re.search(r'<aside id="checkout-summary"[^>]*data-hx-swap-oob="true"', html)
    assert "HX-Request" in refused.headers["Vary"]
    accepted = client.post("/checkout", data=dict(data, email="ada@example.com", city="London"),
                           headers=HX)
    assert accepted.status_code == 204
    assert accepted.headers["HX-Redirect"] == "/checkout/review"
    assert "ada@example.com" in client.get("/checkout/review").get_data(as_text=True)


def test_another_shipping_method_on_the_details_form_reprices_the_summary_with_htmx(client,
                                                                                   lamp):
    """Express chosen on the details form: the order summary beside it still said standard
    shipping and its total until the form was sent. With htmx each shipping choice now asks
    for the summary priced with it (nothing kept: the form sends the choice) and the new
    shipping and total are read out; a cart emptied meanwhile sends the shopper to the cart."""
    fill_cart(client, lamp.id)  # $40: under the free shipping threshold
    page = client.get("/checkout").get_data(as_text=True)
    radio = re.search(r'<input type="radio" id="ship-express"[^>]*>', page).group()
    assert 'data-hx-get="/checkout"' in radio and 'data-hx-target="#checkout-summary"' in radio
    assert 'data-hx-swap="outerHTML"' in radio and 'data-hx-trigger="change"' in radio
    response = client.get("/checkout?shipping_method=express", headers=HX)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html
    assert "HX-Request" in response.headers["Vary"]
    assert html.lstrip().startswith('<aside id="checkout-summary"')
    assert "data-hx-swap-oob" not in html.split(">", 1)[0]
    assert "<dt>Shipping</dt><dd>$15.00</dd>" in html
    live = re.search(r'<div id="live"[^>]*data-hx-swap-oob="innerHTML">([^<]*)</div>', html)
    assert live and live.group(1) == ("Shipping: Express (1-2 business days), $15.00. "
                                      "Total $59.40.")
    standard = client.get("/checkout?shipping_method=bogus", headers=HX).get_data(as_text=True)
    assert "<dt>Shipping</dt><dd>$5.00</dd>" in standard
    # Nothing was kept: the page without htmx starts as before.
    assert 'id="ship-standard" name="shipping_method" value="standard" checked' in \
        client.get("/checkout").get_data(as_text=True)
    # The choice is the page's address (replaced): refreshed or gone back to, the page is
    # priced with the method it shows, which the browser puts back.
    assert 'data-hx-replace-url="true"' in radio
    page = client.get("/checkout?shipping_method=express").get_data(as_text=True)
    assert 'id="ship-express" name="shipping_method" value="express" checked' in page
    assert "<dt>Shipping</dt><dd>$15.00</dd>" in page
    line = db.session.query(CartLine).one()
    db.session.delete(line)
    db.session.commit()
    emptied = client.get("/checkout?shipping_method=express", headers=HX)
    assert emptied.status_code == 204 and emptied.headers["HX-Redirect"] == "/cart"


def test_a_saved_address_refused_is_offered_as_a_new_one(client, auth, lamp):
    """A saved address the rules refuse comes back as the new address to correct (chosen
    again, it would be refused again)."""
    user = f.user("shopper@example.com")
    auth.login("shopper@example.com")
    fill_cart(client, lamp.id)
    address = Address(user_id=user.id, name="Ada", line1="1 Old Rd", city="Paris",
                      postal_code="75001", country="ZZ", is_default=True)
    db.session.add(address)
    db.session.commit()
    blank = {name: "" for name in ADDRESS_FIELDS} | {"country": "US"}  # the page's fields
    response = review(client, saved_address_id=str(address.id), **blank)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Choose a country (a two-letter ISO code such as US)." in html
    assert f'id="saved-{address.id}" name="saved_address_id" value="{address.id}">' in html
    assert 'id="saved-new" name="saved_address_id" value="" checked' in html
    assert 'value="1 Old Rd"' in html


def test_countries_are_listed_by_name(client, auth, lamp):
    """The country lists (checkout, a saved address) were in the order of the ISO codes:
    United Arab Emirates second (AE), Germany among the D's (DE), United Kingdom among the G's
    (GB), so a shopper looking for their country by name could not find it where they looked.
    They are now in the order of their names, accents aside (Åland Islands among the A's),
    each with its code as before, United States still chosen first."""
    import unicodedata

    def key(name: str) -> str:
        return "".join(c for c in unicodedata.normalize("NFKD", name)
                       if not unicodedata.combining(c)).casefold()

    fill_cart(client, lamp.id)
    f.user("shopper@example.com")
    for path in ("/checkout", "/account/addresses/new"):
        if path.startswith("/account"):
            auth.login("shopper@example.com")
        html = client.get(path).get_data(as_text=True)
        select = re.search(r'<select id="country".*?</select>', html, re.S).group()
        options = re.findall(r'<option value="([A-Z]{2})"( selected)?>([^<]+)</option>', select)
        names = [name for _, _, name in options]
        assert len(names) == 249 and names == sorted(names, key=key), path
        assert names[:3] == ["Afghanistan", "Åland Islands", "Albania"], path
        codes = {code: name for code, _, name in options}
        assert codes["DE"] == "Germany" and codes["GB"] == "United Kingdom", path
        if path == "/checkout":
            assert [code for code, chosen, _ in options if chosen] == ["US"]


def unshowable(html: str) -> set[str]:
    """The control characters HTML forbids that a page holds (tab, LF and CR are allowed)."""
    return {c for c in html if (ord(c) < 32 and c not in "\t\n\r") or 0x7f <= ord(c) <= 0x9f}


@pytest.mark.parametrize("headers", [{}, HX])
def test_refused_details_show_no_control_character(client, lamp, headers):
    """Details refused for a control character (in the email, the address) showed it again
    as typed in the fields' values: invalid HTML (Nu: "Saw U+0000", "Forbidden code point
    U+0007"). The form shows U+FFFD in its place. Fails on the old code."""
    fill_cart(client, lamp.id)
    controls = "\x00\x07\x1b\x7f\x9f"
    response = review(client, headers=headers, email=f"ada{controls}@example.com",
                      line1=f"12{controls} Analytical St", city=f"Lon{controls}don")
    html = response.get_data(as_text=True)
    assert response.status_code == (200 if headers else 422)
    assert "cannot be" in html
    assert unshowable(html) == set()
    assert 'value="Lon\ufffd\ufffd\ufffd\ufffd\ufffddon"' in html


def _saved_address(user):
    address = Address(user_id=user.id, name="Ada", line1="1 Main St", city="Springfield",
                      postal_code="62701", country="US", is_default=True)
    db.session.add(address)
    db.session.commit()
    return address


def test_a_saved_address_is_chosen_not_copied_into_the_new_address_fields(client, auth, lamp):
    """The details form filled the new address's fields with the default saved address, and
    "Review order" with that address chosen ignored the fields: edits to them (which read as
    edits to the address the page showed) were silently dropped. Now the fields are left
    empty for a new address (also on "Change details" back from the review); fields typed
    with a saved address still chosen are the address ordered (the page has no script to
    switch the choice); left empty, the saved address is. Fails on the old code."""
    user = f.user("shopper@example.com")
    auth.login("shopper@example.com")
    fill_cart(client, lamp.id)
    address = _saved_address(user)
    page = client.get("/checkout").get_data(as_text=True)
    assert f'id="saved-{address.id}" name="saved_address_id" value="{address.id}" checked' in page
    assert 'value="1 Main St"' not in page and 'value="Springfield"' not in page
    assert '<input id="line1" name="line1" type="text" value=""' in page

    # The shopper types another address over the (empty) fields, the saved one still chosen.
    typed = {"name": "Ada", "line1": "9 Elm Ave", "line2": "", "city": "Shelbyville",
             "region": "", "postal_code": "62565", "country": "US", "phone": ""}
    assert review(client, saved_address_id=str(address.id), **typed).status_code == 303
    shown = client.get("/checkout/review").get_data(as_text=True)
    assert "9 Elm Ave" in shown and "Shelbyville" in shown and "1 Main St" not in shown
    # "Change details": the typed address is in the fields, "A new address" chosen.
    back = client.get("/checkout").get_data(as_text=True)
    assert 'value="9 Elm Ave"' in back
    assert 'id="saved-new" name="saved_address_id" value="" checked' in back
    response, *_ = place(client)
    assert response.status_code == 303
    order = db.session.execute(select(Order)).scalar_one()
    assert order.shipping_address["line1"] == "9 Elm Ave"
    assert order.shipping_address["city"] == "Shelbyville"


def test_a_saved_address_chosen_with_the_fields_left_empty_is_ordered(client, auth, lamp):
    """The saved address chosen and the new address's fields left as the page shows them
    (empty; the country list always sends a choice): the saved address is reviewed, and
    "Change details" shows it chosen with the fields still empty."""
    user = f.user("shopper@example.com")
    auth.login("shopper@example.com")
    fill_cart(client, lamp.id)
    address = _saved_address(user)
    blank = {name: "" for name in ADDRESS_FIELDS} | {"country": "US"}
    assert review(client, saved_address_id=str(address.id), **blank).status_code == 303
    assert "1 Main St" in client.get("/checkout/review").get_data(as_text=True)
    back = client.get("/checkout").get_data(as_text=True)
    assert f'value="{address.id}" checked' in back and 'value="1 Main St"' not in back
    # A phone number or a second line alone is no other address: the saved one is reviewed
    # (the form was refused for a name, a street and a city, the saved address set aside).
    assert review(client, saved_address_id=str(address.id),
                  **(blank | {"phone": "555-1234"})).status_code == 303
    assert "1 Main St" in client.get("/checkout/review").get_data(as_text=True)
    # The saved address as it is, typed again: still the saved one (not saved twice).
    same = address.as_dict()
    assert review(client, saved_address_id=str(address.id), save_address="yes",
                  **same).status_code == 303
    response, *_ = place(client)
    assert response.status_code == 303
    assert db.session.execute(select(func.count(Address.id))).scalar_one() == 1
    order = db.session.execute(select(Order)).scalar_one()
    assert order.shipping_address["line1"] == "1 Main St"


def test_double_submit_creates_one_order(client, lamp):
    fill_cart(client, lamp.id)
    review(client)
    first, token, total, csrf = place(client)
    second = client.post("/checkout/place", data={"token": token, "expected_total": total,
                                                  "csrf_token": csrf})
    assert second.status_code == 303
    assert first.headers["Location"] == second.headers["Location"]
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 1


def test_a_checkout_sent_again_after_the_order_was_placed_in_another_tab_says_so(client, lamp):
    """Two tabs at checkout: the details sent again and the order placed in the second; then
    the first tab's "Place order" (its review older) said "Your checkout session expired.
    Please review your order again." and sent the shopper round to "Your cart is empty.":
    nothing had expired, and nothing said the order was placed. Now each checkout form sent
    after it (that "Place order", the details form, its review) shows the order just placed,
    saying the cart is empty because of it; nothing more is ordered."""
    fill_cart(client, lamp.id, 1)
    assert review(client).status_code == 303
    first_tab = reviewed(client)
    assert review(client, name="Ada King").status_code == 303  # the second tab's details
    placed, *_ = place(client)
    order = db.session.execute(select(Order)).scalar_one()
    assert placed.status_code == 303 and f"/orders/{order.number}" in placed.headers["Location"]
    said = f"Your order {order.number} has been placed, so your cart is empty now."
    stale = client.post("/checkout/place", data=first_tab)
    assert stale.status_code == 303 and stale.headers["Location"] == placed.headers["Location"]
    page = client.get(stale.headers["Location"]).get_data(as_text=True)
    assert said in page and "expired" not in page
    # The details form sent again (from a tab still showing it): its review.
    details = client.post("/checkout", data=dict(FORM, csrf_token=csrf_token(client, "/products")))
    assert details.status_code == 303
    shown = client.get(details.headers["Location"])
    assert shown.status_code == 303 and shown.headers["Location"] == placed.headers["Location"]
    assert said in client.get(shown.headers["Location"]).get_data(as_text=True)
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 1
    assert db.session.get(Variant, lamp.id).stock_quantity == 2
    # Long after, an empty cart is only that.
    order.created_at -= timedelta(hours=2)
    db.session.commit()
    later = client.get("/checkout")
    assert later.status_code == 303 and later.headers["Location"].endswith("/cart")
    assert "Your cart is empty." in client.get("/cart").get_data(as_text=True)


@pytest.mark.parametrize("total", ["sNaN", "NaN", "Infinity", "abc"])
def test_a_confirmed_total_that_is_no_amount_is_not_a_500(client, lamp, total):
    """A signalling NaN failed the comparison with the cart's total (500); like any text that
    is no amount, it is now not compared and the order is placed once."""
    fill_cart(client, lamp.id)
    review(client)
    form = reviewed(client) | {"expected_total": total}
    response, *_ = place(client, form)
    assert response.status_code == 303 and "/orders/SO-" in response.headers["Location"]
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 1


@pytest.mark.parametrize("token", ["é", "\u0000", "x" * 5000])
def test_a_checkout_token_that_is_not_ours_sends_the_shopper_back(client, lamp, token):
    """A "Place order" whose token is not this checkout's (a non-ASCII one failed
    secrets.compare_digest with a 500) asks the shopper to review again and places nothing."""
    fill_cart(client, lamp.id)
    review(client)
    response, *_ = place(client, reviewed(client) | {"token": token})
    assert response.status_code == 303 and response.headers["Location"] == "/checkout"
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 0


def test_cart_changed_since_review_sends_the_shopper_back(client, lamp):
    fill_cart(client, lamp.id)
    review(client)
    form = reviewed(client)
    variant = db.session.get(Variant, lamp.id)
    from decimal import Decimal

    variant.price = Decimal("45.00")
    db.session.commit()
    response, *_ = place(client, form)
    assert response.headers["Location"].endswith("/checkout/review")
    assert "changed since you reviewed it" in client.get("/checkout/review").get_data(as_text=True)
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 0


def test_a_cart_changed_to_the_same_total_since_review_sends_the_shopper_back(client, lamp):
    """"Place order" compared only the total: a cart changed in another tab to the same
    total (Tee S/Black swapped for M/Black at the same price) was ordered unreviewed. The
    review's form carries the reviewed cart's fingerprint (lines, quantities, prices,
    coupon, shipping) and a cart that no longer matches goes back to the review, as one of
    another total does; reviewed again, it is ordered. Fails on the old code. (The lamp
    gives /products a form, whose CSRF token fill_cart reads.)"""
    tee = f.product("Tee", price="20.00", slug="tee", variants=[
        {"options": {"size": "S", "colour": "Black"}, "sku": "TEE-S-BLK"},
        {"options": {"size": "M", "colour": "Black"}, "sku": "TEE-M-BLK"}])
    small, medium = (v.id for v in tee.variants)
    fill_cart(client, small)
    review(client)
    form = reviewed(client)
    # Another tab: the S removed, the M added (the same price, the same total).
    token = csrf_token(client, "/cart")
    line = re.search(r'/cart/lines/(\d+)/remove', client.get("/cart").get_data(as_text=True))
    client.post(f"/cart/lines/{line.group(1)}/remove", data={"csrf_token": token})
    fill_cart(client, medium)
    response, *_ = place(client, form)
    assert response.status_code == 303 and response.headers["Location"] == "/checkout/review"
    again = client.get("/checkout/review").get_data(as_text=True)
    assert "changed since you reviewed it" in again and "M / Black" in again
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 0
    response, *_ = place(client)
    assert response.status_code == 303 and "/orders/SO-" in response.headers["Location"]
    order = db.session.execute(select(Order)).scalar_one()
    assert [line.sku for line in order.lines] == ["TEE-M-BLK"]


def test_sold_out_between_review_and_order(client, lamp):
    fill_cart(client, lamp.id, 2)
    review(client)
    form = reviewed(client)
    variant = db.session.get(Variant, lamp.id)
    variant.stock_quantity = 1
    db.session.commit()
    response, *_ = place(client, form)
    assert response.headers["Location"].endswith("/cart")
    html = client.get("/cart").get_data(as_text=True)
    assert "Your order was not placed" in html
    # The line's problem is shown beside it and in the summary, and read out once.
    problem = re.search(r"Only 1 of Desk Lamp left[^<]*", html).group(0)
    assert html.count(problem) == 2
    alerts = re.findall(r'role="alert"[^>]*>(.*?)</(?:div|p)>', html, flags=re.S)
    assert sum(problem in alert for alert in alerts) == 1, alerts
    assert db.session.get(Variant, lamp.id).stock_quantity == 1


def test_a_product_no_longer_sold_between_review_and_order(client, lamp):
    """A product deactivated after the review was reported as "something in your cart has
    sold out meanwhile" while its line said it "is no longer sold". The notice now says only
    that something can no longer be ordered as it is; the line says why. Fails on the old
    code."""
    fill_cart(client, lamp.id)
    review(client)
    form = reviewed(client)
    db.session.get(Variant, lamp.id).product.active = False
    db.session.commit()
    response, *_ = place(client, form)
    assert response.headers["Location"].endswith("/cart")
    html = client.get("/cart").get_data(as_text=True)
    assert ("Your order was not placed: something in your cart can no longer be ordered as "
            "it is.") in html
    assert "sold out" not in html and "Desk Lamp is no longer sold; please remove it." in html
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 0


def test_empty_cart_cannot_check_out(client, app):
    response = client.get("/checkout")
    assert response.status_code == 303 and response.headers["Location"].endswith("/cart")


def test_customer_checkout_uses_account_email_and_saves_address(client, auth, lamp):
    f.user("shopper@example.com")
    auth.login("shopper@example.com")
    fill_cart(client, lamp.id)
    review(client, email="someone-else@example.com", save_address="yes")
    response, *_ = place(client)
    order = db.session.execute(select(Order)).scalar_one()
    assert order.email == "shopper@example.com" and order.user_id is not None
    detail = client.get(f"/orders/{order.number}")  # the owner needs no token
    assert detail.status_code == 200
    # A number as read out on the phone, in small letters: the same order (it was a 404).
    assert client.get(f"/orders/{order.number.lower()}").status_code == 200
    from shop.models import Address

    assert db.session.execute(select(Address.line1)).scalar_one() == "12 Analytical St"


def test_place_order_sent_twice_saves_the_new_address_once(client, auth, lamp):
    """"Place order" posted twice from the same page (a double click without JavaScript:
    both carry the checkout's session) placed one order but saved the shopper's new address
    twice. The address is saved with the order placed, and saving one the account already
    has adds no copy. Fails on the old code."""
    f.user("shopper@example.com")
    auth.login("shopper@example.com")
    fill_cart(client, lamp.id)
    review(client, save_address="yes")
    form = reviewed(client)
    with client.session_transaction() as session:
        before = dict(session)
    first, *_ = place(client, form)
    with client.session_transaction() as session:
        session.update(before)  # the second click's request left with the first's cookie
    second, *_ = place(client, form)
    assert first.headers["Location"] == second.headers["Location"]
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 1
    assert db.session.execute(select(Address.line1)).scalars().all() == ["12 Analytical St"]
    # Another order to the same address, saved again: still one copy.
    fill_cart(client, lamp.id)
    review(client, save_address="yes")
    assert place(client)[0].status_code == 303
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 2
    assert db.session.execute(select(func.count(Address.id))).scalar_one() == 1


def test_orders_are_private(app, lamp):
    buyer, stranger = app.test_client(), app.test_client()
    fill_cart(buyer, lamp.id)
    review(buyer)
    response, *_ = place(buyer)
    number = re.search(r"/orders/([^?]+)", response.headers["Location"]).group(1)
    assert stranger.get(f"/orders/{number}").status_code == 404
    assert stranger.get(f"/orders/{number}?token=forged").status_code == 404
    assert stranger.get(response.headers["Location"]).status_code == 200  # the signed link
    assert stranger.get(response.headers["Location"].replace(number, number.lower())
                        ).status_code == 200
    assert stranger.get(f"/orders/{number.lower()}").status_code == 404


def test_staff_can_see_any_order(app, client, auth, lamp):
    buyer = app.test_client()
    fill_cart(buyer, lamp.id)
    review(buyer)
    response, *_ = place(buyer)
    number = re.search(r"/orders/([^?]+)", response.headers["Location"]).group(1)
    f.user("staff@example.com", role="staff")
    auth.login("staff@example.com")
    assert client.get(f"/orders/{number}").status_code == 200


def test_a_coupon_that_no_longer_applies_stops_the_review_before_place_order(client, lamp):
    """The review offered "Place order" (and "you agree to pay" the total without the coupon)
    while the cart's coupon no longer applied, and placing was then always refused (the
    coupon is checked again): the review now says so and sends the shopper to the cart, where
    the coupon can be removed; then the order is placed at the total reviewed."""
    from shop.models import Coupon

    coupon = f.coupon("SAVE10")
    fill_cart(client, lamp.id)
    client.post("/cart/coupon", data={"code": "save10", "csrf_token": csrf_token(client, "/cart")})
    db.session.get(Coupon, coupon.id).active = False
    db.session.commit()
    review(client)
    page = client.get("/checkout/review").get_data(as_text=True)
    assert "Coupon SAVE10 cannot be used. That coupon is no longer active." in page
    assert "Place order" not in page and 'name="expected_total"' not in page
    client.post("/cart/coupon/remove", data={"csrf_token": csrf_token(client, "/cart")})
    response, _, total, _ = place(client)
    assert "/orders/SO-" in response.headers["Location"]
    order = db.session.execute(select(Order)).scalar_one()
    assert str(order.total) == total and order.coupon_code is None


def test_the_review_names_the_email_the_order_is_placed_for(client, lamp, outbox):
    """The review said "Confirmation to Ada@Example.COM", as typed, while the order and its
    mail go to the normalised ada@example.com: it now names the address the order will have."""
    fill_cart(client, lamp.id)
    review(client, email="  Ada@Example.COM ")
    page = client.get("/checkout/review").get_data(as_text=True)
    assert "Confirmation to <strong>ada@example.com</strong>" in page
    place(client)
    assert db.session.execute(select(Order.email)).scalar_one() == "ada@example.com"


def test_a_cart_whose_total_an_order_cannot_hold_is_refused_on_the_cart_page(client, app):
    """99 units at 99,999,999.99 came, with tax, to more than an order's total column holds:
    placing it was a 500 on MySQL. The cart and the review say so (the review offers no
    "Place order"), and an order sent anyway (the price raised after the review) goes back to
    the cart with the message; nothing is placed. Fails on the old code."""
    gold = f.variant_of(f.product("Gold Bar", price="1.00", stock=200, slug="gold-bar"))
    fill_cart(client, gold.id, 99)
    review(client)
    form = reviewed(client)
    db.session.get(Variant, gold.id).price = Decimal("99999999.99")
    db.session.commit()
    message = "more than one order can hold ($9,999,999,999.99)"
    assert message in client.get("/cart").get_data(as_text=True)
    page = client.get("/checkout/review").get_data(as_text=True)
    assert message in page and 'name="expected_total"' not in page
    # The reviewed cart no longer matches (its price changed): back to the review, which
    # says so; a form without the review's totals (an older page) goes back to the cart.
    response, *_ = place(client, dict(form, expected_total=""))
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/checkout/review")
    response, *_ = place(client, dict(form, expected_total="", reviewed_cart=""))
    assert response.status_code == 303 and response.headers["Location"].endswith("/cart")
    assert message in client.get("/cart").get_data(as_text=True)
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 0
    assert db.session.get(Variant, gold.id).stock_quantity == 200


def test_the_cart_gone_back_to_from_the_review_keeps_the_shipping_chosen(client, lamp):
    """Express chosen at checkout, then "Change cart" on the review (or "Place order" stopped
    by the cart, or its "Fix your cart"): the cart showed the standard estimate, and its
    Checkout link (which names the cart's estimate) started the checkout again with Standard
    chosen, so a shopper who changed a quantity and went on ordered standard shipping without
    choosing it. The way back to the cart names the method chosen: the cart is priced with it
    and hands it back to the checkout."""
    fill_cart(client, lamp.id, 2)
    review(client, shipping_method="express")
    page = client.get("/checkout/review").get_data(as_text=True)
    change = re.search(r'<a href="([^"]+)">Change cart</a>', page).group(1)
    assert change == "/cart?shipping=express"
    cart = client.get(change).get_data(as_text=True)
    assert '<option value="express" selected>' in cart
    assert re.search(r"<dt>Shipping</dt><dd>\$15\.00</dd>", cart)
    checkout = re.search(r'href="(/checkout\?shipping=[a-z]+)">Checkout</a>', cart).group(1)
    details = client.get(checkout).get_data(as_text=True)
    assert re.search(r'id="ship-express" name="shipping_method" value="express" checked', details)

    form = reviewed(client)
    variant = db.session.get(Variant, lamp.id)
    variant.stock_quantity = 1  # sold meanwhile
    db.session.commit()
    response, *_ = place(client, form)
    assert response.status_code == 303
    assert response.headers["Location"] == "/cart?shipping=express"
    page = client.get("/checkout/review").get_data(as_text=True)
    assert '<a href="/cart?shipping=express">Fix your cart</a>' in page

    # Standard is the cart's own estimate: its address names none.
    variant.stock_quantity = 3
    db.session.commit()
    review(client, shipping_method="standard")
    page = client.get("/checkout/review").get_data(as_text=True)
    assert '<a href="/cart">Change cart</a>' in page
    form = reviewed(client)
    variant.stock_quantity = 1
    db.session.commit()
    response, *_ = place(client, form)
    assert response.headers["Location"] == "/cart"


def test_the_cart_reached_by_the_headers_link_keeps_the_shipping_method_given(client, lamp):
    """Express given on the details form, then the header's Cart link (no method in its
    address), then Checkout: the cart priced Standard and its Checkout link said so, and the
    details form came back with Standard. The cart's own estimate is now the method the
    checkout's details hold (Standard without them); another one chosen in the cart is still
    its address, and goes on to the checkout."""
    fill_cart(client, lamp.id, 1)
    assert review(client, shipping_method="express").status_code == 303
    cart = client.get("/cart").get_data(as_text=True)
    assert '<option value="express" selected>' in cart
    assert re.search(r"<dt>Shipping</dt><dd>\$15\.00</dd>", cart)
    assert 'href="/checkout?shipping=express">Checkout</a>' in cart
    # The cart's forms without JavaScript need no method in their address for it ...
    assert re.search(r'<form class="line-qty" action="/cart/lines/\d+/update"', cart)
    details = client.get("/checkout?shipping=express").get_data(as_text=True)
    assert re.search(r'<input type="radio" id="ship-express" [^>]*\bchecked\b', details)
    # ... and Standard, chosen in the cart, is said in the address and kept by its forms.
    standard = client.get("/cart?shipping=standard").get_data(as_text=True)
    assert '<option value="standard" selected>' in standard
    assert 'href="/checkout?shipping=standard">Checkout</a>' in standard
    assert re.search(r'<form class="line-qty" action="/cart/lines/\d+/update\?shipping=standard"',
                     standard)
    line = re.search(r'action="(/cart/lines/\d+/update)', standard).group(1)
    response = client.post(f"{line}?shipping=standard",
                           data={"quantity": "2", "csrf_token": csrf_token(client, "/cart")})
    assert response.headers["Location"] == "/cart?shipping=standard"
    # The review's way back to the cart names the method, as it did: the same cart.
    assert '<a href="/cart?shipping=express">Change cart</a>' in client.get(
        "/checkout/review").get_data(as_text=True)



def test_the_notice_of_a_refused_details_form_links_to_each_field(client, lamp):
    """The notice over a refused details form said only "Please correct the fields marked
    below.": on a long form the shopper (a screen reader's too) had to hunt for them. It now
    lists each message, in the form's order, as a link to its field. Without JavaScript (422)
    as with htmx (200)."""
    fill_cart(client, lamp.id)
    links = ('<ul><li><a href="#email">Enter a valid email address.</a></li>'
             '<li><a href="#city">Enter the city.</a></li>'
             '<li><a href="#postal_code">Enter a postcode such as N1 7AA.</a></li></ul>')
    for headers in ({}, HX):
        response = review(client, headers=headers, email="nope", city="", postal_code="12345")
        html = response.get_data(as_text=True)
        assert response.status_code == (200 if headers else 422)
        notice = html.split('<div class="notice notice-error" role="alert">')[1].split("</div>")[0]
        assert "Please correct the fields marked below." in notice and links in notice
        assert 'id="email"' in html and 'id="city"' in html and 'id="postal_code"' in html
    # A choice's message links to its option: the one sent when the shop has it, else the
    # first (a form from elsewhere naming a method the shop lacks).
    html = review(client, shipping_method="drone").get_data(as_text=True)
    assert '<li><a href="#ship-standard">Choose standard or express shipping.</a></li>' in html
    assert 'id="ship-standard"' in html
    assert db.session.execute(select(func.count(Order.id))).scalar_one() == 0


def title_of(response) -> str:
    return re.search(r"<title>([^<]*)</title>", response.get_data(as_text=True)).group(1)


def test_a_refused_form_says_so_in_the_pages_title(client, lamp):
    """Without JavaScript a refused form comes back as its page (422) under the same title as
    the page the shopper had: the browser's tab, and a screen reader, which reads the title
    first as a page loads, gave no sign that anything failed. The title now starts with
    "Error: "; the pages themselves (GET) keep theirs."""
    fill_cart(client, lamp.id)
    assert title_of(client.get("/checkout")) == "Checkout · Shop"
    assert title_of(review(client, city="")) == "Error: Checkout · Shop"
    cart = client.get("/cart")
    assert title_of(cart) == "Your cart · Shop"
    line_id = re.search(r'id="qty-(\d+)"', cart.get_data(as_text=True)).group(1)
    token = csrf_token(client, "/cart")
    refused = client.post(f"/cart/lines/{line_id}/update", data={"quantity": "abc",
                                                                 "csrf_token": token})
    assert refused.status_code == 422 and title_of(refused) == "Error: Your cart · Shop"
    refused = client.post("/cart/coupon", data={"code": "NOPE", "csrf_token": token})
    assert refused.status_code == 422 and title_of(refused) == "Error: Your cart · Shop"
    refused = client.post("/cart/add", data={"variant_id": lamp.id, "quantity": "0",
                                             "product": "desk-lamp", "csrf_token": token})
    assert refused.status_code == 422 and title_of(refused) == "Error: Desk Lamp · Shop"
    assert title_of(client.get("/p/desk-lamp")) == "Desk Lamp · Shop"
    refused = client.post("/account/login", data={"email": "nobody@example.com",
                                                  "password": "wrong-password-1",
                                                  "csrf_token": token})
    assert refused.status_code == 401 and title_of(refused) == "Error: Log in · Shop"
