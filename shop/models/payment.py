"""Payments and the provider events already processed."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import DateTime, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .base import Money, created_column, money_column, utcnow

PAYMENT_STATUSES = ("pending", "succeeded", "failed", "refunded", "cancelled")


class Payment(db.Model):
    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("provider", "reference"),
        # Stripe's refund events name the PaymentIntent (charge.refunded): found by index.
        Index("ix_payments_provider_payment", "provider", "provider_payment_id"),
        # The back office counts and lists the orders whose failed refund awaits staff.
        Index("ix_payments_refund_failure", "refund_failure"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(16))
    # Stripe's Checkout Session id; None for manual payments.
    reference: Mapped[str | None] = mapped_column(String(255))
    # Stripe's PaymentIntent, needed for refunds.
    provider_payment_id: Mapped[str | None] = mapped_column(String(255))
    amount: Mapped[Decimal] = money_column()
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    checkout_url: Mapped[str | None] = mapped_column(String(1000))
    # Set when a refund of this payment failed after it was made (the customer's card was
    # closed): staff must pay the customer back another way, then clear it ("Mark refund
    # settled"). What failed, for the admin's order page; the history has every detail.
    refund_failure: Mapped[str | None] = mapped_column(String(500))
    # The highest running total Stripe reported refunded (charge.refunded's amount_refunded)
    # while the order kept its status, less refunds that failed since: a report arriving
    # late with a smaller total is not recorded again (Stripe's events come in any order).
    refunded_amount: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"),
                                                     server_default="0")
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    order = relationship("Order", back_populates="payments")


class ProviderEvent(db.Model):
    """A webhook event id seen once: a replay finds it and changes nothing."""

    __tablename__ = "provider_events"
    __table_args__ = (UniqueConstraint("provider", "event_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = created_column()
