"""The order state machine: every status change of every order goes through `transition`."""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import ColumnElement, and_, func, not_, or_, select, update
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..models import (
    ORDER_STATUSES,
    Order,
    OrderEvent,
    OrderLine,
    OrderNote,
    Payment,
    Shipment,
    utcnow,
)
from . import audit, cache, coupons, inventory
from .database import retrying, write_transaction
from .errors import InvalidTransition, NotFound, ValidationError

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "pending": ("paid", "cancelled"),
    "paid": ("processing", "shipped", "refunded"),
    "processing": ("shipped", "refunded"),
    "shipped": ("delivered", "refunded"),
    "delivered": ("refunded",),
    "cancelled": (),
    "refunded": (),
}
ACTION_LABELS = {"paid": "Mark paid", "processing": "Mark processing", "shipped": "Mark shipped",
                 "delivered": "Mark delivered", "cancelled": "Cancel", "refunded": "Refund"}
STATUS_LABELS = {"pending": "Awaiting payment", "paid": "Paid", "processing": "Processing",
                 "shipped": "Shipped", "delivered": "Delivered", "cancelled": "Cancelled",
                 "refunded": "Refunded"}
# Orders in these statuses hold no stock (SPEC section 4's invariant).
RELEASED_STATUSES = ("cancelled", "refunded")
NUMBER_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
NOTE_MAX_LENGTH = 2000


@dataclass(frozen=True)
class Actor:
    """Who changes an order: a user, or the system ("stripe", "expiry")."""

    user_id: int | None = None
    label: str = "system"


def allowed(status: str) -> tuple[str, ...]:
    return TRANSITIONS.get(status, ())


def new_number() -> str:
    """Human-friendly and unguessable: "SO-7K3M9Q2P"."""
    return "SO-" + "".join(secrets.choice(NUMBER_ALPHABET) for _ in range(8))


def load(number: str) -> Order:
    """An order with its lines, events, shipments and payments. A number is one in any
    capitals ("so-p9d6658r" as read out on the phone is SO-P9D6658R; numbers are made of
    capitals and digits only)."""
    number = (number or "").strip().upper()
    order = db.session.execute(
        select(Order).options(selectinload(Order.lines), selectinload(Order.events),
                              selectinload(Order.shipments), selectinload(Order.payments))
        .where(Order.number == number)).scalar_one_or_none()
    if order is None:
        raise NotFound("That order does not exist.")
    return order


def transition(order_id: int, to_status: str, actor: Actor, note: str = "", *,
               carrier: str | None = None, tracking_number: str | None = None) -> Order:
    """Move an order to `to_status` if the state machine allows it from its current status,
    recording the event; cancelling or refunding releases its stock (and a cancelled order's
    coupon use) exactly once, and then moves the catalogue cache's version. Concurrent calls
    cannot both succeed from the same status."""
    if to_status not in ORDER_STATUSES:
        raise ValidationError({"status": f"Unknown status {to_status!r}."})
    carrier = (carrier or "").strip()
    tracking_number = (tracking_number or "").strip()
    if to_status == "shipped" and (not carrier or not tracking_number):
        # A move the state machine refuses is said first: asking for tracking to ship an
        # unpaid order only leads to a second refusal.
        current = db.session.execute(select(Order.status).where(Order.id == order_id)).scalar()
        if current is not None and to_status not in allowed(current):
            raise _not_allowed(current, to_status)
        errors = {}
        if not carrier:
            errors["carrier"] = "Enter the carrier."
        if not tracking_number:
            errors["tracking_number"] = "Enter the tracking number."
        raise ValidationError(errors)
    # Staff's own note was bounded before anything changed (payments.change_status): a
    # refund's note adds Stripe's refund id to it after the money went back.
    check_details(note, carrier, tracking_number, note_max=None)

    def run() -> int:
        with write_transaction():
            apply_transition(order_id, to_status, actor, note, carrier=carrier,
                             tracking_number=tracking_number)
        return order_id

    retrying(run)
    if to_status in RELEASED_STATUSES:
        # Units back on hand: a product the order sold out can be bought again, which cached
        # pages saying "Sold out" would hide (services.cache; stock taken moves no version).
        cache.catalog_changed()
    return db.session.get(Order, order_id)


CARRIER_MAX, TRACKING_MAX = 80, 120  # the shipments table's columns


