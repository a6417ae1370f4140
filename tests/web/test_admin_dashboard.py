"""The dashboard's figures are what the database holds: revenue and orders for today, 7 and
30 days, orders by status, top products, low stock, and the 30-day chart."""
from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from shop.extensions import db
from shop.models import Order, OrderLine, Variant, utcnow
from shop.services import cart as carts
from shop.services import checkout, orders
from shop.services.cart import CartOwner
from shop.services.checkout import CheckoutRequest
from shop.services.money import format_money
from tests import factories as f
from tests.web.admin_support import login_staff

PAID = ("paid", "processing", "shipped", "delivered")
SYSTEM = orders.Actor(None, "test")


def place(variant_id: int, quantity: int, email: str) -> Order:
    owner = CartOwner(token=CartOwner.new_guest_token())
    carts.add_item(owner, quantity, variant_id=variant_id)
    return checkout.place_order(owner, CheckoutRequest(email=email,
                                                       shipping_address=dict(f.ADDRESS)))


@pytest.fixture
def seeded(app):
    """Orders spread over 40 days in every status."""
    mug = f.product("Stoneware Mug", price="12.50", stock=200, slug="mug")
    board = f.product("Oak Board", price="45.00", stock=200, slug="board")
    scarf = f.product("Wool Scarf", price="30.00", stock=6, slug="scarf")
    f.product("Last Candle", price="8.00", stock=1, slug="candle")
    plan = [  # (days ago, product, quantity, path of statuses)
        (0, mug, 2, ["paid"]), (0, board, 1, []), (0, scarf, 1, ["cancelled"]),
        (1, mug, 1, ["paid", "processing"]), (3, board, 2, ["paid", "shipped"]),
        (6, mug, 4, ["paid", "shipped", "delivered"]), (7, board, 1, ["paid"]),
        (12, scarf, 2, ["paid", "refunded"]), (20, mug, 3, ["paid"]), (29, board, 1, ["paid"]),
        (30, mug, 5, ["paid"]), (40, board, 3, ["paid"]),
    ]
    now = utcnow()
    for i, (days, product, quantity, path) in enumerate(plan):
        order = place(f.variant_of(product).id, quantity, f"buyer{i}@example.com")
        for to_status in path:
            orders.transition(order.id, to_status, SYSTEM, carrier="DHL", tracking_number="T1")
        if days:
            db.session.execute(update(Order).where(Order.id == order.id).values(
                created_at=now - timedelta(days=days, minutes=1)))
            db.session.commit()


def expected():
    """The figures, computed here from the rows, independently of the reports service."""
    today = utcnow().date()
    all_orders = list(db.session.execute(select(Order)).scalars())
    periods = {}
    for key, days in (("today", 1), ("7d", 7), ("30d", 30)):
        inside = [o for o in all_orders if (today - o.created_at.date()).days < days]
        periods[key] = (len(inside), sum((o.total for o in inside if o.status in PAID),
                                         Decimal("0.00")))
    by_status = Counter(o.status for o in all_orders)
    units: Counter = Counter()
    for line, order in db.session.execute(select(OrderLine, Order).join(Order)).all():
        if (today - order.created_at.date()).days < 30 and order.status not in (
                "cancelled", "refunded"):
            units[line.name] += line.quantity
    return periods, by_status, units


def test_dashboard_figures_equal_the_database(client, auth, seeded):
    login_staff(auth)
    html = client.get("/admin/").get_data(as_text=True)
    periods, by_status, units = expected()
    for key, (count, revenue) in periods.items():
        block = html[html.index(f'id="kpi-{key}"'):]
        shown_revenue = re.search(r'data-figure="revenue">([^<]+)<', block).group(1)
        shown_orders = re.search(r'data-figure="orders">(\d+)<', block).group(1)
        assert shown_revenue == format_money(revenue, "USD"), key
        assert int(shown_orders) == count, key
    assert periods["today"][0] == 3 and periods["7d"][0] == 6 and periods["30d"][0] == 10
    for status in orders.TRANSITIONS:
        shown = re.search(rf'data-status="{status}">(\d+)<', html).group(1)
        assert int(shown) == by_status.get(status, 0), status
    top = html[html.index('id="top-products"'):]
    shown_top = re.findall(r'<a href="/admin/product/edit/\?id=\d+">([^<]+)</a></td>\s*'
                           r'<td class="text-right">(\d+)</td>', top)
    assert [(name, int(n)) for name, n in shown_top] == sorted(
        units.items(), key=lambda item: -item[1])
    low = html[html.index('id="low-stock"'):html.index("All low-stock variants")]
    low_names = set(re.findall(r'<a href="/admin/product/edit/\?id=\d+">([^<]+)</a>', low))
    variants = db.session.execute(select(Variant)).scalars()
    assert low_names == {v.product.name for v in variants
                         if v.stock_quantity <= v.low_stock_threshold} == {"Last Candle"}


def test_the_sales_chart_is_svg_with_one_bar_per_day(client, auth, seeded):
    login_staff(auth)
    html = client.get("/admin/").get_data(as_text=True)
    svg = html[html.index("<svg"):html.index("</svg>")]
    bars = re.findall(r'<rect class="bar"[^>]*height="([\d.]+)"[^>]*><title>([^<]+)</title>',
                      svg)
    assert len(bars) == 30
    periods, _, _ = expected()
    today_bar = bars[-1][1]
    assert today_bar.endswith(f": {format_money(periods['today'][1], 'USD')}, 3 orders")
    heights = [float(h) for h, _ in bars]
    assert max(heights) > 0 and heights.count(0.0) >= 20  # most days have no sales
    assert "<script" not in svg


def test_an_empty_shop_has_a_calm_dashboard(client, auth):
    login_staff(auth)
    html = client.get("/admin/").get_data(as_text=True)
    assert html.count('data-figure="revenue">$0.00<') == 3
    assert "No sales in the last 30 days." in html
    assert "Every variant on sale is above its threshold." in html


def test_low_stock_leaves_out_products_taken_off_sale(client, auth):
    """A product that has been ordered is deactivated, not deleted, and its sold-out variants
    stayed at the top of the dashboard's and the Low stock screen's lists for good (a
    threshold of 0 still holds 0 units): nothing staff could do took them off."""
    login_staff(auth)
    f.product("Old Candle", price="8.00", stock=0, slug="old-candle", active=False)
    f.product("Last Candle", price="8.00", stock=1, slug="last-candle")
    html = client.get("/admin/").get_data(as_text=True)
    low = html[html.index('id="low-title"'):html.index("All low-stock variants")]
    assert "Last Candle" in low and "Old Candle" not in low
    assert "Low stock <small" in low and "(1)" in low
    html = client.get("/admin/low-stock/").get_data(as_text=True)
    assert "Last Candle" in html and "Old Candle" not in html
