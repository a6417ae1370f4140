"""Carts: a customer's in the database, a guest's referenced from the signed session cookie.
A cart holds no stock; quantities are bounded by stock and by MAX_LINE_QUANTITY."""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import Literal, NamedTuple

from flask import current_app
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import contains_eager, selectinload

from ..extensions import db
from ..models import Cart, CartLine, Product, Variant, utcnow
from ..models.base import is_id
from . import coupons, pricing, reads
from .database import retrying, write_transaction
from .errors import CouponInvalid, CouponUsedUp, LineLimit, NotFound, OutOfStock, ValidationError
from .money import MAX_AMOUNT, format_money, unit
from .pricing import Quote


@dataclass(frozen=True)
class CartOwner:
    """Who a cart belongs to: a customer (user_id) or a guest (token in the signed cookie)."""

    user_id: int | None = None
    token: str | None = None

    @staticmethod
    def new_guest_token() -> str:
        return secrets.token_urlsafe(24)


@dataclass
class CartLineView:
    id: int
    variant_id: int
    sku: str
    name: str
    options: dict
    variant_label: str
    product_slug: str
    image_path: str | None
    image_alt: str
    unit_price: Decimal
    quantity: int
    line_total: Decimal
    stock_quantity: int
    max_quantity: int
    problem: str | None = None
    # Units that can be ordered now: none of a product no longer sold, whatever its stock.
    available: int = 0
    # The unit price the shopper last saw, when the price is no longer that (None otherwise).
    price_was: Decimal | None = None

    @property
    def full_name(self) -> str:
        """The product and the option, as the shopper tells lines apart: "Tee (M / Blue)";
        a product without options by its name alone. Two sizes of one tee are two lines."""
        return f"{self.name} ({self.variant_label})" if self.variant_label else self.name


@dataclass
class CartView:
    """A priced cart, as the cart page, checkout and the API show it."""

    id: int | None
    lines: list[CartLineView]
    quote: Quote
    coupon_code: str | None
    coupon_message: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def price_changes(self) -> list[CartLineView]:
        """The lines whose price changed since the shopper last saw it."""
        return [line for line in self.lines if line.price_was is not None]

    @property
    def item_count(self) -> int:
        return sum(line.quantity for line in self.lines)

    @property
    def is_empty(self) -> bool:
        return not self.lines


# A typed quantity of more digits than this is refused without converting it.
MAX_DIGITS = 18


def max_quantity() -> int:
    return int(current_app.config["MAX_LINE_QUANTITY"])


def _owner_key(owner: CartOwner) -> tuple[str, int | str] | None:
    """Which cart column identifies the owner's cart, and its value: a customer's user id
    before a guest token; None for nobody."""
    if owner.user_id:
        return "user_id", owner.user_id
    if owner.token:
        return "token", owner.token
    return None


@cache
def _cart_by(column: str, lock: bool = False):
    """SELECT the cart of a user or of a guest token, built once: checkout runs it on every
    order, and building a statement costs more than running it from the compiled cache."""
    stmt = select(Cart).where(getattr(Cart, column) == bindparam("owner"))
    return stmt.with_for_update() if lock else stmt


def find_cart(owner: CartOwner, *, lock: bool = False) -> Cart | None:
    """The owner's cart; `lock`: locked for the rest of the transaction (FOR UPDATE)."""
    key = _owner_key(owner)
    if key is None:
        return None
    return db.session.execute(_cart_by(key[0], lock), {"owner": key[1]}).scalar_one_or_none()


def _get_or_create(owner: CartOwner) -> Cart:
    """The owner's cart, created when missing, locked until the caller's transaction ends:
    the changes to one cart take turns, each after the one before has committed. Only
    flushes (inside the caller's transaction)."""
    cart = find_cart(owner, lock=True)
    if cart is not None:
        return cart
    if not owner.user_id and not owner.token:
        raise ValueError("a cart needs a user or a guest token")
    try:
        with db.session.begin_nested():
            cart = Cart(user_id=owner.user_id, token=None if owner.user_id else owner.token)
            db.session.add(cart)
    except IntegrityError:  # another request of the same shopper created it first
        cart = find_cart(owner, lock=True)
        assert cart is not None
    return cart


