"""Accounts: register, log in and out, password reset and change, profile, saved addresses and
order history. Views are thin: the rules live in shop.services.accounts / addresses / orders."""
from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_required, login_user, logout_user
from flask_login.signals import user_loaded_from_cookie
from itsdangerous import BadSignature, URLSafeTimedSerializer

from ...extensions import client_address, limiter, login_manager
from ...http import answer_too_many, personal
from ...services import accounts, addresses, guest_orders, orders, reviews
from ...services import cart as cart_service
from ...services.countries import COUNTRIES
from ...services.errors import AuthError, Forbidden, NotFound, ValidationError
from .. import ID
from ..htmx import is_htmx, safe_next, vary
from ..limits import LOGIN_ACCOUNT_SCOPE, LOGIN_ADDRESS_SCOPE, REGISTER_SCOPE
from ..shopper import guest_token as guest_cart_token

bp = Blueprint("account", __name__, url_prefix="/account")
bp.after_request(personal)


def unauthorized():
    """Flask-Login's answer to a page that needs a login: to the login page, and back
    afterwards. A form sent after the session ended elsewhere (a password changed on another
    device) comes back to the page it was sent from, not to its POST-only address (which
    answered 405 after logging in); and htmx is told to load the login page whole (it put the
    login page inside the account page)."""
    flash(login_manager.login_message, login_manager.login_message_category)
    if request.method in ("GET", "HEAD"):
        back = request.full_path.rstrip("?")
    else:
        referrer = urlsplit(request.referrer or "")
        same_site = referrer.netloc in ("", request.host)
        back = referrer.path + (f"?{referrer.query}" if referrer.query else "")
        back = back if same_site and back else url_for("account.index")
    target = url_for(login_manager.login_view, next=safe_next(back, url_for("account.index")))
    if is_htmx():
        response = current_app.response_class(status=204)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target)


bp.record_once(lambda state: login_manager.unauthorized_handler(unauthorized))


def _form_again(message: str) -> str | None:
    """A log-in, registration, reset or profile form sent over its rate limit: the form again, with
    what was typed (passwords aside) and the limit's message at its top. The error page
    alone lost the email (and the name) the shopper had typed, and the form to try again
    with once the wait is over."""
    if request.method != "POST":
        return None
    next_url = safe_next(request.form.get("next"), url_for("account.index"))
    if request.endpoint == "account.login":
        return render_template("account/login.html", notice=message, error=None, errors={},
                               email=request.form.get("email", ""),
                               remember=request.form.get("remember") == "yes",
                               next_url=next_url)
    if request.endpoint == "account.register":
        form = {"email": request.form.get("email", ""), "name": request.form.get("name", "")}
        return render_template("account/register.html", notice=message, errors={}, form=form,
                               next_url=next_url)
    if request.endpoint == "account.profile" and current_user.is_authenticated:
        form = {"name": request.form.get("name", ""), "email": request.form.get("email", "")}
        return render_template("account/profile.html", notice=message, errors={}, form=form)
    if request.endpoint == "account.forgot_password":
        return render_template("account/forgot.html", notice=message, error=None,
                               email=request.form.get("email", "").strip())
    return None


@bp.record_once
def _answer_limits_with_the_form(state) -> None:
    for endpoint in ("login", "register", "forgot_password", "profile"):
        answer_too_many(state.app, f"{bp.name}.{endpoint}", _form_again)

# The password a session (or a remember-me cookie) was started with, as a fingerprint
# (accounts.password_fingerprint): a password change or reset, or a deactivation, ends every
# session and remember-me cookie started before it.
SESSION_FP_KEY = "_pwfp"
LOGIN_ID_KEY = "_login"
REMEMBER_FP_COOKIE = "shop_remember_fp"
TOO_MANY_LOGINS = "Too many failed log-in attempts. Please wait a minute and try again."
# "If": the limit is also met by asking for someone else's email, or one with no account, from
# this address; no link may have been sent to the email typed.
TOO_MANY_RESETS = ("Too many password reset requests. Please wait a while and try again. "
                   "If we have already sent you a link, it still works.")
