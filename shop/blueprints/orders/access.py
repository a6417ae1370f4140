"""Loading an order for the current visitor, for every page that shows or pays one."""
from __future__ import annotations

from flask import abort, request
from flask_login import current_user

from ...models import Order
from ...services import orders
from ...services.errors import NotFound


def order_for_visitor(number: str) -> tuple[Order, str | None]:
    """The order and the signed link token to keep in its links; anyone who may not see it gets
    the same 404 as for an order that does not exist."""
    try:
        order = orders.load(number)
    except NotFound:
        abort(404, description="That order does not exist.")
    token = request.args.get("token")
    user_id = current_user.id if current_user.is_authenticated else None
    is_staff = bool(current_user.is_authenticated and current_user.is_staff)
    if not orders.viewable(order, user_id, is_staff, token):
        abort(404, description="That order does not exist.")
    return order, (orders.guest_link_token(order) if token else None)