# The header's count on every page a shopper with a cart sees: a plain read (services.reads),
# by the owner's column. Through the ORM it cost more than the rest of a product page.
_ITEM_COUNT_SQL = {column: "SELECT COALESCE(SUM(l.quantity), 0) FROM cart_lines l "
                           f"JOIN carts c ON c.id = l.cart_id WHERE c.{column} = :owner"
                   for column in ("user_id", "token")}


def item_count(owner: CartOwner) -> int:
    """Units in the owner's cart (one query), for the header."""
    key = _owner_key(owner)
    if key is None:
        return 0
    return int(reads.rows(_ITEM_COUNT_SQL[key[0]], {"owner": key[1]})[0][0])


def quantity_message(*, allow_zero: bool = False) -> str:
    return f"Enter a whole number from {0 if allow_zero else 1} to {max_quantity()}."


def parse_quantity(raw: object, *, allow_zero: bool = False, past_max: bool = False) -> int:
    """A quantity from a form or JSON: a whole number from 1 (or 0) to the maximum. With
    `past_max`, a whole number above the maximum is returned too, for the caller to refuse
    knowing the stock: "Only 3 left in stock." says what can be ordered where "from 0 to 99"
    did not."""
    top = max_quantity()
    low = 0 if allow_zero else 1
    message = quantity_message(allow_zero=allow_zero)
    if isinstance(raw, bool):
        raise ValidationError({"quantity": message})
    if isinstance(raw, int):
        value = raw
    else:
        text = str(raw if raw is not None else "").strip()
        # Decimal digits only: "²" is a digit that int() refuses, and int() refuses a number
        # of thousands of digits; a longer one than this is out of range anyway.
        if not text.isdecimal() or len(text) > MAX_DIGITS:
            raise ValidationError({"quantity": message})
        value = int(text)
    if value < low or (value > top and not past_max):
        raise ValidationError({"quantity": message})
    return value


def _variant_for(variant_id: int | None = None, sku: str | None = None) -> Variant:
    # With its product (read in the same query): the add's answer names it.
    stmt = select(Variant).join(Product).options(contains_eager(Variant.product)) \
        .where(Product.active.is_(True))
    if variant_id is not None:
        if not is_id(variant_id):
            raise NotFound("That product option does not exist.", field="variant_id")
        stmt = stmt.where(Variant.id == variant_id)
    elif sku:
        base, stmt = stmt, stmt.where(Variant.sku == sku.strip())
    else:
        raise ValidationError({"variant_id": "Choose a product option."})
    variant = db.session.execute(stmt).scalar_one_or_none()
    if variant is None and variant_id is None and db.engine.dialect.name == "sqlite":
        # A SKU is one in any capitals (catalog.sku_key): MySQL's collation finds "lin-s" for
        # LIN-S by the index; SQLite compares bytes, so it is asked again without case (a
        # scan, only for a SKU not found as typed).
        variant = db.session.execute(
            base.where(func.lower(Variant.sku) == sku.strip().lower())).scalars().first()
    if variant is None:
        field_name = "variant_id" if variant_id is not None else "sku"
        raise NotFound("That product option does not exist.", field=field_name)
    return variant


