"""API authentication: registration, bearer tokens (hashed, expiring, revocable, listed and
revoked on the account page), session-cookie callers and CSRF, rate limits, CORS."""
from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from shop.extensions import db
from shop.models import ApiToken, User, utcnow
from shop.services import api_tokens
from tests import factories as f
from tests.conftest import AuthActions, csrf_token
from tests.web import api_support
from tests.web.api_support import ApiClient, bearer, error_of
from tests.web.test_accounts import reset_link

anonymous, catalog, other, shopper = (api_support.anonymous, api_support.catalog,
                                      api_support.other, api_support.shopper)


def get_token(api: ApiClient, email: str, password: str = f.PASSWORD, name: str | None = None,
              **kw):
    body = {"email": email, "password": password} | ({"name": name} if name else {})
    return api.post("/api/v1/auth/token", json=body, **kw)


# Registration and tokens --------------------------------------------------------------------

def test_register_then_get_a_token(anonymous):
    response = anonymous.post("/api/v1/auth/register", json={
        "email": "New.Person@Example.com", "password": "a-long-pass-42", "name": "New Person"})
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"id", "email", "name", "role"}
    assert (body["email"], body["name"], body["role"]) == (
        "new.person@example.com", "New Person", "customer")
    assert response.headers["Cache-Control"] == "private, no-store"
    token = get_token(anonymous, "new.person@example.com", "a-long-pass-42", name="My app")
    assert token.status_code == 201
    assert set(token.get_json()) == {"token", "expires_at", "id", "name"}
    # The answer holds the token's secret: never kept by a cache (RFC 6749 5.1; found by
    # a security audit: it had no Cache-Control at all).
    assert token.headers["Cache-Control"] == "private, no-store"
    cart = anonymous.get("/api/v1/cart", headers=bearer(token.get_json()["token"]))
    assert cart.status_code == 200


@pytest.mark.parametrize("payload,field", [
    ({"email": "taken@example.com", "password": "a-long-pass-42"}, "email"),
    ({"email": "not-an-email", "password": "a-long-pass-42"}, "email"),
    ({"email": "x@example.com", "password": "short"}, "password"),
    ({"email": "x@example.com", "password": "password123"}, "password"),
    ({"email": "x@example.com"}, "password"),
    ({"email": "x@example.com", "password": "a-long-pass-42", "role": "admin"}, "role"),
    ({"email": ["x@example.com"], "password": "a-long-pass-42"}, "email"),
])
def test_register_rejects_bad_input(app, anonymous, payload, field):
    f.user("taken@example.com")
    response = anonymous.post("/api/v1/auth/register", json=payload)
    assert response.status_code == 422
    assert field in error_of(response)["details"]["fields"]
    assert db.session.execute(select(User).where(User.email == "x@example.com")).first() is None


def test_register_says_what_the_page_says_and_every_problem_at_once(app, anonymous):
    """The same rules in the same words as the page: the lengths were pydantic's ("String
    should have at least 10 characters"), and a short password hid a taken email."""
    f.user("taken@example.com")
    for payload, fields in (
        ({"email": "Taken@example.com", "password": "short1", "name": "n" * 121},
         {"email": "An account with this email already exists. Log in instead?",
          "password": "Use at least 10 characters.", "name": "Use at most 120 characters."}),
        ({"email": "x@example.com", "password": "p1" * 101},
         {"password": "Use at most 200 characters."}),
    ):
        response = anonymous.post("/api/v1/auth/register", json=payload)
        assert response.status_code == 422
        assert error_of(response)["details"]["fields"] == fields
    # Spaces around the email and inside the name are the page's to drop, at any length.
    response = anonymous.post("/api/v1/auth/register", json={
        "email": " " * 250 + "New@Example.com", "password": "a-long-pass-42",
        "name": "Ada" + " " * 200 + "Lovelace"})
    assert response.status_code == 201
    assert (response.get_json()["email"], response.get_json()["name"]) == (
        "new@example.com", "Ada Lovelace")
    schema = anonymous.get("/api/v1/openapi.json").get_json()
    body = schema["components"]["schemas"]["RegisterBody"]["properties"]
    assert (body["password"]["minLength"], body["password"]["maxLength"]) == (10, 200)


