"""The application factory: config, extensions, blueprints, admin, filters, errors."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask

from config import INSTANCE_DIR, check_settings, config_for

from .extensions import cache, csrf, db, limiter, login_manager, migrate


class ShopFlask(Flask):
    """Flask, remembering which views and hooks are plain functions: Flask asks
    `inspect.iscoroutinefunction` of every hook and view on every request (a dozen calls a
    page), for functions registered once. The shop has no async views."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Any, Any] = {}

    def ensure_sync(self, func):  # type: ignore[override]
        try:
            return self._sync[func]
        except KeyError:
            pass
        except TypeError:  # unhashable
            return super().ensure_sync(func)
        sync = super().ensure_sync(func)
        if len(self._sync) < 4096:
            self._sync[func] = sync
        return sync


def create_app(overrides: dict[str, Any] | None = None, env: str | None = None) -> Flask:
    """Build a new, independent shop application."""
    app = ShopFlask(__name__, instance_path=str(INSTANCE_DIR), instance_relative_config=False)
    cfg = config_for(env)
    app.config.from_object(cfg)
    if overrides:
        app.config.update(overrides)
    _check_config(app)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    register_database(app)
    register_extensions(app)
    register_http(app)
    _warn_of_a_setup_for_one_host(app)  # after register_http: logged as JSON in production
    register_blueprints(app)
    register_admin(app)
    register_templates(app)
    register_commands(app)
    drop_idle_limit_check(app)
    return app


def _warn_of_a_setup_for_one_host(app: Flask) -> None:
    """SQLite in production is allowed (one host, one disk), but never by accident: a
    DATABASE_URL that did not reach the process (an unquoted URL in an env file) would
    otherwise go unnoticed. Nor is MySQL without Redis, whose workers would each keep their
    own rate-limit counts. SHOP_ONE_HOST=1 says the setup is meant: every cron command starts
    the app, and its output is mailed."""
    if app.config.get("ONE_HOST"):
        return
    url: str = app.config["SQLALCHEMY_DATABASE_URI"]
    if app.config["SHOP_ENV"] == "production" and url.startswith("sqlite"):
        app.logger.warning("SHOP_ENV=production on SQLite (%s): fine for one host; set "
                           "DATABASE_URL for MySQL and several hosts, or SHOP_ONE_HOST=1 if "
                           "one host is meant (docs/DEPLOY.md)", url)
    elif app.config["SHOP_ENV"] == "production" and not app.config.get("REDIS_URL"):
        # The file the embedded setup shares its rate-limit counts in serves one host only.
        app.logger.warning("SHOP_ENV=production without REDIS_URL: each process counts its own "
                           "rate limits (n processes allow n times each limit), catalogue pages "
                           "are not cached and jobs run inside requests; set REDIS_URL, or "
                           "SHOP_ONE_HOST=1 if one host is meant (docs/DEPLOY.md)")


def _check_config(app: Flask) -> None:
    """Stop the start on a setting the shop cannot run with (config.check_settings), then
    complete the database engine's options."""
    check_settings(app.config)
    url: str = app.config["SQLALCHEMY_DATABASE_URI"]
    options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    # A failed statement's error is logged with its SQL, not its values: they are customers'
    # emails, addresses and password hashes.
    options.setdefault("hide_parameters", True)
    if url.startswith("mysql"):
        # Each statement sees what is committed: fewer gap locks, no stale snapshot in a checkout.
        options.setdefault("isolation_level", "READ COMMITTED")
        # A connection comes back from the Session or a Connection already rolled back or
        # committed: the pool need not roll it back a second time (one round trip a request).
        options.setdefault("pool_reset_on_return", None)
        options.setdefault("pool_size", 10)
        options.setdefault("max_overflow", 20)
        from .services.database import mysql_connect_args

        options["connect_args"] = mysql_connect_args(app.config) \
            | dict(options.get("connect_args") or {})
    elif url.startswith("sqlite"):
        options.pop("pool_recycle", None)
        options.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options


