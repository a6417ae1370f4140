"""Who is calling the API: a bearer token, or (for the same user in a browser) the session
cookie, which then needs a CSRF token on unsafe methods. Also the rate-limit keys."""
from __future__ import annotations

from typing import Literal

from flask import current_app, request
from flask_login import current_user
from sqlalchemy.exc import SQLAlchemyError

from ...extensions import client_address, csrf, db
from ...http import InvalidJson, json_body
from ...models import ApiToken, User
from ...services import accounts, api_tokens
from ...services.errors import AuthError, Forbidden

# none: public; token: a bearer token only; user: a token or the session cookie; staff: a
# user whose role is staff or admin.
Level = Literal["none", "token", "user", "staff"]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def state() -> dict:
    """This request's API state. Not `g`: a test's app context (and so `g`) outlives requests."""
    return request.environ.setdefault("shop.api", {})


def bearer_token() -> ApiToken | None:
    """The verified token of this request (read once); None without an Authorization header.

    A header that is present but not a live token is remembered as an error, raised by
    `authenticate` (and never silently replaced by the session cookie).
    """
    current = state()
    if "bearer" not in current:
        token, error = None, None
        header = request.headers.get("Authorization", "")
        if header:
            scheme, _, raw = header.partition(" ")
            if scheme.lower() != "bearer" or not raw.strip():
                error = AuthError(
                    "Send the token as `Authorization: Bearer <token>`.", code="invalid_token")
            else:
                try:
                    token = api_tokens.verify(raw.strip())
                except AuthError as exc:
                    error = exc
        # Remembered only once it is known: a database that failed the lookup (an outage)
        # left "no token" behind, and the request was answered 401 "Authentication required"
        # (a client then drops a good token) instead of the 503 the outage is.
        current["bearer"], current["bearer_error"] = token, error
    return current["bearer"]


def bearer_sent() -> bool:
    """Whether this request presented a bearer token (any value, even an empty one)."""
    scheme, _, _raw = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer"


def authenticate(level: Level) -> User | None:
    """The calling user for an operation that needs one; AuthError (401) or Forbidden (403)."""
    if level == "none":
        return None
    token = bearer_token()
    if state()["bearer_error"] is not None:
        raise state()["bearer_error"]
    if token is not None:
        user_id = token.user_id
        api_tokens.touch(token)
    elif current_user.is_authenticated and level != "token":
        # A browser session: its cookie is sent by any site, so writes need the CSRF token.
        if request.method not in SAFE_METHODS:
            csrf.protect()
        user_id = current_user.id
    else:
        raise AuthError("Authentication required: send `Authorization: Bearer <token>` "
                        "(get one from POST /api/v1/auth/token).", code="unauthorized")
    user = db.session.get(User, user_id)
    if user is None or not user.active:
        raise AuthError("The API token is not valid.", code="invalid_token")
    if level == "staff" and not user.is_staff:
        raise Forbidden("Only staff can change orders.")
    state()["user"] = user
    return user


def rate_limit_key() -> str:
    """SPEC section 9: per token (its hash, never the token), else per client address. With
    the database out of reach the token cannot be looked up: per address, and the request
    itself then meets the outage (503). Raised here, Flask-Limiter took it for its storage
    failing and counted in memory."""
    try:
        token = bearer_token()
    except SQLAlchemyError:
        db.session.rollback()
        token = None
    if token is not None:
        return "api:token:" + token.token_hash
    return "api:addr:" + (client_address() or "")


def api_limit() -> str:
    return current_app.config["RATELIMIT_API"]


def login_limit() -> str:
    return current_app.config["RATELIMIT_LOGIN"]


def register_limit() -> str:
    return current_app.config["RATELIMIT_REGISTER"]


def login_failed(_response) -> bool:
    """Only failed logins count towards the login limits (as on the HTML login)."""
    return bool(state().get("login_failed"))


def login_account_key() -> str:
    """The same key as the HTML login's per-account limit, read from the JSON body. A body
    that is not JSON keys on no account; the view then refuses it (400 invalid_json)."""
    try:
        data = json_body() if request.is_json else None
    except InvalidJson:
        data = None
    email = data.get("email") if isinstance(data, dict) else None
    return accounts.limit_key("login", email if isinstance(email, str) else "")