def test_token_is_stored_hashed_and_expires_after_the_configured_days(app, anonymous):
    user = f.user("ada@example.com")
    body = get_token(anonymous, "ADA@example.com ", name="Warehouse").get_json()
    row = db.session.execute(select(ApiToken).where(ApiToken.user_id == user.id)).scalar_one()
    assert row.token_hash == hashlib.sha256(body["token"].encode()).hexdigest()
    assert body["token"] not in (row.token_hash, row.name)
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    expected = datetime.now(UTC) + timedelta(days=app.config["API_TOKEN_DAYS"])
    assert abs(expires - expected) < timedelta(minutes=1)
    assert (body["id"], body["name"]) == (row.id, "Warehouse")


@pytest.mark.parametrize("payload", [
    {"email": "ada@example.com", "password": "wrong-password-1"},
    {"email": "nobody@example.com", "password": f.PASSWORD},
])
def test_wrong_credentials_are_401(app, anonymous, payload):
    f.user("ada@example.com")
    response = anonymous.post("/api/v1/auth/token", json=payload)
    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_credentials"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_token_body_is_validated(app, anonymous):
    assert anonymous.post("/api/v1/auth/token", json={"email": "a@example.com"}
                          ).status_code == 422
    assert anonymous.post("/api/v1/auth/token", data="email=a", content_type="text/plain"
                          ).status_code == 400


def test_inactive_account_gets_no_token(app, anonymous):
    user = f.user("gone@example.com")
    user.active = False
    db.session.commit()
    assert get_token(anonymous, "gone@example.com").status_code == 401


@pytest.mark.parametrize("header,code", [
    ("Bearer shp_not-a-real-token", "invalid_token"), ("Bearer ", "invalid_token"),
    ("Basic YTpi", "invalid_token"), ("Bearer x" * 50, "invalid_token"),
])
def test_bad_authorization_headers_are_401(anonymous, header, code):
    response = anonymous.get("/api/v1/cart", headers={"Authorization": header})
    assert response.status_code == 401 and error_of(response)["code"] == code


NO_TOKEN = 'Bearer realm="shop"'


def refused(description: str) -> str:
    """The challenge to a bearer token that was sent and refused (RFC 6750 3.1)."""
    return f'Bearer realm="shop", error="invalid_token", error_description="{description}"'


