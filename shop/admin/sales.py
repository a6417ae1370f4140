"""Sales screens: orders (filters, detail, one button per allowed transition, staff's internal
notes, CSV export) and coupons (with their use counts). An order's status changes only through
the state machine."""
from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

from flask import (
    Response,
    abort,
    current_app,
    flash,
    redirect,
    request,
    stream_with_context,
    url_for,
)
from flask_admin import expose
from flask_admin.contrib.sqla.filters import BaseSQLAFilter, FilterEqual
from markupsafe import Markup
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload
from wtforms import fields
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from ..blueprints import ID
from ..extensions import db
from ..models import COUPON_KINDS, ORDER_STATUSES, Coupon, Order, Payment
from ..services import audit, coupons, orders, payments, product_csv
from ..services.accounts import normalise_email
from ..services.coupons import normalise_code
from ..services.errors import InvalidTransition, NotFound, PaymentError, ShopError, ValidationError
from ..services.orders import ACTION_LABELS, STATUS_LABELS, Actor
from ..templating import money
from .base import ReadOnlyModelView, ShopModelView, record_id
from .forms import FitsColumn, MoneyField, Printable, UtcDateTimeField
from .security import request_id, who

# What staff paste into the order search: an order number or a whole email address, found by
# index rather than by reading every order for the text (ShopModelView.exact_search).
ORDER_NUMBER = re.compile(r"(?i)SO-[A-Z0-9]{8}")
WHOLE_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

STATUS_BADGES = {"pending": "warning", "paid": "info", "processing": "primary",
                 "shipped": "primary", "delivered": "success", "cancelled": "secondary",
                 "refunded": "dark"}


def status_badge(status: str) -> Markup:
    return Markup('<span class="badge badge-{}">{}</span>').format(
        STATUS_BADGES.get(status, "light"), STATUS_LABELS.get(status, status))


def _order_number(view, context, model, name) -> Markup:
    return Markup('<a href="{}">{}</a>').format(
        url_for(".details_view", id=model.id), model.number)


# The fields an order's page (admin/order_detail.html) shows a problem beside: a transition's
# carrier and tracking number, a staff note's body.
PLACED_FIELDS = ("carrier", "tracking_number", "note", "body")


class RefundFailedFilter(BaseSQLAFilter):
    """Orders with a card refund that failed after it was made and that staff have not
    settled yet ("Refund failed: action needed")."""

    def apply(self, query, value, alias=None):
        flagged = select(Payment.order_id).where(Payment.refund_failure.is_not(None))
        return query.filter(Order.id.in_(flagged) if value == "yes"
                            else Order.id.not_in(flagged))

    def operation(self):
        return "is"


