"""Coupons: validity, minimums, and total and per-customer limits that hold under concurrency."""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import delete, false, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import Coupon, CouponUse, User, utcnow
from . import reads
from .errors import CouponInactive, CouponInvalid, CouponNotApplicable, CouponUsedUp
from .money import format_money, to_string
from .pricing import CouponTerms


def normalise_code(code: str | None) -> str:
    """A code as stored: trimmed, upper case, composed (NFC: "É" typed as E and a combining
    accent is the same code; codes are compared byte for byte, migration 0023)."""
    return unicodedata.normalize("NFC", (code or "").strip()).upper()


def normalise_email(email: str | None) -> str:
    return (email or "").strip().lower()


def customer_key(user_id: int | None, email: str | None) -> str:
    """The key a use is recorded under: the account id for customers, the normalised email
    for guests (a person's limit counts both and more: person_uses)."""
    return f"user:{user_id}" if user_id else f"email:{normalise_email(email)}"


def person_uses(user_id: int | None, email: str | None):
    """The condition on coupon_uses that picks one person's uses, for a per-customer limit.

    A person is an account and every email it has gone by, or a guest's email and the account
    that has (or had) it. Their uses are those recorded under the account (its key or its id:
    changing the account's email does not reset them) and under the email (as a guest, or by
    an account while it had that email), and one step further: the other uses of an account
    that used the coupon under this email, and the uses under any email this account used it
    with. Guest uses under an email are tied to the account that takes that email
    (`link_account`), so registering with it, or moving to it, and then changing the
    account's email does not reset them either.
    """
    normalised = normalise_email(email)
    if not user_id and normalised:
        from .accounts import find_by_email

        account = find_by_email(normalised)
        user_id = account.id if account is not None else None
    conditions = []
    if user_id:
        conditions += [CouponUse.customer_key == f"user:{user_id}", CouponUse.user_id == user_id,
                       CouponUse.email.in_(select(CouponUse.email).where(
                           CouponUse.user_id == user_id).scalar_subquery()),
                       # the account's email now, when the caller named none (the cart)
                       CouponUse.email == select(User.email).where(User.id == user_id)
                       .scalar_subquery()]
    if normalised:
        conditions += [CouponUse.customer_key == f"email:{normalised}",
                       CouponUse.email == normalised,
                       CouponUse.user_id.in_(select(CouponUse.user_id).where(
                           CouponUse.email == normalised, CouponUse.user_id.is_not(None))
                           .scalar_subquery())]
    return or_(*conditions) if conditions else false()


def link_account(user_id: int, email: str) -> None:
    """An account takes an email (registering, or changing to it): the uses made as a guest
    with that email become the account's, so they still count once it changes its email.
    Only flushes: part of the caller's transaction."""
    normalised = normalise_email(email)
    if normalised:
        db.session.execute(update(CouponUse).where(CouponUse.user_id.is_(None),
                                                   CouponUse.email == normalised)
                           .values(user_id=user_id).execution_options(synchronize_session=False))


def _plain(code: str) -> str:
    """A normalised code as a keyboard would have typed it: compatibility forms made plain
    (NFKC: full-width "ＷＥＬＣＯＭＥ１０" from a Japanese input method is WELCOME10) and
    invisible format characters dropped (a zero-width space pasted with the code)."""
    plain = unicodedata.normalize("NFKC", code)
    return "".join(ch for ch in plain if unicodedata.category(ch) != "Cf").strip().upper()


def find(code: str | None) -> Coupon | None:
    """The coupon a shopper's code names: the code as stored, else (a second read, only for a
    code that found nothing and has such characters) its plain form. Codes are stored as staff
    typed them (NFC), so one made with full-width letters is still found as typed."""
    code = normalise_code(code)
    if not code:
        return None
    coupon = db.session.execute(select(Coupon).where(Coupon.code == code)).scalar_one_or_none()
    plain = _plain(code)
    if coupon is None and plain and plain != code:
        coupon = db.session.execute(select(Coupon).where(Coupon.code == plain)
                                    ).scalar_one_or_none()
    return coupon


@dataclass(frozen=True)
class Offer:
    """A coupon as the shop advertises it: "WELCOME10" for "10% off"."""

    code: str
    what: str


def offer(code: str | None, currency: str, now: datetime | None = None) -> Offer | None:
    """The coupon `code` described for an advert, while anyone may still use it: it exists,
    is active, has started, has not ended and is not used up (None otherwise, so a page never
    offers a code that checkout refuses). Its minimum subtotal is part of the offer. A plain
    read (reads.rows), as the catalogue's: the home page opens no ORM session."""
    code = normalise_code(code)
    if not code:
        return None
    moment = f"{now or utcnow():%Y-%m-%d %H:%M:%S.%f}"  # compares as stored, on both databases
    found = reads.rows(
        "SELECT code, kind, value, min_subtotal FROM coupons WHERE code = :code "
        "AND active = :active AND (starts_at IS NULL OR starts_at <= :now) "
        "AND (ends_at IS NULL OR ends_at > :now) "
        "AND (usage_limit IS NULL OR times_used < usage_limit)",
        {"code": code, "active": True, "now": moment})
    if not found:
        return None
    code, kind, value, min_subtotal = found[0]
    value, min_subtotal = reads.money(value), reads.money(min_subtotal)
    if kind == "percent":
        what = f"{value.normalize():f}% off"
    elif kind == "fixed":
        what = f"{format_money(value, currency)} off"
    else:
        what = "free shipping"
    if min_subtotal:
        what += f" on orders from {format_money(min_subtotal, currency)}"
    return Offer(code, what)


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
            details={"min_subtotal": to_string(coupon.min_subtotal, currency)})
    if coupon.usage_limit is not None and coupon.times_used >= coupon.usage_limit:
        raise CouponUsedUp("That coupon has been used up.", field="code")
    if coupon.per_customer_limit is not None and (user_id or email):
        used = db.session.execute(select(func.count(CouponUse.id)).where(
            CouponUse.coupon_id == coupon.id, person_uses(user_id, email))).scalar_one()
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
    # All the same person's uses (person_uses), seen whole: every checkout with this coupon
    # waits for the row lock the UPDATE above took.
    counted = db.session.execute(select(func.count(CouponUse.id)).where(
        CouponUse.coupon_id == coupon.id, person_uses(user_id, email))).scalar_one() \
        if coupon.per_customer_limit is not None else 0
    if coupon.per_customer_limit is not None and counted >= coupon.per_customer_limit:
        raise CouponUsedUp("You have already used that coupon as many times as it allows.",
                           field="code", code="coupon_customer_limit")
    if not user_id:
        # A guest under an account's email: the use is that account's too (as `link_account`
        # makes it when an account takes the email later), so changing the account's email
        # does not give the coupon back.
        from .accounts import find_by_email

        account = find_by_email(normalise_email(email))
        user_id = account.id if account is not None else None
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
