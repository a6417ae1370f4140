"""People: customers and staff accounts (never the password hash; roles only by an admin;
deactivation instead of deletion) and review moderation."""
from __future__ import annotations

from flask import abort, flash, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.contrib.sqla.filters import FilterEqual
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import inspect
from wtforms import fields
from wtforms.validators import InputRequired, Length

from ..blueprints import ID
from ..extensions import db
from ..models import REVIEW_STATUSES, ROLES, Review, User
from ..models.base import is_id
from ..services import accounts, audit, coupons, database, reviews
from ..services.errors import NotFound, ShopError, ValidationError
from ..templating import paragraphs
from .base import ShopModelView, record_id
from .security import is_admin, request_id, who

ROLE_LABELS = {"customer": "Customer", "staff": "Staff", "admin": "Admin"}
REVIEW_LABELS = {"pending": "Waiting", "approved": "Published", "rejected": "Rejected"}


def _post_button(url: str, label: str, css: str = "btn-outline-secondary", **hidden) -> Markup:
    from ..sessions import csrf_token

    inputs = Markup("").join(Markup('<input type="hidden" name="{}" value="{}">').format(k, v)
                             for k, v in hidden.items())
    return Markup('<form class="d-inline" method="post" action="{}">'
                  '<input type="hidden" name="csrf_token" value="{}">{}'
                  '<button type="submit" class="btn btn-sm {}">{}</button></form>').format(
        url, csrf_token(), inputs, css, label)


def may_manage(target: User) -> bool:
    """Staff manage customers; an admin manages everyone; nobody locks themselves out."""
    if target.id == current_user.id:
        return False
    return is_admin() or target.role == "customer"


def _active_cell(view, context, model, name) -> Markup:
    state = Markup('<span class="badge badge-{}">{}</span>').format(
        "success" if model.active else "secondary", "Active" if model.active else "Deactivated")
    if not may_manage(model):
        return state
    label = "Deactivate" if model.active else "Reactivate"
    return state + Markup(" ") + _post_button(
        url_for(".set_active", user_id=model.id), label,
        "btn-outline-danger" if model.active else "btn-outline-success",
        active="0" if model.active else "1")


MAY_NOT_MANAGE = ("Only an admin can change staff accounts, and nobody can deactivate their "
                  "own account.")


def set_active(user_id: int, active: bool) -> bool:
    """Deactivate (or reactivate) an account, audited (accounts.set_active). Returns False
    when nothing changed. A deactivated account cannot log in, and its sessions and API
    tokens end for good: reactivating it does not bring them back."""
    return accounts.set_active(user_id, active, may_change=may_manage, refusal=MAY_NOT_MANAGE,
                               who=who(), request_id=request_id())


