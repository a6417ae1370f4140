"""Configuration classes, read from the environment (SPEC section 2)."""
from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from limits import parse_many
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = BASE_DIR / "instance"
DEV_SECRET_KEY = "dev-only-not-secret"
MIN_SECRET_KEY_LENGTH = 32
MAKE_SECRET_KEY = "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
# The currencies a shop can be run in (SHOP_CURRENCY, checked at start): ISO 4217's active
# codes, without funds, precious metals and the testing and "no currency" codes.
ISO_4217 = frozenset("""
    AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP
    BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES
    KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU
    MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON
    RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND
    TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR
    ZMW ZWG""".split())


class SettingError(RuntimeError):
    """A setting the shop cannot start with. Its message names the variable and says what it
    takes; wsgi.py prints it as one line, without a traceback."""


def _env_int(name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    """A whole number from the environment, from `minimum` up to `maximum`: a value that is
    not one, or out of range (negative seconds, a zero limit), stops the shop at start."""
    raw = os.environ.get(name, str(default)).strip()
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"of {minimum} or more"
        raise SettingError(f"{name} must be a whole number {bounds}, such as {default}, "
                           f"not {raw!r}")
    return value


TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def _env_bool(name: str, default: bool) -> bool:
    """Yes or no from the environment: 1/0, true/false, yes/no, on/off (any capitals); unset
    or empty is the default. Anything else stops the shop at start: `MAIL_USE_TLS=true` was
    read as "no", which sent the SMTP password without encryption."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in TRUE_WORDS:
        return True
    if raw in FALSE_WORDS:
        return False
    raise SettingError(f"{name} must be 1 or 0 (or true/false, yes/no, on/off), "
                       f"not {os.environ.get(name)!r}")


def _env_seconds(name: str, default: str) -> float:
    """A positive number of seconds from the environment (a bad value stops the shop at start)."""
    raw = os.environ.get(name, default).strip()
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise SettingError(f"{name} must be a number of seconds such as {default}, not {raw!r}")
    return value


def _env_decimal(name: str, default: str, *, optional: bool = False,
                 fraction: bool = False) -> Decimal | None:
    """An amount or rate from the environment; with `optional`, empty means none; with
    `fraction`, a rate below 1 (0.08 for 8%: `8` would be 800%). A value that is not one stops
    the shop at start with the variable's name, not a bare traceback."""
    raw = os.environ.get(name, default).strip()
    if optional and not raw:
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or value < 0 or (fraction and value >= 1):
        what = "from 0 to below 1, a fraction (0.08 for 8%)" if fraction else f"such as {default}"
        raise SettingError(f"{name} must be a number {what}, not {raw!r}"
                           + (" (or empty for none)" if optional else ""))
    return value


def _env_rate_limit(name: str, default: str) -> str:
    """A rate limit in Flask-Limiter's notation ("10 per minute", "100/hour; 5/second"). One it
    cannot parse (empty too) would switch the limit off without a word (Flask-Limiter logs and
    skips it), so it stops the shop at start instead; only the testing configuration switches
    limits off (RATELIMIT_ENABLED)."""
    raw = os.environ.get(name, default).strip()
    try:
        parsed = parse_many(raw)
    except ValueError:
        parsed = None
    if not parsed:
        raise SettingError(f"{name} must be a rate limit such as {default!r} (several separated "
                           f"by ';'), not {raw!r}")
    if any(limit.amount < 1 for limit in parsed):
        # "0 per minute" refuses every request: the API (or logins) switched off, not limited.
        raise SettingError(f"{name} must allow at least 1 request in its period, not {raw!r}")
    return raw


# The databases the shop runs on, with the drivers it installs (requirements.txt).
DATABASE_DRIVERS = ("sqlite", "sqlite+pysqlite", "mysql+pymysql", "mariadb+pymysql")


def _env_database_url(name: str, default: str | None) -> str | None:
    """A database URL the shop has a driver for: `mysql://` (no driver named) made
    SQLAlchemy import MySQLdb, which is not installed, and every command then failed with
    "No such command" after an ImportError; `postgresql://` did the same, and a value that is
    no URL at all was a traceback from every command and worker. The messages never repeat
    the value: it holds the database's password."""
    raw = (os.environ.get(name) or "").strip() or default
    if not raw:
        return raw
    try:
        driver = make_url(raw).drivername
    except ArgumentError:
        raise SettingError(f"{name} must be a database URL such as "
                           "mysql+pymysql://USER:PASSWORD@HOST/shop or "
                           "sqlite:////var/lib/shop/shop.db") from None
    if driver in ("mysql", "mariadb"):
        raise SettingError(f"{name} must name the driver: mysql+pymysql://... (not "
                           f"{driver}://...)")
    if driver not in DATABASE_DRIVERS:
        raise SettingError(f"{name} must be a MySQL (mysql+pymysql://...) or SQLite "
                           f"(sqlite:///...) database, not {driver}")
    return raw


def _env_redis_url(name: str) -> str | None:
    """A Redis URL redis-py can connect with ("127.0.0.1:6379" was a traceback from every
    command and worker); empty is none. The message never repeats the value (a password)."""
    raw = (os.environ.get(name) or "").strip()
    if not raw:
        return None
    if urlsplit(raw).scheme not in ("redis", "rediss", "unix") or "://" not in raw:
        raise SettingError(f"{name} must start with redis://, rediss:// or unix://, such as "
                           "redis://127.0.0.1:6379/0 (or be empty for no Redis)")
    return raw


class Config:
    """Settings shared by every environment; each can be overridden by an env variable."""

    SHOP_ENV = "development"
    SHOP_NAME = os.environ.get("SHOP_NAME", "Shop")
    # Empty is unset: the development key, which production refuses (check_settings).
    SECRET_KEY = os.environ.get("SECRET_KEY") or DEV_SECRET_KEY
    SQLALCHEMY_DATABASE_URI = _env_database_url(
        "DATABASE_URL", f"sqlite:///{INSTANCE_DIR / 'shop.db'}")
    DATABASE_REPLICA_URL = _env_database_url("DATABASE_REPLICA_URL", None)
    SQLALCHEMY_TRACK_MODIFICATIONS = False
    # Connections idle for a while are pinged before use (services.database), not every one.
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"pool_recycle": 280}
    # MySQL: how long a request waits to connect and for each answer before it gives up with a
    # 503 (services.database): a database that hangs or whose packets are dropped must not hold
    # a page until gunicorn's timeout kills the worker. Two waits must fit in GUNICORN_TIMEOUT
    # (a stale pooled connection's ping, then a new connection). Work outside a request (the
    # CLI, migrations, the worker) waits for its statements as long as they take.
    DATABASE_CONNECT_TIMEOUT = _env_seconds("DATABASE_CONNECT_TIMEOUT", "5")
    DATABASE_READ_TIMEOUT = _env_seconds("DATABASE_READ_TIMEOUT", "10")
    # After the read replica failed a request (that request is answered from the primary), a
    # web process reads the catalogue from the primary for this long, then one request tries
    # the replica again (services.routing): a replica that is down or hangs costs a timeout
    # now and then, not one per page.
    DATABASE_REPLICA_RETRY_AFTER = _env_seconds("DATABASE_REPLICA_RETRY_AFTER", "30")
    # A write rolled back for a deadlock or a lock wait is tried again only while another full
    # lock wait (the read timeout less 2 s) still ends this long after the request began: the
    # shopper gets the shop's 503 before GUNICORN_TIMEOUT (30 s) kills the worker.
    DATABASE_RETRY_BUDGET = _env_seconds("DATABASE_RETRY_BUDGET", "25")
    REDIS_URL = _env_redis_url("REDIS_URL")
    # How long a request waits for Redis to accept a connection and to answer a command before
    # it goes on as if Redis were down (uncached page, inline job): a hung Redis must not hang
    # the shop. Redis answers in well under a millisecond; the RQ worker is not bound by these.
    REDIS_CONNECT_TIMEOUT = _env_seconds("REDIS_CONNECT_TIMEOUT", "0.25")
    REDIS_SOCKET_TIMEOUT = _env_seconds("REDIS_SOCKET_TIMEOUT", "0.25")
    # After Redis failed to answer, a web process leaves it alone for this long (then one
    # request tries again): a silent Redis costs a timeout now and then, not one per request.
    REDIS_RETRY_AFTER = _env_seconds("REDIS_RETRY_AFTER", "5")

    # Money and pricing: the shop's one currency, tax and shipping rules.
    # An ISO 4217 code in capitals (checked at start, check_settings).
    CURRENCY = os.environ.get("SHOP_CURRENCY", "USD").strip()
    TAX_RATE = _env_decimal("SHOP_TAX_RATE", "0.08", fraction=True)
    SHIPPING_STANDARD = _env_decimal("SHOP_SHIPPING_STANDARD", "5.00")
    SHIPPING_EXPRESS = _env_decimal("SHOP_SHIPPING_EXPRESS", "15.00")
    # Empty: no free shipping, whatever the order's size.
    FREE_SHIPPING_OVER = _env_decimal("SHOP_FREE_SHIPPING_OVER", "50.00", optional=True)
    # The coupon the home page offers new shoppers, while it can be used (empty: none).
    WELCOME_COUPON = os.environ.get("SHOP_WELCOME_COUPON", "WELCOME10").strip()
    MAX_LINE_QUANTITY = 99
    PER_PAGE = 24

    # Payments.
    STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY") or None
    STRIPE_PUBLISHABLE_KEY = os.environ.get("STRIPE_PUBLISHABLE_KEY") or None
    STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET") or None
    STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE") or None
    UNPAID_ORDER_TIMEOUT_MINUTES = _env_int("SHOP_UNPAID_ORDER_TIMEOUT_MINUTES", 60, minimum=1)
    # Background jobs: the RQ queue, and the shop's public URL for links in mail sent by jobs
    # that no request queued (cron's expire-orders); jobs queued by a request use its URL.
    JOBS_QUEUE = os.environ.get("SHOP_JOBS_QUEUE", "shop")
    BASE_URL = os.environ.get("SHOP_BASE_URL") or None

    # Mail: SMTP when MAIL_SERVER is set, files in instance/outbox/ otherwise.
    MAIL_SERVER = os.environ.get("MAIL_SERVER") or None
    MAIL_PORT = _env_int("MAIL_PORT", 587, minimum=1, maximum=65535)
    MAIL_USERNAME = os.environ.get("MAIL_USERNAME") or None
    MAIL_PASSWORD = os.environ.get("MAIL_PASSWORD") or None
    MAIL_DEFAULT_SENDER = os.environ.get("MAIL_DEFAULT_SENDER", "shop@example.com")
    MAIL_USE_TLS = _env_bool("MAIL_USE_TLS", True)
    STAFF_ALERT_EMAIL = os.environ.get("SHOP_STAFF_ALERT_EMAIL", "staff@example.com")

    # Werkzeug's password hash: scrypt with its own costs (N=32768, r=8, p=1), about 0.15 s of
    # CPU for each hash and each check. Not an environment setting: only the test suite lowers it.
    PASSWORD_HASH_METHOD = "scrypt"

    # Rate limits (SPEC section 9), each overridable; RATELIMIT_ENABLED only off in testing.
    RATELIMIT_ENABLED = True
    RATELIMIT_LOGIN = _env_rate_limit("SHOP_RATELIMIT_LOGIN", "10 per minute")
    RATELIMIT_REGISTER = _env_rate_limit("SHOP_RATELIMIT_REGISTER", "50 per hour")
    RATELIMIT_PASSWORD_RESET = _env_rate_limit("SHOP_RATELIMIT_PASSWORD_RESET", "10 per hour")
    RATELIMIT_API = _env_rate_limit("SHOP_RATELIMIT_API", "600 per minute")
    # Orders placed from one client address, pages and API together (only placed orders
    # count): an unpaid order holds its stock and mails whatever address it was given.
    RATELIMIT_ORDERS = _env_rate_limit("SHOP_RATELIMIT_ORDERS", "30 per hour")
    # Coupon codes refused for one client address, cart page and API together: guessing.
    RATELIMIT_COUPONS = _env_rate_limit("SHOP_RATELIMIT_COUPONS", "20 per hour")

    # Request bodies: a few MB for pages and the API, more for admin image uploads.
    MAX_CONTENT_LENGTH = _env_int("SHOP_MAX_BODY_BYTES", 4 * 1024 * 1024, minimum=1)
    MAX_UPLOAD_BYTES = _env_int("SHOP_MAX_UPLOAD_BYTES", 10 * 1024 * 1024, minimum=1)
    # An order export is written inside one request (the workers' 30 s): more orders than
    # this are refused with a message to narrow the filters, never cut off.
    ORDER_EXPORT_MAX_ROWS = _env_int("SHOP_ORDER_EXPORT_MAX_ROWS", 50_000, minimum=1)
    # The same for the product export (a row a variant): refused above it, never cut off.
    PRODUCT_EXPORT_MAX_ROWS = _env_int("SHOP_PRODUCT_EXPORT_MAX_ROWS", 200_000, minimum=1)
    UPLOAD_DIR = os.environ.get("SHOP_UPLOAD_DIR") or str(INSTANCE_DIR / "uploads")
    OUTBOX_DIR = os.environ.get("SHOP_OUTBOX_DIR") or str(INSTANCE_DIR / "outbox")

    # Cache (Redis only; without Redis the catalog is rendered for every request).
    CATALOG_CACHE_SECONDS = _env_int("SHOP_CATALOG_CACHE_SECONDS", 30)
    # Anonymous shoppers' catalogue pages are rendered by their views without Flask's request
    # hooks (blueprints/catalog/page_cache.py: the lean path); off: every page takes the full
    # request cycle. The pages are the same either way (tests/web/test_lean_path.py).
    CATALOG_LEAN_PATH = _env_bool("SHOP_CATALOG_LEAN_PATH", True)
    # A production shop run on one host on purpose (SQLite, or MySQL without Redis): no warning
    # line at every start, which cron would mail every 5 minutes.
    ONE_HOST = _env_bool("SHOP_ONE_HOST", False)
    # Redis keys of the cache start with this (several shops or runs can share one Redis).
    CACHE_KEY_PREFIX = os.environ.get("SHOP_CACHE_KEY_PREFIX", "shop:cache:")
    READ_YOUR_WRITES_SECONDS = _env_int("SHOP_READ_YOUR_WRITES_SECONDS", 5)
    # Operations: /metrics wants `Authorization: Bearer <token>` when set; how many reverse
    # proxies in front of the shop set X-Forwarded-* (0: none trusted).
    METRICS_TOKEN = os.environ.get("SHOP_METRICS_TOKEN") or None
    # The RQ worker's own /metrics ("address:port"): what jobs and cron count (docs/DEPLOY.md).
    WORKER_METRICS_BIND = os.environ.get("SHOP_WORKER_METRICS_BIND") or None
    PROXY_HOPS = _env_int("SHOP_PROXY_HOPS", 0)
    API_TOKEN_DAYS = _env_int("SHOP_API_TOKEN_DAYS", 30, minimum=1)
    # "https://a.example, https://b.example": spaces after the commas are not part of an origin.
    CORS_ORIGINS = [o.strip() for o in os.environ.get("SHOP_CORS_ORIGINS", "").split(",")
                    if o.strip()]
    PASSWORD_RESET_HOURS = 2
    # How long the mailed link that adds an account's earlier guest orders to it works.
    LINK_ORDERS_HOURS = 24

    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_DURATION = timedelta(days=_env_int("SHOP_REMEMBER_DAYS", 30, minimum=1))
    REMEMBER_COOKIE_SAMESITE = "Lax"
    WTF_CSRF_TIME_LIMIT = None
    JSON_LOGS = False
    FLASK_ADMIN_SWATCH = "default"


