"""The JSON API v1 (SPEC section 7). Each endpoint parses its input with a declared model,
calls the same service as the pages, and answers with a declared response model."""
from __future__ import annotations

import json
from decimal import Decimal

from flask import Response, current_app, g, request, url_for
from flask_login import current_user
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticError

from ...extensions import client_address, limiter
from ...http import current_request_id
from ...models import User
from ...services import (
    accounts,
    api_tokens,
    audit,
    catalog,
    checkout,
    idempotency,
    orders,
    payments,
)
from ...services import cart as cart_service
from ...services.cart import CartOwner
from ...services.errors import AuthError, NotFound, ShopError, ValidationError
from ...services.orders import Actor
from ..limits import (
    COUPONS_SCOPE,
    LOGIN_ACCOUNT_SCOPE,
    LOGIN_ADDRESS_SCOPE,
    REGISTER_SCOPE,
    coupon_refused,
    coupons_limit,
    limit_orders,
)
from . import schemas as s
from . import serializers
from .auth import bearer_token, login_account_key, login_failed, login_limit, register_limit, state
from .errors import ApiError
from .operations import operation, respond

CATALOG, AUTH, CART, ORDERS, META = "Catalogue", "Authentication", "Cart", "Orders", "Meta"
# A plain int: the cart service finds no line past MAX_ID. With int(max=...), Werkzeug refused
# such an id only after noting the other method's rule, and DELETE answered 405 "Allow: PATCH".
ID = "int"
KEY = TypeAdapter(s.IdempotencyKey)
IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "schema": KEY.json_schema(),
    "description": "Any unique string (e.g. a UUID). Repeating the request with the same key "
                   "and body answers the first response again (same status, same order) and "
                   "places nothing twice; the same key with another body is 422; while the "
                   "first request is still running, 409. Refused requests (4xx) do not use "
                   "up the key.",
}
# A 201 names what it created (RFC 9110 15.3.2): here the URL to GET the new order.
LOCATION_HEADER = {"Location": {
    "description": "The new order's URL in this API, `/api/v1/orders/{number}` (GET it to "
                   "read the order); a replay of the Idempotency-Key names the same order.",
    "required": True, "schema": {"type": "string", "format": "uri-reference"}}}
# The same buckets as the HTML login (its shared scopes, same keys) and registration (its
# endpoint's scope): failing or registering on one door counts on the other.
LOGIN_LIMITS = (
    limiter.shared_limit(login_limit, scope=LOGIN_ADDRESS_SCOPE, key_func=client_address,
                         deduct_when=login_failed, override_defaults=False),
    limiter.shared_limit(login_limit, scope=LOGIN_ACCOUNT_SCOPE, key_func=login_account_key,
                         deduct_when=login_failed, override_defaults=False),
)
REGISTER_LIMITS = (
    limiter.shared_limit(register_limit, scope=REGISTER_SCOPE, key_func=client_address,
                         override_defaults=False),
)
# The cart page's bucket: coupon codes refused for one address, through either door.
COUPON_LIMITS = (
    limiter.shared_limit(coupons_limit, scope=COUPONS_SCOPE, key_func=client_address,
                         deduct_when=coupon_refused, override_defaults=False),
)
def _retrying_a_placed_order() -> bool:
    """The request repeats an order this user placed with its Idempotency-Key: its answer is
    the first one again, placing nothing, so no orders limit stands in the way. A client
    whose answer was lost (what the key is for) got 429 once the address's limit was used
    up, with the order placed."""
    key = request.headers.get("Idempotency-Key")
    if not key or len(key) > 100:
        return False
    token = bearer_token()
    user_id = token.user_id if token is not None else (
        current_user.id if current_user.is_authenticated else None)
    return user_id is not None and checkout.placed_with_key(f"api:{user_id}:{key}")


# The checkout page's bucket: orders placed from one address, through either door.
ORDER_LIMITS = (
    limit_orders(exempt_when=_retrying_a_placed_order, override_defaults=False),
)


def owner(user: User) -> CartOwner:
    """The API's cart belongs to the token's user (there are no guest API carts)."""
    return CartOwner(user_id=user.id)


# Catalogue ----------------------------------------------------------------------------------

@operation("/v1/products", "GET", summary="List products", tag=CATALOG, query=s.ProductQuery,
           response=s.ProductList, response_description="One page of active products.")