def _check_stock(variant: Variant, quantity: int, in_cart: int = 0, *,
                 adding: bool = True) -> None:
    """Refuse a line of `quantity` units beyond the stock; `in_cart`: units of it the cart
    already holds, in the details, and named by the message of an add (`adding`), or the
    shopper reads "Only 3 left" and is refused 1."""
    if quantity > variant.stock_quantity:
        if variant.stock_quantity <= 0:
            raise OutOfStock("Sorry, that item is out of stock.", field="quantity",
                             details={"available": 0, "sku": variant.sku})
        message = f"Only {variant.stock_quantity} left in stock."
        if in_cart and adding:
            message += f" Your cart already has {in_cart}."
        raise OutOfStock(message, field="quantity",
                         details={"available": variant.stock_quantity, "sku": variant.sku,
                                  "in_cart": in_cart})


@dataclass(frozen=True)
class Added:
    """What an add left in the cart, as it committed: the line and what it holds."""

    id: int
    quantity: int
    variant_id: int
    name: str  # the product's
    label: str  # the option's ("Default" for a product without options)


def add_item(owner: CartOwner, quantity: object, variant_id: int | None = None,
             sku: str | None = None) -> Added:
    """Add units of a variant (by id or SKU); the line's total is bounded by stock and 99.

    The answer is taken in the add's own transaction: read after it, the line could already
    be gone, taken by a change committed just after this one (the login in another tab
    merging the guest's cart into the customer's, an order placed), and the add, done, would
    have answered an error."""
    qty = parse_quantity(quantity, past_max=True)

    def attempt() -> Added:
        with write_transaction():
            variant = _variant_for(variant_id, sku)
            cart = _get_or_create(owner)
            # Read with the cart locked (READ COMMITTED): the line as the change before this
            # one committed it. Unlocked, two adds at once both read the same quantity and
            # the cart kept one unit of the two.
            line = db.session.execute(select(CartLine).where(
                CartLine.cart_id == cart.id, CartLine.variant_id == variant.id)
            ).scalar_one_or_none()
            in_cart = line.quantity if line else 0
            new_quantity = qty + in_cart
            top = max_quantity()
            if variant.stock_quantity < top:
                # The stock is the tighter limit: said first, with how many can be ordered.
                _check_stock(variant, new_quantity, in_cart)
            if qty > top:
                raise ValidationError({"quantity": quantity_message()})
            if new_quantity > top:
                # Each quantity was valid; the sum is what the rule refuses (409 in the API).
                raise LineLimit(f"A cart line holds at most {top}.",
                                field="quantity", details={"max": top,
                                                           "in_cart": in_cart, "sku": variant.sku})
            _check_stock(variant, new_quantity, in_cart)
            # Added from a page that showed the price as it is now: the price seen.
            if line is None:
                line = CartLine(cart_id=cart.id, variant_id=variant.id, quantity=new_quantity,
                                seen_price=variant.price)
                db.session.add(line)
            else:
                line.quantity = new_quantity
                line.seen_price = variant.price
            cart.updated_at = utcnow()
            db.session.flush()
            return Added(line.id, line.quantity, variant.id, variant.product.name,
                         variant.label)

    return retrying(attempt)


def _owned_line(owner: CartOwner, line_id: int) -> CartLine:
    """The owner's line, read with the cart locked (as every change to a cart locks it): a
    line that a change just before this one removed (another tab, the order placed) is not
    found, instead of being changed or deleted a second time. An id past any row's (is_id) names
    no line (and would not fit the query's parameter)."""
    cart = find_cart(owner, lock=True)
    line = None
    if cart is not None and is_id(line_id):
        line = db.session.execute(select(CartLine).where(
            CartLine.id == line_id, CartLine.cart_id == cart.id)).scalar_one_or_none()
    if line is None:
        raise NotFound("That line is not in your cart.", field="line")
    return line


