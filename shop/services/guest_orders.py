"""Orders placed as a guest, later claimed by the account with their email.

The shop does not verify the email an account is registered with (anyone can register with any
address), so a guest order is never attached because the emails match: the account asks for a
link, mailed to its address (proof that the mailbox is theirs), and following it while logged
in attaches the guest orders placed with that address. The customer then sees them in their
history and may review what they bought (services.reviews counts the account's orders)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from flask import current_app, render_template
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select, update

from ..extensions import db
from ..models import Order, User
from ..models.base import is_id
from . import jobs, links, mail
from .accounts import normalise_email
from .database import write_transaction
from .errors import Forbidden, NotFound

EXPIRED = "This link has expired. Ask for a new one on your orders page."
NOT_VALID = "This link is not valid. Ask for a new one on your orders page."
USED = "This link was already used or is not valid any more. Ask for a new one on your orders page."
OTHER_ACCOUNT = ("This link was sent to another account. Log in with the account that asked "
                 "for it to link the orders.")


@dataclass(frozen=True)
class Claim:
    """What a valid link would attach: the account, its email and the guest orders' ids."""

    user_id: int
    email: str
    order_ids: list[int]


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="link-guest-orders")


def guest_order_ids(email: str, upto: int | None = None) -> list[int]:
    """The ids of the orders placed without an account with this email (normalised, and
    compared again as normalised: MySQL's collation of orders.email ignores accents, where the
    shop's emails do not), oldest first; `upto`: only those with ids up to it."""
    normalised = normalise_email(email)
    if not normalised:
        return []
    stmt = select(Order.id, Order.email).where(Order.user_id.is_(None),
                                               Order.email == normalised)
    if upto is not None:
        stmt = stmt.where(Order.id <= upto)
    return sorted(order_id for order_id, found in db.session.execute(stmt)
                  if normalise_email(found) == normalised)


def _fingerprint(user_id: int, email: str, order_ids: list[int]) -> str:
    """The account, its email and the orders a link was made for: once they are attached (or
    the account's email changes) the link stops working (single use)."""
    key = f"{user_id}:{email}:{','.join(map(str, order_ids))}"
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def link_token(user: User, order_ids: list[int]) -> str:
    """The signed, expiring token of a link that attaches these guest orders to the account.
    It names the last of them: an order placed as a guest after the mail is not in it."""
    return _serializer().dumps({"uid": user.id, "upto": max(order_ids),
                                "fp": _fingerprint(user.id, user.email, order_ids)})


def request_link(user_id: int, url_root: str) -> None:
    """Queue the job that mails the account the link, if its email has guest orders (the job
    looks: the asker is told the same either way, as with the password reset)."""
    base = current_app.config.get("BASE_URL") or url_root
    jobs.enqueue(send_link, user_id, base, after_response=True)


def send_link(user_id: int, base_url: str) -> None:
    """The job: mail the account, at its email, the link that attaches the guest orders placed
    with it (on SHOP_BASE_URL when it is set, else on `base_url`). Nothing when the account is
    gone or disabled, or there are no such orders any more."""
    user = db.session.get(User, user_id)
    if user is None or not user.active:
        return
    order_ids = guest_order_ids(user.email)
    if not order_ids:
        return
    link = links.public_url("account.link_orders", base_url, token=link_token(user, order_ids))
    context = {"user": user, "link": link, "count": len(order_ids),
               "hours": current_app.config["LINK_ORDERS_HOURS"],
               "shop": current_app.config["SHOP_NAME"]}
    mail.send(user.email, f"Add your earlier orders to your {context['shop']} account",
              render_template("mail/link_orders.txt", **context),
              render_template("mail/link_orders.html", **context))


def check_link(user_id: int, token: str) -> Claim:
    """What the link would attach for the logged-in account `user_id`. NotFound when it is
    altered, expired, already used or made for an email the account no longer has; Forbidden
    when it was sent to another account."""
    max_age = int(current_app.config["LINK_ORDERS_HOURS"]) * 3600
    try:
        data = _serializer().loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise NotFound(EXPIRED, code="expired") from exc
    except BadSignature as exc:
        raise NotFound(NOT_VALID) from exc
    if not isinstance(data, dict) or not is_id(data.get("uid")) or not is_id(data.get("upto")):
        raise NotFound(NOT_VALID)
    if data["uid"] != user_id:
        raise Forbidden(OTHER_ACCOUNT)
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound(NOT_VALID)
    order_ids = guest_order_ids(user.email, upto=data["upto"])
    if not order_ids or data.get("fp") != _fingerprint(user.id, user.email, order_ids):
        raise NotFound(USED, code="used")
    return Claim(user_id=user.id, email=user.email, order_ids=order_ids)


def attach(user_id: int, token: str) -> int:
    """Follow a mailed link: the guest orders it was made for become the account's (its
    history, and purchases it may review). How many were attached; the errors of check_link."""
    with write_transaction():
        claim = check_link(user_id, token)
        result = db.session.execute(
            update(Order).where(Order.id.in_(claim.order_ids), Order.user_id.is_(None))
            .values(user_id=claim.user_id).execution_options(synchronize_session=False))
        if result.rowcount != len(claim.order_ids):
            # The same link followed twice at once: the other one attached them.
            raise NotFound(USED, code="used")
    return len(claim.order_ids)
