"""Accounts: register, log in, log out, the account page."""
from __future__ import annotations

from flask import (Blueprint, current_app, flash, g, redirect, render_template, request, session,
                   url_for)
from flask_login import current_user, login_required, login_user, logout_user
from flask_limiter.util import get_remote_address

from ...extensions import limiter
from ...services import accounts, addresses, orders
from ...services import cart as cart_service
from ...services.errors import AuthError, ValidationError
from ..htmx import safe_next
from ..shopper import GUEST_CART_KEY

bp = Blueprint("account", __name__, url_prefix="/account")


def _login_failed(_response) -> bool:
    """Only failed attempts count towards the login limit."""
    return bool(g.get("login_failed"))


def _login_account_key() -> str:
    return "login:" + accounts.normalise_email(request.form.get("email", ""))


def _login_limit() -> str:
    return current_app.config["RATELIMIT_LOGIN"]


def start_session(user) -> None:
    """Log a user in on a fresh session (no fixation), keeping the guest's cart."""
    guest_token = session.get(GUEST_CART_KEY)
    session.clear()
    login_user(user, remember=request.form.get("remember") == "yes")
    cart_service.merge_guest_cart(guest_token, user.id)


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, key_func=get_remote_address, methods=["POST"],
               deduct_when=_login_failed)
@limiter.limit(_login_limit, key_func=_login_account_key, methods=["POST"],
               deduct_when=_login_failed)
def login():
    """Log in with email and password."""
    next_url = safe_next(request.values.get("next"), url_for("account.index"))
    if current_user.is_authenticated and request.method == "GET":
        return redirect(next_url)
    error = None
    email = request.form.get("email", "")
    if request.method == "POST":
        try:
            user = accounts.authenticate(email, request.form.get("password", ""))
        except AuthError as exc:
            g.login_failed = True
            error = exc.message
        else:
            start_session(user)
            flash(f"Welcome back{', ' + user.name if user.name else ''}!", "success")
            return redirect(next_url, 303)
    return render_template("account/login.html", error=error, email=email,
                           next_url=next_url), (401 if error else 200)


@bp.route("/register", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_REGISTER"], methods=["POST"])
def register():
    """Create a customer account."""
    next_url = safe_next(request.values.get("next"), url_for("account.index"))
    errors: dict[str, str] = {}
    form = {"email": request.form.get("email", ""), "name": request.form.get("name", "")}
    if request.method == "POST":
        password = request.form.get("password", "")
        if password != request.form.get("password_confirm", ""):
            errors["password_confirm"] = "The two passwords do not match."
        try:
            if errors:
                raise ValidationError({})
            user = accounts.register(form["email"], password, form["name"])
        except ValidationError as exc:
            errors.update(exc.errors)
        else:
            start_session(user)
            flash("Your account is ready. Welcome!", "success")
            return redirect(next_url, 303)
    return render_template("account/register.html", errors=errors, form=form,
                           next_url=next_url), (422 if errors else 200)


@bp.post("/logout")
def logout():
    """Log out (POST only, so a link elsewhere cannot log you out)."""
    logout_user()
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("catalog.home"), 303)


@bp.get("")
@login_required
def index():
    """Profile, addresses and order history."""
    history, total = orders.for_user(current_user.id, page=1, per_page=10)
    return render_template("account/index.html", orders=history, order_total=total,
                           addresses=addresses.for_user(current_user.id))