def list_products(query: s.ProductQuery) -> s.ProductList:
    """The same filters, sorting and pagination as the /products page: an empty parameter
    counts as absent, and a bad price has the page's message. An unknown category slug is
    422."""
    args = {"q": query.q, "category": query.category, "min_price": query.min_price or "",
            "max_price": query.max_price or "", "in_stock": query.in_stock or "",
            "sort": query.sort or "", "page": query.page or "", "per_page": query.per_page or ""}
    filters, problems = catalog.parse_filters(args)
    if problems:
        raise ValidationError(problems)
    page = catalog.list_products(filters)
    items = catalog.product_details([card.id for card in page.items])
    return serializers.product_list(items, catalog.category_tree(), page.page, page.per_page,
                                    page.total)


@operation("/v1/products/<key>", "GET", summary="Get a product", tag=CATALOG,
           response=s.ProductOut, response_description="The product with its variants.")
def get_product(key: str) -> s.ProductOut:
    """A product by numeric id or by slug."""
    if key.isdigit() and not (key.isascii() and len(key) <= 10 and int(key) <= s.MAX_ID):
        raise NotFound("That product does not exist or is no longer sold.")
    tree, item = catalog.with_current_tree(lambda tree: catalog.find_product(key),
                                           lambda item: item.tree_revision)
    return serializers.product(item, tree)


@operation("/v1/categories", "GET", summary="The category tree", tag=CATALOG,
           response=s.CategoryTree, response_description="Top-level categories, each with "
                                                          "its children.")
def list_categories() -> s.CategoryTree:
    """Every category as a tree, in the shop's order."""
    tree = catalog.category_tree()
    items = [serializers.category(node) for node in tree.roots]
    # No category at all is an empty list like any other: no page, the default page size.
    return s.CategoryTree(items=items, page=1,
                          per_page=len(items) or s.PageQuery.model_fields["per_page"].default,
                          total=len(items), pages=1 if items else 0)


# Authentication -----------------------------------------------------------------------------

@operation("/v1/auth/register", "POST", summary="Create a customer account", tag=AUTH,
           body=s.RegisterBody, status=201, response=s.UserOut,
           response_description="The new account.", limits=REGISTER_LIMITS)
def register(body: s.RegisterBody) -> s.UserOut:
    """Register with email, password and name (the same rules as the page). Then ask for a
    token with POST /api/v1/auth/token."""
    return serializers.user(accounts.register(body.email, body.password, body.name))


@operation("/v1/auth/token", "POST", summary="Get a bearer token", tag=AUTH, body=s.TokenBody,
           status=201, response=s.TokenOut, response_description="The token (shown once).",
           errors={401: "Wrong email or password."}, limits=LOGIN_LIMITS)
def create_token(body: s.TokenBody) -> s.TokenOut:
    """Exchange email and password for a bearer token that expires after API_TOKEN_DAYS.
    Failed attempts count towards the same limits as the login page."""
    try:
        user = accounts.authenticate(body.email, body.password)
    except AuthError:
        state()["login_failed"] = True
        raise
    record, raw = api_tokens.create(user.id, body.name)
    return serializers.token(record, raw)


@operation("/v1/auth/token", "DELETE", summary="Revoke the token", tag=AUTH, auth="token",
           status=204, response_description="Revoked; the token no longer works.")
def revoke_token(user: User) -> None:
    """Revoke the bearer token sent with this request (log out an app)."""
    token = bearer_token()
    api_tokens.revoke(user.id, token.id)
    return None


# Cart ---------------------------------------------------------------------------------------

def _cart(user: User, shipping_method: str = "standard") -> s.CartOut:
    return serializers.cart(cart_service.view(owner(user), shipping_method))


@operation("/v1/cart", "GET", summary="The cart", tag=CART, auth="user", query=s.CartQuery,
           response=s.CartOut, response_description="The cart, priced now.")
def get_cart(user: User, query: s.CartQuery) -> s.CartOut:
    """The user's cart priced as the cart page prices it (`shipping_method` for the estimate)."""
    return _cart(user, query.shipping_method)