class DevelopmentConfig(Config):
    """`make run`: plain-HTTP cookies so the shop works on http://127.0.0.1."""


class TestingConfig(Config):
    """The test suite: its own database, rate limits off unless a test turns them on."""

    SHOP_ENV = "testing"
    TESTING = True
    SQLALCHEMY_DATABASE_URI = os.environ.get("TEST_DATABASE_URL", "sqlite://")
    RATELIMIT_ENABLED = os.environ.get("SHOP_TEST_RATELIMIT", "0") == "1"
    WTF_CSRF_ENABLED = True
    MAIL_SERVER = None
    # scrypt at a 32nd of its cost (N=1024): the suite makes and checks thousands of
    # passwords, each 0.15 s of CPU at full cost; the same code and the same format.
    PASSWORD_HASH_METHOD = "scrypt:1024:8:1"


class ProductionConfig(Config):
    """Behind TLS: Secure cookies, HSTS, JSON logs; SECRET_KEY is required."""

    SHOP_ENV = "production"
    SESSION_COOKIE_SECURE = True
    REMEMBER_COOKIE_SECURE = True
    JSON_LOGS = True
    PREFERRED_URL_SCHEME = "https"


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def config_for(env: str | None = None) -> type[Config]:
    """The config class named by SHOP_ENV (default development)."""
    name = env or os.environ.get("SHOP_ENV", "development")
    if name not in CONFIGS:
        raise SettingError(f"SHOP_ENV must be one of {', '.join(CONFIGS)}, not {name!r}")
    return CONFIGS[name]


