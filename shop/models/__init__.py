"""The domain model (SPEC section 3); one module per domain."""
from .audit import AuditLog
from .base import utcnow
from .cart import Cart, CartLine
from .catalog import (
    CatalogState,
    Category,
    Product,
    ProductImage,
    SearchPosting,
    SearchTerm,
    StockAdjustment,
    Variant,
)
from .coupon import COUPON_KINDS, Coupon, CouponUse
from .customer import ADDRESS_FIELDS, ROLES, Address, ApiToken, EndedLogin, User
from .order import (
    ORDER_STATUSES,
    IdempotencyRecord,
    Order,
    OrderEvent,
    OrderLine,
    OrderNote,
    Shipment,
)
from .payment import PAYMENT_STATUSES, Payment, ProviderEvent
from .review import REVIEW_STATUSES, Review

__all__ = [
    "ADDRESS_FIELDS", "COUPON_KINDS", "ORDER_STATUSES", "PAYMENT_STATUSES", "REVIEW_STATUSES",
    "ROLES", "Address", "ApiToken", "AuditLog", "Cart", "CartLine", "CatalogState", "Category",
    "Coupon", "CouponUse", "EndedLogin", "IdempotencyRecord", "Order", "OrderEvent", "OrderLine",
    "OrderNote", "Payment",
    "Product", "ProductImage", "ProviderEvent", "Review", "SearchPosting", "SearchTerm", "Shipment",
    "StockAdjustment", "User", "Variant", "utcnow",
]