def register_database(app: Flask) -> None:
    """Bind SQLAlchemy and Alembic; give SQLite the pragmas a shop needs."""
    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(app.root_path).parent / "migrations"),
                     render_as_batch=True, compare_type=True)
    from . import models  # noqa: F401  (register the tables)
    from .extensions import RoutingSession

    _end_sessions_safely(app)
    from .services import catalog_state, database, search

    catalog_state.install(RoutingSession)
    search.install(RoutingSession)

    with app.app_context():
        database.configure_engine(db.engine)
        replica = app.config.get("DATABASE_REPLICA_URL")
        if replica:
            database.configure_replica(app, replica)


def _end_sessions_safely(app: Flask) -> None:
    """Flask-SQLAlchemy ends each request's session after the answer is made (a ROLLBACK).
    A database that stops answering just then (host frozen, packets dropped) made that
    ROLLBACK fail after the read timeout, outside every error handler: the client got
    gunicorn's bare 500 for a request the shop had answered (and logged and counted as
    answered). The answer stands: the failure is logged, the session is dropped, and its
    connection, which SQLAlchemy invalidates on such an error, is not used again."""
    from sqlalchemy.exc import SQLAlchemyError

    log = logging.getLogger("shop.database")

    def end_session(_error: BaseException | None) -> None:
        try:
            db.session.remove()
        except SQLAlchemyError as exc:
            log.warning("could not end the request's database session: %s", exc)
            db.session.registry.clear()

    funcs = app.teardown_appcontext_funcs
    funcs[:] = [end_session if getattr(f, "__func__", None) is type(db)._teardown_session
                else f for f in funcs]
    if end_session not in funcs:
        raise RuntimeError("Flask-SQLAlchemy's session teardown was not found")


def register_extensions(app: Flask) -> None:
    """Bind the remaining extensions; Redis backs cache and limits when REDIS_URL is set."""
    from .services.redis_clients import breaker, client_options

    redis_url = app.config.get("REDIS_URL")
    if redis_url:
        app.config.setdefault("CACHE_TYPE", "RedisCache")
        app.config.setdefault("CACHE_REDIS_URL", redis_url)
        app.config.setdefault("RATELIMIT_STORAGE_URI", redis_url)
        # Short timeouts and the process's breaker (services.redis_clients), under any
        # options set explicitly.
        guard = breaker(app)
        app.config["CACHE_OPTIONS"] = \
            client_options(app.config, app.config["CACHE_REDIS_URL"], guard) \
            | (app.config.get("CACHE_OPTIONS") or {})
        app.config["RATELIMIT_STORAGE_OPTIONS"] = \
            client_options(app.config, app.config["RATELIMIT_STORAGE_URI"], guard) \
            | (app.config.get("RATELIMIT_STORAGE_OPTIONS") or {})
        # Redis out of reach: limits go on in each process's memory (extensions.ShopLimiter)
        # rather than every login and API call answering 503.
        app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    else:
        app.config.setdefault("CACHE_TYPE", "NullCache")
        # One host (the embedded SQLite database): its workers share the counts in a file
        # beside it (services.limit_store); another database without Redis: each process's.
        from .services import limit_store

        with app.app_context():
            shared = limit_store.storage_uri(db.engine.url)
        app.config.setdefault("RATELIMIT_STORAGE_URI", shared or "memory://")
    app.config.setdefault("CACHE_KEY_PREFIX", "shop:cache:")
    app.config.setdefault("RATELIMIT_KEY_PREFIX", "shop:rl")
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    cache.init_app(app, config={k: v for k, v in app.config.items() if k.startswith("CACHE_")}
                   | {"CACHE_NO_NULL_WARNING": True})
    csrf.init_app(app)

    # Registered before the limiter's own hook, so it runs after it (Flask runs them in reverse).
    @app.after_request
    def retry_after_only_when_refused(response):
        # Flask-Limiter sets Retry-After on every answer of a limited route, successes too;
        # it tells a client to wait, which only a 429 (or a 503) means.
        if response.status_code not in (429, 503) and "Retry-After" in response.headers:
            del response.headers["Retry-After"]
        return response

    limiter.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "account.login"
    login_manager.login_message = "Please log in to see that page."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"

    from .models import User
    from .services import accounts

    @login_manager.user_loader
    def load_user(user_id: str) -> User | None:
        return accounts.session_user(int(user_id)) if user_id.isdigit() else None