def check_settings(settings: Mapping[str, Any]) -> None:
    """Stop the start, naming the variable, on a setting the shop cannot run with (the readers
    above stop it for a value that is no number or rate limit at all). create_app checks its
    own config with it; gunicorn.conf.py checks the environment's before it starts a worker."""
    production = settings["SHOP_ENV"] == "production"
    key = settings.get("SECRET_KEY")
    if not key or (production and key == DEV_SECRET_KEY):
        # Flask signs no session with an empty key: every page would answer 500.
        raise SettingError("SECRET_KEY must be set (not empty) when SHOP_ENV=production; make "
                           f"one with {MAKE_SECRET_KEY}" if production else
                           "SECRET_KEY must not be empty (unset it for the development key)")
    if production and len(key) < MIN_SECRET_KEY_LENGTH:
        raise SettingError(f"SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters when "
                           f"SHOP_ENV=production, not {len(key)}; make one with {MAKE_SECRET_KEY}")
    base_url = settings.get("BASE_URL")
    if base_url:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query \
                or parts.fragment:
            raise SettingError("SHOP_BASE_URL must be the shop's public address, such as "
                               f"https://shop.example.com, not {base_url!r}")
    elif production:
        # Links in mail (password resets above all) would otherwise be built on whatever Host
        # header a request brought: reset-link poisoning.
        raise SettingError("SHOP_BASE_URL must be set when SHOP_ENV=production: the shop's "
                           "public address, such as https://shop.example.com, on which every "
                           "link in mail is built (never on a request's Host header)")
    if settings.get("CURRENCY") not in ISO_4217:
        # The API's money model requires ^[A-Z]{3}$: "usd" would answer 500 on every product.
        raise SettingError("SHOP_CURRENCY must be an ISO 4217 code in capitals, e.g. USD, not "
                           f"{settings.get('CURRENCY')!r}")


def check_environment() -> None:
    """The settings SHOP_ENV and the environment give, checked as create_app checks them."""
    config = config_for()
    check_settings({name: getattr(config, name) for name in dir(config) if name.isupper()})
