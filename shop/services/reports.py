"""The back office dashboard's figures, read from the database, and its 30-day sales chart.

Definitions (shown on the dashboard too):
- Days are UTC calendar days. "Today" starts at 00:00 UTC; "7 days" and "30 days" are the last
  7 and 30 calendar days including today.
- Orders: every order placed in the period, whatever its status now.
- Revenue: the totals (tax and shipping included) of the orders placed in the period that are
  paid and kept: status paid, processing, shipped or delivered. Orders awaiting payment,
  cancelled or refunded are not revenue.
- Top products: units sold in the last 30 days on orders that are not cancelled or refunded.
- Low stock: variants with stock at or below their low-stock threshold (sold out included), of
  products on sale (active).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import and_, case, func, select

from ..extensions import db
from ..models import ORDER_STATUSES, Order, OrderLine, Product, Variant, utcnow
from .money import ZERO, quantize
from .orders import RELEASED_STATUSES, STATUS_LABELS

REVENUE_STATUSES = ("paid", "processing", "shipped", "delivered")
PERIODS = (("today", "Today", 1), ("7d", "Last 7 days", 7), ("30d", "Last 30 days", 30))


@dataclass
class PeriodFigures:
    key: str
    label: str
    since: datetime
    orders: int
    revenue: Decimal
    paid_orders: int

    @property
    def average(self) -> Decimal:
        """Average paid order value."""
        return quantize(self.revenue / self.paid_orders) if self.paid_orders else ZERO


@dataclass
class StatusCount:
    status: str
    label: str
    count: int


@dataclass
class TopProduct:
    product_id: int | None
    name: str
    units: int
    revenue: Decimal


@dataclass
class LowStockItem:
    variant_id: int
    product_id: int
    product_name: str
    sku: str
    label: str
    stock_quantity: int
    low_stock_threshold: int


@dataclass
class DayFigures:
    day: date
    orders: int
    revenue: Decimal


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    day: date
    revenue: Decimal
    orders: int


@dataclass
class Tick:
    y: float
    value: Decimal


@dataclass
class Chart:
    """A bar chart's geometry in SVG user units; the template draws it."""

    width: int
    height: int
    plot_left: int
    plot_top: int
    plot_width: int
    plot_height: int
    bars: list[Bar]
    ticks: list[Tick]
    labels: list[tuple[float, str]]
    total: Decimal
    max_value: Decimal


@dataclass
class Dashboard:
    now: datetime
    periods: list[PeriodFigures]
    by_status: list[StatusCount]
    top_products: list[TopProduct]
    low_stock: list[LowStockItem]
    low_stock_total: int
    days: list[DayFigures] = field(default_factory=list)
    chart: Chart | None = None