TOO_MANY_REGISTRATIONS = "Too many new accounts from your network. Please try again later."
TOO_MANY_ORDER_LINKS = ("Too many requests for a link to your earlier orders. Please wait a "
                        "while and try again. If we have already sent you a link, it still works.")
HISTORY_PER_PAGE = 20


# --- rate limits (SPEC section 9; limits come from config, so env vars can change them) ---

def _failed(_response) -> bool:
    """Only failed attempts count towards the password-guessing limits."""
    return bool(g.get("login_failed"))


def _login_limit() -> str:
    return current_app.config["RATELIMIT_LOGIN"]


def _login_account_key() -> str:
    return accounts.limit_key("login", request.form.get("email", ""))


def _current_user_key() -> str:
    """Password re-entry on account pages: counted in the account's login bucket, so the
    profile page, the password page and the login page (and the API's token request) share
    one limit; each page had a bucket of its own (20 guesses a minute more for someone
    holding a session)."""
    return accounts.limit_key("login", current_user.email)


def _reset_limit() -> str:
    return current_app.config["RATELIMIT_PASSWORD_RESET"]


def _reset_email_key() -> str:
    return accounts.limit_key("reset", request.form.get("email", ""))


def _order_link_key() -> str:
    """The account asking for a link to its earlier orders (each request mails it)."""
    return accounts.limit_key("link-orders", getattr(current_user, "email", ""))


# --- sessions ---

def _fp_serializer() -> URLSafeTimedSerializer:
    """The remember-me cookie's companion: [user id, password fingerprint, login id], signed
    with the time it was written. Flask-Login's own remember cookie carries no date, so this
    one is what ends a remember-me login after REMEMBER_COOKIE_DURATION on the server, not
    only in the browser: a kept copy of both cookies (a shared computer, a stolen cookie) was
    good again once `cleanup` had forgotten its logout, a month later."""
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="remember-login")


def _remember_duration() -> timedelta:
    duration = current_app.config.get("REMEMBER_COOKIE_DURATION", timedelta(days=365))
    return duration if isinstance(duration, timedelta) else timedelta(seconds=int(duration))


def start_session(user, remember: bool | None = None) -> None:
    """Log a user in on a fresh session (no fixation), keeping the guest's cart."""
    if remember is None:
        remember = request.form.get("remember") == "yes"
    guest_token = guest_cart_token()  # also a first add's, sent in another tab meanwhile
    session.clear()
    login_user(user, remember=remember)
    fingerprint = accounts.password_fingerprint(user)
    session[SESSION_FP_KEY] = fingerprint
    session[LOGIN_ID_KEY] = login_id = accounts.new_login_id()
    if remember:
        g.remember_fp = _fp_serializer().dumps([user.id, fingerprint, login_id])
    elif current_app.config.get("REMEMBER_COOKIE_NAME", "remember_token") in request.cookies:
        # Someone else's remember-me cookie must not outlive this session.
        session["_remember"] = "clear"
        g.remember_fp = ""
    changed = cart_service.merge_guest_cart(guest_token, user.id)
    if changed:
        # The cart joined the account's with less than was chosen: say so, and which limit
        # held each line back, not silently.
        limits = {"stock": "what is in stock",
                  "line_limit": f"{cart_service.max_quantity()} of an item per line"}
        said = []
        for limit, words in limits.items():
            held = [line for line in changed if line.limited_by == limit]
            if held:
                said.append(words + ": " + "; ".join(
                    f"{line.name}: {line.quantity} kept" if line.quantity
                    else f"{line.name}: sold out, removed" for line in held))
        flash("Your cart joined the one saved with your account, limited to "
              + "; and to ".join(said) + ".", "info")


def end_session(*, logging_out: bool = False) -> None:
    """Forget the session and the remember-me cookies. Logging out also ends the login for
    good (accounts.end_login): a copy of its cookies no longer works anywhere."""
    login_id = session.get(LOGIN_ID_KEY)
    if logging_out and login_id and current_user.is_authenticated:
        accounts.end_login(login_id, current_user.id)
    session.clear()
    logout_user()  # after clear(): it marks the remember-me cookie for deletion
    g.remember_fp = ""


@user_loaded_from_cookie.connect
def _loaded_from_cookie(_sender, user=None, **_extra) -> None:
    g.from_remember_cookie = True