class OrderView(ReadOnlyModelView):
    """Orders are never created, edited or deleted through a generic form."""

    list_template = "admin/order_list.html"
    details_template = "admin/order_detail.html"
    column_list = ("number", "created_at", "email", "ship_to_name", "status", "total",
                   "payment_method", "shipping_method")
    column_labels = {"created_at": "Placed", "payment_method": "Payment",
                     "shipping_method": "Shipping", "number": "Order",
                     "ship_to_name": "Ship to"}
    column_formatters = {"number": _order_number,
                         "status": lambda v, c, m, n: status_badge(m.status),
                         "total": lambda v, c, m, n: money(m.total, m.currency)}
    column_sortable_list = ("number", "created_at", "email", "status", "total")
    column_searchable_list = ("number", "email", "ship_to_name")
    column_filters = (
        FilterEqual(Order.status, "Status",
                    options=[(s, STATUS_LABELS[s]) for s in ORDER_STATUSES]),
        "created_at", "email",
        RefundFailedFilter(Order.id, "Refund failed", options=[("yes", "yes"), ("no", "no")]),
    )
    column_default_sort = ("created_at", True)
    named_filter_urls = True
    action_disallowed_list = ("delete",)

    def exact_search(self, search: str) -> list | None:
        """An order number (in any capitals) or a whole email finds its orders by index."""
        if ORDER_NUMBER.fullmatch(search):
            return [Order.number == search.upper()]
        if WHOLE_EMAIL.fullmatch(search):
            return [Order.email == normalise_email(search)]
        return None

    def get_one(self, id):
        """The order with its lines, events, payments and shipments; None for anything that is
        not one order's id as the back office writes it (base.record_id: not "1.5", " 15" or
        "+15"; a repeated ?id= arrives as a list, which Flask-Admin passes on)."""
        id = record_id(id)
        if id is None:
            return None
        return db.session.execute(
            select(Order).options(selectinload(Order.lines), selectinload(Order.events),
                                  selectinload(Order.payments), selectinload(Order.shipments),
                                  selectinload(Order.staff_notes))
            .where(Order.id == id)).scalar_one_or_none()

    # Template helpers --------------------------------------------------------------------------

    note_max_length = orders.NOTE_MAX_LENGTH
    settle_note_max_length = payments.SETTLE_NOTE_MAX

    def badge(self, status: str) -> Markup:
        return status_badge(status)

    def actions_for(self, order: Order) -> list[tuple[str, str]]:
        """One button per transition the state machine allows from the order's status."""
        return [(status, ACTION_LABELS[status]) for status in orders.allowed(order.status)]

    def status_links(self) -> list[tuple[str, str, int, bool]]:
        """(label, url, count, current) for the quick status filter above the list."""
        arg = failed_arg = None
        for index, flt in enumerate(self._filters or []):
            if isinstance(flt, FilterEqual) and flt.name == "Status":
                arg = "flt0_" + self.get_filter_arg(index, flt)
            elif isinstance(flt, RefundFailedFilter):
                failed_arg = "flt0_" + self.get_filter_arg(index, flt)
        counts = dict(db.session.execute(select(Order.status, func.count(Order.id))
                                         .group_by(Order.status)).all())
        current = request.args.get(arg or "", "")
        links = [("All", url_for(".index_view"), sum(counts.values()), not current)]
        for status in ORDER_STATUSES:
            links.append((STATUS_LABELS[status], url_for(".index_view", **{arg: status}),
                          counts.get(status, 0), current == status))
        failed = db.session.execute(select(func.count(func.distinct(Payment.order_id)))
                                    .where(Payment.refund_failure.is_not(None))).scalar_one()
        if failed and failed_arg:
            links.append(("Refund failed: action needed",
                          url_for(".index_view", **{failed_arg: "yes"}), failed,
                          request.args.get(failed_arg) == "yes"))
        return links

    # Actions ------------------------------------------------------------------------------------

    @expose(f"/transition/<{ID}:order_id>", methods=("POST",))
    def transition(self, order_id: int):
        """Apply one transition through the payments service and the state machine."""
        order = self.get_one(order_id)
        if order is None:
            abort(404)
        to_status = request.form.get("to_status", "")
        note = request.form.get("note", "").strip()
        carrier = request.form.get("carrier", "")
        tracking = request.form.get("tracking_number", "")
        staff = who()
        try:
            payments.change_status(order_id, to_status, Actor(staff.user_id, staff.email), note,
                                   carrier=carrier, tracking_number=tracking)
        except ValidationError as exc:
            return self._detail_with_errors(order_id, to_status, exc.errors, exc.message, 422)
        except (InvalidTransition, PaymentError) as exc:
            return self._detail_with_errors(order_id, to_status, {}, exc.message, 409)
        except (NotFound, ShopError) as exc:
            return self._detail_with_errors(order_id, to_status, {}, exc.message, 400)
        audit.log_transition(staff, order_id, to_status, note=note, carrier=carrier,
                             tracking_number=tracking, request_id=request_id())
        flash(f"Order {order.number}: {STATUS_LABELS.get(to_status, to_status).lower()}.",
              "success")
        return redirect(url_for(".details_view", id=order_id), 303)

    @expose(f"/refund-settled/<{ID}:order_id>", methods=("POST",))
    def settle_refund(self, order_id: int):
        """Staff paid back another way a customer whose card refund failed: clear the order's
        "Refund failed: action needed" flag (the history keeps who and how)."""
        order = self.get_one(order_id)
        if order is None:
            abort(404)
        note = request.form.get("note", "").strip()
        before = {"refund_failure": [p.refund_failure for p in order.payments
                                     if p.refund_failure]}
        staff = who()
        try:
            payments.settle_refund_failure(order_id, Actor(staff.user_id, staff.email), note)
        except ValidationError as exc:
            return self._detail_with_errors(order_id, "refund-settled", exc.errors,
                                            exc.message, 422)
        except ShopError as exc:
            return self._detail_with_errors(order_id, "refund-settled", {}, exc.message, 409)
        audit.log(staff, "settle_refund_failure", "Order", order_id, before=before,
                  after={"refund_failure": None, **({"note": note} if note else {})},
                  request_id=request_id())
        flash(f"Order {order.number}: failed refund marked settled.", "success")
        return redirect(url_for(".details_view", id=order_id), 303)

    @expose(f"/notes/<{ID}:order_id>", methods=("POST",))
    def add_note(self, order_id: int):
        """Keep an internal remark on the order for other staff (the customer never sees it);
        the service records it in the audit log in the same transaction."""
        order = self.get_one(order_id)
        if order is None:
            abort(404)
        staff = who()
        try:
            orders.add_staff_note(order_id, Actor(staff.user_id, staff.email),
                                  request.form.get("body", ""), request_id=request_id())
        except ValidationError as exc:
            return self._detail_with_errors(order_id, "staff-note", exc.errors,
                                            "The note was not added.", 422)
        except NotFound:
            abort(404)
        flash(f"Order {order.number}: staff note added.", "success")
        return redirect(url_for(".details_view", id=order_id) + "#staff-notes", 303)

    def _detail_with_errors(self, order_id: int, to_status: str, errors: dict, message: str,
                            status: int):
        db.session.rollback()
        order = self.get_one(order_id)
        # A problem with no field of the transition's form to stand beside (a crafted status)
        # is the message itself: "correct the highlighted fields" would highlight nothing.
        unplaced = [text for name, text in errors.items() if name not in PLACED_FIELDS]
        flash(" ".join(unplaced) if unplaced else message, "error")
        return self.render(self.details_template, model=order, return_url=url_for(".index_view"),
                           action_errors={to_status: errors}, action_values=request.form), status

    @expose("/export.csv")
    def export_csv(self):
        """Orders as CSV, optionally by status, placed-on dates (from, to inclusive), email.
        A filter that cannot be read is said so on the order list, and nothing is exported
        (it exported every order, as if the filter had not been given)."""
        args = request.args
        try:
            filters = orders.parse_filters(args.get("status"), args.get("since"),
                                           args.get("until"))
        except ValidationError as exc:
            flash("Nothing exported. " + " ".join(exc.errors.values()), "error")
            return redirect(url_for(".index_view"), 303)
        email = args.get("email") or None
        count, most = product_csv.count_orders(filters, email=email), \
            current_app.config["ORDER_EXPORT_MAX_ROWS"]
        if count > most:
            # Written inside the request: more would be cut off by the workers' timeout,
            # leaving a file that looks whole.
            flash(f"Nothing exported: {count:,} orders match, and one export holds at most "
                  f"{most:,}. Choose a status or fewer days (from, to) and export in parts.",
                  "error")
            return redirect(url_for(".index_view"), 303)
        response = Response(stream_with_context(product_csv.export_orders(
            filters, email=email)), mimetype="text/csv")
        response.headers["Content-Disposition"] = (
            f'attachment; filename="orders-{datetime.now().date().isoformat()}.csv"')
        return response