def update_line(owner: CartOwner, line_id: int, quantity: object, *,
                allow_zero: bool = False) -> CartLine | None:
    """Set a line's quantity (bounded by stock); zero removes it when `allow_zero`."""
    qty = parse_quantity(quantity, allow_zero=allow_zero, past_max=True)
    with write_transaction():
        line = _owned_line(owner, line_id)
        if qty == 0:
            db.session.delete(line)
            return None
        variant = db.session.get(Variant, line.variant_id)
        if not variant.product.active:
            # Not sold any more: no quantity can be ordered (an add is refused too), and a
            # change the shop took ("Quantity updated to 2") said otherwise.
            raise OutOfStock(f"{variant.product.name} is no longer sold; please remove it.",
                             field="quantity", details={"available": 0, "sku": variant.sku})
        # details.in_cart: the units the line holds (it said 0 for a line of 30). The stock
        # first: 150 of 3 left is "Only 3 left in stock.", not "from 0 to 99".
        _check_stock(variant, qty, line.quantity, adding=False)
        if qty > max_quantity():
            raise ValidationError({"quantity": quantity_message(allow_zero=allow_zero)})
        line.quantity = qty
        db.session.flush()
        line_id = line.id
    return db.session.get(CartLine, line_id)


def remove_line(owner: CartOwner, line_id: int) -> None:
    """Take a line out of the cart."""
    with write_transaction():
        db.session.delete(_owned_line(owner, line_id))


def apply_coupon(owner: CartOwner, code: str, *, email: str | None = None) -> str:
    """Check a coupon against the cart and keep it; returns the normalised code."""
    if not coupons.normalise_code(code):
        raise ValidationError({"code": "Enter a coupon code."})
    with write_transaction():
        cart = _get_or_create(owner)
        subtotal = _subtotal(cart.id)
        coupon = coupons.validate(code, subtotal, user_id=owner.user_id, email=email,
                                  currency=current_app.config["CURRENCY"])
        cart.coupon_code = coupon.code
        return coupon.code


def remove_coupon(owner: CartOwner) -> None:
    with write_transaction():
        cart = find_cart(owner, lock=True)
        if cart is not None:
            cart.coupon_code = None


def _subtotal(cart_id: int) -> Decimal:
    rows = db.session.execute(select(Variant.price, CartLine.quantity).join(
        CartLine, CartLine.variant_id == Variant.id).where(CartLine.cart_id == cart_id)).all()
    return pricing.quote(rows, rules=pricing.PricingRules.from_config()).subtotal


@cache
def _lines_query():
    return (select(CartLine.id, CartLine.quantity, Variant.id.label("variant_id"), Variant.sku,
                   Variant.options, Variant.price, Variant.stock_quantity, Product.name,
                   Product.slug, Product.active, Product.card_image_path.label("image_path"))
            .join(Variant, Variant.id == CartLine.variant_id)
            .join(Product, Product.id == Variant.product_id)
            .where(CartLine.cart_id == bindparam("cart_id")).order_by(CartLine.id))


def _line_view(line_id: int, quantity: int, variant_id: int, sku: str, options: dict,
               price: Decimal, stock: int, name: str, slug: str, active: bool,
               image_path: str | None, top: int, currency: str,
               seen: Decimal | None = None) -> CartLineView:
    """A cart line as the shopper sees it, with what stands in the way of ordering it and
    the price it had when the shopper last saw it, if that was another. Its price is in the
    currency's unit (whole yen), as the order keeps it and Stripe charges it."""
    unit = pricing.unit_price(price, currency)
    if seen is not None:
        seen = pricing.unit_price(seen, currency)
    label = " / ".join(str(v) for v in options.values())
    # The option named too (CartLineView.full_name): the cart's summary of problems and the
    # review say which of two sizes of one product is short.
    named = f"{name} ({label})" if label else name
    problem = None
    if not active:
        problem = f"{named} is no longer sold; please remove it."
    elif stock <= 0:
        problem = f"{named} is now out of stock; please remove it."
    elif quantity > stock:
        problem = f"Only {stock} of {named} left; please lower the quantity."
    return CartLineView(
        id=line_id, variant_id=variant_id, sku=sku, name=name, options=options,
        variant_label=label,
        product_slug=slug, image_path=image_path, image_alt=name,
        unit_price=unit, quantity=quantity,
        line_total=pricing.line_total(price, quantity, currency),
        stock_quantity=stock, max_quantity=max(1, min(top, stock)), problem=problem,
        available=max(0, stock) if active else 0,
        price_was=seen if seen is not None and seen != unit else None)


