"""Unbound Flask extensions; the app factory binds them (cookiecutter-flask style)."""
from flask import current_app, request, session
from flask_caching import Cache
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_login.config import COOKIE_NAME
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData

from .services.routing import RoutingSession

__all__ = ["RoutingSession", "cache", "csrf", "db", "limiter", "login_manager", "migrate"]

# Deterministic constraint names, so Alembic migrations are the same on SQLite and MySQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING),
                session_options={"class_": RoutingSession})
migrate = Migrate()


class ShopLoginManager(LoginManager):
    """Flask-Login's manager, with a short way to "nobody is logged in": a request whose
    session holds no user id and that sends no remember-me cookie is anonymous, which is what
    Flask-Login concludes too after hashing the client's address and user agent for session
    protection (a protection for logged-in sessions) on every request."""

    def _load_user(self):  # type: ignore[override]
        if (self._request_callback is None and self._header_callback is None
                and "_user_id" not in session
                and current_app.config.get("REMEMBER_COOKIE_NAME", COOKIE_NAME)
                not in request.cookies):
            return self._update_request_context_with_user()
        return super()._load_user()


login_manager = ShopLoginManager()
csrf = CSRFProtect()
cache = Cache()
limiter = Limiter(key_func=get_remote_address, default_limits=[])