@operation("/v1/cart/items", "POST", summary="Add to the cart", tag=CART, auth="user",
           body=s.CartItemBody, response=s.CartOut, response_description="The updated cart.",
           errors={409: "Not enough stock (`out_of_stock`: details.available says how many "
                        "are left), or the line would hold more than 99 (`line_limit`: "
                        "details.in_cart says how many it holds)."})
def add_cart_item(user: User, body: s.CartItemBody) -> s.CartOut:
    """Add a variant by `variant_id` or `sku`. Adding one already in the cart adds to its
    line; a line holds 1 to 99 and no more than the stock. An unknown variant or SKU is 422."""
    if (body.variant_id is None) == (body.sku is None):
        raise ValidationError({"variant_id": "Give either variant_id or sku (not both)."})
    cart_service.add_item(owner(user), body.quantity, variant_id=body.variant_id, sku=body.sku)
    return _cart(user)


@operation(f"/v1/cart/items/<{ID}:line_id>", "PATCH", summary="Change a line's quantity",
           tag=CART, auth="user", body=s.CartLineBody, response=s.CartOut,
           response_description="The updated cart.", errors={409: "Not enough stock."})
def update_cart_item(user: User, line_id: int, body: s.CartLineBody) -> s.CartOut:
    """Set the quantity of one of the user's cart lines (1 to 99, at most the stock)."""
    cart_service.update_line(owner(user), line_id, body.quantity)
    return _cart(user)


@operation(f"/v1/cart/items/<{ID}:line_id>", "DELETE", summary="Remove a line", tag=CART,
           auth="user", response=s.CartOut, response_description="The updated cart.")
def delete_cart_item(user: User, line_id: int) -> s.CartOut:
    """Take one of the user's lines out of the cart."""
    cart_service.remove_line(owner(user), line_id)
    return _cart(user)


@operation("/v1/cart/coupon", "POST", summary="Apply a coupon", tag=CART, auth="user",
           body=s.CouponBody, response=s.CartOut, response_description="The updated cart.",
           errors={409: "A rule blocks the coupon: it has expired or has not started yet, "
                        "the cart is below its minimum, or it is used up (in total or for "
                        "this customer).",
                   422: "No such coupon (an inactive one answers the same), or a field is "
                        "invalid.",
                   429: "Too many coupon codes refused for this address lately "
                        "(SHOP_RATELIMIT_COUPONS, shared with the cart page)."},
           limits=COUPON_LIMITS)
def apply_coupon(user: User, body: s.CouponBody) -> s.CartOut:
    """Apply a coupon code (case-insensitive) to the cart."""
    try:
        cart_service.apply_coupon(owner(user), body.code)
    except ShopError:
        g.coupon_refused = True  # counts towards the coupons limit (guessing)
        raise
    return _cart(user)


@operation("/v1/cart/coupon", "DELETE", summary="Remove the coupon", tag=CART, auth="user",
           response=s.CartOut, response_description="The updated cart.")
def remove_coupon(user: User) -> s.CartOut:
    """Remove the cart's coupon (nothing happens when there is none)."""
    cart_service.remove_coupon(owner(user))
    return _cart(user)


# Orders -------------------------------------------------------------------------------------

@operation("/v1/orders", "POST", summary="Place an order from the cart", tag=ORDERS,
           auth="user", body=s.OrderBody, status=201, response=s.PlacedOrderOut,
           response_description="The order, with `payment_url` (Stripe's payment page, or "
                                "null for manual payment or while Stripe cannot be "
                                "reached).",
           headers=[IDEMPOTENCY_HEADER], response_headers=LOCATION_HEADER,
           errors={409: "The cart is empty, an item is out of stock, a rule blocks the "
                        "coupon (expired, not started, below its minimum, used up), the total "
                        "differs from expected_total, or the same Idempotency-Key is still "
                        "being processed.",
                   422: "A field is invalid (e.g. an unknown country), the payment method is "
                        "not available, the cart's coupon no longer exists (or is inactive), "
                        "or the Idempotency-Key was used with another body.",
                   429: "Too many orders placed from this address lately "
                        "(SHOP_RATELIMIT_ORDERS, shared with the checkout page)."},
           limits=ORDER_LIMITS)