def load_lines(cart_id: int) -> list[CartLineView]:
    """The cart's lines with current prices and stock (one query)."""
    rows = db.session.execute(_lines_query(), {"cart_id": cart_id}).all()
    top = max_quantity()
    currency = current_app.config["CURRENCY"]
    return [_line_view(r.id, r.quantity, r.variant_id, r.sku, r.options or {}, r.price,
                       r.stock_quantity, r.name, r.slug, r.active, r.image_path, top, currency)
            for r in rows]


# The cart page, checkout's pages and the API's cart: the owner's cart and its lines with
# their variants and products, one plain read (services.reads) by the owner's column (one row
# with NULL lines for an empty cart; none without a cart). Through the Session the cart and
# its lines were two statements and a transaction, a fifth of the cart page.
_CART_SQL = {column: "SELECT c.id, c.coupon_code, l.id, l.quantity, v.id, v.sku, v.options, "
                     "v.price, v.stock_quantity, p.name, p.slug, p.active, p.card_image_path, "
                     "l.seen_price "
                     "FROM carts c LEFT JOIN cart_lines l ON l.cart_id = c.id "
                     "LEFT JOIN variants v ON v.id = l.variant_id "
                     "LEFT JOIN products p ON p.id = v.product_id "
                     f"WHERE c.{column} = :owner ORDER BY l.id"
             for column in ("user_id", "token")}


def view(owner: CartOwner, shipping_method: str = "standard", *,
         email: str | None = None) -> CartView:
    """The owner's cart, priced now. A coupon that no longer applies is reported, not applied."""
    if shipping_method not in pricing.SHIPPING_METHODS:
        shipping_method = "standard"
    rules = pricing.PricingRules.from_config()
    key = _owner_key(owner)
    rows = reads.rows(_CART_SQL[key[0]], {"owner": key[1]}) if key is not None else []
    if not rows:
        return CartView(None, [], pricing.quote([], None, shipping_method, rules), None)
    cart_id, coupon_code = rows[0][0], rows[0][1]
    top = max_quantity()
    lines = [_line_view(line_id, int(quantity), variant_id, sku, reads.json_object(options),
                        reads.money(price), int(stock), name, slug, bool(active), image, top,
                        rules.currency, reads.money(seen))
             for (_cart, _code, line_id, quantity, variant_id, sku, options, price, stock, name,
                  slug, active, image, seen) in rows if line_id is not None]
    raw = [(line.unit_price, line.quantity) for line in lines]
    terms, message = None, None
    if coupon_code:
        subtotal = pricing.quote(raw, None, shipping_method, rules).subtotal
        try:
            coupon = coupons.validate(coupon_code, subtotal, user_id=owner.user_id,
                                      email=email, currency=current_app.config["CURRENCY"])
            terms = coupons.terms(coupon)
        except (CouponInvalid, CouponUsedUp) as exc:
            message = exc.message
    quote = pricing.quote(raw, terms, shipping_method, rules)
    problems = [line.problem for line in lines if line.problem]
    if too_large := size_problem(lines, quote, rules.currency):
        problems.append(too_large)
    return CartView(cart_id, lines, quote, coupon_code, message, problems)


def size_problem(lines: list[CartLineView], quote: Quote, currency: str) -> str | None:
    """Why the cart cannot become one order: a line's or the order's total beyond what an
    order keeps (money.MAX_AMOUNT). Checkout refused it with a 500 on MySQL (out of range),
    after SQLite had stored it. None when it fits."""
    top = format_money(MAX_AMOUNT - MAX_AMOUNT % unit(currency), currency)  # not rounded up
    for line in lines:
        if line.line_total > MAX_AMOUNT:
            return (f"The total for {line.name} is more than one order can hold ({top}); "
                    "please lower the quantity.")
    if max(quote.subtotal, quote.shipping, quote.tax, quote.total) > MAX_AMOUNT:
        return (f"This order's total would be more than one order can hold ({top}); please "
                "order fewer items at once.")
    return None


