"""Domain errors, in one module. HTML shows them next to a field or as a message; the API maps
`kind` to a status (invalid 422, conflict 409, not_found 404, forbidden 403) and `code` to the
error envelope's code."""
from __future__ import annotations

from typing import Any


class ShopError(Exception):
    """A business rule refused an action; nothing was changed."""

    code = "error"
    kind = "invalid"

    def __init__(self, message: str, *, field: str | None = None,
                 details: dict[str, Any] | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details or {}
        if code:
            self.code = code


class ValidationError(ShopError):
    """Input that cannot be accepted; `errors` maps field names to messages."""

    code = "validation_error"
    # Said on a page, where the fields are marked; the API says it in its own words.
    DEFAULT_MESSAGE = "Please correct the highlighted fields."

    def __init__(self, errors: dict[str, str], message: str | None = None) -> None:
        super().__init__(message or self.DEFAULT_MESSAGE, details={"fields": errors})
        self.errors = errors


class NotFound(ShopError):
    code = "not_found"
    kind = "not_found"


class Forbidden(ShopError):
    code = "forbidden"
    kind = "forbidden"


class OutOfStock(ShopError):
    code = "out_of_stock"
    kind = "conflict"


class LineLimit(ShopError):
    """An add that would take a cart line past the units a line may hold (MAX_LINE_QUANTITY):
    the request is valid and the cart's rule refuses it, as it refuses more than the stock."""

    code = "line_limit"
    kind = "conflict"


class StockCountChanged(ShopError):
    """Staff's change of a count was worked out from a figure that staff changed since (the
    same form sent twice, or two people counting at once): applying it would count twice."""

    code = "stock_changed"
    kind = "conflict"


class InUse(ShopError):
    """A record that orders or reviews refer to cannot be deleted (a product, a variant):
    it is deactivated instead, so its history stays whole."""

    code = "in_use"
    kind = "conflict"


class CouponInvalid(ShopError):
    """The code names no coupon the shop offers; the base of every coupon that does not apply."""

    code = "coupon_invalid"
    kind = "invalid"


class CouponInactive(CouponInvalid):
    """Switched off by staff. The pages say so; the API answers it as an unknown code
    (`coupons.unknown_code`), so switching a coupon off does not reveal that it exists."""

    code = "coupon_inactive"


class CouponNotApplicable(CouponInvalid):
    """A live coupon that a rule rules out now: not started yet, expired, or the subtotal is
    below its minimum. The request was valid (SPEC section 7: 409)."""

    kind = "conflict"


class CouponUsedUp(ShopError):
    """Valid, but its total or per-customer limit is reached."""

    code = "coupon_used_up"
    kind = "conflict"


class CartEmpty(ShopError):
    code = "cart_empty"
    kind = "conflict"


class CartChanged(ShopError):
    """The cart or its prices changed after the shopper reviewed the order."""

    code = "cart_changed"
    kind = "conflict"


class OrderTooLarge(ShopError):
    """A cart whose line or order total is more than an order can hold (money.MAX_AMOUNT)."""

    code = "order_too_large"
    kind = "invalid"


class InvalidTransition(ShopError):
    code = "invalid_transition"
    kind = "conflict"


class IdempotencyConflict(ShopError):
    """The same Idempotency-Key is still being served."""

    code = "idempotency_in_progress"
    kind = "conflict"


class IdempotencyMismatch(ShopError):
    """The same Idempotency-Key was used with another body."""

    code = "idempotency_key_reused"
    kind = "invalid"


class PaymentError(ShopError):
    code = "payment_error"
    kind = "conflict"


class AuthError(ShopError):
    code = "invalid_credentials"
    kind = "unauthorized"
