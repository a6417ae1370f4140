"""Coupons and the record of every use."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .base import created_column, money_column

COUPON_KINDS = ("percent", "fixed", "free_shipping")


def _exact(length: int) -> String:
    """A column of normalised text compared byte for byte, as on SQLite: MySQL's usual
    collation would also ignore accents ("WÉLCOME10" found WELCOME10). Migration 0023."""
    return String(length).with_variant(mysql.VARCHAR(length, collation="utf8mb4_bin"),
                                       "mysql", "mariadb")


class Coupon(db.Model):
    __tablename__ = "coupons"
    __table_args__ = (
        CheckConstraint("value >= 0", name="value_not_negative"),
        CheckConstraint("usage_limit IS NULL OR times_used <= usage_limit",
                        name="within_usage_limit"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored upper case: codes are case-insensitive (and accent-sensitive: _exact).
    code: Mapped[str] = mapped_column(_exact(40), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="percent")
    value: Mapped[Decimal] = money_column(default=Decimal("0"))
    min_subtotal: Mapped[Decimal | None] = money_column(nullable=True)
    starts_at: Mapped[datetime | None]
    ends_at: Mapped[datetime | None]
    usage_limit: Mapped[int | None] = mapped_column(Integer)
    per_customer_limit: Mapped[int | None] = mapped_column(Integer)
    times_used: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = created_column()

    uses: Mapped[list[CouponUse]] = relationship(back_populates="coupon")

    @property
    def remaining_uses(self) -> int | None:
        return None if self.usage_limit is None else max(self.usage_limit - self.times_used, 0)

    def __str__(self) -> str:
        return self.code


class CouponUse(db.Model):
    """One use of a coupon by one order.

    `customer_key` is "user:<id>" for an account (so changing the email does not reset it) or
    "email:<normalised email>" for a guest. `use_number` counts that customer's uses from 1; the
    unique constraint makes two simultaneous checkouts unable to both take the same slot.
    """

    __tablename__ = "coupon_uses"
    __table_args__ = (UniqueConstraint("coupon_id", "customer_key", "use_number"),
                      # a person's uses under an email (coupons.person_uses)
                      Index("ix_coupon_uses_coupon_email", "coupon_id", "email"))

    id: Mapped[int] = mapped_column(primary_key=True)
    coupon_id: Mapped[int] = mapped_column(ForeignKey("coupons.id", ondelete="CASCADE"))
    customer_key: Mapped[str] = mapped_column(_exact(255))
    use_number: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True)
    email: Mapped[str] = mapped_column(_exact(255))
    order_id: Mapped[int | None] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = created_column()

    coupon: Mapped[Coupon] = relationship(back_populates="uses")
