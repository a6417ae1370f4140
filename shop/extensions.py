"""Unbound Flask extensions; the app factory binds them (cookiecutter-flask style)."""
import ipaddress
import logging

from flask import current_app, request, session
from flask_caching import Cache
from flask_limiter import Limiter
from flask_login import LoginManager
from flask_login.config import COOKIE_NAME
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData

from .services.routing import RoutingSession

__all__ = ["RoutingSession", "cache", "client_address", "csrf", "db", "limiter",
           "login_manager", "migrate"]

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
_limits_log = logging.getLogger("shop.ratelimit")


class ShopLimiter(Limiter):
    """Flask-Limiter, saying when its storage (Redis) is lost and found again.

    With RATELIMIT_IN_MEMORY_FALLBACK_ENABLED (set with REDIS_URL), while Redis cannot be
    reached the limits are counted in this process's memory instead of answering 503, and
    Redis is asked again now and then (Flask-Limiter's backoff: after 1, 2, 4 ... 32 s). The
    switch is Flask-Limiter's `_storage_dead`; the shop logs each change of it once. A new app
    starts with its own storage assumed alive and its own key prefix and fallback setting (the
    limiter is shared by every app built in one process, the tests' many)."""

    _dead = False

    @property  # type: ignore[override]
    def _storage_dead(self) -> bool:
        return self._dead

    @_storage_dead.setter
    def _storage_dead(self, dead: bool) -> None:
        if dead and not self._dead:
            _limits_log.warning("redis unavailable: rate limits counted in this process's "
                                "memory until it is back")
        elif self._dead and not dead:
            _limits_log.info("redis reachable again: rate limits counted in redis")
        self._dead = dead

    def init_app(self, app) -> None:  # type: ignore[no-untyped-def]
        self._dead = False
        # Read again from this app's config (Flask-Limiter keeps the first app's).
        self._in_memory_fallback_enabled = False
        self._key_prefix = None
        # Flask-Limiter's backoff between checks of a lost storage starts again at 1 s.
        self._Limiter__check_backend_count = 0
        super().init_app(app)


def client_address() -> str:
    """The client a per-address rate limit counts: its IPv4 address, or the /64 network of
    an IPv6 one. One IPv6 host holds a whole /64 and can take a new address for every request,
    so counting each address alone let one client make as many tries as it liked."""
    address = request.remote_addr or "127.0.0.1"
    if ":" not in address:
        return address
    try:
        ip = ipaddress.IPv6Address(address.split("%", 1)[0])
    except ValueError:
        return address
    if ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))


limiter = ShopLimiter(key_func=client_address, default_limits=[])