def create_order(user: User, body: s.OrderBody) -> Response:
    """Check out the user's cart: the server prices it again, takes the stock and records the
    coupon use in one transaction. Send an `Idempotency-Key` to retry safely."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return _created(_place(user, body, None))
    try:
        KEY.validate_python(key)
    except PydanticError:
        raise ApiError(422, "validation_error", "The Idempotency-Key header is not valid.",
                       {"fields": {"Idempotency-Key": "Use 1 to 100 visible ASCII characters."}}
                       ) from None
    scope = f"api-orders:{user.id}"
    stored = idempotency.begin(scope, key, idempotency.request_hash(body.model_dump(mode="json")))
    if stored is not None:
        replay = Response(stored.body, status=stored.status, mimetype="application/json")
        replay.headers["Idempotent-Replayed"] = "true"
        if stored.status == 201:
            replay = _located(replay, json.loads(stored.body)["number"])
        return replay
    try:
        response = _created(_place(user, body, key))
    except ShopError:
        idempotency.release(scope, key)  # refused by a rule: the client may fix it and retry
        raise
    except Exception:
        # Failed unexpectedly, perhaps after the order was committed. The order carries the key
        # (unique), so a retry answers with that order rather than placing another: the claim
        # need not block the key until it goes stale.
        try:
            idempotency.release(scope, key)
        except Exception:
            current_app.logger.exception("could not release an Idempotency-Key after an error")
        raise
    try:
        idempotency.finish(scope, key, response.status_code, response.get_data(as_text=True))
    except Exception:
        # The order is placed: its answer goes out whatever happens to the copy kept for
        # replays. Without the copy the claim is released: a retry with the key finds the
        # order by the key it carries and answers with it, placing nothing.
        current_app.logger.exception("could not keep the answer to an Idempotency-Key")
        try:
            idempotency.release(scope, key)
        except Exception:
            current_app.logger.exception("could not release an Idempotency-Key after an error")
    return response


def _created(placed: s.PlacedOrderOut) -> Response:
    return _located(respond(placed, 201), placed.number)


def _located(response: Response, number: str) -> Response:
    response.headers["Location"] = url_for("api.get_order", number=number)
    return response


def _place(user: User, body: s.OrderBody, key: str | None) -> s.PlacedOrderOut:
    checkout_request = checkout.CheckoutRequest(
        email=user.email, shipping_address=body.shipping_address.model_dump(),
        billing_address=body.billing_address.model_dump() if body.billing_address else None,
        shipping_method=body.shipping_method, payment_method=body.payment_method,
        expected_total=Decimal(body.expected_total) if body.expected_total else None,
        idempotency_key=f"api:{user.id}:{key}" if key else None,
        shipping_prefix="shipping_address.", billing_prefix="billing_address.")
    placement = checkout.place(owner(user), checkout_request)
    g.order_placed = placement.new  # keeps its place in the orders limit (limits.py)
    order = orders.load(placement.order.number)
    return serializers.placed_order(order, payments.checkout_url(order))


@operation("/v1/orders", "GET", summary="List orders", tag=ORDERS, auth="user",
           query=s.OrderQuery, response=s.OrderList, response_description="Newest first.")
def list_orders(user: User, query: s.OrderQuery) -> s.OrderList:
    """Orders, newest first, paginated: a staff or admin token lists every order of the shop
    (e.g. `?status=paid` for the orders to ship), a customer's only their own. Filter by
    `status` and by the UTC days they were placed on (`since`, `until`, both inclusive); an
    unknown status or a date that is not YYYY-MM-DD is 422. To read a long list to its end,
    follow `next_cursor` (`?cursor=...`): each page costs the same at any depth, and an order
    placed meanwhile neither repeats nor shifts one."""
    filters = orders.parse_filters(query.status, query.since, query.until)
    listed = orders.listed_for(user.id, user.is_staff, filters, query.page, query.per_page,
                               cursor=query.cursor)
    return serializers.order_list(listed, query.per_page)


def _visible_order(user: User, number: str):
    """The order if this user may see it; anyone else's is 'not found', like a missing one."""
    order = orders.load(number)
    if order.user_id != user.id and not user.is_staff:
        raise NotFound("That order does not exist.")
    return order


@operation("/v1/orders/<number>", "GET", summary="Get an order", tag=ORDERS, auth="user",
           response=s.OrderOut, response_description="The order with its events and shipment.")
