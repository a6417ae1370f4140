"""Order confirmation and status: for its owner, staff, or whoever holds the signed link."""
from __future__ import annotations

from flask import Blueprint, render_template

from ...http import personal
from ...services import orders
from .access import order_for_visitor

bp = Blueprint("orders", __name__, url_prefix="/orders")
bp.after_request(personal)


@bp.get("/<number>")
def detail(number: str):
    """One order. Anyone else gets the same 404 as for an order that does not exist."""
    order, link = order_for_visitor(number)
    return render_template("orders/detail.html", order=order, guest_token=link,
                           status_labels=orders.STATUS_LABELS)