@bp.before_app_request
def end_outdated_session():
    """End a session (or remember-me cookie) started before the account's password changed
    or before it was deactivated."""
    if request.endpoint == "static":
        return None
    remember_cookie = current_app.config.get("REMEMBER_COOKIE_NAME", "remember_token")
    if "_user_id" not in session and remember_cookie not in request.cookies:
        return None  # a guest: nothing to load
    if not current_user.is_authenticated:
        return None
    fingerprint = accounts.password_fingerprint(current_user)
    if g.get("from_remember_cookie"):
        try:
            remembered = _fp_serializer().loads(
                request.cookies.get(REMEMBER_FP_COOKIE, ""),
                max_age=int(_remember_duration().total_seconds()))
        except BadSignature:  # altered, expired, or of the undated form of before
            remembered = None
        valid = isinstance(remembered, list) and len(remembered) == 3 \
            and remembered[:2] == [current_user.id, fingerprint]
        if valid:
            session[SESSION_FP_KEY] = fingerprint
            session[LOGIN_ID_KEY] = remembered[2]
    else:
        # A session started elsewhere (none of ours lacks it) adopts the current password.
        valid = session.setdefault(SESSION_FP_KEY, fingerprint) == fingerprint
    if not valid:
        end_session()
        flash("Your session has ended (a password change or a deactivated account), so please "
              "log in again.", "info")
    elif (login_id := session.get(LOGIN_ID_KEY)) and accounts.login_ended(login_id):
        end_session()  # logged out elsewhere: these cookies are a copy
        flash("You were logged out, so please log in again.", "info")
    return None


@bp.after_app_request
def _remember_fp_cookie(response):
    """Write or delete the remember-me cookie's password fingerprint next to Flask-Login's."""
    value = g.get("remember_fp")
    if value is None:
        return response
    cfg = current_app.config
    if value:
        response.set_cookie(REMEMBER_FP_COOKIE, value,
                            max_age=int(_remember_duration().total_seconds()),
                            secure=bool(cfg.get("REMEMBER_COOKIE_SECURE")), httponly=True,
                            samesite=cfg.get("REMEMBER_COOKIE_SAMESITE") or "Lax")
    elif REMEMBER_FP_COOKIE in request.cookies:
        response.delete_cookie(REMEMBER_FP_COOKIE, secure=bool(cfg.get("REMEMBER_COOKIE_SECURE")),
                               httponly=True,
                               samesite=cfg.get("REMEMBER_COOKIE_SAMESITE") or "Lax")
    return response


def _refresh_fingerprint() -> None:
    """After the user changed their own password: this session (and remember-me) stay valid."""
    user = current_user._get_current_object()
    fingerprint = accounts.password_fingerprint(user)
    session[SESSION_FP_KEY] = fingerprint
    if REMEMBER_FP_COOKIE in request.cookies:
        g.remember_fp = _fp_serializer().dumps(
            [user.id, fingerprint, session.get(LOGIN_ID_KEY) or accounts.new_login_id()])


# --- log in, register, log out ---

@bp.route("/login", methods=["GET", "POST"])
@limiter.shared_limit(_login_limit, LOGIN_ADDRESS_SCOPE, key_func=client_address,
                      methods=["POST"], deduct_when=_failed, error_message=TOO_MANY_LOGINS)
@limiter.shared_limit(_login_limit, LOGIN_ACCOUNT_SCOPE, key_func=_login_account_key,
                      methods=["POST"], deduct_when=_failed, error_message=TOO_MANY_LOGINS)
def login():
    """Log in with email and password."""
    next_url = safe_next(request.values.get("next"), url_for("account.index"))
    if current_user.is_authenticated and request.method == "GET":
        return redirect(next_url)
    error = None
    errors: dict[str, str] = {}
    email = request.form.get("email", "")
    if request.method == "POST":
        try:
            user = accounts.authenticate(email, request.form.get("password", ""))
        except AuthError as exc:
            g.login_failed = True
            error = exc.message
        except ValidationError as exc:  # a field left empty: asked for, not a failed attempt
            errors = exc.errors
        else:
            start_session(user)
            flash(f"Welcome back{', ' + user.name if user.name else ''}!", "success")
            return redirect(next_url, 303)
    # A refusal keeps what the shopper chose, the password aside: the email and "Remember me".
    return render_template("account/login.html", error=error, errors=errors, email=email,
                           remember=request.form.get("remember") == "yes",
                           next_url=next_url), (401 if error else 422 if errors else 200)


