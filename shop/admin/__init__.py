"""The back office: Flask-Admin at /admin, built anew for every app instance (a module-level
Admin cannot be registered on a second app)."""
from __future__ import annotations

from flask import Flask
from flask_admin import Admin
from flask_admin.menu import MenuLink
from flask_admin.theme import Bootstrap4Theme

from ..http import answer_too_large
from ..models import AuditLog, Category, Coupon, Order, Product, Review, User, Variant
from . import security
from .audit_log import AuditLogView
from .catalog import CategoryView, LowStockView, ProductView
from .dashboard import DashboardView
from .people import CustomerView, ReviewView
from .sales import CouponView, OrderView

URL = "/admin"


def init_admin(app: Flask) -> Admin:
    """Build the back office for `app`: the dashboard and one view per screen."""
    admin = Admin(
        app, name=f"{app.config['SHOP_NAME']} back office",
        index_view=DashboardView(name="Dashboard", url=URL, endpoint="admin"),
        theme=Bootstrap4Theme(base_template="admin/shop_base.html", swatch="default",
                              fluid=True),
        csp_nonce_generator=security.csp_nonce)
    security.install(app, URL)
    products = ProductView(Product, name="Products", category="Catalogue", endpoint="product")
    admin.add_view(products)
    answer_too_large(app, "product.import_csv", products.import_too_large)
    admin.add_view(CategoryView(Category, name="Categories", category="Catalogue",
                                endpoint="category"))
    admin.add_view(LowStockView(Variant, name="Low stock", category="Catalogue",
                                endpoint="low_stock", url=f"{URL}/low-stock"))
    admin.add_view(OrderView(Order, name="Orders", category="Sales", endpoint="order"))
    admin.add_view(CouponView(Coupon, name="Coupons", category="Sales", endpoint="coupon"))
    admin.add_view(CustomerView(User, name="Customers", category="People",
                                endpoint="customer"))
    admin.add_view(ReviewView(Review, name="Reviews", category="People", endpoint="review"))
    admin.add_view(AuditLogView(AuditLog, name="Audit log", endpoint="audit"))
    admin.add_link(MenuLink(name="View shop", url="/"))
    return admin