def get_order(user: User, number: str) -> s.OrderOut:
    """One of the user's orders (staff may read any): status, history and tracking."""
    return serializers.order(_visible_order(user, number))


@operation("/v1/orders/<number>/payment", "POST", summary="Get the link to pay an order",
           tag=ORDERS, auth="user", response=s.PaymentLinkOut,
           response_description="Where the customer pays.",
           errors={409: "Nothing is left to pay: the order is not a pending card order "
                        "(`nothing_to_pay`; also once it was paid or cancelled meanwhile), or "
                        "the customer's bank is still processing a payment "
                        "(`payment_processing`).",
                   503: "Stripe could not be reached just now (`payment_unavailable`): try "
                        "again in a moment."})
def pay_order(user: User, number: str) -> s.PaymentLinkOut:
    """The shop's "Pay now" for a pending card order: its open Stripe page, or a new one when
    the last has ended (e.g. `payment_url` was null when the order was placed because Stripe
    could not be reached, or the link was lost). The customer's own orders; staff may ask
    for any, to send the link on."""
    order = _visible_order(user, number)
    if order.status != "pending" or order.payment_method != "stripe":
        raise ApiError(409, "nothing_to_pay", "This order has nothing left to pay.",
                       {"status": order.status, "payment_method": order.payment_method})
    url, why = payments.pay_link(order)
    if url:
        return s.PaymentLinkOut(payment_url=url)
    order = orders.load(number)
    if order.status == "pending" and why == "unavailable":
        raise ApiError(503, "payment_unavailable", "Stripe could not be reached just now; "
                       "try again in a moment.")
    if order.status == "pending" and why == "processing":
        raise ApiError(409, "payment_processing", "A payment is on its way: the customer's "
                       "bank is still processing it. There is nothing more to pay.")
    # Paid or cancelled meanwhile (its history says which), or card payments switched off.
    raise ApiError(409, "nothing_to_pay", "This order has nothing left to pay by card.",
                   {"status": order.status, "payment_method": order.payment_method})


TRACKING_FIELDS = {"carrier": "tracking.carrier", "tracking_number": "tracking.tracking_number"}


@operation("/v1/orders/<number>", "PATCH", summary="Change an order's status (staff)",
           tag=ORDERS, auth="staff", body=s.OrderPatchBody, response=s.OrderOut,
           response_description="The order after the change.",
           errors={409: "The state machine does not allow this status from the current one "
                        "(`invalid_transition`; also when the order was refunded at the same "
                        "moment by another request or on Stripe's Dashboard: this request "
                        "refunded nothing), or Stripe did not accept the refund "
                        "(`payment_error`: nothing was changed; try again).",
                   422: "A field is invalid, or `shipped` without `tracking`."})
def update_order(user: User, number: str, body: s.OrderPatchBody) -> s.OrderOut:
    """Move an order through the state machine (pending -> paid -> processing -> shipped ->
    delivered; cancelled; refunded). `shipped` needs `tracking` (carrier and number)."""
    order = orders.load(number)
    if body.tracking is not None and body.status != "shipped":
        raise ValidationError({"tracking": "Tracking goes with the status shipped."})
    tracking = body.tracking
    try:
        payments.change_status(order.id, body.status, Actor(user_id=user.id, label=user.email),
                               body.note, carrier=tracking.carrier if tracking else None,
                               tracking_number=tracking.tracking_number if tracking else None)
    except ValidationError as exc:  # named as the body has them: tracking.carrier
        raise ValidationError({TRACKING_FIELDS.get(name, name): message
                               for name, message in exc.errors.items()}) from None
    # A staff write, so it goes in the audit log like the back office's transitions.
    audit.log_transition(audit.Who(user.id, user.email), order.id, body.status,
                         note=body.note or "",
                         carrier=tracking.carrier if tracking else None,
                         tracking_number=tracking.tracking_number if tracking else None,
                         request_id=current_request_id())
    return serializers.order(orders.load(number))


# Meta ---------------------------------------------------------------------------------------

@operation("/v1/openapi.json", "GET", summary="This document", tag=META,
           response_description="The OpenAPI 3.1 document of this API.",
           raw_response={"type": "object"})
def openapi_document() -> Response:
    """The OpenAPI 3.1 description of every operation, generated from the code's models."""
    from .openapi import document

    return current_app.json.response(document(current_app))

