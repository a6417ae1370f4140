"""Payment provider endpoints: Stripe's return pages and webhook."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("payments", __name__, url_prefix="/payments")
