"""Domain objects to the API's response models: money as strings, times as UTC ISO 8601."""
from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import urljoin, urlsplit

from flask import current_app, request

from ...models import Order, User
from ...services import links, orders, payments
from ...services.cart import CartView
from ...services.catalog import CategoryNode, CategoryTree, ProductDetail
from ...services.money import to_string
from ...templating import image_url
from . import schemas as s


def money(amount: Decimal, code: str | None = None) -> str:
    """An amount in `code` (the shop's currency by default): "12.50", or "1081" in JPY."""
    return to_string(amount, code or currency())  # type: ignore[return-value]


def optional_money(amount: Decimal | None, code: str | None = None) -> str | None:
    return to_string(amount, code or currency())


def utc(value: datetime) -> datetime:
    """Stored times are naive UTC; the API says so."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def options(values: dict | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in (values or {}).items()}


def absolute(path: str) -> str:
    """A path of this site as an absolute URL: on SHOP_BASE_URL's address when it is set, not
    on the request's Host header (which a client chooses: an API answer is read by apps and
    may be kept by caches; found by a security audit), else on the request's."""
    base = current_app.config.get("BASE_URL")
    if base:
        parts = urlsplit(base)
        return urljoin(f"{parts.scheme or 'https'}://{parts.netloc}/", path)
    return urljoin(request.host_url, path)


def currency() -> str:
    return current_app.config["CURRENCY"]


def product(item: ProductDetail, tree: CategoryTree) -> s.ProductOut:
    """A product as catalog.product_details reads it; its category from the tree."""
    variants = item.variants  # in the shop's order (position, id)
    lowest = min((v.price for v in variants), default=item.price)
    node = tree.by_id.get(item.category_id) if item.category_id is not None else None
    code = currency()
    return s.ProductOut(
        id=item.id, slug=item.slug, name=item.name, description=item.description,
        url=links.public_url("catalog.product", slug=item.slug),
        category=s.CategoryRef(slug=node.slug, name=node.name) if node else None,
        images=[s.Image(url=absolute(image_url(image.path)), alt=image.alt or item.name)
                for image in item.images],
        price=money(lowest, code), currency=code,
        in_stock=any(v.stock_quantity > 0 for v in variants),
        rating=s.Rating(average=float(item.rating_average)
                        if item.rating_average is not None and item.rating_count else None,
                        count=item.rating_count or 0),
        variants=[s.VariantOut(id=v.id, sku=v.sku, options=options(v.options),
                               price=money(v.price, code),
                               compare_at_price=optional_money(v.compare_at_price, code),
                               stock_quantity=max(v.stock_quantity, 0),
                               in_stock=v.stock_quantity > 0) for v in variants])


def product_list(items: list[ProductDetail], tree: CategoryTree, page: int, per_page: int,
                 total: int) -> s.ProductList:
    return s.ProductList(items=[product(p, tree) for p in items],
                         **paging(page, per_page, total))


def paging(page: int, per_page: int, total: int) -> dict[str, int]:
    return {"page": page, "per_page": per_page, "total": total,
            "pages": math.ceil(total / per_page) if total else 0}


def category(node: CategoryNode) -> s.CategoryOut:
    return s.CategoryOut(id=node.id, slug=node.slug, name=node.name,
                         description=node.description,
                         children=[category(child) for child in node.children])


def user(item: User) -> s.UserOut:
    return s.UserOut(id=item.id, email=item.email, name=item.name or "", role=item.role)


def cart(view: CartView) -> s.CartOut:
    quote = view.quote
    return s.CartOut(
        items=[s.CartLineOut(id=line.id, variant_id=line.variant_id, sku=line.sku,
                             name=line.name, options=options(line.options),
                             quantity=line.quantity, unit_price=money(line.unit_price),
                             line_total=money(line.line_total),
                             stock_quantity=max(line.stock_quantity, 0), problem=line.problem)
               for line in view.lines],
        item_count=view.item_count, coupon=view.coupon_code,
        coupon_message=view.coupon_message, subtotal=money(quote.subtotal),
        discount=money(quote.discount), shipping=money(quote.shipping), tax=money(quote.tax),
        total=money(quote.total), currency=currency(), shipping_method=quote.shipping_method)


def address(data: dict | None) -> s.AddressOut:
    data = data or {}
    return s.AddressOut(**{name: str(data.get(name) or "") for name in s.AddressOut.model_fields})


def order_fields(item: Order) -> dict:
    shipment = item.shipment
    payment = item.payment
    code = item.currency
    return dict(
        number=item.number, status=item.status, email=item.email,
        lines=[s.OrderLineOut(sku=line.sku, name=line.name, options=options(line.options),
                              unit_price=money(line.unit_price, code), quantity=line.quantity,
                              line_total=money(line.line_total, code)) for line in item.lines],
        subtotal=money(item.subtotal, code), discount=money(item.discount, code),
        shipping=money(item.shipping, code), tax=money(item.tax, code),
        total=money(item.total, code),
        currency=item.currency, coupon=item.coupon_code,
        shipping_address=address(item.shipping_address),
        billing_address=address(item.billing_address or item.shipping_address),
        shipping_method=item.shipping_method, payment_method=item.payment_method,
        payment_status=payment.status if payment else None,
        refund_failure=refund_failure(item),
        shipment=s.ShipmentOut(carrier=shipment.carrier, tracking_number=shipment.tracking_number)
        if shipment else None,
        created_at=utc(item.created_at),
        events=[s.EventOut(status=event.to_status, from_status=event.from_status,
                           at=utc(event.created_at), note=event.note or "")
                for event in item.events])


def refund_failure(item: Order) -> s.RefundFailureOut | None:
    failure = payments.refund_failure(item)
    return s.RefundFailureOut(message=failure.what, at=utc(failure.at)) if failure else None


def order(item: Order) -> s.OrderOut:
    return s.OrderOut(**order_fields(item))


def placed_order(item: Order, payment_url: str | None) -> s.PlacedOrderOut:
    return s.PlacedOrderOut(**order_fields(item), payment_url=payment_url)


def order_list(listed: orders.Listed, per_page: int) -> s.OrderList:
    """A page of orders; its number is the list's own (a page read by cursor knows it)."""
    return s.OrderList(items=[order(o) for o in listed.orders],
                       next_cursor=listed.next.encode() if listed.next else None,
                       **paging(listed.page, per_page, listed.total))


def token(record, raw: str) -> s.TokenOut:
    return s.TokenOut(token=raw, expires_at=utc(record.expires_at), id=record.id,
                      name=record.name or "")
