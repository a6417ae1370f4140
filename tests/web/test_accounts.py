"""Accounts through the test client: register, log in and out, remember me, password reset by
email, profile and email change, password change, saved addresses, order history."""
from __future__ import annotations

import email
import email.policy
import logging
import re
import time
import unicodedata
from pathlib import Path

import pytest
from itsdangerous.timed import TimestampSigner
from sqlalchemy import func, select, update

from shop.extensions import db
from shop.models import Address, User, Variant
from shop.services import accounts, addresses
from shop.services import cart as carts
from shop.services.cart import CartOwner
from tests import factories as f
from tests.conftest import csrf_token
from tests.services.test_reviews import buy

HX = {"HX-Request": "true"}
NEW_PASSWORD = "new-Password-2024"


def post(client, path, data, page=None, **kwargs):
    """A form post with the CSRF token read from `page` (default: the same path)."""
    return client.post(path, data={"csrf_token": csrf_token(client, page or path), **data},
                       **kwargs)


def user_named(email_address: str) -> User | None:
    db.session.expire_all()
    return accounts.find_by_email(email_address)


def mails(outbox: Path) -> list[email.message.EmailMessage]:
    if not outbox.exists():
        return []
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted(outbox.glob("*.eml"))]


def text_of(message: email.message.EmailMessage) -> str:
    return next(part.get_content() for part in message.walk()
                if part.get_content_type() == "text/plain")


def reset_link(outbox: Path) -> str:
    (message,) = mails(outbox)
    match = re.search(r"http://shop\.test(/account/password/reset/\S+)", text_of(message))
    assert match, text_of(message)
    return match.group(1)


# --- register ---

def test_register_normalises_the_email_and_logs_in(client):
    response = post(client, "/account/register", {
        "name": "Ada Lovelace", "email": "  Ada@Example.COM ", "password": "analytical-42",
        "password_confirm": "analytical-42", "role": "admin"})
    assert response.status_code == 303 and response.headers["Location"] == "/account"
    user = user_named("ada@example.com")
    assert user is not None and user.email == "ada@example.com"
    assert user.role == "customer"  # a form field cannot make anyone staff
    assert user.password_hash.startswith("scrypt:")
    assert "ada@example.com" in client.get("/account").get_data(as_text=True)


@pytest.mark.parametrize("password,message", [
    ("short1", "Use at least 10 characters."),
    ("password123", "too easy to guess"),
    ("onlyletterslong", "Mix letters with numbers or symbols."),
    ("1234567890123", "Mix letters with numbers or symbols."),
    ("grace-hopper-1", "Do not use your email address"),
])
def test_register_explains_weak_passwords(client, password, message):
    response = post(client, "/account/register", {
        "email": "grace-hopper@example.com", "password": password, "password_confirm": password})
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and message in html
    assert 'value="grace-hopper@example.com"' in html  # what the user typed is kept
    assert user_named("grace-hopper@example.com") is None