def mark_prices_seen(view: CartView) -> None:
    """The shopper has been shown the price changes in `view` (the cart page, the review):
    the prices shown become the prices seen, so each change is said once."""
    if not view.price_changes:
        return
    with write_transaction():
        for line in view.price_changes:
            db.session.execute(
                update(CartLine).where(CartLine.id == line.id).values(seen_price=line.unit_price)
                .execution_options(synchronize_session=False))


class MergeShortfall(NamedTuple):
    """A line a login's merge holds less of than the two carts asked for, and why."""

    name: str
    quantity: int  # now; 0 when none is left and the line was dropped
    # The limit that held it: what is in stock, or the line maximum (MAX_LINE_QUANTITY);
    # stock when both do, being the tighter.
    limited_by: Literal["stock", "line_limit"]


def merge_guest_cart(token: str | None, user_id: int) -> list[MergeShortfall]:
    """On login: the guest's lines join the customer's cart; quantities add up, capped by stock
    and the line maximum; the guest's coupon is kept when the customer's cart has none.

    Returns the lines that hold less than the two carts asked for, for the shopper to be told
    (units the line maximum leaves out as well as those stock does)."""
    if not token:
        return []

    def attempt() -> list[MergeShortfall]:
        changed: list[MergeShortfall] = []
        with write_transaction():
            # Both carts locked, as add_item locks them: an add in another tab, to either cart,
            # waits for the merge or is merged, never deleted with the guest's cart or lost.
            guest = db.session.execute(select(Cart).options(selectinload(Cart.lines))
                                       .where(Cart.token == token).with_for_update()
                                       ).scalar_one_or_none()
            if guest is None or guest.user_id is not None:
                return []
            cart = _get_or_create(CartOwner(user_id=user_id))
            existing = {line.variant_id: line for line in db.session.execute(
                select(CartLine).where(CartLine.cart_id == cart.id)).scalars()}
            top = max_quantity()
            for line in guest.lines:
                stock, name = db.session.execute(
                    select(Variant.stock_quantity, Product.name).join(Product)
                    .where(Variant.id == line.variant_id)).one()
                target = existing.get(line.variant_id)
                wanted = line.quantity + (target.quantity if target else 0)
                in_stock = max(stock, 0)
                quantity = min(wanted, top, in_stock)
                if quantity < wanted:
                    changed.append(MergeShortfall(
                        name, quantity, "stock" if in_stock < min(wanted, top) else "line_limit"))
                if quantity <= 0:
                    continue
                if target:
                    target.quantity = quantity
                else:
                    db.session.add(CartLine(cart_id=cart.id, variant_id=line.variant_id,
                                            quantity=quantity, seen_price=line.seen_price))
            if guest.coupon_code and not cart.coupon_code:
                cart.coupon_code = guest.coupon_code
            db.session.flush()
            db.session.execute(delete(CartLine).where(CartLine.cart_id == guest.id))
            db.session.execute(delete(Cart).where(Cart.id == guest.id))
        return changed

    # Rolled back for a deadlock or a lock wait (MySQL), it is tried again, as other cart
    # writes are.
    return retrying(attempt)


@cache
def _delete_lines():
    table = CartLine.__table__
    return delete(table).where(table.c.cart_id == bindparam("cart_id"))


def clear(cart_id: int) -> None:
    """Empty a cart after its order was placed. Only flushes."""
    db.session.execute(_delete_lines(), {"cart_id": cart_id})
    cart = db.session.get(Cart, cart_id)
    if cart is not None:
        cart.coupon_code = None