class CustomerView(ShopModelView):
    # Named, not "every column but": the password hash and session_epoch (the counter that
    # ends an account's sessions) are the shop's, and a column added later stays hidden.
    column_list = ("email", "name", "role", "active", "created_at")
    column_details_list = column_list
    column_export_list = column_list
    column_labels = {"created_at": "Registered", "active": "Account"}
    column_formatters = {"role": lambda v, c, m, n: ROLE_LABELS.get(m.role, m.role),
                         "active": _active_cell}
    column_searchable_list = ("email", "name")
    column_filters = (FilterEqual(User.role, "Role", options=[(r, ROLE_LABELS[r]) for r in ROLES]),
                      "active", "created_at")
    column_default_sort = ("created_at", True)
    can_create = False
    can_delete = False
    can_view_details = True
    form_columns = ("name", "email", "role", "active")
    form_overrides = {"role": fields.SelectField}
    form_args = {
        "email": {"validators": [InputRequired("Enter an email address."), Length(max=255)]},
        "name": {"validators": [Length(max=120)]},
        "role": {"choices": [(r, ROLE_LABELS[r]) for r in ROLES],
                 "description": "Staff and admins can use this back office."},
        "active": {"label": "Active (can log in)"},
    }
    checked_unique = ("email",)
    integrity_message = "That email address belongs to another account."

    def get_sortable_columns(self):
        """Name sorts case and accents aside on SQLite as on MySQL (database.name_sort_key):
        SQLite compared bytes, "Zoe" before "anna" and "Éva" last."""
        columns = super().get_sortable_columns()
        columns["name"] = database.name_sort_key(User.name)
        return columns

    def edit_form(self, obj=None):
        form = super().edit_form(obj)
        if not is_admin() or (obj is not None and obj.id == current_user.id):
            del form.role
        if obj is not None and obj.id == current_user.id:
            del form.active
        return form

    @expose("/edit/", methods=("GET", "POST"))
    def edit_view(self):
        # No id (or an empty one) is Flask-Admin's to answer: back to the list.
        raw_id = request.args.get("id")
        target = self.get_one(raw_id) if raw_id else None
        if target is not None and not may_manage(target):
            flash("Only an admin can change staff accounts, and your own account is changed "
                  "on your account page.", "error")
            return redirect(url_for(".index_view"))
        return super().edit_view()

    def check(self, form, model, is_created: bool) -> None:
        """The account page's rules (accounts.clean_profile), and an email another account
        has in other capitals is refused beside the field, not only by the database."""
        model.name, model.email, errors = accounts.clean_profile(model.name, model.email)
        if "email" not in errors and accounts.email_taken(model.email,
                                                          except_user_id=model.id):
            errors["email"] = accounts.EMAIL_TAKEN
        if model.role not in ROLES:
            errors["role"] = "Choose a role."
        if errors:
            raise ValidationError(errors)
        if True in inspect(model).attrs.active.history.deleted and not model.active:
            accounts.end_all_sessions(model)  # deactivated by unticking "Active"

    def before_write(self, form, model, is_created: bool) -> None:
        # The uses a guest made with this email now count as the account's (person_uses).
        coupons.link_account(model.id, model.email)

    def after_commit(self, before: dict | None, after: dict | None) -> None:
        super().after_commit(before, after)
        if before and after:
            # Their published reviews show the name on cached product pages.
            reviews.author_renamed(after["id"], before.get("name"), after.get("name"))

    @expose(f"/active/<{ID}:user_id>", methods=("POST",))
    def set_active(self, user_id: int):
        """The Deactivate / Reactivate button (active=0 or 1; anything else, which the button
        never sends, changes nothing: it deactivated the account)."""
        if request.form.get("active") not in ("0", "1"):
            abort(400, "Choose deactivate or reactivate.")
        active = request.form.get("active") == "1"
        try:
            changed = set_active(user_id, active)
        except ShopError as exc:
            flash(exc.message, "error")
            return redirect(url_for(".index_view"), 303)
        if changed:
            flash("Account reactivated." if active else "Account deactivated.", "success")
        return redirect(request.referrer if _same_origin(request.referrer)
                        else url_for(".index_view"), 303)

    @action("deactivate", "Deactivate", "Deactivate the selected accounts?")
    def action_deactivate(self, ids: list[str]) -> None:
        self._set_many(ids, False)

    @action("reactivate", "Reactivate")
    def action_reactivate(self, ids: list[str]) -> None:
        self._set_many(ids, True)

    def _set_many(self, ids: list[str], active: bool) -> None:
        changed = already = refused = 0
        for raw in ids:
            number = record_id(raw)
            try:
                if number is None:
                    raise NotFound("That account does not exist.")
                if set_active(number, active):
                    changed += 1
                else:
                    already += 1
            except ShopError:
                refused += 1
        done = "reactivated" if active else "deactivated"
        flash(f"{changed} account(s) {done}."
              + (f" {already} already {'active' if active else 'deactivated'}."
                 if already else "")
              + (f" {refused} refused (staff accounts need an admin; not your own)."
                 if refused else ""), "success" if not refused else "warning")


def _same_origin(url: str | None) -> bool:
    return bool(url) and url.startswith(request.host_url)


def _review_product(view, context, model, name) -> Markup:
    if not model.product.active:
        # Not in the shop: its page is the shop's 404, so no link to it (as the product list).
        return Markup('{} <span class="badge badge-secondary">inactive</span>').format(
            model.product.name)
    return Markup('<a href="{}">{}</a>').format(url_for("catalog.product", slug=model.product.slug),
                                                model.product.name)