def check_details(note: str | None = "", carrier: str | None = None,
                  tracking_number: str | None = None, *,
                  note_max: int | None = NOTE_MAX_LENGTH) -> None:
    """Refuse (ValidationError) a status change's note, carrier or tracking number that the
    shop cannot keep as typed. Called before anything changes: a refund checked it only
    after Stripe had given the money back. `note_max` None: a note the shop wrote itself
    (staff's words and a Stripe refund's id), any length."""
    carrier, tracking_number = (carrier or "").strip(), (tracking_number or "").strip()
    # Kept whole or refused: cut to fit, the shipment said another number than staff typed
    # (and than the audit log recorded), and the event kept the note's first 2000 characters.
    too_long = {name: f"At most {limit} characters."
                for name, value, limit in (("carrier", carrier, CARRIER_MAX),
                                           ("tracking_number", tracking_number, TRACKING_MAX))
                if len(value) > limit}
    if note_max is not None and len(note or "") > note_max:
        too_long["note"] = (f"A note is at most {note_max} characters; "
                            f"this one has {len(note or '')}.")
    if too_long:
        raise ValidationError(too_long)
    from .addresses import unprintable

    # A NUL made the customer's order page invalid HTML, and a direction override made the
    # carrier or the note read otherwise there and in the mail.
    unshowable = {name: "Remove the control or direction characters: they cannot be shown."
                  for name, value in (("carrier", carrier), ("tracking_number", tracking_number),
                                      ("note", (note or "").replace("\r\n", "\n")
                                       .replace("\n", " ").replace("\t", " ")))
                  if unprintable(value)}
    if unshowable:
        raise ValidationError(unshowable)


def _not_allowed(current: str, to_status: str) -> InvalidTransition:
    return InvalidTransition(
        f"This order is {STATUS_LABELS[current].lower()}; it cannot become "
        f"{STATUS_LABELS[to_status].lower()}.",
        details={"from": current, "to": to_status, "allowed": list(allowed(current))})


def apply_transition(order_id: int, to_status: str, actor: Actor, note: str = "", *,
                     carrier: str = "", tracking_number: str = "") -> str:
    """The transition inside the caller's transaction; returns the previous status."""
    current = db.session.execute(select(Order.status).where(Order.id == order_id)).scalar()
    if current is None:
        raise NotFound("That order does not exist.")
    if to_status not in allowed(current):
        raise _not_allowed(current, to_status)
    values: dict = {"status": to_status, "updated_at": utcnow()}
    if to_status == "paid":
        values["paid_at"] = utcnow()
    result = db.session.execute(update(Order).where(Order.id == order_id,
                                                    Order.status == current)
                                .values(**values).execution_options(synchronize_session=False))
    if result.rowcount != 1:  # someone else moved it first: said as from where it is now
        now = db.session.execute(select(Order.status).where(Order.id == order_id)).scalar()
        if now is not None and now != current:
            raise _not_allowed(now, to_status) if to_status not in allowed(now) else \
                InvalidTransition("The order changed while you were working on it; reload it.",
                                  details={"from": now, "to": to_status,
                                           "allowed": list(allowed(now))})
        raise InvalidTransition("The order changed while you were working on it; reload it.",
                                details={"from": current, "to": to_status,
                                         "allowed": list(allowed(current))})
    db.session.add(OrderEvent(order_id=order_id, from_status=current, to_status=to_status,
                              actor_id=actor.user_id, actor=actor.label, note=note))
    if to_status == "shipped":
        db.session.add(Shipment(order_id=order_id, carrier=carrier,
                                tracking_number=tracking_number))
    if to_status == "paid":
        db.session.execute(update(Payment).where(Payment.order_id == order_id,
                                                 Payment.status == "pending")
                           .values(status="succeeded", updated_at=utcnow())
                           .execution_options(synchronize_session=False))
    if to_status in RELEASED_STATUSES:
        release_stock(order_id, give_back_coupon=to_status == "cancelled")
        db.session.execute(update(Payment).where(Payment.order_id == order_id,
                                                 Payment.status.in_(("pending", "succeeded")))
                           .values(status="refunded" if to_status == "refunded" else "cancelled",
                                   updated_at=utcnow())
                           .execution_options(synchronize_session=False))
    db.session.flush()
    db.session.expire_all()
    return current