def day_start(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _revenue_expr():
    return func.coalesce(func.sum(case((Order.status.in_(REVENUE_STATUSES), Order.total),
                                       else_=None)), 0)


def period_figures(now: datetime) -> list[PeriodFigures]:
    """Orders and revenue for today, 7 and 30 days (one query each)."""
    today = day_start(now)
    result = []
    for key, label, days in PERIODS:
        since = today - timedelta(days=days - 1)
        row = db.session.execute(
            select(func.count(Order.id), _revenue_expr(),
                   func.count(case((Order.status.in_(REVENUE_STATUSES), Order.id))))
            .where(Order.created_at >= since)).one()
        result.append(PeriodFigures(key, label, since, int(row[0] or 0),
                                    quantize(Decimal(str(row[1] or 0))), int(row[2] or 0)))
    return result


def orders_by_status() -> list[StatusCount]:
    """How many orders are in each status now (all time), in the state machine's order."""
    counts = dict(db.session.execute(
        select(Order.status, func.count(Order.id)).group_by(Order.status)).all())
    return [StatusCount(s, STATUS_LABELS.get(s, s), int(counts.get(s, 0)))
            for s in ORDER_STATUSES]


def top_products(since: datetime, limit: int = 5) -> list[TopProduct]:
    """Best sellers by units since a moment, on orders that still hold their stock."""
    units = func.sum(OrderLine.quantity)
    rows = db.session.execute(
        select(OrderLine.product_id, func.max(OrderLine.name), units,
               func.sum(OrderLine.line_total))
        .join(Order, Order.id == OrderLine.order_id)
        .where(Order.created_at >= since, Order.status.not_in(RELEASED_STATUSES))
        .group_by(OrderLine.product_id)
        .order_by(units.desc(), OrderLine.product_id)
        .limit(limit)).all()
    names = {}
    ids = [r[0] for r in rows if r[0] is not None]
    if ids:
        names = dict(db.session.execute(select(Product.id, Product.name)
                                        .where(Product.id.in_(ids))).all())
    return [TopProduct(r[0], names.get(r[0], r[1]), int(r[2] or 0),
                       quantize(Decimal(str(r[3] or 0)))) for r in rows]


def low_stock_condition():
    """Which variants are low on stock: at or below their threshold, of a product on sale. A
    product taken off sale (inactive: discontinued, or kept because it was ordered, which the
    back office asks for instead of deleting it) is not restocked, and its sold-out variants
    filled the top of every low-stock list for good: a threshold of 0 still holds 0 units."""
    return and_(Variant.stock_quantity <= Variant.low_stock_threshold,
                Variant.product.has(Product.active.is_(True)))


def low_stock(limit: int = 10) -> tuple[list[LowStockItem], int]:
    """Variants low on stock (low_stock_condition), fewest first, and how many there are."""
    condition = low_stock_condition()
    total = db.session.execute(select(func.count(Variant.id)).where(condition)).scalar_one()
    rows = db.session.execute(
        select(Variant, Product.name).join(Product, Product.id == Variant.product_id)
        .where(condition).order_by(Variant.stock_quantity, Product.name, Variant.sku)
        .limit(limit)).all()
    items = [LowStockItem(v.id, v.product_id, name, v.sku, v.label, v.stock_quantity,
                          v.low_stock_threshold) for v, name in rows]
    return items, int(total)


def daily_sales(now: datetime, days: int = 30) -> list[DayFigures]:
    """Orders and revenue per UTC day for the last `days` days including today, oldest first;
    days without orders are included with zeros."""
    first = day_start(now) - timedelta(days=days - 1)
    day = func.date(Order.created_at)
    rows = db.session.execute(
        select(day, func.count(Order.id), _revenue_expr())
        .where(Order.created_at >= first).group_by(day)).all()
    found = {str(r[0])[:10]: (int(r[1] or 0), quantize(Decimal(str(r[2] or 0)))) for r in rows}
    result = []
    for offset in range(days):
        current = (first + timedelta(days=offset)).date()
        count, revenue = found.get(current.isoformat(), (0, ZERO))
        result.append(DayFigures(current, count, revenue))
    return result


def _nice_ceiling(value: Decimal) -> Decimal:
    """A round axis maximum at or above `value` (1, 2, 2.5 or 5 times a power of ten)."""
    if value <= 0:
        return Decimal("100")
    magnitude = Decimal(10) ** (len(str(int(value))) - 1)
    for step in (1, 2, Decimal("2.5"), 5, 10):
        candidate = magnitude * Decimal(step)
        if candidate >= value:
            return candidate
    return magnitude * 10


def sales_chart(days: list[DayFigures], width: int = 1000, height: int = 260) -> Chart:
    """Bars of revenue per day with a y axis of four ticks."""
    left, top, right, bottom = 72, 12, 8, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((d.revenue for d in days), default=ZERO)
    ceiling = _nice_ceiling(peak)
    slot = plot_w / max(len(days), 1)
    bar_w = max(slot * 0.7, 1.0)
    bars = []
    for i, d in enumerate(days):
        h = float(d.revenue / ceiling) * plot_h if ceiling else 0.0
        bars.append(Bar(x=round(left + i * slot + (slot - bar_w) / 2, 2),
                        y=round(top + plot_h - h, 2), width=round(bar_w, 2),
                        height=round(h, 2), day=d.day, revenue=d.revenue, orders=d.orders))
    ticks = [Tick(y=round(top + plot_h - plot_h * i / 4, 2), value=quantize(ceiling * i / 4))
             for i in range(5)]
    labels = [(round(left + i * slot + slot / 2, 2), d.day.strftime("%d %b"))
              for i, d in enumerate(days) if i % 5 == 0 or i == len(days) - 1]
    return Chart(width, height, left, top, plot_w, plot_h, bars, ticks, labels,
                 quantize(sum((d.revenue for d in days), ZERO)), ceiling)


def dashboard(now: datetime | None = None) -> Dashboard:
    """Everything the back office's index shows."""
    now = now or utcnow()
    days = daily_sales(now, 30)
    items, total = low_stock(10)
    return Dashboard(now=now, periods=period_figures(now), by_status=orders_by_status(),
                     top_products=top_products(day_start(now) - timedelta(days=29)),
                     low_stock=items, low_stock_total=total, days=days,
                     chart=sales_chart(days))
