"""Pydantic models of the API's requests and responses (SPEC section 7).

Request models validate bodies and query strings; response models shape every answer. The
same classes generate /api/v1/openapi.json (openapi.py), so the document cannot drift from
the code. Request bodies are strict JSON: unknown fields and wrong types are refused.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import PydanticCustomError

from ...models import ORDER_STATUSES, PAYMENT_STATUSES, ROLES
from ...models.base import MAX_ID
from ...services import accounts, addresses, catalog, pricing
from ...services.checkout import PAYMENT_METHODS

MAX_QUANTITY = 99


def _whole_number(value: Any) -> Any:
    """A JSON number with no fraction (79.0, 1e2) is an integer, as JSON Schema counts it
    (OpenAPI 3.1); strings, booleans and fractions stay refused by the strict int."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


def whole_number(low: int, high: int, message: str | None = None) -> Any:
    """An integer from `low` to `high`, refused in words that say both bounds ("Enter a
    whole number from 1 to 99.", as the cart page says it): pydantic named one bound or the
    type ("Input should be less than or equal to 99", "Input should be a valid integer").

    The document says "integer", so 79.0 must pass too (_whole_number). The bounds come first:
    pydantic then sets them on the integer's own schema, which the document shows as JSON
    Schema's `minimum`/`maximum`. Set after a validator (`Field(ge=...)` on the annotated
    type), they were copied into the document as pydantic's `ge`/`le`, which no client or
    validator reads."""
    text = message or f"Enter a whole number from {low} to {high}."

    def check(value: Any, handler: ValidatorFunctionWrapHandler) -> int:
        try:
            return handler(_whole_number(value))
        except PydanticValidationError:
            raise PydanticCustomError("whole_number", text) from None

    return Annotated[int, Field(ge=low, le=high), WrapValidator(check)]


# Integers in a request body (strict: "2" and true are refused) or a query string.
Quantity = whole_number(1, MAX_QUANTITY)
VariantId = whole_number(1, MAX_ID, "Enter a variant's id, a whole number from 1 "
                                    f"to {MAX_ID}.")

Money = Annotated[str, Field(
    pattern=r"^[0-9]+(\.[0-9]{2})?$", examples=["12.50", "1081"],
    description="An amount in the shop's currency, as a string: two decimals (\"12.50\"), "
                "none in a zero-decimal currency such as JPY (\"1081\").")]
MoneyInput = Annotated[str, Field(pattern=r"^[0-9]{1,10}(\.[0-9]{1,2})?$", examples=["49.90"])]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", examples=["USD"])]
ShippingMethod = Literal[pricing.SHIPPING_METHODS]  # type: ignore[valid-type]
PaymentMethod = Literal[PAYMENT_METHODS]  # type: ignore[valid-type]
OrderStatus = Literal[ORDER_STATUSES]  # type: ignore[valid-type]
Sort = Literal[catalog.SORTS]  # type: ignore[valid-type]
IdempotencyKey = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7E]{1,100}$")]