@bp.route("/register", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_REGISTER"], methods=["POST"],
               error_message=TOO_MANY_REGISTRATIONS)
def register():
    """Create a customer account (never staff: roles are given by an admin)."""
    next_url = safe_next(request.values.get("next"), url_for("account.index"))
    errors: dict[str, str] = {}
    form = {"email": request.form.get("email", ""), "name": request.form.get("name", "")}
    if request.method == "POST":
        try:
            user = accounts.register(form["email"], request.form.get("password", ""),
                                     form["name"],
                                     confirm=request.form.get("password_confirm", ""))
        except ValidationError as exc:
            errors.update(exc.errors)
        else:
            start_session(user, remember=False)
            flash("Your account is ready. Welcome!", "success")
            return redirect(next_url, 303)
    return render_template("account/register.html", errors=errors, form=form,
                           next_url=next_url), (422 if errors else 200)


@bp.post("/logout")
def logout():
    """Log out (POST only, so a link elsewhere cannot log you out): this login ends for
    good, so a copy of its cookies (a shared computer, a stolen cookie) stops working too."""
    end_session(logging_out=True)
    flash("You are logged out.", "info")
    return redirect(url_for("catalog.home"), 303)


# --- password reset by email ---

@bp.route("/password/forgot", methods=["GET", "POST"])
@limiter.limit(_reset_limit, key_func=client_address, methods=["POST"],
               error_message=TOO_MANY_RESETS)
@limiter.limit(_reset_limit, key_func=_reset_email_key, methods=["POST"],
               error_message=TOO_MANY_RESETS)
def forgot_password():
    """Ask for a reset link. The answer is the same whether or not the email has an account."""
    email = request.form.get("email", "").strip()
    error = None
    if request.method == "POST":
        if not accounts.valid_email(accounts.normalise_email(email)):
            error = "Enter a valid email address."
        else:
            accounts.request_password_reset(email, request.url_root)
            hours = current_app.config["PASSWORD_RESET_HOURS"]
            flash(f"If an account uses {accounts.normalise_email(email)}, we have emailed it a "
                  f"link to choose a new password. The link works once, for {hours} hours.",
                  "success")
            return redirect(url_for("account.login"), 303)
    return render_template("account/forgot.html", email=email, error=error), \
        (422 if error else 200)


