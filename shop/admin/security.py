"""Who may use the back office, and the headers its pages need.

Staff and admins only: anonymous visitors are sent to the shop's login page (and come back),
customers get 403. Flask-Admin's templates carry inline scripts, so /admin pages get their own
Content-Security-Policy with a fresh nonce per request; everything else keeps the shop's policy
without any inline script.
"""
from __future__ import annotations

import secrets

from flask import Flask, abort, after_this_request, g, redirect, request, url_for
from flask_login import current_user

from ..http import current_request_id, personal
from ..services.audit import Who


class StaffAccess:
    """Mixed into every back office view, the index included."""

    def is_accessible(self) -> bool:
        return bool(current_user.is_authenticated and current_user.is_staff)

    def inaccessible_callback(self, name, **kwargs):
        if not current_user.is_authenticated:
            return redirect(url_for("account.login", next=request.full_path.rstrip("?")))
        abort(403)


def is_admin() -> bool:
    """The `admin` role (more than staff): user roles, other staff accounts."""
    return bool(current_user.is_authenticated and current_user.is_admin)


def who() -> Who:
    """The signed-in staff member, for the audit log and order events."""
    return Who(current_user.id, current_user.email)


def request_id() -> str:
    return current_request_id()


def csp_nonce() -> str:
    """This request's nonce (made once per request)."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(18)
    return g.csp_nonce


def admin_policy(nonce: str) -> str:
    """The shop's policy, plus the nonce that lets Flask-Admin's own scripts and styles run.
    Style attributes are allowed (Bootstrap's and select2's widgets set them); scripts are
    only those from this origin or carrying the nonce: no inline handlers, no eval."""
    return ("default-src 'self'; "
            f"script-src 'self' 'nonce-{nonce}'; "
            f"style-src 'self' 'nonce-{nonce}'; style-src-elem 'self' 'nonce-{nonce}'; "
            "style-src-attr 'unsafe-inline'; "
            "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
            "object-src 'none'; base-uri 'self'; frame-ancestors 'none'; form-action 'self'")


def install(app: Flask, url: str) -> None:
    """Per-request CSP and form-field limit for the back office's URLs."""
    prefix = url.rstrip("/")

    @app.before_request
    def admin_request() -> None:
        if request.path != prefix and not request.path.startswith(prefix + "/"):
            return
        g.csp = admin_policy(csp_nonce())
        after_this_request(personal)
        after_this_request(accessible_markup)
        # A previewed CSV file travels back in a form field for the real import (the body
        # itself is bounded by shop.http for /admin).
        request.max_form_memory_size = request.max_content_length


# Flask-Admin's own markup that axe finds wanting, mended in its pages as they go out: the
# page's language (its base template writes a bare <html>), and a name for the list rows'
# checkboxes (a title alone is no label: "label-title-only").
_MARKUP_FIXES = (
    (b"<html>", b'<html lang="en">', 1),
    (b'title="Select record" />', b'title="Select record" aria-label="Select record" />', -1),
    (b'title="Select all records" />',
     b'title="Select all records" aria-label="Select all records" />', -1),
)


def accessible_markup(response):
    """Mend Flask-Admin's markup in a back office HTML page (see _MARKUP_FIXES)."""
    if response.mimetype != "text/html" or response.direct_passthrough \
            or response.is_streamed:
        return response
    body = response.get_data()
    for old, new, count in _MARKUP_FIXES:
        body = body.replace(old, new, count)
    response.set_data(body)
    return response
