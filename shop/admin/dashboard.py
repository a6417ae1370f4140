"""The back office's index: today's, this week's and this month's figures at a glance."""
from __future__ import annotations

from flask_admin import AdminIndexView, expose

from ..services import reports
from .security import StaffAccess


class DashboardView(StaffAccess, AdminIndexView):
    """Revenue and orders for today / 7 / 30 days, orders by status, top products, low stock
    and the 30-day sales chart (SVG drawn on the server)."""

    @expose("/")
    def index(self):
        return self.render("admin/dashboard.html", dashboard=reports.dashboard(),
                           revenue_statuses=reports.REVENUE_STATUSES)