COUPON_KIND_LABELS = {"percent": "Percent off", "fixed": "Amount off",
                      "free_shipping": "Free shipping"}


def _coupon_value(view, context, model, name) -> str:
    if model.kind == "percent":
        return f"{model.value.normalize():f}%"
    if model.kind == "fixed":
        return money(model.value)
    return "-"


def _remaining(view, context, model, name) -> str:
    return "unlimited" if model.remaining_uses is None else str(model.remaining_uses)


class CouponView(ShopModelView):
    column_list = ("code", "kind", "value", "min_subtotal", "starts_at", "ends_at", "active",
                   "times_used", "usage_limit", "remaining", "per_customer_limit")
    column_labels = {"times_used": "Uses", "usage_limit": "Use limit", "remaining": "Uses left",
                     "per_customer_limit": "Per customer", "min_subtotal": "Minimum",
                     "starts_at": "Starts (UTC)", "ends_at": "Ends (UTC)"}
    column_formatters = {"kind": lambda v, c, m, n: COUPON_KIND_LABELS.get(m.kind, m.kind),
                         "value": _coupon_value, "remaining": _remaining,
                         "min_subtotal": lambda v, c, m, n: money(m.min_subtotal)
                         if m.min_subtotal is not None else "-"}
    column_sortable_list = ("code", "kind", "starts_at", "ends_at", "active", "times_used")
    column_searchable_list = ("code",)
    column_filters = ("active", "kind", "ends_at")
    column_default_sort = ("created_at", True)
    can_view_details = True
    form_columns = ("code", "kind", "value", "min_subtotal", "starts_at", "ends_at",
                    "usage_limit", "per_customer_limit", "active")
    form_overrides = {"value": MoneyField, "min_subtotal": MoneyField,
                      "kind": fields.SelectField, "starts_at": UtcDateTimeField,
                      "ends_at": UtcDateTimeField}
    form_args = {
        "code": {"validators": [InputRequired("Enter a code."), Length(max=40), Printable()],
                 "description": "Shoppers type it in any case; it is stored in capitals."},
        "kind": {"choices": [(k, COUPON_KIND_LABELS[k]) for k in COUPON_KINDS]},
        "value": {"label": "Value",
                  "description": "Percent (e.g. 10) or an amount; leave empty for free "
                                 "shipping."},
        "min_subtotal": {"label": "Minimum subtotal", "price": True},
        "starts_at": {"label": "Starts (UTC)", "validators": [Optional()],
                      "description": "A date and a time such as 2030-12-24 09:00. Empty: "
                                     "from now on."},
        "ends_at": {"label": "Ends (UTC)", "validators": [Optional()],
                    "description": "A date and a time such as 2030-12-31 23:59. Empty: "
                                   "no end."},
        "usage_limit": {"label": "Total use limit",
                        "validators": [Optional(), NumberRange(1, None, "At least 1, or empty."),
                                       FitsColumn()],
                        "description": "Empty: unlimited."},
        "per_customer_limit": {"label": "Uses per customer",
                               "validators": [Optional(),
                                              NumberRange(1, None, "At least 1, or empty."),
                                              FitsColumn()],
                               "description": "Empty: unlimited."},
    }
    checked_unique = ("code",)
    # The home page offers the welcome coupon while it can be used (coupons.offer): a cached
    # home page must not keep offering one staff have just switched off.
    changes_catalog = True
    integrity_message = "That code is already used by another coupon."
    delete_integrity_message = "This coupon is still referenced, so it cannot be deleted."

    def check(self, form, model, is_created: bool) -> None:
        errors: dict[str, str] = {}
        currency = current_app.config["CURRENCY"]
        model.code = normalise_code(model.code)
        if not model.code or " " in model.code:
            errors["code"] = "Enter a code without spaces."
        elif (taken := coupons.find(model.code)) is not None and taken is not model:
            # Codes are stored in capitals: "summer25" is SUMMER25's code (the database only
            # refused it at the INSERT, with a message that named no field).
            errors["code"] = f"The coupon {taken.code} already has this code."
        # The value as typed: "10.999" was saved as 11.00 without a word.
        typed = getattr(form.value, "typed", None)
        if typed is None:
            typed = model.value
        if model.kind == "free_shipping" and model.value is None:
            model.value = Decimal("0")  # a free-shipping coupon has no value of its own
        if model.kind not in COUPON_KINDS:
            errors["kind"] = "Choose a kind."
        elif model.value is None:
            errors["value"] = ("Enter a percentage such as 10." if model.kind == "percent"
                               else "Enter an amount such as 24.99.")
        elif model.kind == "percent" and not 0 < model.value <= 100:
            errors["value"] = "A percentage must be more than 0 and at most 100."
        elif model.kind == "percent" and typed != model.value:
            errors["value"] = "A percentage has at most 2 decimals, such as 12.5."
        elif model.kind == "fixed" and model.value <= 0:
            errors["value"] = "Enter an amount above zero."
        elif model.kind == "fixed" and (problem := product_csv.price_problem(typed, currency)):
            errors["value"] = problem  # no fraction of a cent, or of a yen in JPY
        if model.starts_at and model.ends_at and model.ends_at <= model.starts_at:
            errors["ends_at"] = "The end must be after the start."
        used = model.times_used or 0
        if model.usage_limit is not None and not is_created and model.id is not None:
            # Read locked: a checkout using the coupon now holds its row and counts one more
            # use on commit. Read plainly, the count was the one before it, and the save then
            # met the database's own check (a "something went wrong" page and a traceback).
            used = db.session.execute(select(Coupon.times_used).where(Coupon.id == model.id)
                                      .with_for_update()).scalar_one()
        if model.usage_limit is not None and model.usage_limit < used:
            errors["usage_limit"] = (f"It has been used {used} times already; "
                                     "the limit cannot be lower.")
        if errors:
            raise ValidationError(errors)

    def before_delete(self, model) -> None:
        if model.times_used:
            raise ShopError("This coupon has been used; deactivate it instead, so its history "
                            "stays with the orders.")
