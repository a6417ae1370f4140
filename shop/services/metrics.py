"""Business counters for /metrics (Prometheus). The HTTP layer owns request metrics."""
from __future__ import annotations

from prometheus_client import Counter

ORDERS_PLACED = Counter("shop_orders_placed_total", "Orders placed")
PAYMENT_FAILURES = Counter("shop_payment_failures_total", "Payments that failed",
                           ["provider"])


def order_placed() -> None:
    ORDERS_PLACED.inc()


def payment_failed(provider: str) -> None:
    PAYMENT_FAILURES.labels(provider=provider).inc()
