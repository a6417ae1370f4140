"""Orders: snapshots of what was bought, the state machine's history, shipments, and staff's
internal notes."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .base import created_column, money_column, utcnow

ORDER_STATUSES = ("pending", "paid", "processing", "shipped", "delivered", "cancelled", "refunded")


# Idempotency keys are compared byte for byte: MySQL's usual collations would take keys that
# differ in case ("Order-A", "order-a") for one key and replay the first order for the second.
RESPONSE_BODY = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
IDEMPOTENCY_KEY = String(200).with_variant(mysql.VARCHAR(200, collation="utf8mb4_bin"),
                                           "mysql", "mariadb")


class Order(db.Model):
    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_status_created", "status", "created_at"),
        Index("ix_orders_created", "created_at"),
        Index("ix_orders_user_created", "user_id", "created_at"),
        Index("ix_orders_email", "email"),
        Index("ix_orders_ship_to_name", "ship_to_name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    email: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    currency: Mapped[str] = mapped_column(String(3))
    subtotal: Mapped[Decimal] = money_column()
    discount: Mapped[Decimal] = money_column()
    shipping: Mapped[Decimal] = money_column()
    tax: Mapped[Decimal] = money_column()
    total: Mapped[Decimal] = money_column()
    coupon_code: Mapped[str | None] = mapped_column(String(40))
    shipping_method: Mapped[str] = mapped_column(String(16))
    payment_method: Mapped[str] = mapped_column(String(16))
    shipping_address: Mapped[dict] = mapped_column(JSON)
    # The shipping address's name, as a column: staff find an order by the customer's name.
    ship_to_name: Mapped[str] = mapped_column(String(120), default="", server_default="")
    billing_address: Mapped[dict] = mapped_column(JSON)
    # "web:<token>" or "api:<user>:<key>": a second submission finds the first order.
    idempotency_key: Mapped[str | None] = mapped_column(IDEMPOTENCY_KEY, unique=True)
    # Set once, by the one conditional UPDATE that releases this order's stock.
    stock_released: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    paid_at: Mapped[datetime | None]

    lines: Mapped[list[OrderLine]] = relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="OrderLine.id")
    events: Mapped[list[OrderEvent]] = relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="OrderEvent.id")
    shipments: Mapped[list[Shipment]] = relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="Shipment.id")
    payments = relationship("Payment", back_populates="order", order_by="Payment.id",
                            cascade="all, delete-orphan")
    # Staff only: never on the customer's page, in their email or in the API.
    staff_notes: Mapped[list[OrderNote]] = relationship(
        back_populates="order", cascade="all, delete-orphan",
        order_by="(OrderNote.created_at, OrderNote.id)")
    user = relationship("User")

    @property
    def shipment(self) -> Shipment | None:
        return self.shipments[-1] if self.shipments else None

    @property
    def payment(self):
        return self.payments[-1] if self.payments else None

    @property
    def item_count(self) -> int:
        return sum(line.quantity for line in self.lines)

    def __str__(self) -> str:
        return self.number


class OrderLine(db.Model):
    __tablename__ = "order_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    variant_id: Mapped[int | None] = mapped_column(
        ForeignKey("variants.id", ondelete="SET NULL"), index=True)
    product_id: Mapped[int | None] = mapped_column(
        ForeignKey("products.id", ondelete="SET NULL"), index=True)
    sku: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(160))
    options: Mapped[dict] = mapped_column(JSON, default=dict)
    unit_price: Mapped[Decimal] = money_column()
    quantity: Mapped[int] = mapped_column(Integer)
    line_total: Mapped[Decimal] = money_column()

    order: Mapped[Order] = relationship(back_populates="lines")


class OrderEvent(db.Model):
    """One transition of an order (or its creation, with from_status None)."""

    __tablename__ = "order_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(255), default="system")
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = created_column()

    order: Mapped[Order] = relationship(back_populates="events")


class OrderNote(db.Model):
    """A staff member's internal remark on an order, which the customer never sees (an event's
    note, by contrast, is shown in the customer's order history)."""

    __tablename__ = "order_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # The author's email as it was: the note keeps it when the account goes.
    actor: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = created_column()

    order: Mapped[Order] = relationship(back_populates="staff_notes")


class Shipment(db.Model):
    __tablename__ = "shipments"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    carrier: Mapped[str] = mapped_column(String(80))
    tracking_number: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = created_column()

    order: Mapped[Order] = relationship(back_populates="shipments")


class IdempotencyRecord(db.Model):
    """The first answer to an API request carrying an Idempotency-Key, replayed to repeats."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("scope", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(IDEMPOTENCY_KEY)
    request_hash: Mapped[str] = mapped_column(String(64))
    # "running" while the first request is being served, then "done".
    state: Mapped[str] = mapped_column(String(16), default="running")
    response_status: Mapped[int | None] = mapped_column(Integer)
    # The whole JSON answer (an order of many lines with non-ASCII names, escaped, is past
    # MySQL's TEXT of 64 KB): MEDIUMTEXT, 16 MB.
    response_body: Mapped[str | None] = mapped_column(RESPONSE_BODY)
    created_at: Mapped[datetime] = created_column()