@pytest.mark.parametrize("header,challenge", [
    (None, NO_TOKEN),
    # Another scheme presents no bearer token: no error code (RFC 6750 3.1).
    ("Basic YTpi", NO_TOKEN),
    ("Bearer shp_not-a-real-token", refused("The token is not valid")),
    ("bearer shp_not-a-real-token", refused("The token is not valid")),
    ("Bearer ", refused("The token is not valid")),
    ("Bearer x" * 50, refused("The token is not valid")),
])
def test_a_refused_token_is_named_in_the_challenge(anonymous, header, challenge):
    """An integrator's client (or an OAuth library) tells "get a token" from "this token is
    dead, get a new one" by the challenge's error code; every 401 said only realm="shop"."""
    headers = {"Authorization": header} if header is not None else {}
    response = anonymous.get("/api/v1/cart", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == challenge


def test_expired_token_is_401(shopper):
    row = db.session.execute(select(ApiToken).where(ApiToken.user_id == shopper.user.id)
                             ).scalar_one()
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    response = shopper.api.get("/api/v1/cart")
    assert response.status_code == 401 and error_of(response)["code"] == "token_expired"
    assert response.headers["WWW-Authenticate"] == refused("The token has expired")


def test_revoked_token_is_401(shopper, other):
    assert shopper.api.delete("/api/v1/auth/token").status_code == 204
    response = shopper.api.get("/api/v1/cart")
    assert response.status_code == 401 and error_of(response)["code"] == "token_revoked"
    assert response.headers["WWW-Authenticate"] == refused("The token was revoked")
    again = shopper.api.delete("/api/v1/auth/token")
    assert again.status_code == 401
    assert again.headers["WWW-Authenticate"] == refused("The token was revoked")
    assert other.api.get("/api/v1/cart").status_code == 200  # only that token


def test_token_of_a_deactivated_user_stops_working(shopper):
    shopper.user.active = False
    db.session.commit()
    response = shopper.api.get("/api/v1/cart")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == refused("The token is not valid")


def test_a_token_sent_to_a_public_operation_or_a_login_names_no_error(anonymous, shopper):
    """Wrong email or password is no refused token; a public read ignores a dead token."""
    response = anonymous.post("/api/v1/auth/token",
                              json={"email": shopper.user.email, "password": "wrong-pass-1"},
                              headers={"Authorization": "Bearer shp_dead"})
    assert response.status_code == 401 and error_of(response)["code"] == "invalid_credentials"
    assert response.headers["WWW-Authenticate"] == NO_TOKEN
    assert anonymous.get("/api/v1/categories",
                         headers={"Authorization": "Bearer shp_dead"}).status_code == 200


def test_a_password_reset_or_change_revokes_the_accounts_tokens(app, client, auth, anonymous,
                                                               outbox):
    """Whoever took over an account may have made API tokens: the owner's password reset (or
    change, which logs out the other devices) must end them as it ends the other sessions."""
    f.user("customer@example.com")
    stolen = get_token(anonymous, "customer@example.com").get_json()["token"]
    assert anonymous.get("/api/v1/cart", headers=bearer(stolen)).status_code == 200
    client.post("/account/password/forgot", data={
        "email": "customer@example.com",
        "csrf_token": csrf_token(client, "/account/password/forgot")})
    link = reset_link(outbox)
    assert client.post(link, data={"password": "new-Password-2024",
                                   "password_confirm": "new-Password-2024",
                                   "csrf_token": csrf_token(client, link)}).status_code == 303
    response = anonymous.get("/api/v1/cart", headers=bearer(stolen))
    assert response.status_code == 401 and error_of(response)["code"] == "token_revoked"

    app_token = get_token(anonymous, "customer@example.com", "new-Password-2024").get_json()
    auth.login(password="new-Password-2024")
    assert client.post("/account/password", data={
        "current_password": "new-Password-2024", "password": "newer-Password-2025",
        "password_confirm": "newer-Password-2025",
        "csrf_token": csrf_token(client, "/account/password")}).status_code == 303
    response = anonymous.get("/api/v1/cart", headers=bearer(app_token["token"]))
    assert response.status_code == 401 and error_of(response)["code"] == "token_revoked"
    fresh = get_token(anonymous, "customer@example.com", "newer-Password-2025").get_json()
    assert anonymous.get("/api/v1/cart", headers=bearer(fresh["token"])).status_code == 200


def test_delete_token_needs_a_bearer_token(anonymous):
    response = anonymous.delete("/api/v1/auth/token")
    assert response.status_code == 401


def test_answers_for_a_user_are_not_cached(shopper, catalog):
    private = shopper.api.get("/api/v1/cart")
    assert private.headers["Cache-Control"] == "private, no-store"
    public = shopper.api.client.get("/api/v1/products")
    assert "no-store" not in public.headers.get("Cache-Control", "")


def test_last_use_is_recorded(shopper):
    shopper.api.get("/api/v1/cart")
    row = db.session.execute(select(ApiToken).where(ApiToken.user_id == shopper.user.id)
                             ).scalar_one()
    assert row.last_used_at is not None and utcnow() - row.last_used_at < timedelta(minutes=1)


def test_live_tokens_per_user_are_capped(app):
    user = f.user()
    raws = [api_tokens.create(user.id)[1] for _ in range(api_tokens.MAX_ACTIVE_PER_USER + 1)]
    assert len(api_tokens.for_user(user.id)) == api_tokens.MAX_ACTIVE_PER_USER
    client = ApiClient(app.test_client())
    assert client.get("/api/v1/cart", headers=bearer(raws[0])).status_code == 401
    assert client.get("/api/v1/cart", headers=bearer(raws[-1])).status_code == 200


# The browser session as a caller ------------------------------------------------------------

def test_session_cookie_works_but_writes_need_csrf(app, client, auth, catalog):
    f.user("customer@example.com")
    auth.login()
    browser = ApiClient(client)
    assert browser.get("/api/v1/cart").status_code == 200
    refused = browser.post("/api/v1/cart/items", json={"sku": "MUG"})
    assert refused.status_code == 400 and error_of(refused)["code"] == "csrf_failed"
    assert browser.get("/api/v1/cart").get_json()["items"] == []
    token = csrf_token(client, "/cart")
    accepted = browser.post("/api/v1/cart/items", json={"sku": "MUG"},
                            headers={"X-CSRFToken": token})
    assert accepted.status_code == 200 and accepted.get_json()["item_count"] == 1
    # Revoking "the token" needs a token: a session has none.
    assert browser.delete("/api/v1/auth/token", headers={"X-CSRFToken": token}
                          ).status_code == 401


def test_bearer_token_wins_over_the_session(app, client, auth, shopper, catalog):
    f.user("customer@example.com")
    auth.login()
    browser = ApiClient(client, shopper.token)
    browser.post("/api/v1/cart/items", json={"sku": "MUG"})  # no CSRF needed with a token
    assert shopper.api.get("/api/v1/cart").get_json()["item_count"] == 1
    broken = ApiClient(client, "shp_wrong")
    assert broken.get("/api/v1/cart").status_code == 401  # never falls back to the cookie


# The account page ---------------------------------------------------------------------------

def test_account_page_lists_and_revokes_tokens(app, client, auth, anonymous):
    user = f.user("customer@example.com")
    kept = get_token(anonymous, "customer@example.com", name="Phone app").get_json()
    dropped = get_token(anonymous, "customer@example.com", name="Old laptop").get_json()
    stranger = f.user("stranger@example.com")
    _record, _raw = api_tokens.create(stranger.id, "Stranger's")
    auth.login()
    page = client.get("/account").get_data(as_text=True)
    assert "Phone app" in page and "Old laptop" in page and "Stranger" not in page
    revoke_path = f"/account/tokens/{dropped['id']}/revoke"
    form = re.search(f'action="({re.escape(revoke_path)})"', page)
    assert form, "no revoke form"
    assert client.post(form.group(1)).status_code == 400  # no CSRF token
    response = client.post(form.group(1), data={"csrf_token": csrf_token(client, "/account")})
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/account#api-tokens")
    assert anonymous.get("/api/v1/cart", headers=bearer(dropped["token"])).status_code == 401
    assert anonymous.get("/api/v1/cart", headers=bearer(kept["token"])).status_code == 200
    page = client.get("/account").get_data(as_text=True)
    assert "Old laptop" not in page and "Phone app" in page
    foreign = api_tokens.for_user(stranger.id)[0].id
    assert client.post(f"/account/tokens/{foreign}/revoke",
                       data={"csrf_token": csrf_token(client, "/account")}).status_code == 404
    assert len(api_tokens.for_user(stranger.id)) == 1
    assert user.id != stranger.id


def test_revoke_with_htmx_answers_the_section(app, client, auth, anonymous):
    f.user("customer@example.com")
    token = get_token(anonymous, "customer@example.com", name="Tablet").get_json()
    auth.login()
    response = client.post(f"/account/tokens/{token['id']}/revoke",
                           data={"csrf_token": csrf_token(client, "/account")},
                           headers={"HX-Request": "true"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html
    assert 'id="api-tokens"' in html and "Tablet" not in html
    assert "Token revoked" in html  # announced in the live region


def test_token_revoke_needs_login(client, shopper):
    token_id = api_tokens.for_user(shopper.user.id)[0].id
    response = client.post(f"/account/tokens/{token_id}/revoke",
                           data={"csrf_token": csrf_token(client)})
    assert response.status_code == 302 and "/account/login" in response.headers["Location"]
    assert shopper.api.get("/api/v1/cart").status_code == 200


# Rate limits --------------------------------------------------------------------------------
# A moving window: a fixed one could reset between two requests of a test at a minute's end.
MOVING = {"RATELIMIT_ENABLED": True, "RATELIMIT_STRATEGY": "moving-window"}


def test_api_requests_are_limited_per_token_and_per_address(make_app):
    limited = make_app(**MOVING, RATELIMIT_API="3 per minute")
    with limited.app_context():
        first = api_tokens.create(f.user().id)[1]
        second = api_tokens.create(f.user().id)[1]
    api = ApiClient(limited.test_client())
    for _ in range(3):
        allowed = api.get("/api/v1/cart", headers=bearer(first))
        assert allowed.status_code == 200
        # The limit's figures on every answer; "wait before retrying" only on a refusal.
        assert int(allowed.headers["X-RateLimit-Limit"]) == 3
        assert "Retry-After" not in allowed.headers
    response = api.get("/api/v1/cart", headers=bearer(first))
    assert response.status_code == 429
    assert error_of(response)["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) > 0
    assert api.get("/api/v1/cart", headers=bearer(second)).status_code == 200
    for _ in range(3):
        assert api.get("/api/v1/categories").status_code == 200
    assert api.get("/api/v1/categories").status_code == 429
    elsewhere = api.get("/api/v1/categories", environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert elsewhere.status_code == 200


NESTED_JSON = "[" * 1000 + "]" * 1000  # ~2 KB, deeper than a JSON parser recurses


def test_deeply_nested_json_is_400_with_the_limits_on(make_app):
    """The token endpoint's per-account limit read its key from the body with Flask's
    get_json, whose RecursionError answered 500 internal_error; the other endpoints' parser
    already answered 400."""
    limited = make_app(**MOVING)
    with limited.app_context():
        user = f.user("nested@example.com", password="correct-horse-9")
        token = api_tokens.create(user.id)[1]
    api = ApiClient(limited.test_client(), token)
    account = '{"email": "nested@example.com", "password": ' + NESTED_JSON + "}"
    for path in ("/api/v1/auth/token", "/api/v1/auth/register", "/api/v1/cart/items"):
        for body in (NESTED_JSON, account):
            response = api.post(path, data=body, content_type="application/json")
            assert response.status_code == 400, (path, response.get_json())
            assert error_of(response)["code"] == "invalid_json"
    # Refused before any password was checked: no failed login counted; the login works.
    response = api.post("/api/v1/auth/token", json={
        "email": "nested@example.com", "password": "correct-horse-9", "name": "app"})
    assert response.status_code == 201, response.get_json()


def test_limited_answers_say_their_limit_and_others_carry_no_limit_headers(make_app):
    """Flask-Limiter's headers come with the answers whose limit was checked (its hooks run
    only after a limit check), counting down; a catalogue page has none."""
    limited = make_app(**MOVING, RATELIMIT_API="5 per minute")
    client = limited.test_client()
    api = ApiClient(client)
    remaining = []
    for _ in range(2):
        response = api.get("/api/v1/categories")
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == "5"
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
    assert remaining == [4, 3]
    page = client.get("/products")
    assert page.status_code == 200 and "X-RateLimit-Limit" not in page.headers
    refused = [api.get("/api/v1/categories") for _ in range(4)][-1]
    assert refused.status_code == 429 and refused.headers["X-RateLimit-Remaining"] == "0"


def test_failed_token_requests_share_the_login_limits(make_app):
    limited = make_app(**MOVING, RATELIMIT_LOGIN="2 per minute")
    with limited.app_context():
        f.user("customer@example.com")
    client = limited.test_client()
    api = ApiClient(client)
    assert AuthActions(client).login(password="wrong-password-1").status_code == 401  # page
    assert get_token(api, "customer@example.com", "wrong-password-2").status_code == 401
    # Two failures (one on each door): even the right password waits now, on both.
    blocked = get_token(api, "customer@example.com")
    assert blocked.status_code == 429 and error_of(blocked)["code"] == "rate_limited"
    assert AuthActions(client).login().status_code == 429
    # Per account too: another address is refused for this account, not for others.
    other_address = {"REMOTE_ADDR": "10.1.1.1"}
    assert get_token(api, "customer@example.com", environ_base=other_address
                     ).status_code == 429
    assert get_token(api, "someone@example.com", environ_base=other_address
                     ).status_code == 401


def test_successful_token_requests_do_not_count(make_app):
    limited = make_app(**MOVING, RATELIMIT_LOGIN="2 per minute")
    with limited.app_context():
        f.user("customer@example.com")
    api = ApiClient(limited.test_client())
    assert [get_token(api, "customer@example.com").status_code for _ in range(4)] == [201] * 4


def test_registrations_share_the_page_limit(make_app):
    limited = make_app(**MOVING, RATELIMIT_REGISTER="1 per hour")
    api = ApiClient(limited.test_client())
    first = api.post("/api/v1/auth/register", json={"email": "one@example.com",
                                                    "password": "a-long-pass-42"})
    assert first.status_code == 201
    second = api.post("/api/v1/auth/register", json={"email": "two@example.com",
                                                     "password": "a-long-pass-42"})
    assert second.status_code == 429 and error_of(second)["code"] == "rate_limited"
    page = api.client.post("/account/register", data={
        "email": "three@example.com", "password": "a-long-pass-42",
        "password_confirm": "a-long-pass-42",
        "csrf_token": csrf_token(api.client, "/account/register")})
    assert page.status_code == 429


# CORS ---------------------------------------------------------------------------------------

def test_cors_is_off_by_default(anonymous):
    response = anonymous.get("/api/v1/categories", headers={"Origin": "https://app.example"})
    assert "Access-Control-Allow-Origin" not in response.headers
    preflight = anonymous.request("OPTIONS", "/api/v1/cart/items", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert "Access-Control-Allow-Methods" not in preflight.headers


def test_cors_allows_configured_origins(make_app):
    allowed = make_app(CORS_ORIGINS=["https://app.example"])
    api = ApiClient(allowed.test_client())
    response = api.get("/api/v1/categories", headers={"Origin": "https://app.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Origin" in response.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in response.headers
    exposed = response.headers["Access-Control-Expose-Headers"].split(", ")
    # Location: where a 201 says the new order is; WWW-Authenticate: whether a 401 refused the
    # token (neither is a header a browser shows a script by default).
    assert {"X-Request-ID", "Location", "WWW-Authenticate"} <= set(exposed)
    stranger = api.get("/api/v1/categories", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in stranger.headers
    assert "Origin" in stranger.headers["Vary"]
    preflight = api.request("OPTIONS", "/api/v1/cart/items/7", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert set(preflight.headers["Access-Control-Allow-Methods"].split(", ")) == {
        "PATCH", "DELETE"}
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    refused = api.request("OPTIONS", "/api/v1/cart", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert "Access-Control-Allow-Origin" not in refused.headers


def test_cors_headers_are_on_the_apis_unknown_urls_and_refused_methods(make_app):
    """An API audit: a 405 (PUT /api/v1/cart) or an unknown URL under /api/v1 carried no CORS
    headers (no API route matched, so the API's hooks did not run): a browser app on an
    allowed origin saw a network error instead of the envelope. Fails on the old code."""
    allowed = make_app(CORS_ORIGINS=["https://app.example"])
    api = ApiClient(allowed.test_client())
    origin = {"Origin": "https://app.example"}
    for response, status in ((api.request("PUT", "/api/v1/cart", headers=origin), 405),
                             (api.get("/api/v1/nope", headers=origin), 404)):
        assert response.status_code == status
        assert response.get_json()["error"]["code"] in ("method_not_allowed", "not_found")
        assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert "Origin" in response.headers["Vary"]
    stranger = api.get("/api/v1/nope", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in stranger.headers
    # The shop's own pages are no API: no CORS headers on their 404.
    page = allowed.test_client().get("/nope", headers=origin)
    assert page.status_code == 404 and "Access-Control-Allow-Origin" not in page.headers


@pytest.mark.parametrize("name", ["a\x00b", "app \u202eevil", "bell\x07"])
def test_a_token_name_with_a_character_that_cannot_be_shown_is_422(anonymous, shopper, name):
    """The account page lists tokens by name: a NUL or a direction override went into it raw."""
    response = get_token(anonymous, shopper.user.email, name=name)
    assert response.status_code == 422
    assert list(response.get_json()["error"]["details"]["fields"]) == ["name"]


def test_a_204_answer_has_no_content_type(make_app, shopper):
    """A 204 has no body, so no type: a token revoked and a CORS preflight said
    `Content-Type: text/html` (Werkzeug's default) of the body they do not have."""
    revoked = shopper.api.delete("/api/v1/auth/token")
    assert revoked.status_code == 204 and revoked.data == b""
    assert "Content-Type" not in revoked.headers
    api = ApiClient(make_app(CORS_ORIGINS=["https://app.example"]).test_client())
    for origin in ("https://app.example", "https://evil.example"):
        preflight = api.request("OPTIONS", "/api/v1/cart/items", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 204 and preflight.data == b""
        assert "Content-Type" not in preflight.headers
    # An answer with a body keeps its type.
    assert api.get("/api/v1/categories").headers["Content-Type"] == "application/json"