def add_staff_note(order_id: int, actor: Actor, body: str, *, request_id: str = "") -> OrderNote:
    """Keep a staff member's internal remark on an order, which the customer never sees, and
    its audit log entry, in one transaction. An empty or too long note raises ValidationError
    and an unknown order NotFound; either way nothing is stored."""
    # A browser sends a textarea's line breaks as CRLF but counts each as one character
    # against maxlength: count (and keep) them as one here too.
    body = (body or "").replace("\r\n", "\n").strip()
    if not body:
        raise ValidationError({"body": "Write a note first."}, "Write a note first.")
    from .addresses import unprintable

    if unprintable(body.replace("\n", " ").replace("\t", " ")):
        # A NUL made the order's back office page invalid HTML, an override made the note
        # read otherwise for other staff.
        message = "Remove the control or direction characters: they cannot be shown."
        raise ValidationError({"body": message}, message)
    if len(body) > NOTE_MAX_LENGTH:
        message = (f"A note is at most {NOTE_MAX_LENGTH} characters; "
                   f"this one has {len(body)}.")
        raise ValidationError({"body": message}, message)

    def run() -> int:
        with write_transaction():
            if db.session.execute(select(Order.id).where(Order.id == order_id)).scalar() is None:
                raise NotFound("That order does not exist.")
            note = OrderNote(order_id=order_id, actor_id=actor.user_id,
                             actor=actor.label[:255], body=body)
            db.session.add(note)
            db.session.flush()
            audit.record(audit.Who(actor.user_id, actor.label), "note", "Order", order_id,
                         after={"note_id": note.id, "body": body}, request_id=request_id)
            return note.id

    return db.session.get(OrderNote, retrying(run))


def release_stock(order_id: int, *, give_back_coupon: bool) -> bool:
    """Return an order's units to stock, once: the conditional UPDATE on `stock_released` lets
    exactly one caller through. Only flushes."""
    result = db.session.execute(update(Order).where(Order.id == order_id,
                                                    Order.stock_released.is_(False))
                                .values(stock_released=True)
                                .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        return False
    lines = db.session.execute(select(OrderLine.variant_id, OrderLine.quantity)
                               .where(OrderLine.order_id == order_id)
                               .order_by(OrderLine.variant_id)).all()
    for line in lines:
        if line.variant_id is not None:
            inventory.release(line.variant_id, line.quantity)
    if give_back_coupon:
        coupons.release_use(order_id)
    return True


def guest_link_token(order: Order) -> str:
    """A signed token that lets a guest (or anyone holding the link) view one order."""
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="order-view").dumps(
        order.number)


def check_guest_token(number: str, token: str | None) -> bool:
    if not token:
        return False
    try:
        return URLSafeSerializer(current_app.config["SECRET_KEY"],
                                 salt="order-view").loads(token) == number
    except BadSignature:
        return False


def viewable(order: Order, user_id: int | None, is_staff: bool, token: str | None) -> bool:
    """Its owner, staff, or whoever holds its signed link may see an order."""
    return ((user_id is not None and order.user_id == user_id) or is_staff
            or check_guest_token(order.number, token))


@dataclass(frozen=True)
class OrderFilters:
    """Which orders a list or an export shows: one status, and the UTC days they were placed
    on (`since` the start of the first day, `until` the start of the day after the last)."""

    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        found = []
        if self.status:
            found.append(Order.status == self.status)
        if self.since:
            found.append(Order.created_at >= self.since)
        if self.until:
            found.append(Order.created_at < self.until)
        return found


_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _day(text: str) -> datetime | None:
    """YYYY-MM-DD exactly: strptime also took "2026-1-7"."""
    if not _DAY.fullmatch(text):
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        return None


def parse_filters(status: str | None = None, since: str | None = None,
                  until: str | None = None) -> OrderFilters:
    """Filters as typed (empty is absent): a status, and days as YYYY-MM-DD, both inclusive.
    One that cannot be read raises ValidationError naming it, rather than listing every order
    as if it had not been given."""
    status, since, until = ((value or "").strip() or None for value in (status, since, until))
    errors = {}
    if status is not None and status not in ORDER_STATUSES:
        errors["status"] = f"There is no order status \"{status[:40]}\"."
    first = _day(since) if since else None
    last = _day(until) if until else None
    if since and first is None:
        errors["since"] = "Enter the start date as YYYY-MM-DD."
    if until and last is None:
        errors["until"] = "Enter the end date as YYYY-MM-DD."
    if first and last and last < first:
        errors["until"] = "The end date is before the start date."
    if errors:
        raise ValidationError(errors)
    # The day after the last is the end; there is none after 9999-12-31 (no end then).
    end = last + timedelta(days=1) if last and last.date() != date.max else None
    return OrderFilters(status, first, end)


def for_user(user_id: int, page: int = 1, per_page: int = 20, *,
             full: bool = False) -> tuple[list[Order], int]:
    """A user's own orders (the account page's history), newest first, with the total count;
    `full` also loads events, shipments and payments (the API shows whole orders)."""
    listed = _page([Order.user_id == user_id], page, per_page, full)
    return listed.orders, listed.total