def _private(response):
    """A page whose URL holds a secret: not cached, not sent on as a referrer."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _reset_refused(message: str):
    """A reset link that is not valid, expired or already used: the page that says so."""
    return _private(make_response(render_template("account/reset_invalid.html",
                                                  message=message), 400))


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
def reset_password(token: str):
    """Choose a new password from an emailed link (expiring, single use)."""
    try:
        user = accounts.user_for_reset_token(token)
    except NotFound as exc:
        return _reset_refused(exc.message)
    errors: dict[str, str] = {}
    if request.method == "POST":
        try:
            accounts.reset_password(token, request.form.get("password", ""),
                                    confirm=request.form.get("password_confirm", ""))
        except ValidationError as exc:
            errors.update(exc.errors)
        except NotFound as exc:  # used meanwhile (the same link sent twice at once)
            return _reset_refused(exc.message)
        else:
            flash("Your password is changed. Log in with your new password.", "success")
            return redirect(url_for("account.login"), 303)
    return _private(make_response(render_template(
        "account/reset.html", token=token, email=user.email, errors=errors),
        422 if errors else 200))


# --- the account pages ---

@bp.get("")
@login_required
def index():
    """Profile, addresses, recent orders and products waiting for a review."""
    history, total = orders.for_user(current_user.id, page=1, per_page=5)
    return render_template("account/index.html", orders=history, order_total=total,
                           addresses=addresses.for_user(current_user.id),
                           reviewable=reviews.reviewable_products(current_user.id))


def _email_taken(_response) -> bool:
    return bool(g.get("email_taken"))


def _email_kept() -> bool:
    """A profile save that keeps the email (a new name): it asks for no password and tells
    nothing about other accounts, so neither limit below applies. An office whose address had
    used its registrations, or an account locked by someone guessing its password, could not
    even correct a name (429)."""
    return accounts.normalise_email(request.form.get("email", current_user.email)) \
        == current_user.email


@bp.route("/profile", methods=["GET", "POST"])
@login_required
@limiter.shared_limit(_login_limit, LOGIN_ACCOUNT_SCOPE, key_func=_current_user_key,
                      methods=["POST"], deduct_when=_failed, exempt_when=_email_kept,
                      error_message=TOO_MANY_LOGINS)
# "Another account uses that email" tells whether an email has an account, as registering
# does: counted in the registration's bucket for the address (SHOP_RATELIMIT_REGISTER), so
# the profile form is no unlimited way to find out which emails have accounts.
@limiter.shared_limit(lambda: current_app.config["RATELIMIT_REGISTER"], REGISTER_SCOPE,
                      key_func=client_address, methods=["POST"], deduct_when=_email_taken,
                      exempt_when=_email_kept, error_message=TOO_MANY_REGISTRATIONS)
def profile():
    """Change name and email (a new email needs the current password)."""
    form = {"name": request.form.get("name", current_user.name or ""),
            "email": request.form.get("email", current_user.email)}
    errors: dict[str, str] = {}
    if request.method == "POST":
        try:
            accounts.update_profile(current_user.id, form["name"], form["email"],
                                    request.form.get("current_password", ""))
        except ValidationError as exc:
            errors = exc.errors
            g.login_failed = errors.get("current_password") == accounts.WRONG_CURRENT_PASSWORD
            g.email_taken = errors.get("email") == accounts.EMAIL_TAKEN
        else:
            flash("Your profile is saved.", "success")
            return redirect(url_for("account.index"), 303)
    return render_template("account/profile.html", form=form, errors=errors), \
        (422 if errors else 200)


@bp.route("/password", methods=["GET", "POST"])
@login_required
@limiter.shared_limit(_login_limit, LOGIN_ACCOUNT_SCOPE, key_func=_current_user_key,
                      methods=["POST"], deduct_when=_failed, error_message=TOO_MANY_LOGINS)
def change_password():
    """Change the password: the current one, then the new one twice."""
    errors: dict[str, str] = {}
    if request.method == "POST":
        try:
            accounts.change_password(current_user.id, request.form.get("current_password", ""),
                                     request.form.get("password", ""),
                                     confirm=request.form.get("password_confirm", ""))
        except ValidationError as exc:
            errors = exc.errors
            # A wrong password counts towards the lock-out; one left empty was no guess.
            g.login_failed = errors.get("current_password") == accounts.WRONG_CURRENT_PASSWORD
        else:
            _refresh_fingerprint()
            flash("Your password is changed. Your other devices are logged out.", "success")
            return redirect(url_for("account.index"), 303)
    return render_template("account/password.html", errors=errors), (422 if errors else 200)


@bp.get("/orders")
@login_required
def order_history():
    """All of the customer's orders, newest first."""
    page = max(1, request.args.get("page", 1, type=int) or 1)
    history, total = orders.for_user(current_user.id, page=page, per_page=HISTORY_PER_PAGE)
    pages = max(1, -(-total // HISTORY_PER_PAGE))
    if page > pages:
        abort(404, description="There is no such page of your orders.")
    return render_template("account/orders.html", orders=history, order_total=total,
                           page=page, pages=pages)


# A mail-sending form: limited as the password reset's is, per client address and per account.
@bp.post("/orders/link")
@login_required
@limiter.limit(_reset_limit, key_func=client_address, error_message=TOO_MANY_ORDER_LINKS)
@limiter.limit(_reset_limit, key_func=_order_link_key, error_message=TOO_MANY_ORDER_LINKS)
def request_order_link():
    """"Link my earlier orders": mail the account's address a link that adds the orders
    placed with it without an account (services.guest_orders). The answer is the same whether
    or not there are such orders, as the password reset's is: only the mailbox learns it, not
    whoever registered an account with that address."""
    guest_orders.request_link(current_user.id, request.url_root)
    hours = current_app.config["LINK_ORDERS_HOURS"]
    flash(f"If orders were placed with {current_user.email} without an account, we have "
          f"emailed that address a link that adds them to your account. Log in and follow it "
          f"within {hours} hours; it works once.", "success")
    return redirect(url_for("account.order_history"), 303)


@bp.route("/orders/link/<token>", methods=["GET", "POST"])
@login_required
def link_orders(token: str):
    """The mailed link: what it adds (GET), then adds it (POST) to the logged-in account."""
    try:
        if request.method == "POST":
            added = guest_orders.attach(current_user.id, token)
        else:
            claim = guest_orders.check_link(current_user.id, token)
    except (NotFound, Forbidden) as exc:
        return _private(make_response(render_template(
            "account/link_orders_invalid.html", message=exc.message),
            403 if isinstance(exc, Forbidden) else 400))
    if request.method == "POST":
        flash(f"{added} earlier order{'' if added == 1 else 's'} added to your account.",
              "success")
        return redirect(url_for("account.order_history"), 303)
    return _private(make_response(render_template(
        "account/link_orders.html", token=token, count=len(claim.order_ids),
        email=claim.email)))


# --- saved addresses ---

def _address_form(template_values: dict, errors: dict, address_id: int | None, status: int,
                  is_default: bool = False):
    """The address form; `is_default`: the address being edited is the default, which stays
    so until another is made the default (the form says so instead of offering a box whose
    unticking changed nothing)."""
    return render_template("account/address_form.html", address=template_values, errors=errors,
                           address_id=address_id, countries=COUNTRIES,
                           is_default=is_default), status


def _owned_address(address_id: int):
    try:
        return addresses.get_owned(current_user.id, address_id)
    except NotFound as exc:
        abort(404, description=exc.message)


def _address_list_response(announcement: str):
    """After a change: the address list (htmx) or back to the account page (303)."""
    if is_htmx():
        return vary(make_response(render_template(
            "account/_addresses_response.html", addresses=addresses.for_user(current_user.id),
            announcement=announcement)))
    flash(announcement, "success")
    return redirect(url_for("account.index", _anchor="addresses"), 303)


@bp.route("/addresses/new", methods=["GET", "POST"])
@login_required
def add_address():
    """Save a new address (the first becomes the default)."""
    values = {k: request.form.get(k, "") for k in addresses.LABELS}
    if request.method == "POST":
        try:
            addresses.save(current_user.id, values,
                           make_default=request.form.get("is_default") == "yes")
        except ValidationError as exc:
            return _address_form(values | {"is_default": request.form.get("is_default")},
                                 exc.errors, None, 422)
        return _address_list_response("Address saved.")
    return _address_form(values, {}, None, 200)


@bp.route(f"/addresses/<{ID}:address_id>/edit", methods=["GET", "POST"])
@login_required
def edit_address(address_id: int):
    """Change a saved address."""
    address = _owned_address(address_id)
    if request.method == "POST":
        values = {k: request.form.get(k, "") for k in addresses.LABELS}
        try:
            addresses.save(current_user.id, values, address_id=address_id,
                           make_default=request.form.get("is_default") == "yes")
        except ValidationError as exc:
            return _address_form(values | {"is_default": request.form.get("is_default")},
                                 exc.errors, address_id, 422, address.is_default)
        except NotFound as exc:
            abort(404, description=exc.message)
        return _address_list_response("Address saved.")
    return _address_form(address.as_dict() | {"is_default": address.is_default}, {},
                         address_id, 200, address.is_default)


@bp.post(f"/addresses/<{ID}:address_id>/delete")
@login_required
def delete_address(address_id: int):
    """Delete a saved address."""
    try:
        addresses.delete(current_user.id, address_id)
    except NotFound as exc:
        abort(404, description=exc.message)
    return _address_list_response("Address deleted.")


@bp.post(f"/addresses/<{ID}:address_id>/default")
@login_required
def make_default_address(address_id: int):
    """Use this address by default at checkout."""
    try:
        addresses.make_default(current_user.id, address_id)
    except NotFound as exc:
        abort(404, description=exc.message)
    return _address_list_response("Default address changed.")
