"""The back office: Flask-Admin at /admin, built anew for every app instance."""
from __future__ import annotations

from flask import Flask, abort, redirect, request, url_for
from flask_admin import Admin, AdminIndexView, expose
from flask_login import current_user


class SecureIndexView(AdminIndexView):
    """The dashboard; staff and admins only."""

    def is_accessible(self) -> bool:
        return current_user.is_authenticated and current_user.is_staff

    def inaccessible_callback(self, name, **kwargs):
        if not current_user.is_authenticated:
            return redirect(url_for("account.login", next=request.full_path))
        abort(403)

    @expose("/")
    def index(self):
        return self.render("admin/dashboard.html")


def init_admin(app: Flask) -> Admin:
    admin = Admin(app, name=f"{app.config['SHOP_NAME']} back office",
                  index_view=SecureIndexView(url="/admin"))
    return admin
