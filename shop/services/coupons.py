"""Coupons: validity, minimums, and total and per-customer limits that hold under concurrency."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import Coupon, CouponUse, utcnow
from .errors import CouponInactive, CouponInvalid, CouponNotApplicable, CouponUsedUp
from .money import format_money
from .pricing import CouponTerms


def normalise_code(code: str | None) -> str:
    return (code or "").strip().upper()


def normalise_email(email: str | None) -> str:
    return (email or "").strip().lower()


def customer_key(user_id: int | None, email: str | None) -> str:
    """The key a use is recorded under: the account id for customers, the normalised email
    for guests (a person's limit counts both: counted_keys)."""
    return f"user:{user_id}" if user_id else f"email:{normalise_email(email)}"


def counted_keys(user_id: int | None, email: str | None) -> list[str]:
    """The customer keys whose uses count against one person's per-customer limit: their own
    (customer_key), and the other side of the same person. A guest whose email is an
    account's is that customer; a customer's uses made as a guest with the order's email
    count too. Without this, a customer could log out and use a once-per-customer coupon
    again as a guest with the same email."""
    keys = [customer_key(user_id, email)]
    normalised = normalise_email(email)
    if user_id:
        if normalised:
            keys.append(f"email:{normalised}")
    elif normalised:
        from .accounts import find_by_email

        account = find_by_email(normalised)
        if account is not None:
            keys.append(f"user:{account.id}")
    return keys


def find(code: str | None) -> Coupon | None:
    code = normalise_code(code)
    if not code:
        return None
    return db.session.execute(select(Coupon).where(Coupon.code == code)).scalar_one_or_none()


def terms(coupon: Coupon) -> CouponTerms:
    return CouponTerms(code=coupon.code, kind=coupon.kind, value=Decimal(coupon.value))


def unknown_code() -> CouponInvalid:
    """The answer to a code that names no coupon."""
    return CouponInvalid("That coupon code is not valid.", field="code", code="coupon_not_found")


def validate(code: str | None, subtotal: Decimal, *, user_id: int | None = None,
             email: str | None = None, now: datetime | None = None,
             currency: str = "USD") -> Coupon:
    """The coupon for `code` if it applies to this subtotal and customer; raise otherwise.

    Per-customer limits are checked when the customer is known (an account, or a guest's
    email at checkout).
    """
    coupon = find(code)
    if coupon is None:
        raise unknown_code()
    now = now or utcnow()
    if not coupon.active:
        raise CouponInactive("That coupon is no longer active.", field="code")
    if coupon.starts_at and now < coupon.starts_at:
        raise CouponNotApplicable("That coupon is not valid yet.", field="code",
                                  code="coupon_not_yet_valid")
    if coupon.ends_at and now >= coupon.ends_at:
        raise CouponNotApplicable("That coupon has expired.", field="code",
                                  code="coupon_expired")
    if coupon.min_subtotal and subtotal < coupon.min_subtotal:
        raise CouponNotApplicable(
            "That coupon needs a subtotal of at least "
            f"{format_money(coupon.min_subtotal, currency)}.",
            field="code", code="coupon_minimum_not_met",
            details={"min_subtotal": str(coupon.min_subtotal)})
    if coupon.usage_limit is not None and coupon.times_used >= coupon.usage_limit:
        raise CouponUsedUp("That coupon has been used up.", field="code")
    if coupon.per_customer_limit is not None and (user_id or email):
        used = db.session.execute(select(func.count(CouponUse.id)).where(
            CouponUse.coupon_id == coupon.id,
            CouponUse.customer_key.in_(counted_keys(user_id, email)))).scalar_one()
        if used >= coupon.per_customer_limit:
            raise CouponUsedUp("You have already used that coupon as many times as it allows.",
                               field="code", code="coupon_customer_limit")
    return coupon


def record_use(coupon: Coupon, order_id: int, user_id: int | None, email: str) -> None:
    """Count one use atomically; raise CouponUsedUp when a limit is reached. Only flushes.

    The conditional UPDATE takes the coupon's row lock, so every checkout using this coupon
    queues here; the per-customer count after it therefore sees every committed use, and the
    unique (coupon, customer, use_number) constraint stops any use that slips through.
    """
    result = db.session.execute(
        update(Coupon)
        .where(Coupon.id == coupon.id,
               or_(Coupon.usage_limit.is_(None), Coupon.times_used < Coupon.usage_limit))
        .values(times_used=Coupon.times_used + 1)
        .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        raise CouponUsedUp("That coupon has just been used up.", field="code")
    key = customer_key(user_id, email)
    used = db.session.execute(
        select(CouponUse.use_number).where(CouponUse.coupon_id == coupon.id,
                                           CouponUse.customer_key == key)
        .with_for_update()).scalars().all()
    # The same person's uses under their other key (counted_keys), seen whole: every
    # checkout with this coupon waits for the row lock the UPDATE above took.
    linked = [k for k in counted_keys(user_id, email) if k != key]
    elsewhere = db.session.execute(select(func.count(CouponUse.id)).where(
        CouponUse.coupon_id == coupon.id, CouponUse.customer_key.in_(linked))).scalar_one() \
        if linked and coupon.per_customer_limit is not None else 0
    if coupon.per_customer_limit is not None and \
            len(used) + elsewhere >= coupon.per_customer_limit:
        raise CouponUsedUp("You have already used that coupon as many times as it allows.",
                           field="code", code="coupon_customer_limit")
    try:
        with db.session.begin_nested():
            db.session.add(CouponUse(coupon_id=coupon.id, customer_key=key,
                                     use_number=max(used, default=0) + 1, user_id=user_id,
                                     email=normalise_email(email), order_id=order_id))
    except IntegrityError as exc:
        raise CouponUsedUp("You have already used that coupon as many times as it allows.",
                           field="code", code="coupon_customer_limit") from exc


def release_use(order_id: int) -> None:
    """A cancelled order gives its coupon use back. Only flushes; called once per order."""
    uses = db.session.execute(select(CouponUse.id, CouponUse.coupon_id)
                              .where(CouponUse.order_id == order_id)).all()
    for use in uses:
        db.session.execute(update(Coupon).where(Coupon.id == use.coupon_id, Coupon.times_used > 0)
                           .values(times_used=Coupon.times_used - 1)
                           .execution_options(synchronize_session=False))
    if uses:
        db.session.execute(delete(CouponUse).where(CouponUse.order_id == order_id))