@dataclass(frozen=True)
class Position:
    """Where a list of orders, newest first, goes on from: after the order placed at
    `created_at` with this `id` (orders placed in the same second follow their ids). Read by
    an index range at any depth, where a page number walks every order before it."""

    created_at: datetime
    id: int
    # The number of the page that follows (what the list says as `page`); None in a cursor
    # given before cursors carried it.
    page: int | None = None

    def encode(self) -> str:
        """Signed with the shop's secret: a cursor the shop did not give is refused, not read
        as a position someone made up."""
        return _cursor_signer().dumps([f"{self.created_at:%Y%m%d%H%M%S%f}", self.id,
                                       self.page])

    @classmethod
    def decode(cls, text: str) -> Position:
        """A cursor this shop gave (Position.encode); anything else is a ValidationError."""
        try:
            moment, number, *rest = _cursor_signer().loads(text)
            page = rest[0] if len(rest) == 1 else None
            if not (isinstance(moment, str) and _CURSOR.fullmatch(moment)
                    and type(number) is int and number > 0 and len(rest) <= 1
                    and (page is None or (type(page) is int and page > 1))):
                raise ValueError(text)
            return cls(datetime.strptime(moment, "%Y%m%d%H%M%S%f"), number, page)
        except (BadSignature, ValueError, TypeError):
            raise ValidationError({"cursor": "That cursor is not one this shop gave: pass "
                                             "next_cursor from a list as it came."}) from None

    def after(self) -> ColumnElement[bool]:
        return or_(Order.created_at < self.created_at,
                   and_(Order.created_at == self.created_at, Order.id < self.id))


_CURSOR = re.compile(r"[0-9]{20}")


def _cursor_signer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="shop.orders.cursor")


@dataclass
class Listed:
    """A page of orders, the number of orders in the whole list, and where the next page
    starts (None on the last one)."""

    orders: list[Order]
    total: int
    next: Position | None
    page: int = 1


def listed_for(user_id: int, is_staff: bool, filters: OrderFilters, page: int = 1,
               per_page: int = 20, cursor: str | None = None) -> Listed:
    """The orders a user may list, filtered, newest first, whole: staff and admins every
    order (a warehouse system finds the paid orders to ship), a customer only their own.
    `cursor` (a Listed.next as encoded): the page that follows it, instead of page number
    `page`; both, or a cursor the shop did not give, is a ValidationError."""
    after = None
    if cursor:
        if page != 1:
            raise ValidationError({"cursor": "Give either page or cursor, not both."})
        after = Position.decode(cursor)
    conditions = filters.conditions()
    if not is_staff:
        conditions.append(Order.user_id == user_id)
    return _page(conditions, page, per_page, full=True, after=after)


def _page(conditions: list[ColumnElement[bool]], page: int, per_page: int,
          full: bool, after: Position | None = None) -> Listed:
    total = db.session.execute(select(func.count(Order.id)).where(*conditions)).scalar_one()
    offset = 0
    if after is not None:
        page = after.page or _page_after(conditions, after, per_page)
        conditions = [*conditions, after.after()]
    else:
        offset = (page - 1) * per_page
        if offset >= total:
            # Past the last page: nothing to read (and no offset a database refuses to bind).
            return Listed([], total, None, page)
    loads = [selectinload(Order.lines)]
    if full:
        loads += [selectinload(Order.events), selectinload(Order.shipments),
                  selectinload(Order.payments)]
    # One more than the page says whether another page follows.
    found = list(db.session.execute(
        select(Order.id, Order.created_at).where(*conditions)
        .order_by(Order.created_at.desc(), Order.id.desc())
        .limit(per_page + 1).offset(offset)))
    following = None
    if len(found) > per_page:
        found = found[:per_page]
        following = Position(found[-1].created_at, found[-1].id, page + 1)
    if not found:
        return Listed([], total, None, page)
    by_id = {order.id: order for order in db.session.execute(
        select(Order).options(*loads).where(Order.id.in_([row.id for row in found]))).scalars()}
    return Listed([by_id[row.id] for row in found], total, following, page)


def _page_after(conditions: list[ColumnElement[bool]], after: Position, per_page: int) -> int:
    """The number of the page that starts after `after`, counted (an old cursor)."""
    before = db.session.execute(select(func.count(Order.id))
                                .where(*conditions, not_(after.after()))).scalar_one()
    return before // per_page + 1
