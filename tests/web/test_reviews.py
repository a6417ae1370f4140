"""Reviews on the product page: who may write one, what everyone else is told, submission with
and without htmx, approval, the average and count on pages and cards."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from shop.extensions import db
from shop.models import Review
from shop.services import reviews
from tests import factories as f
from tests.conftest import csrf_token
from tests.services.test_reviews import buy

HX = {"HX-Request": "true"}
PAGE = "/p/stoneware-mug"


@pytest.fixture
def mug(app):
    return f.product("Stoneware Mug", price="12.50", stock=50, slug="stoneware-mug")


@pytest.fixture
def buyer(client, auth, mug):
    user = f.user("customer@example.com", name="Ada Lovelace")
    buy(user, mug)
    auth.login()
    return user


def submit(client, data, headers=None):
    token = csrf_token(client, PAGE)
    return client.post(f"{PAGE}/reviews", data={"csrf_token": token, **data},
                       headers=headers or {})


def review_count() -> int:
    db.session.rollback()
    return db.session.execute(select(func.count(Review.id))).scalar_one()


def test_a_guest_is_asked_to_log_in(client, mug):
    html = client.get(PAGE).get_data(as_text=True)
    assert 'id="reviews"' in html and "No reviews yet." in html
    assert "Log in to review this product." in html
    assert "/account/login?next=/p/stoneware-mug/reviews/new" in html
    assert 'name="rating"' not in html
    response = submit(client, {"rating": "5", "title": "Sneaky"})
    assert response.status_code == 303 and "/account/login" in response.headers["Location"]
    assert review_count() == 0


def test_a_customer_who_did_not_buy_is_told_why(client, auth, mug):
    f.user("customer@example.com")
    buy(f.user("someone-else@example.com"), mug)
    auth.login()
    html = client.get(PAGE).get_data(as_text=True)
    assert "Only customers who bought this product can review it." in html
    assert 'name="rating"' not in html
    response = submit(client, {"rating": "5", "title": "Never bought it"})
    assert response.status_code == 303
    assert "Only customers who bought" in client.get(PAGE).get_data(as_text=True)
    assert review_count() == 0


def test_an_unpaid_order_is_not_a_purchase(client, auth, mug):
    user = f.user("customer@example.com")
    buy(user, mug, status="pending")
    auth.login()
    assert "Only customers who bought" in client.get(PAGE).get_data(as_text=True)


def test_a_buyer_reviews_once_and_it_shows_after_approval(client, buyer, mug):
    html = client.get(PAGE).get_data(as_text=True)
    assert 'name="rating"' in html and "Submit review" in html
    response = submit(client, {"rating": "4", "title": "Keeps coffee hot",
                               "body": "Heavy and solid.\n\nWorth it."})
    assert response.status_code == 303 and response.headers["Location"] == PAGE + "#reviews"
    html = client.get(PAGE).get_data(as_text=True)
    assert "waiting for approval" in html
    assert "Keeps coffee hot" not in html  # not shown before approval
    assert 'name="rating"' not in html

    again = submit(client, {"rating": "1", "title": "Second thoughts"})
    assert again.status_code == 303
    assert review_count() == 1

    (review,) = db.session.execute(select(Review)).scalars()
    reviews.approve(review.id)
    html = client.get(PAGE).get_data(as_text=True)
    assert "Keeps coffee hot" in html and "<p>Worth it.</p>" in html
    assert "Ada L., verified buyer" in html
    assert "4.0 out of 5, from 1 review" in html
    assert "You have already reviewed this product." in html
    card = client.get("/products").get_data(as_text=True)
    assert '(1<span class="visually-hidden"> review</span>)' in card and "4.0" in card


def test_an_unapproved_review_is_not_shown_to_anyone(app, client, buyer, mug):
    submit(client, {"rating": "2", "title": "Chipped on arrival"})
    assert "Chipped on arrival" not in client.get(PAGE).get_data(as_text=True)
    assert "Chipped on arrival" not in app.test_client().get(PAGE).get_data(as_text=True)
    assert "Chipped on arrival" not in client.get(f"{PAGE}/reviews").get_data(as_text=True)
    (review,) = db.session.execute(select(Review)).scalars()
    reviews.reject(review.id)
    assert "Chipped on arrival" not in client.get(f"{PAGE}/reviews").get_data(as_text=True)


def test_bad_review_keeps_input_without_javascript(client, buyer):
    response = submit(client, {"title": "No stars given", "body": "Hmm"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Choose a rating from 1 to 5 stars." in html and 'value="No stars given"' in html
    assert review_count() == 0


@pytest.mark.parametrize("rating", ["\u00b2", "9" * 5000, "-1", "4.5"])
def test_a_rating_that_is_no_whole_number_is_refused_next_to_the_field(client, buyer, rating):
    """A superscript digit or thousands of digits were a 500; they are a rating message."""
    response = submit(client, {"rating": rating, "title": "Odd stars"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Choose a rating from 1 to 5 stars." in html and 'value="Odd stars"' in html
    assert review_count() == 0


@pytest.mark.parametrize("field,value", [
    ("title", "t\x00itle"), ("title", "evil \u202eesrever"), ("body", "a\x07bell"),
    ("body", "\u202egnol"),
])
def test_a_review_with_a_character_that_cannot_be_shown_is_refused(client, buyer, field, value):
    """NUL, BEL and direction overrides were kept and shown raw on the product page (invalid
    HTML; a right-to-left override makes a review say something else), as names and
    addresses refuse them. Line breaks in the body stay."""
    form = {"rating": "4", "title": "Fine", "body": "Line one\r\nLine two"} | {field: value}
    response = submit(client, form)
    assert response.status_code == 422
    assert "cannot be shown" in response.get_data(as_text=True)
    assert review_count() == 0
    assert submit(client, {"rating": "4", "title": "Fine",
                           "body": "Line one\r\nLine two\tend"}).status_code in (200, 303)
    assert review_count() == 1

CONTROLS = "\x00\x07\x0b\x1b\x7f\x85\x9f"


def unshowable(html: str) -> set[str]:
    """The control characters HTML forbids that a page holds (tab, LF and CR are allowed)."""
    return {c for c in html if (ord(c) < 32 and c not in "\t\n\r") or 0x7f <= ord(c) <= 0x9f}


@pytest.mark.parametrize("headers", [{}, HX])
def test_a_refused_review_shows_no_control_character(client, buyer, headers):
    """The review form refused for a control character showed it again as typed, in the
    title's value and the body's <textarea>: invalid HTML (Nu: "Forbidden code point
    U+0007", "Saw U+0000"). It shows U+FFFD in its place; line breaks and tabs stay. Fails
    on the old code."""
    response = submit(client, {"rating": "4", "title": f"Fi{CONTROLS}ne",
                               "body": f"Line one\r\nLine{CONTROLS}\ttwo"}, headers)
    html = response.get_data(as_text=True)
    assert response.status_code == (422 if not headers else 200)
    assert "cannot be shown" in html
    assert unshowable(html) == set()
    assert 'value="Fi\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd\ufffdne"' in html
    assert "Line\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd\ttwo</textarea>" in html
    assert review_count() == 0


def test_htmx_submission_answers_the_form_slot(client, buyer):
    response = submit(client, {"rating": "9", "title": ""}, headers=HX)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html
    assert html.lstrip().startswith('<div id="review-form"')
    assert "Choose a rating" in html and "Give your review a title." in html
    assert 'id="live"' in html

    response = submit(client, {"rating": "5", "title": "Lovely"}, headers=HX)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html
    assert "waiting for approval" in html and 'name="rating"' not in html
    assert review_count() == 1


@pytest.mark.parametrize("headers", [{}, HX], ids=["page", "htmx"])
def test_a_review_sent_again_is_refused_without_a_thank_you(client, buyer, headers):
    """The form sent a second time (a double click without JavaScript, or from a second tab
    with other words) was answered with the first's thanks: "Thank you! Your review is
    waiting for approval" as an error alert, or in the form's place with htmx, so the words
    typed the second time seemed taken. It is said they were not, and why."""
    first = submit(client, {"rating": "5", "title": "Lovely"})
    client.get(first.headers["Location"])  # the thanks, read
    again = submit(client, {"rating": "2", "title": "Changed my mind"}, headers)
    html = again.get_data(as_text=True) if headers else client.get(PAGE).get_data(as_text=True)
    said = "You have already sent a review of this product; it is waiting for approval."
    assert said in html
    if headers:
        assert "Thank you!" not in html
    else:  # the page's review section still thanks for the review that is waiting
        assert "flash-error" not in html
        assert re.search(r'<p class="flash flash-\w+" role="status">' + re.escape(said), html)
    assert review_count() == 1


def test_review_text_is_escaped(client, buyer):
    submit(client, {"rating": "5", "title": "<script>alert(1)</script>",
                    "body": "<img src=x onerror=alert(2)>"})
    (review,) = db.session.execute(select(Review)).scalars()
    reviews.approve(review.id)
    html = client.get(PAGE).get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_reviews_line_breaks_are_kept_where_it_is_read(client, auth, buyer, mug):
    """A list typed line by line ("Pros:", "- keeps heat", ...) read as one run-on line on the
    product page, the reviews page and the back office's review ("Pros: - keeps heat -
    solid"): only a blank line started a paragraph, and one holding a space did not. Each
    line break is now kept (<br>), every blank line starts a paragraph, all escaped."""
    from tests.web.admin_support import login_staff

    submit(client, {"rating": "4", "title": "Good mug",
                    "body": "Pros:\r\n- keeps heat\r\n- <b>solid</b>\r\n \r\nCons:\r\n- heavy"})
    (review,) = db.session.execute(select(Review)).scalars()
    reviews.approve(review.id)
    expected = ("<p>Pros:<br>\n- keeps heat<br>\n- &lt;b&gt;solid&lt;/b&gt;</p>"
                "<p>Cons:<br>\n- heavy</p>")
    for url in (PAGE, f"{PAGE}/reviews"):
        assert expected in client.get(url).get_data(as_text=True), url
    auth.logout()
    login_staff(auth)
    html = client.get(f"/admin/review/details/?id={review.id}").get_data(as_text=True)
    assert expected in html


def test_account_page_offers_purchases_to_review(client, buyer, mug):
    html = client.get("/account").get_data(as_text=True)
    assert "Review your purchases" in html and "/p/stoneware-mug/reviews/new" in html
    page = client.get("/p/stoneware-mug/reviews/new")
    assert page.status_code == 200 and 'name="rating"' in page.get_data(as_text=True)
    submit(client, {"rating": "5", "title": "Great"})
    assert "Review your purchases" not in client.get("/account").get_data(as_text=True)


def test_all_reviews_page(client, mug):
    for n in range(12):
        user = f.user()
        buy(user, mug)
        reviews.approve(reviews.submit(user.id, mug.id, 5, f"Review number {n}", "").id)
    html = client.get(PAGE).get_data(as_text=True)
    assert html.count('class="review"') == 10
    assert "/p/stoneware-mug/reviews?page=2" in html
    second = client.get("/p/stoneware-mug/reviews?page=2").get_data(as_text=True)
    assert second.count('class="review"') == 2 and "Page 2 of 2" in second
    assert client.get("/p/stoneware-mug/reviews?page=5").status_code == 404
    # A page number no database offset can hold is past the last page too (it was a 500).
    for page in (2**62, 10**25):
        assert client.get(f"/p/stoneware-mug/reviews?page={page}").status_code == 404
    assert client.get("/p/no-such-product/reviews").status_code == 404


def test_stars_round_half_up_on_cards_and_the_product_page(client, app):
    """An average of 2.50 shows three filled stars, as 3.50 shows four (round() rounded
    halves to even: 2.5 gave two stars, 3.5 four), on the card and on the product page. The
    stars follow the number written beside them: 4.49 is written "4.5", so five stars (four
    stars beside "4.5" was one product rated two ways); 4.44 is "4.4", four."""
    import re

    for n, (average, filled) in enumerate((("2.50", 3), ("3.50", 4), ("4.49", 5),
                                           ("4.44", 4), ("4.50", 5), ("1.00", 1))):
        product = f.product(f"Rated {n}", slug=f"rated-{n}")
        product.rating_average, product.rating_count = average, 2
        db.session.commit()
        page = client.get(f"/p/rated-{n}").get_data(as_text=True)
        stars = re.findall(r'<span class="stars" aria-hidden="true">(★*)☆*</span>', page)
        assert stars and all(len(s) == filled for s in stars), (average, stars)
        listing = client.get(f"/products?q=rated&sort=name&page={n + 1}&per_page=1")
        stars = re.findall(r'<span class="stars" aria-hidden="true">(★*)☆*</span>',
                           listing.get_data(as_text=True))
        assert [len(s) for s in stars] == [filled], (average, stars)


def test_a_product_whose_slug_is_digits_gets_its_own_reviews(client, auth, app):
    """A slug of digits ("1984") is a slug on the review pages too, as on the product page:
    they read it as another product's id, so the product page's review form posted to that
    other product (refused: not bought) and its reviews page showed the other product."""
    other = f.product("Some Other Book", slug="some-other-book")
    novel = f.product("Nineteen Eighty-Four", slug=str(other.id))
    user = f.user("customer@example.com", name="Ada Lovelace")
    buy(user, novel)
    auth.login()
    page = f"/p/{novel.slug}"
    html = client.get(page).get_data(as_text=True)
    assert "Nineteen Eighty-Four" in html and 'name="rating"' in html
    assert "Nineteen Eighty-Four" in client.get(f"{page}/reviews").get_data(as_text=True)
    assert "Nineteen Eighty-Four" in client.get(f"{page}/reviews/new").get_data(as_text=True)
    response = client.post(f"{page}/reviews", data={
        "csrf_token": csrf_token(client, page), "rating": "5", "title": "Chilling"})
    assert response.status_code == 303
    db.session.rollback()
    (review,) = db.session.execute(select(Review)).scalars()
    assert review.product_id == novel.id