def _review_decision(view, context, model, name) -> Markup:
    badge = Markup('<span class="badge badge-{}">{}</span>').format(
        {"approved": "success", "rejected": "secondary"}.get(model.status, "warning"),
        REVIEW_LABELS.get(model.status, model.status))
    url = url_for(".decide", review_id=model.id)
    buttons = Markup("")
    if model.status != "approved":
        buttons += _post_button(url, "Approve", "btn-outline-success", decision="approve")
    if model.status != "rejected":
        buttons += Markup(" ") + _post_button(url, "Reject", "btn-outline-danger",
                                              decision="reject")
    return badge + Markup(" ") + buttons


class ReviewView(ShopModelView):
    column_list = ("created_at", "product", "user", "rating", "title", "status")
    column_labels = {"created_at": "Written", "user": "Customer", "status": "Decision"}
    column_formatters = {"product": _review_product, "status": _review_decision,
                         "rating": lambda v, c, m, n: f"{m.rating} / 5"}
    column_details_list = ("created_at", "product", "user", "rating", "title", "body", "status")
    # The body as the shopper typed it, its line breaks kept, as the product page shows it.
    column_formatters_detail = {**column_formatters,
                                "body": lambda v, c, m, n: paragraphs(m.body)}
    column_sortable_list = ("created_at", "rating", "status")
    column_searchable_list = ("title", "body")
    column_filters = (FilterEqual(Review.status, "Status",
                                  options=[(s, REVIEW_LABELS[s]) for s in REVIEW_STATUSES]),
                      "rating", "created_at")
    column_default_sort = ("created_at", True)
    named_filter_urls = True
    can_create = False
    can_edit = False
    can_delete = False
    can_view_details = True

    def _decide(self, review_id: int, decision: str) -> bool:
        """Publish or reject one review, audited; False when it already was so."""
        review = db.session.get(Review, review_id) if is_id(review_id) else None
        if review is None:
            raise NotFound("That review does not exist.")
        before = audit.snapshot(review)
        result = reviews.approve(review_id) if decision == "approve" else reviews.reject(review_id)
        if before["status"] == result.status:
            return False
        audit.log(who(), decision, "Review", review_id, before=before,
                  after=audit.snapshot(result), request_id=request_id())
        return True

    @expose(f"/decide/<{ID}:review_id>", methods=("POST",))
    def decide(self, review_id: int):
        decision = request.form.get("decision", "")
        if decision not in ("approve", "reject"):
            abort(400, "Choose approve or reject.")
        try:
            changed = self._decide(review_id, decision)
        except ShopError as exc:
            flash(exc.message, "error")
        else:
            done = "published" if decision == "approve" else "rejected"
            flash(f"Review {done}." if changed else f"This review was already {done}.",
                  "success" if changed else "info")
        return redirect(request.referrer if _same_origin(request.referrer)
                        else url_for(".index_view"), 303)

    @action("approve", "Approve", "Publish the selected reviews?")
    def action_approve(self, ids: list[str]) -> None:
        self._decide_many(ids, "approve")

    @action("reject", "Reject", "Reject the selected reviews?")
    def action_reject(self, ids: list[str]) -> None:
        self._decide_many(ids, "reject")

    def _decide_many(self, ids: list[str], decision: str) -> None:
        """Counted as they were: "3 published" when 2 of the 5 chosen already were said 5."""
        changed = already = missing = 0
        for raw in ids:
            number = record_id(raw)
            try:
                if number is None:
                    raise NotFound("That review does not exist.")
                if self._decide(number, decision):
                    changed += 1
                else:
                    already += 1
            except ShopError:
                missing += 1
        done = "published" if decision == "approve" else "rejected"
        flash(f"{changed} review(s) {done}."
              + (f" {already} already {done}." if already else "")
              + (f" {missing} no longer exist." if missing else ""),
              "success" if changed or not (already or missing) else "info")
