"""The back office in a real browser: sales history for a served shop, staff login, and a watch
on the console for errors (a CSP refusal shows up there). Shared by tests/e2e/test_admin.py and
scripts/admin_screenshots.py."""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

from playwright.sync_api import Page, expect

from .server import Shop

CARRIERS = ("DHL", "UPS", "Royal Mail", "FedEx")


@dataclass
class Sales:
    """What `seed_sales` made: order ids by the status they ended in."""

    by_status: dict[str, list[int]] = field(default_factory=dict)

    def first(self, status: str) -> int:
        return self.by_status[status][0]


def seed_sales(shop: Shop, orders_count: int = 60, seed: int = 7) -> Sales:
    """Place orders in the served shop's database through the checkout service, walk them
    through the state machine and spread them over the last 30 days (a stable random mix)."""
    from sqlalchemy import select, update

    from shop import create_app
    from shop.extensions import db
    from shop.models import Order, Variant, utcnow
    from shop.services import cart as carts
    from shop.services import checkout, orders
    from shop.services.cart import CartOwner
    from shop.services.checkout import CheckoutRequest

    folder = shop.log.parent
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'shop.db'}",
                      "OUTBOX_DIR": str(folder / "outbox"), "UPLOAD_DIR": str(folder / "uploads"),
                      "REDIS_URL": None, "STRIPE_SECRET_KEY": None,
                      # Order mails link to the served shop.
                      "SERVER_NAME": urlparse(shop.url).netloc}, env="development")
    rng = random.Random(seed)
    address = {"name": "Ada Lovelace", "line1": "12 Analytical Row", "line2": "",
               "city": "Springfield", "region": "IL", "postal_code": "62701", "country": "US",
               "phone": ""}
    paths = [[], ["paid"], ["paid", "processing"], ["paid", "shipped"],
             ["paid", "shipped", "delivered"], ["paid", "shipped", "delivered"], ["cancelled"],
             ["paid", "refunded"], ["paid", "shipped", "delivered"], ["paid"]]
    sales = Sales()
    staff = orders.Actor(None, shop.staff_email)
    with app.app_context():
        variants = list(db.session.execute(
            select(Variant.id).where(Variant.stock_quantity >= 20).order_by(Variant.id)
        ).scalars())
        now = utcnow()
        for i in range(orders_count):
            owner = CartOwner(token=CartOwner.new_guest_token())
            for variant_id in rng.sample(variants, rng.randint(1, 3)):
                carts.add_item(owner, rng.randint(1, 3), variant_id=variant_id)
            order = checkout.place_order(owner, CheckoutRequest(
                email=f"customer{i}@example.com", shipping_address=address))
            path = paths[i % len(paths)] if i >= 3 else paths[i]
            for to_status in path:
                orders.transition(order.id, to_status, staff, carrier=rng.choice(CARRIERS),
                                  tracking_number=f"TRK{rng.randint(10**8, 10**9 - 1)}")
            age = timedelta(days=rng.randint(1, 29), hours=rng.randint(0, 20)) if i >= 6 \
                else timedelta(minutes=5 * i)
            db.session.execute(update(Order).where(Order.id == order.id)
                               .values(created_at=now - age))
            db.session.commit()
            final = path[-1] if path else "pending"
            sales.by_status.setdefault(final, []).append(order.id)
        db.session.remove()
        db.engine.dispose()
    return sales


def watch_console(page: Page) -> list[str]:
    """Collect the page's console errors and uncaught exceptions (CSP refusals included)."""
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    return problems


def staff_login(page: Page, shop: Shop) -> None:
    """Open the back office; the shop sends us to log in and back."""
    page.goto(shop("/admin/"))
    expect(page).to_have_url(re.compile(r"/account/login\?next="))
    page.get_by_label("Email").fill(shop.staff_email)
    page.get_by_label("Password", exact=True).fill(shop.staff_password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/admin/$"))
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()


def admin_ready(page: Page) -> None:
    """Flask-Admin's scripts (jQuery, form.js) have run."""
    page.wait_for_load_state("load")
    page.wait_for_function("() => window.jQuery !== undefined")


def screenshots_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "docs" / "screenshots"