class Body(BaseModel):
    """A JSON request body: strict types, no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Query(BaseModel):
    """Query-string parameters: text converted to numbers and booleans; others ignored, and an
    empty one (`?sort=`) counts as absent, as on the pages."""

    model_config = ConfigDict(extra="ignore")


class Out(BaseModel):
    """A response shape; the document says exactly these fields."""

    model_config = ConfigDict(extra="forbid")


# Requests -----------------------------------------------------------------------------------

class RegisterBody(Body):
    """The lengths are documented here and checked by accounts.register, as for the page: its
    messages ("Use at least 10 characters.") and every problem at once (a taken email and a
    short password both). Checked here, pydantic's own words came back, and only its problems
    (the taken email went unsaid until the password was fixed)."""

    email: str = Field(json_schema_extra={"maxLength": 254}, examples=["ada@example.com"])
    password: str = Field(json_schema_extra={"minLength": accounts.MIN_PASSWORD,
                                             "maxLength": accounts.MAX_PASSWORD})
    name: str = Field("", json_schema_extra={"maxLength": 120})


class TokenBody(Body):
    email: str = Field(max_length=254, examples=["ada@example.com"])
    password: str = Field(max_length=accounts.MAX_PASSWORD)
    name: str = Field("", max_length=120, description="A label for the token, e.g. the app.")


class CartItemBody(Body):
    """Give `variant_id` or `sku` (not both)."""

    variant_id: VariantId | None = None
    sku: str | None = Field(None, min_length=1, max_length=64)
    quantity: Quantity = 1


class CartLineBody(Body):
    quantity: Quantity


class CouponBody(Body):
    code: str = Field(min_length=1, max_length=40, examples=["WELCOME10"])


def _text(name: str, required: bool):
    """An address field's lengths, documented here and checked by addresses.clean as the
    checkout page checks them: once the spaces are dropped, in the page's words, with every
    other problem of the address at once."""
    lengths = {"minLength": 1} if required else {}
    lengths["maxLength"] = addresses.LIMITS[name]
    if required:
        return Field(json_schema_extra=lengths)
    return Field("", json_schema_extra=lengths)


class AddressBody(Body):
    name: str = _text("name", True)
    line1: str = _text("line1", True)
    line2: str = _text("line2", False)
    city: str = _text("city", True)
    region: str = _text("region", False)
    postal_code: str = _text("postal_code", True)
    country: str = Field(pattern=r"^[A-Za-z]{2}$", examples=["GB"],
                         description="ISO 3166-1 alpha-2 code.")
    phone: str = _text("phone", False)


class OrderBody(Body):
    shipping_address: AddressBody
    billing_address: AddressBody | None = None
    shipping_method: ShippingMethod = "standard"
    payment_method: PaymentMethod = "manual"
    expected_total: MoneyInput | None = Field(
        None, description="The total the customer saw; a different total now answers 409.")


class TrackingBody(Body):
    carrier: str = Field(min_length=1, max_length=80)
    tracking_number: str = Field(min_length=1, max_length=120)


class OrderPatchBody(Body):
    """`tracking` is required when the new status is `shipped`."""

    status: OrderStatus
    tracking: TrackingBody | None = None
    note: str = Field("", max_length=2000)


# Said as the /products page says them.
PageNumber = whole_number(1, catalog.MAX_PAGE,
                          f"page must be a whole number from 1 to {catalog.MAX_PAGE}.")
PageSize = whole_number(1, catalog.MAX_PER_PAGE,
                        f"per_page must be a whole number from 1 to {catalog.MAX_PER_PAGE}.")


def _as_page_reads(schema: dict[str, Any]) -> Any:
    """A /products filter the API takes as text and catalog.parse_filters reads, as the page
    reads it; `schema` is what the document says it is."""
    def document(prop: dict[str, Any]) -> None:
        prop.clear()
        prop.update(schema)

    return Field(None, json_schema_extra=document)


class ProductQuery(Query):
    q: str = Field("", max_length=200, description="Search words.")
    category: str = Field("", max_length=120, description="A category slug; "
                                                          "includes its subcategories.")
    # Checked by catalog.parse_filters, as on the page: the same rule and the same message.
    min_price: str | None = Field(None, description="The lowest price, such as 10 or 24.99.",
                                  examples=["10"])
    max_price: str | None = Field(None, description="The highest price, such as 10 or 24.99.",
                                  examples=["24.99"])
    # Also read by catalog.parse_filters, as text: pydantic read "1_0" as page 10 and "+2" as
    # 2, took "t" for true and refused " price", where the page does the opposite, each in
    # other words. The document gives their types.
    in_stock: str | None = _as_page_reads({"type": "boolean", "default": False})
    sort: str | None = _as_page_reads({"type": "string", "enum": list(catalog.SORTS),
                                       "default": "relevance"})
    page: str | None = _as_page_reads({"type": "integer", "minimum": 1,
                                       "maximum": catalog.MAX_PAGE, "default": 1})
    per_page: str | None = _as_page_reads({"type": "integer", "minimum": 1,
                                           "maximum": catalog.MAX_PER_PAGE, "default": 24})


class PageQuery(Query):
    page: PageNumber = 1
    per_page: PageSize = 24


class OrderQuery(PageQuery):
    status: OrderStatus | None = Field(None, description="Only orders in this status.")
    # Read by orders.parse_filters, as the back office's order export reads them.
    since: str | None = Field(None, examples=["2026-12-01"],
                              json_schema_extra={"format": "date"},
                              description="Only orders placed on this UTC day or later "
                                          "(YYYY-MM-DD).")
    until: str | None = Field(None, examples=["2026-12-31"],
                              json_schema_extra={"format": "date"},
                              description="Only orders placed on this UTC day or earlier "
                                          "(YYYY-MM-DD).")
    cursor: str | None = Field(
        None, max_length=100,
        description="The page after the one whose `next_cursor` this is (the same filters). "
                    "As fast at any depth, where `page` reads every order before its page; "
                    "not with `page`.")


class CartQuery(Query):
    shipping_method: ShippingMethod = Field("standard", description="For the shipping estimate.")


# Responses ----------------------------------------------------------------------------------

class Page(Out):
    page: int
    per_page: int
    total: int
    pages: int


class CategoryRef(Out):
    slug: str
    name: str


class Image(Out):
    url: str
    alt: str


class Rating(Out):
    # An average of 1-5 stars is a plain number (it is not money); null without reviews.
    average: float | None
    count: int


class VariantOut(Out):
    id: int
    sku: str
    options: dict[str, str] = Field(examples=[{"size": "M", "colour": "Blue"}])
    price: Money
    compare_at_price: Money | None
    stock_quantity: int
    in_stock: bool


class ProductOut(Out):
    id: int
    slug: str
    name: str
    description: str
    url: str
    category: CategoryRef | None
    images: list[Image]
    price: Money = Field(description="The lowest variant price.")
    currency: Currency
    in_stock: bool
    rating: Rating
    variants: list[VariantOut]


class ProductList(Page):
    items: list[ProductOut]


class CategoryOut(Out):
    id: int
    slug: str
    name: str
    description: str
    children: list[CategoryOut]


class CategoryTree(Page):
    """The whole tree on one page (`total`: the top-level categories), in the shape of every
    list, so a client that pages through lists reads it as it reads the others."""

    items: list[CategoryOut]


class UserOut(Out):
    id: int
    email: str
    name: str
    role: Literal[ROLES]  # type: ignore[valid-type]


class TokenOut(Out):
    token: str = Field(description="Send it as `Authorization: Bearer <token>`. Shown once.")
    expires_at: AwareDatetime
    id: int
    name: str


class CartLineOut(Out):
    id: int
    variant_id: int
    sku: str
    name: str
    options: dict[str, str]
    quantity: int
    unit_price: Money
    line_total: Money
    stock_quantity: int
    problem: str | None = Field(description="Why the line cannot be ordered as it is.")


class CartOut(Out):
    items: list[CartLineOut]
    item_count: int
    coupon: str | None
    coupon_message: str | None = Field(description="Why the coupon does not apply now.")
    subtotal: Money
    discount: Money
    shipping: Money
    tax: Money
    total: Money
    currency: Currency
    shipping_method: ShippingMethod


class AddressOut(Out):
    name: str
    line1: str
    line2: str
    city: str
    region: str
    postal_code: str
    country: str
    phone: str


class OrderLineOut(Out):
    sku: str
    name: str
    options: dict[str, str]
    unit_price: Money
    quantity: int
    line_total: Money


class ShipmentOut(Out):
    carrier: str
    tracking_number: str


class EventOut(Out):
    status: OrderStatus
    from_status: OrderStatus | None
    at: AwareDatetime
    note: str


class RefundFailureOut(Out):
    message: str = Field(description="What failed, as the back office shows it: the amount, "
                                     "Stripe's reason and the refund's id.")
    at: AwareDatetime = Field(description="When the shop recorded the failure.")


class OrderOut(Out):
    number: str
    status: OrderStatus
    email: str
    lines: list[OrderLineOut]
    subtotal: Money
    discount: Money
    shipping: Money
    tax: Money
    total: Money
    currency: Currency
    coupon: str | None
    shipping_address: AddressOut
    billing_address: AddressOut
    shipping_method: ShippingMethod
    payment_method: PaymentMethod
    payment_status: Literal[PAYMENT_STATUSES] | None  # type: ignore[valid-type]
    refund_failure: RefundFailureOut | None = Field(
        description="A refund that Stripe accepted and then could not pay out (the card was "
                    "closed, lost...): the money is back in the shop's balance and the customer "
                    "has not been paid back; staff will refund them another way. `status` and "
                    "`payment_status` stay as they were (`refunded` after a full refund). Null "
                    "when no refund failed, or once staff have settled it.")
    shipment: ShipmentOut | None
    created_at: AwareDatetime
    events: list[EventOut]


class PlacedOrderOut(OrderOut):
    payment_url: str | None = Field(
        description="Where the customer pays (Stripe's page); null for manual payment, or "
                    "when Stripe could not be reached just then (ask for it again with POST "
                    "/api/v1/orders/{number}/payment).")


class PaymentLinkOut(Out):
    payment_url: str = Field(description="Stripe's hosted page where the customer pays: the "
                                         "order's open Checkout Session, or a new one.")


class OrderList(Page):
    items: list[OrderOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page.")


class ErrorBody(Out):
    code: str = Field(examples=["out_of_stock"])
    message: str
    details: dict[str, Any]


class ErrorOut(Out):
    """The error envelope of every 4xx answer."""

    error: ErrorBody