def drop_idle_limit_check(app: Flask) -> None:
    """Flask-Limiter checks application, default, meta and blueprint limits before every
    request. The shop has none of those: its limits decorate views (login, register, reset,
    the API), and each decorated view checks its own limits when called. With nothing for it
    to check, that before-request hook is dropped (it cost more than a hello-world request);
    if any such limit is ever configured, it stays."""
    manager = limiter.limit_manager
    idle = not any(getattr(manager, name, True) for name in
                   ("_application_limits", "_default_limits", "_blueprint_limits")) \
        and not getattr(limiter, "_meta_limits", True)
    hooks = app.before_request_funcs.get(None, [])
    if idle:
        hooks[:] = [hook for hook in hooks if hook != limiter._check_request_limit]
    _only_after_a_limit_check(app)


def _only_after_a_limit_check(app: Flask) -> None:
    """Flask-Limiter's after-request hook (rate-limit headers, conditional deductions) and its
    teardown (forget the request's limit state) each make that state on every request, to
    find nothing in it unless a limit was checked. A limit check leaves the state on the
    request context (Flask-Limiter's `_limiter_request_context`): without it both have
    nothing to do and are skipped."""
    from flask.globals import request_ctx

    def checked() -> bool:
        return hasattr(request_ctx._get_current_object(), "_limiter_request_context")

    def gated(hook):
        def run(value):
            return hook(value) if checked() else value
        return run

    def gated_teardown(hook):
        def run(error=None):
            if checked():
                hook(error)
        return run

    def is_limiters(hook) -> bool:
        owner = getattr(hook, "args", (None,))[0] if hasattr(hook, "func") else \
            getattr(hook, "__self__", None)
        return owner is limiter

    after = app.after_request_funcs.get(None, [])
    after[:] = [gated(h) if is_limiters(h) else h for h in after]
    teardown = app.teardown_request_funcs.get(None, [])
    teardown[:] = [gated_teardown(h) if is_limiters(h) else h for h in teardown]


def register_http(app: Flask) -> None:
    """Request ids, security headers, logging, metrics and error pages."""
    from . import http

    http.init_app(app)


def register_blueprints(app: Flask) -> None:
    """The shop's pages, the JSON API, payments and operations endpoints."""
    from .blueprints.account.routes import bp as account_bp
    from .blueprints.api import bp as api_bp
    from .blueprints.cart.routes import bp as cart_bp
    from .blueprints.catalog.routes import bp as catalog_bp
    from .blueprints.checkout.routes import bp as checkout_bp
    from .blueprints.ops.routes import bp as ops_bp
    from .blueprints.orders.routes import bp as orders_bp
    from .blueprints.payments.routes import bp as payments_bp
    from .blueprints.reviews.routes import bp as reviews_bp

    for bp in (catalog_bp, cart_bp, checkout_bp, orders_bp, account_bp, reviews_bp, payments_bp,
               ops_bp):
        app.register_blueprint(bp)
    app.register_blueprint(api_bp, url_prefix="/api")


def register_admin(app: Flask) -> None:
    """Flask-Admin: a new Admin for every app instance."""
    from .admin import init_admin

    init_admin(app)


def register_templates(app: Flask) -> None:
    """Jinja filters and globals shared by the shop's templates; sessions and CSRF tokens
    signed with kept serializers."""
    from . import sessions, templating

    templating.init_app(app)
    sessions.init_app(app)


def register_commands(app: Flask) -> None:
    """`flask --app wsgi seed`, `create-admin`, jobs and maintenance commands."""
    from . import commands

    commands.init_app(app)


