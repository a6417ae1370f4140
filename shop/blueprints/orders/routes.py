"""Order confirmation and status: for its owner, staff, or whoever holds the signed link."""
from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask_login import current_user

from ...services import orders
from ...services.errors import NotFound

bp = Blueprint("orders", __name__, url_prefix="/orders")


@bp.get("/<number>")
def detail(number: str):
    """One order. Anyone else gets the same 404 as for an order that does not exist."""
    try:
        order = orders.load(number)
    except NotFound:
        abort(404, description="That order does not exist.")
    token = request.args.get("token")
    is_owner = current_user.is_authenticated and order.user_id == current_user.id
    is_staff = current_user.is_authenticated and current_user.is_staff
    if not (is_owner or is_staff or orders.check_guest_token(number, token)):
        abort(404, description="That order does not exist.")
    link = orders.guest_link_token(order) if token else None
    return render_template("orders/detail.html", order=order, guest_token=link,
                           status_labels=orders.STATUS_LABELS)