def test_register_refuses_mismatch_bad_email_and_duplicates(client):
    f.user("taken@example.com")
    response = post(client, "/account/register", {
        "email": "new@example.com", "password": "analytical-42", "password_confirm": "other-42x"})
    assert response.status_code == 422
    assert "The two passwords do not match." in response.get_data(as_text=True)
    response = post(client, "/account/register", {
        "email": "not-an-email", "password": "analytical-42", "password_confirm": "analytical-42"})
    assert "Enter a valid email address." in response.get_data(as_text=True)
    response = post(client, "/account/register", {
        "email": "TAKEN@example.com", "password": "analytical-42",
        "password_confirm": "analytical-42"})
    assert response.status_code == 422
    assert "already exists" in response.get_data(as_text=True)
    # Every problem at once: a taken email beside a password that is too short.
    response = post(client, "/account/register", {
        "email": "taken@example.com", "password": "short", "password_confirm": "short"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "already exists" in html and "characters." in html
    assert db.session.query(User).count() == 1


def test_one_account_per_unicode_email_however_it_is_composed(client, auth):
    """"josé@example.com" typed with a precomposed é (NFC, what most keyboards send) and with
    e plus a combining accent (NFD, what some systems and pasted text send) is one address:
    it gets one account, which logs in either way."""
    composed = unicodedata.normalize("NFC", "José@Example.com")
    decomposed = unicodedata.normalize("NFD", "josé@example.com")
    assert composed != decomposed
    assert post(client, "/account/register", {
        "email": composed, "password": "analytical-42",
        "password_confirm": "analytical-42"}).status_code == 303
    auth.logout()
    response = post(client, "/account/register", {
        "email": decomposed, "password": "analytical-42", "password_confirm": "analytical-42"})
    assert response.status_code == 422 and "already exists" in response.get_data(as_text=True)
    assert db.session.query(User).count() == 1
    assert auth.login(decomposed, "analytical-42").status_code == 303


def test_an_email_with_other_accents_or_widths_is_another_address(client, auth, outbox):
    """MySQL's default collation compares text without accents or widths: there, "cüstomer@"
    and "ｃustomer@" matched the account of customer@example.com, so each such spelling
    reached it (a password tried, a reset mailed) under a limit key of its own. Only the
    address itself (after case and Unicode normalisation) is the account, on every database."""
    f.user("customer@example.com")
    for lookalike in ("cüstomer@example.com", "\uff43ustomer@example.com"):
        assert auth.login(lookalike, f.PASSWORD).status_code == 401
        assert post(client, "/account/password/forgot",
                    {"email": lookalike}).status_code == 303
    assert mails(outbox) == []
    assert auth.login("Customer@Example.com", f.PASSWORD).status_code == 303


def test_addresses_differing_only_in_accents_are_two_accounts(client, auth):
    """jose@ and josé@ are two mailboxes. MySQL's usual collation took them for one: its unique
    index refused the second registration as "already exists". The column compares exactly
    (migration 0010)."""
    for address in ("josé@example.com", "jose@example.com"):
        response = post(client, "/account/register", {
            "email": address, "password": "analytical-42", "password_confirm": "analytical-42"})
        assert response.status_code == 303, response.get_data(as_text=True)
        auth.logout()
    assert sorted(u.email for u in db.session.query(User)) == [
        "jose@example.com", "josé@example.com"]
    assert auth.login("JOSÉ@example.com", "analytical-42").status_code == 303
    assert "josé@example.com" in client.get("/account").get_data(as_text=True)


# --- log in, remember me, log out ---

def test_login_failure_is_vague_and_success_follows_next(client, auth):
    f.user("customer@example.com")
    response = auth.login(password="wrong-password-1")
    assert response.status_code == 401
    assert "Wrong email or password." in response.get_data(as_text=True)
    response = auth.login(email="nobody@example.com")
    assert response.status_code == 401
    assert "Wrong email or password." in response.get_data(as_text=True)
    response = post(client, "/account/login?next=/cart", {
        "email": "Customer@Example.com", "password": f.PASSWORD, "next": "/cart"})
    assert response.status_code == 303 and response.headers["Location"] == "/cart"


def test_a_refused_login_keeps_remember_me_and_ties_the_message_to_both_fields(client):
    f.user("customer@example.com")
    response = post(client, "/account/login", {"email": "Customer@example.com",
                                               "password": "wrong-password-1", "remember": "yes"})
    assert response.status_code == 401
    page = response.get_data(as_text=True)
    assert re.search(r'<input id="remember"[^>]*\bchecked\b', page)
    assert 'value="Customer@example.com"' in page
    for field in ("email", "password"):
        tag = re.search(rf'<input id="{field}"[^>]*>', page).group(0)
        assert 'aria-describedby="login-error"' in tag and 'aria-invalid="true"' in tag
    # Not ticked, it stays unticked.
    response = post(client, "/account/login", {"email": "customer@example.com",
                                               "password": "wrong-password-1"})
    assert not re.search(r'<input id="remember"[^>]*\bchecked\b', response.get_data(as_text=True))


@pytest.mark.parametrize("email, password, asked", [
    ("", "", {"email": "Enter your email address.", "password": "Enter your password."}),
    ("  ", "wrong-password-1", {"email": "Enter your email address."}),
    ("customer@example.com", "", {"password": "Enter your password."}),
])
def test_an_empty_login_field_is_asked_for_and_is_no_failed_attempt(make_app, email, password,
                                                                    asked):
    """A field left empty was called "Wrong email or password." and counted as a failed
    attempt towards the lock-out; the page and the API now ask for it (422), beside it."""
    app = make_app(RATELIMIT_ENABLED=True, RATELIMIT_LOGIN="2 per minute")
    with app.app_context():
        f.user("customer@example.com")
        client = app.test_client()
        for _ in range(3):
            response = post(client, "/account/login", {"email": email, "password": password,
                                                       "remember": "yes"})
            assert response.status_code == 422
            page = response.get_data(as_text=True)
            assert "Wrong email or password." not in page
            assert "Please correct the fields marked below." in page
            assert re.search(r'<input id="remember"[^>]*\bchecked\b', page)
            for field, message in asked.items():
                tag = re.search(rf'<input id="{field}"[^>]*>', page).group(0)
                assert f'aria-describedby="{field}-error"' in tag and 'aria-invalid="true"' in tag
                assert f'<p id="{field}-error" class="field-error">{message}</p>' in page
        for _ in range(3):
            response = client.post("/api/v1/auth/token",
                                   json={"email": email, "password": password})
            assert response.status_code == 422
            assert response.get_json()["error"]["details"]["fields"] == asked
        # Nothing counted: the account still logs in.
        response = post(client, "/account/login", {"email": "customer@example.com",
                                                   "password": f.PASSWORD})
        assert response.status_code == 303


def test_inactive_account_cannot_log_in(client, auth):
    user = f.user("customer@example.com")
    user.active = False
    db.session.commit()
    assert auth.login().status_code == 401


def cookie(response, name: str) -> str | None:
    return next((c for c in response.headers.getlist("Set-Cookie") if c.startswith(name + "=")),
                None)


def test_remember_me_sets_a_lasting_httponly_cookie(client):
    f.user("customer@example.com")
    response = post(client, "/account/login", {"email": "customer@example.com",
                                               "password": f.PASSWORD, "remember": "yes"})
    remember = cookie(response, "remember_token")
    assert remember and "HttpOnly" in remember and "SameSite=Lax" in remember
    assert "Expires=" in remember
    # The session cookie can go (browser closed): the remember-me cookie logs the user back in.
    client.delete_cookie("session", domain="shop.test")
    assert client.get("/account").status_code == 200


def test_without_remember_me_no_lasting_cookie(client, auth):
    f.user("customer@example.com")
    response = auth.login()
    assert cookie(response, "remember_token") is None
    client.delete_cookie("session", domain="shop.test")
    assert client.get("/account").status_code == 302


def test_logout_is_post_only_and_forgets_remember_me(client):
    f.user("customer@example.com")
    post(client, "/account/login", {"email": "customer@example.com", "password": f.PASSWORD,
                                    "remember": "yes"})
    assert client.get("/account/logout").status_code == 405
    assert client.get("/account").status_code == 200
    response = post(client, "/account/logout", {}, page="/")
    assert response.status_code == 303
    assert client.get("/account").status_code == 302
    assert client.get_cookie("remember_token", domain="shop.test") is None


def test_logging_out_ends_the_login_for_copies_of_its_cookies_too(app, client, runner):
    """Sessions and remember-me cookies live in the browser only: "Log out" deleted them there,
    and a copy (a shared computer, a stolen cookie) went on working for 30 days. Logging out
    now ends that login wherever its cookies turn up; the account's other logins go on, and
    `cleanup` forgets ended logins once their cookies would have expired."""
    from datetime import timedelta

    from shop.models import EndedLogin, utcnow

    f.user("customer@example.com")

    def log_in(remember: str = "yes"):
        browser = app.test_client()
        post(browser, "/account/login", {"email": "customer@example.com",
                                         "password": f.PASSWORD, "remember": remember})
        assert browser.get("/account").status_code == 200
        return browser

    def copy_of(browser, names):
        copy = app.test_client()
        for name in names:
            copy.set_cookie(name, browser.get_cookie(name, domain="shop.test").value,
                            domain="shop.test")
        return copy

    remembered, other = log_in(), log_in("no")
    session_copy = copy_of(remembered, ["session"])
    remember_copy = copy_of(remembered, ["remember_token", "shop_remember_fp"])
    assert session_copy.get("/account").status_code == 200
    assert remember_copy.get("/account").status_code == 200

    assert post(remembered, "/account/logout", {}, page="/").status_code == 303
    for copy in (session_copy, remember_copy, copy_of(remembered, ["session"])):
        assert copy.get("/account").status_code == 302
    # A restored remember-me session (remember_copy made one before) ends too.
    assert other.get("/account").status_code == 200  # another login of the account
    assert db.session.execute(select(func.count()).select_from(EndedLogin)).scalar_one() == 1

    db.session.execute(update(EndedLogin).values(expires_at=utcnow() - timedelta(days=1)))
    db.session.commit()
    assert runner.invoke(args=["cleanup"]).exit_code == 0
    assert db.session.execute(select(func.count()).select_from(EndedLogin)).scalar_one() == 0


def test_a_kept_remember_me_cookie_ends_on_the_server_when_its_time_is_up(
        app, client, runner, monkeypatch):
    """Flask-Login's remember-me cookie carries no date: a copy kept past its lifetime (and
    past `cleanup` forgetting its logout) logged the account in again (a security audit:
    logged out, purged, replayed a month later: 200 on /account). Its companion cookie now
    carries the time it was written, and is refused after REMEMBER_COOKIE_DURATION."""
    from datetime import timedelta
    from types import SimpleNamespace

    import itsdangerous.timed

    from shop.models import EndedLogin, utcnow

    f.user("customer@example.com")
    post(client, "/account/login", {"email": "customer@example.com", "password": f.PASSWORD,
                                    "remember": "yes"})

    def copy():
        browser = app.test_client()
        for name in ("remember_token", "shop_remember_fp"):
            browser.set_cookie(name, client.get_cookie(name, domain="shop.test").value,
                               domain="shop.test")
        return browser

    kept, fresh = copy(), copy()
    lifetime = app.config["REMEMBER_COOKIE_DURATION"]
    real = itsdangerous.timed.time.time
    later = SimpleNamespace(time=lambda: real() + (lifetime - timedelta(days=1)).total_seconds())
    monkeypatch.setattr(itsdangerous.timed, "time", later)
    assert fresh.get("/account").status_code == 200  # within its lifetime: logged in
    assert post(client, "/account/logout", {}, page="/").status_code == 303
    db.session.execute(update(EndedLogin).values(expires_at=utcnow() - timedelta(days=1)))
    db.session.commit()
    assert runner.invoke(args=["cleanup"]).exit_code == 0  # the logout is forgotten
    after = SimpleNamespace(time=lambda: real() + (lifetime + timedelta(days=1)).total_seconds())
    monkeypatch.setattr(itsdangerous.timed, "time", after)
    assert kept.get("/account").status_code == 302
    assert kept.get_cookie("shop_remember_fp", domain="shop.test") is None  # and forgotten


def test_guest_cart_merges_on_login(client, auth):
    user = f.user("customer@example.com")
    mug = f.variant_of(f.product("Mug", slug="mug"))
    post(client, "/cart/add", {"variant_id": mug.id, "quantity": "2"}, page="/products")
    auth.login()
    db.session.expire_all()
    assert carts.item_count(CartOwner(user_id=user.id)) == 2
    assert "(2)" in client.get("/cart").get_data(as_text=True)


def test_login_says_which_cart_lines_stock_cut_down(client, auth):
    """The guest chose 3 lamps and a tee; meanwhile only 1 lamp is left and the tees sold out.
    Logging in merges the carts to what is in stock and says so, rather than silently."""
    f.user("customer@example.com")
    lamp = f.variant_of(f.product("Desk Lamp", slug="desk-lamp", stock=5))
    tee = f.variant_of(f.product("Blue Tee", slug="blue-tee", stock=5))
    post(client, "/cart/add", {"variant_id": lamp.id, "quantity": "3"}, page="/products")
    post(client, "/cart/add", {"variant_id": tee.id, "quantity": "1"}, page="/products")
    db.session.execute(update(Variant).where(Variant.id == lamp.id).values(stock_quantity=1))
    db.session.execute(update(Variant).where(Variant.id == tee.id).values(stock_quantity=0))
    db.session.commit()
    assert auth.login().status_code == 303
    page = client.get("/account").get_data(as_text=True)
    assert "limited to what is in stock: Desk Lamp: 1 kept; Blue Tee: sold out, removed." in page
    assert "(1)" in client.get("/cart").get_data(as_text=True)


def test_login_says_which_cart_lines_the_line_maximum_cut_down(client, auth):
    """60 lamps in the account's cart and 60 in the guest's, 118 in stock: the line holds 99
    (the per-line maximum), and the 21 left out were not mentioned. The message says so, and
    why: the line maximum, not stock."""
    user = f.user("customer@example.com")
    lamp = f.variant_of(f.product("Desk Lamp", slug="desk-lamp", stock=118))
    tee = f.variant_of(f.product("Blue Tee", slug="blue-tee", stock=5))
    carts.add_item(CartOwner(user_id=user.id), 60, variant_id=lamp.id)
    post(client, "/cart/add", {"variant_id": lamp.id, "quantity": "60"}, page="/products")
    assert auth.login().status_code == 303
    page = client.get("/account").get_data(as_text=True)
    assert ("Your cart joined the one saved with your account, limited to 99 of an item per "
            "line: Desk Lamp: 99 kept.") in page
    assert "in stock" not in page
    db.session.expire_all()
    assert carts.item_count(CartOwner(user_id=user.id)) == 99
    auth.logout()

    # Both limits at once: each line is said under its own.
    post(client, "/cart/add", {"variant_id": lamp.id, "quantity": "5"}, page="/products")
    post(client, "/cart/add", {"variant_id": tee.id, "quantity": "3"}, page="/products")
    carts.add_item(CartOwner(user_id=user.id), 3, variant_id=tee.id)
    assert auth.login().status_code == 303
    page = client.get("/account").get_data(as_text=True)
    assert ("Your cart joined the one saved with your account, limited to what is in stock: "
            "Blue Tee: 5 kept; and to 99 of an item per line: Desk Lamp: 99 kept.") in page


def test_account_pages_need_login(client):
    for path in ("/account", "/account/profile", "/account/password", "/account/orders",
                 "/account/addresses/new"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/account/login?next=")


# --- password reset ---

def test_reset_answers_the_same_for_unknown_emails(client, outbox):
    f.user("customer@example.com")
    known = post(client, "/account/password/forgot", {"email": "customer@example.com"})
    known_page = client.get(known.headers["Location"]).get_data(as_text=True)
    unknown = post(client, "/account/password/forgot", {"email": "nobody@example.com"})
    unknown_page = client.get(unknown.headers["Location"]).get_data(as_text=True)
    assert known.status_code == unknown.status_code == 303
    assert known.headers["Location"] == unknown.headers["Location"]
    assert "If an account uses customer@example.com, we have emailed it a link" in known_page
    assert "If an account uses nobody@example.com, we have emailed it a link" in unknown_page
    sent = mails(outbox)
    assert [m["To"] for m in sent] == ["customer@example.com"]


def test_without_a_worker_the_reset_mail_goes_after_the_answer(client, outbox, monkeypatch):
    """The answer must not wait for the mail (an SMTP round trip), which only an email with an
    account gets: its time told which emails have one. The mail goes once the answer is sent
    (the server closes it)."""
    f.user("customer@example.com")
    sent: list[str] = []
    monkeypatch.setattr("shop.services.mail.send", lambda to, *args, **kwargs: sent.append(to))
    for address, mailed in (("customer@example.com", ["customer@example.com"]),
                            ("nobody@example.com", [])):
        sent.clear()
        response = post(client, "/account/password/forgot", {"email": address}, buffered=False)
        assert response.status_code == 303
        assert sent == []  # answered, nothing mailed yet
        response.close()
        assert sent == mailed


def test_reset_needs_a_valid_email(client, outbox):
    response = post(client, "/account/password/forgot", {"email": " nonsense "})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert '<p id="email-error" class="field-error">Enter a valid email address.</p>' in page
    # Said where the shopper (and a screen reader) starts, as on the other account forms;
    # it was only beside the field.
    assert ('<p class="notice notice-error" role="alert">Please correct the fields marked '
            'below.</p>') in page
    tag = re.search(r'<input id="email"[^>]*>', page).group(0)
    assert 'value="nonsense"' in tag and 'aria-invalid="true"' in tag
    assert mails(outbox) == []


def test_reset_link_works_once(client, auth, outbox):
    f.user("customer@example.com", name="Ada")
    post(client, "/account/password/forgot", {"email": "Customer@example.com"})
    link = reset_link(outbox)
    (message,) = mails(outbox)
    assert "Reset your" in message["Subject"]
    html_part = next(p.get_content() for p in message.walk() if p.get_content_type() == "text/html")
    assert "http://shop.test" + link in html_part

    page = client.get(link)
    assert page.status_code == 200 and "Choose a new password" in page.get_data(as_text=True)
    assert page.headers["Referrer-Policy"] == "no-referrer"
    weak = post(client, link, {"password": "short", "password_confirm": "short"})
    assert weak.status_code == 422 and "Use at least 10 characters." in weak.get_data(as_text=True)
    done = post(client, link, {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD})
    assert done.status_code == 303 and done.headers["Location"] == "/account/login"

    assert auth.login(password=f.PASSWORD).status_code == 401
    assert auth.login(password=NEW_PASSWORD).status_code == 303
    auth.logout()

    again = client.get(link)
    assert again.status_code == 400
    assert "already used" in again.get_data(as_text=True)
    token = csrf_token(client, "/account/login")
    reuse = client.post(link, data={"csrf_token": token, "password": "another-Pass-99",
                                    "password_confirm": "another-Pass-99"})
    assert reuse.status_code == 400
    assert auth.login(password="another-Pass-99").status_code == 401


def test_a_reset_links_token_is_never_written_to_the_log(client, auth, outbox):
    """The access log wrote every opened reset link whole, and the token in it worked until
    used: whoever could read the logs could take the account over."""
    from tests.logs import ShopLog

    f.user("customer@example.com", name="Ada")
    post(client, "/account/password/forgot", {"email": "customer@example.com"})
    link = reset_link(outbox)
    token = link.rsplit("/", 1)[1]
    with ShopLog("shop.access") as log:
        assert client.get(link).status_code == 200
        post(client, link, {"password": "short", "password_confirm": "short"})
    lines = log.lines(logging.INFO)
    assert any("/account/password/reset/<token>" in line for line in lines), lines
    assert not any(token in str(vars(record)) for record in log.records)


def test_reset_link_expires(client, auth, outbox, monkeypatch):
    f.user("customer@example.com")
    hours = client.application.config["PASSWORD_RESET_HOURS"]
    real = TimestampSigner.get_timestamp
    # The link is made (hours + 1) hours ago.
    monkeypatch.setattr(TimestampSigner, "get_timestamp",
                        lambda self: int(time.time()) - (hours + 1) * 3600)
    post(client, "/account/password/forgot", {"email": "customer@example.com"})
    monkeypatch.setattr(TimestampSigner, "get_timestamp", real)
    link = reset_link(outbox)
    page = client.get(link)
    assert page.status_code == 400 and "expired" in page.get_data(as_text=True)
    response = post(client, link, {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
                    page="/account/login")
    assert response.status_code == 400
    assert auth.login(password=NEW_PASSWORD).status_code == 401
    assert auth.login().status_code == 303


def test_a_tampered_reset_link_is_refused(client):
    response = client.get("/account/password/reset/not-a-real-token")
    assert response.status_code == 400 and "not valid" in response.get_data(as_text=True)


# --- profile, email and password ---

@pytest.fixture
def customer(client, auth):
    user = f.user("customer@example.com", name="Ada Lovelace")
    auth.login()
    return user


def test_profile_name_change_needs_no_password(client, customer):
    response = post(client, "/account/profile", {"name": "Ada King", "email": customer.email})
    assert response.status_code == 303
    assert user_named("customer@example.com").name == "Ada King"


def test_email_change_needs_the_current_password(client, auth, customer):
    f.user("other@example.com")
    for typed, said in (("", "Enter your current password to change your email."),
                        ("wrong-password-1", "Your current password is not right.")):
        response = post(client, "/account/profile", {"name": "Ada", "email": "ada@new.example",
                                                     "current_password": typed})
        assert response.status_code == 422
        html = response.get_data(as_text=True)
        assert f'<p id="current_password-error" class="field-error">{said}</p>' in html
        assert 'value="ada@new.example"' in html
        assert user_named("customer@example.com") is not None

    response = post(client, "/account/profile", {"name": "Ada", "email": "OTHER@example.com",
                                                 "current_password": f.PASSWORD})
    assert response.status_code == 422
    assert "Another account uses that email." in response.get_data(as_text=True)

    response = post(client, "/account/profile", {"name": "Ada", "email": "Ada@New.example",
                                                 "current_password": f.PASSWORD})
    assert response.status_code == 303
    assert user_named("ada@new.example").id == customer.id
    auth.logout()
    assert auth.login(email="ada@new.example").status_code == 303


def test_a_reset_link_sent_twice_at_once_changes_the_password_once(make_app):
    """A reset link works once, also when it is sent twice at the same moment (two tabs, a
    double click, the two requests on two hosts of the shop): both requests found the link
    unused, both changed the password and said so, and the first password chosen did not
    work. The link is checked again in the write, under the account's row lock: one request
    changes the password, the other is told the link was used."""
    from tests.concurrency import run_concurrently

    hosts = [make_app(SECRET_KEY="one-shop-secret-for-both-hosts") for _ in range(2)]
    with hosts[0].app_context():
        user = f.user("customer@example.com")
        link = f"/account/password/reset/{accounts.reset_token(user)}"
        browsers = [host.test_client() for host in hosts]
        forms = [{"password": password, "password_confirm": password,
                  "csrf_token": csrf_token(browser, link)}
                 for browser, password in zip(browsers, (NEW_PASSWORD, "Another-pass-99"),
                                              strict=True)]
        statuses = run_concurrently(hosts[0], [
            (lambda browser=browser, form=form: browser.post(link, data=form).status_code)
            for browser, form in zip(browsers, forms, strict=True)])
        assert sorted(statuses) == [303, 400], statuses
        chosen = forms[statuses.index(303)]["password"]
        other = browsers[statuses.index(400)]
        assert "already used" in other.get(link).get_data(as_text=True)
        assert post(other, "/account/login", {"email": "customer@example.com",
                                              "password": chosen}).status_code == 303


def test_a_reset_link_stops_working_once_the_email_changes(client, auth, customer, outbox):
    """A reset link went to the old address; once the account moved to a new one (say, the
    old mailbox was lost or taken over), that link must not set the password any more."""
    post(client, "/account/password/forgot", {"email": "customer@example.com"})
    link = reset_link(outbox)
    response = post(client, "/account/profile", {"name": "Ada", "email": "ada@new.example",
                                                 "current_password": f.PASSWORD})
    assert response.status_code == 303
    auth.logout()
    page = client.get(link)
    assert page.status_code == 400 and "not valid" in page.get_data(as_text=True)
    response = post(client, link, {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
                    page="/account/login")
    assert response.status_code == 400
    assert auth.login(email="ada@new.example", password=NEW_PASSWORD).status_code == 401
    assert auth.login(email="ada@new.example").status_code == 303


def test_mail_about_an_accounts_order_goes_to_the_accounts_email_as_it_is_now(
        client, customer, outbox):
    """A customer ordered, then moved their account to a new address (the old mailbox lost,
    or taken over). The mails about that order (paid, shipped with its tracking, each with
    the order's signed link, which shows their home address) still went to the old address.
    They now go to the account's email as it is when they are sent; the first one, before the
    change, went to the address the account had then."""
    from shop.services import notifications, payments
    from shop.services.orders import Actor
    from tests.payments_helpers import buy as buy_here
    from tests.payments_helpers import last_order

    lamp = f.variant_of(f.product("Lamp", price="40.00", stock=5, slug="lamp"))
    assert buy_here(client, lamp.id, method="manual").status_code == 303
    order = last_order()
    assert [m["To"] for m in mails(outbox)] == ["customer@example.com"]
    response = post(client, "/account/profile", {"name": "Ada", "email": "ada@new.example",
                                                 "current_password": f.PASSWORD})
    assert response.status_code == 303

    staff = Actor(None, "staff@example.com")
    payments.change_status(order.id, "paid", staff)
    payments.change_status(order.id, "shipped", staff, carrier="DHL", tracking_number="JD01")
    told = {m["Subject"]: m["To"] for m in mails(outbox)}
    assert told == {f"Your order {order.number}": "customer@example.com",
                    f"Order {order.number}: Paid": "ada@new.example",
                    f"Order {order.number}: Shipped": "ada@new.example"}
    assert last_order().email == "customer@example.com"  # the order's record is unchanged
    # Staff told to pay a failed refund back another way are given the address to write to.
    notifications.refund_failed(order.id, "$40.00 could not be returned to the card")
    [alert] = [m for m in mails(outbox) if m["Subject"].startswith("Refund failed")]
    assert "customer ada@new.example)" in text_of(alert)


def test_every_problem_of_a_password_form_is_said_at_once(client, auth, outbox):
    """A repeat of the password that differed hid every other problem: the shopper fixed it,
    sent the form again, and only then heard that the email and the password were wrong too.
    Registration, the reset link and the password change now name them all at once, beside
    their fields, and change nothing."""
    def says_all(response, *messages):
        html = response.get_data(as_text=True)
        assert response.status_code == 422
        assert all(message in html for message in messages), messages

    says_all(post(client, "/account/register", {
        "email": "bad@", "password": "x", "password_confirm": "y"}),
        "Enter a valid email address.", "Use at least 10 characters.",
        "The two passwords do not match.")
    assert user_named("bad@") is None

    f.user("customer@example.com", name="Ada")
    post(client, "/account/password/forgot", {"email": "customer@example.com"})
    link = reset_link(outbox)
    says_all(post(client, link, {"password": "short", "password_confirm": "other"}),
             "Use at least 10 characters.", "The two passwords do not match.")

    assert auth.login().status_code == 303
    says_all(post(client, "/account/password", {
        "current_password": "wrong-password-1", "password": "weak", "password_confirm": "nope"}),
        "Your current password is not right.", "Use at least 10 characters.",
        "The two passwords do not match.")
    auth.logout()
    assert auth.login(password=f.PASSWORD).status_code == 303


def test_change_password(client, auth, customer):
    response = post(client, "/account/password", {
        "current_password": "", "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD})
    assert response.status_code == 422  # left empty: asked for, not called wrong
    assert "Enter your current password." in response.get_data(as_text=True)
    response = post(client, "/account/password", {
        "current_password": "wrong-password-1", "password": NEW_PASSWORD,
        "password_confirm": NEW_PASSWORD})
    assert response.status_code == 422
    assert "Your current password is not right." in response.get_data(as_text=True)
    response = post(client, "/account/password", {
        "current_password": f.PASSWORD, "password": NEW_PASSWORD, "password_confirm": "nope"})
    assert response.status_code == 422
    assert "The two passwords do not match." in response.get_data(as_text=True)
    response = post(client, "/account/password", {
        "current_password": f.PASSWORD, "password": "weak", "password_confirm": "weak"})
    assert "Use at least 10 characters." in response.get_data(as_text=True)

    response = post(client, "/account/password", {
        "current_password": f.PASSWORD, "password": NEW_PASSWORD,
        "password_confirm": NEW_PASSWORD})
    assert response.status_code == 303
    assert client.get("/account").status_code == 200  # this session stays
    auth.logout()
    assert auth.login().status_code == 401
    assert auth.login(password=NEW_PASSWORD).status_code == 303


def test_a_password_change_ends_the_other_sessions(app, client, customer):
    laptop = app.test_client()
    phone = app.test_client()
    for other in (laptop, phone):
        post(other, "/account/login", {"email": "customer@example.com", "password": f.PASSWORD,
                                       "remember": "yes" if other is phone else ""})
        assert other.get("/account").status_code == 200
    post(client, "/account/password", {"current_password": f.PASSWORD,
                                       "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD})
    assert client.get("/account").status_code == 200
    assert laptop.get("/account").status_code == 302
    # The phone's remember-me cookie is worth nothing either, even without its session.
    phone.delete_cookie("session", domain="shop.test")
    assert phone.get("/account").status_code == 302
    assert phone.get("/account").status_code == 302


def test_a_password_reset_ends_existing_sessions(app, client, customer, outbox):
    other = app.test_client()
    post(other, "/account/password/forgot", {"email": "customer@example.com"})
    link = reset_link(outbox)
    post(other, link, {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD})
    assert client.get("/account").status_code == 302


# --- addresses ---

ADDRESS = dict(f.ADDRESS)


def saved(user_id: int) -> list[Address]:
    db.session.expire_all()
    return addresses.for_user(user_id)


def test_add_edit_default_and_delete_addresses(client, customer):
    response = post(client, "/account/addresses/new", ADDRESS)
    assert response.status_code == 303
    assert response.headers["Location"] == "/account#addresses"
    (first,) = saved(customer.id)
    assert first.is_default and first.city == "London"

    post(client, "/account/addresses/new", ADDRESS | {"name": "Charles Babbage",
                                                     "line1": "1 Difference Rd",
                                                     "postal_code": "62701",
                                                     "country": "us", "is_default": "yes"},
         page="/account/addresses/new")
    listed = saved(customer.id)
    assert [a.name for a in listed] == ["Charles Babbage", "Ada Lovelace"]
    second = listed[0]
    assert second.country == "US" and second.is_default

    edit = f"/account/addresses/{first.id}/edit"
    assert "12 Analytical St" in client.get(edit).get_data(as_text=True)
    post(client, edit, ADDRESS | {"city": "Cambridge"})
    assert next(a for a in saved(customer.id) if a.id == first.id).city == "Cambridge"

    post(client, f"/account/addresses/{first.id}/default", {}, page="/account")
    assert [a.id for a in saved(customer.id) if a.is_default] == [first.id]

    post(client, f"/account/addresses/{first.id}/delete", {}, page="/account")
    assert [(a.id, a.is_default) for a in saved(customer.id)] == [(second.id, True)]
    html = client.get("/account").get_data(as_text=True)
    assert "Address deleted." in html and "1 Difference Rd" in html


def test_the_default_addresss_form_offers_no_box_that_unticked_changes_nothing(client,
                                                                               customer):
    """The default address stays the default until another is made the default: its form
    showed "Use as my default address" ticked, and unticking it saved the address and left it
    the default without a word."""
    post(client, "/account/addresses/new", ADDRESS)
    post(client, "/account/addresses/new", ADDRESS | {"line1": "2 Other St"},
         page="/account/addresses/new")
    default, other = saved(customer.id)
    assert default.is_default and not other.is_default
    for refused in (False, True):
        path = f"/account/addresses/{default.id}/edit"
        response = post(client, path, {**ADDRESS, "city": ""}) if refused else client.get(path)
        page = response.get_data(as_text=True)
        assert 'id="is_default"' not in page
        assert "This is your default address." in page
        assert "Make default" in page
    # Another address's form still offers the box.
    page = client.get(f"/account/addresses/{other.id}/edit").get_data(as_text=True)
    assert 'id="is_default"' in page and "This is your default address." not in page


def test_bad_address_keeps_input_and_changes_nothing(client, customer):
    response = post(client, "/account/addresses/new", ADDRESS | {"city": "", "country": "XX"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Enter the city." in html and "Choose a country" in html
    assert 'value="12 Analytical St"' in html
    assert saved(customer.id) == []


@pytest.mark.parametrize("change,field,message", [
    ({"country": "US", "postal_code": "!!!"}, "postal_code",
     "A postal code has letters, digits, spaces and hyphens."),
    ({"country": "US", "postal_code": "ABCDE"}, "postal_code",
     "Enter a ZIP code such as 62701 or 62701-1234."),
    ({"postal_code": "12345"}, "postal_code", "Enter a postcode such as N1 7AA."),  # GB
    ({"phone": "abc"}, "phone", "Enter a phone number with digits"),
    ({"name": "A\x00B"}, "name", "has a character that cannot be printed on a label"),
    ({"city": "London\u202enodnoL"}, "city", "has a character that cannot be printed"),
])
def test_an_address_no_label_could_carry_is_refused_beside_the_field(client, customer, change,
                                                                      field, message):
    """Each of these was saved: a postal code or phone of any characters, a NUL byte, a
    right-to-left override that makes the label and the back office show another text."""
    response = post(client, "/account/addresses/new", ADDRESS | change)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert saved(customer.id) == []


@pytest.mark.parametrize("change", [{"country": "US", "postal_code": "62701-1234"},
                                    {"country": "CA", "postal_code": "k1a 0b1"},
                                    {"country": "NL", "postal_code": "1012 AB"},
                                    {"phone": "+44 (20) 7946-0000 ext. 12"}])
def test_addresses_in_their_national_forms_are_kept(client, customer, change):
    assert post(client, "/account/addresses/new", ADDRESS | change).status_code == 303
    (address,) = saved(customer.id)
    if change.get("country") == "CA":
        assert address.postal_code == "K1A 0B1"


def test_a_name_with_a_control_character_is_refused(client, customer):
    response = post(client, "/account/profile", {"name": "Ada\x00King",
                                                 "email": customer.email})
    assert response.status_code == 422
    assert "cannot be shown" in response.get_data(as_text=True)
    assert user_named("customer@example.com").name != "Ada\x00King"


def test_an_address_the_account_has_is_not_saved_twice(client, customer):
    """The address form sent twice (or an address the account has, saved again) added an
    identical copy; it is now the address already saved, made default when asked."""
    assert post(client, "/account/addresses/new", ADDRESS).status_code == 303
    assert post(client, "/account/addresses/new", ADDRESS | {"line1": "2 Engine Lane"}
                ).status_code == 303
    again = post(client, "/account/addresses/new",
                 ADDRESS | {"line1": " 2  Engine Lane ", "is_default": "yes"})
    assert again.status_code == 303
    kept = saved(customer.id)
    assert sorted(a.line1 for a in kept) == ["12 Analytical St", "2 Engine Lane"]
    assert [a.line1 for a in kept if a.is_default] == ["2 Engine Lane"]


def test_an_address_edited_into_another_saved_one_is_that_one(client, customer):
    """Editing an address until it matched another saved one left two identical entries in
    the book (adding it again made no copy); the book now keeps one, the default if either
    was."""
    assert post(client, "/account/addresses/new", ADDRESS).status_code == 303
    assert post(client, "/account/addresses/new", ADDRESS | {"line1": "2 Engine Lane"}
                ).status_code == 303
    first, second = sorted(saved(customer.id), key=lambda a: a.id)
    assert first.is_default and not second.is_default
    # The default one edited into the other: one address left, still the default.
    edited = post(client, f"/account/addresses/{first.id}/edit",
                  ADDRESS | {"line1": " 2 Engine  Lane"})
    assert edited.status_code == 303
    (kept,) = saved(customer.id)
    assert (kept.id, kept.line1, kept.is_default) == (second.id, "2 Engine Lane", True)
    # Edited into itself (saved unchanged): nothing goes.
    assert post(client, f"/account/addresses/{kept.id}/edit",
                ADDRESS | {"line1": "2 Engine Lane"}).status_code == 303
    assert [a.id for a in saved(customer.id)] == [kept.id]


CONTROLS = "\x00\x07\x1b\x7f\x85"


def unshowable(html: str) -> set[str]:
    """The control characters HTML forbids that a page holds (tab, LF and CR are allowed)."""
    return {c for c in html if (ord(c) < 32 and c not in "\t\n\r") or 0x7f <= ord(c) <= 0x9f}


@pytest.mark.parametrize("path,data,status,logged_in", [
    ("/account/register", {"name": f"Ada{CONTROLS}", "email": f"ada{CONTROLS}@example.com",
                           "password": "correct-horse-9", "password_confirm": "correct-horse-9"},
     422, False),
    ("/account/login", {"email": f"ada{CONTROLS}@example.com", "password": "wrong"}, 401, False),
    ("/account/password/forgot", {"email": f"ada{CONTROLS}@example.com"}, 422, False),
    ("/account/profile", {"name": f"Ada{CONTROLS}", "email": f"ada{CONTROLS}@example.com"},
     422, True),
    ("/account/addresses/new", ADDRESS | {"line1": f"1{CONTROLS} Road", "city": f"X{CONTROLS}"},
     422, True),
])
def test_a_refused_account_form_shows_no_control_character(client, auth, path, data, status,
                                                           logged_in):
    """A form refused for a control character (or, logging in, refused at all) showed it
    again as typed in the field's value: invalid HTML (Nu: "Saw U+0000", "Forbidden code
    point U+0007"). The page shows U+FFFD in its place. Fails on the old code."""
    if logged_in:
        f.user("customer@example.com", name="Ada Lovelace")
        auth.login()
    response = post(client, path, data)
    html = response.get_data(as_text=True)
    assert response.status_code == status
    assert unshowable(html) == set()
    assert "\ufffd" * len(CONTROLS) in html


def test_address_actions_with_htmx_answer_the_list(client, customer):
    one = addresses.save(customer.id, ADDRESS)
    two = addresses.save(customer.id, ADDRESS | {"line1": "2 Engine Lane"})
    token = csrf_token(client, "/account")
    response = client.post(f"/account/addresses/{two.id}/default", data={"csrf_token": token},
                           headers=HX)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html
    assert html.lstrip().startswith('<section id="addresses"')
    assert "Default address changed." in html and 'id="live"' in html
    response = client.post(f"/account/addresses/{one.id}/delete", data={"csrf_token": token},
                           headers=HX)
    html = response.get_data(as_text=True)
    assert "12 Analytical St" not in html and "2 Engine Lane" in html
    assert "Vary" in response.headers and "HX-Request" in response.headers["Vary"]


# --- order history ---

def test_order_history_links_to_each_order(client, customer):
    mug = f.product("Stoneware Mug", slug="stoneware-mug")
    orders = [buy(customer, mug, status=s) for s in ("paid", "pending", "shipped")]
    html = client.get("/account").get_data(as_text=True)
    for order in orders:
        assert f'href="/orders/{order.number}"' in html
    assert "Awaiting payment" in html and "Shipped" in html
    history = client.get("/account/orders").get_data(as_text=True)
    assert "3 orders" in history and all(o.number in history for o in orders)
    detail = client.get(f"/orders/{orders[0].number}")
    assert detail.status_code == 200 and orders[0].number in detail.get_data(as_text=True)
    assert client.get("/account/orders?page=9").status_code == 404
    # A page number no database offset can hold is past the last page too (it was a 500).
    for page in (2**62, 10**25):
        assert client.get(f"/account/orders?page={page}").status_code == 404


def test_order_history_pages(client, customer):
    mug = f.product("Stoneware Mug", slug="stoneware-mug", stock=100)
    for _ in range(21):
        buy(customer, mug, status="pending")
    first = client.get("/account/orders").get_data(as_text=True)
    assert "Page 1 of 2" in first and first.count('href="/orders/SO-') == 20
    second = client.get("/account/orders?page=2").get_data(as_text=True)
    assert second.count('href="/orders/SO-') == 1


def test_a_form_sent_after_the_session_ended_comes_back_to_its_page_after_logging_in(client):
    """A password changed on another device ends this session: "Make default" (a POST-only
    address) then sent the shopper to log in with next= that address, which answered 405
    once logged in; with htmx, the login page was swapped into the account page."""
    from urllib.parse import parse_qs, urlsplit

    token = csrf_token(client, "/account/login")
    here = f"http://{client.application.config.get('SERVER_NAME') or 'localhost'}"
    for headers, form in (({"Referer": f"{here}/account/addresses"}, False),
                          ({"Referer": "https://elsewhere.example/x"}, False),
                          ({"HX-Request": "true", "Referer": f"{here}/account/addresses"},
                           True)):
        response = client.post("/account/addresses/5/default", data={"csrf_token": token},
                               headers=headers)
        if form:
            assert response.status_code == 204 and "Location" not in response.headers
            target = response.headers["HX-Redirect"]
        else:
            assert response.status_code == 302
            target = response.headers["Location"]
        assert urlsplit(target).path == "/account/login"
        back = parse_qs(urlsplit(target).query)["next"][0]
        assert back == ("/account" if "elsewhere" in headers["Referer"]
                        else "/account/addresses")
    # A page asked for by GET still comes back to itself, query and all.
    response = client.get("/account/orders?page=2")
    assert parse_qs(urlsplit(response.headers["Location"]).query)["next"] == [
        "/account/orders?page=2"]


def test_pages_a_logged_in_customer_sees_are_kept_from_shared_caches(client, auth, customer):
    """Catalogue pages carry the customer's header and form token, and the review form is
    theirs alone: they had no Cache-Control (only Vary: Cookie)."""
    f.product("Stoneware Mug", slug="stoneware-mug")
    anonymous = client.application.test_client().get("/products")
    assert "Cache-Control" not in anonymous.headers  # the same page for every visitor
    for path in ("/", "/products", "/p/stoneware-mug"):
        assert client.get(path).headers["Cache-Control"] == "private, no-cache", path
    assert client.get("/p/stoneware-mug/reviews/new").headers["Cache-Control"] == \
        "private, no-store"
