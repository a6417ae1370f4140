"""Settings the shop cannot run with stop the start with one message naming the variable and
what it must be (config.py's readers and check_settings), instead of a shop that starts and
then fails quietly: a rate limit switched off, a 500 on every page, 800% tax."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shop import create_app

ROOT = Path(__file__).resolve().parents[1]
GOOD_KEY = "k" * 32


def _start(env: dict[str, str], expression: str = "'started'") -> tuple[int, str, str]:
    """Build the shop as wsgi.py does, in a fresh process with `env` (config.py reads the
    environment once, at import): the exit code, repr(expression) on `app`, and stderr."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("SHOP_", "SECRET_KEY", "MAIL_", "DATABASE_", "REDIS_"))}
    base.update({"SHOP_ENV": "development", "DATABASE_URL": "sqlite://",
                 "SHOP_BASE_URL": "https://shop.example.com"})
    result = subprocess.run(
        [sys.executable, "-c",
         f"from shop import create_app; app = create_app(); print(repr({expression}))"],
        cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout.strip(), result.stderr


def _refused(env: dict[str, str], message: str) -> None:
    code, out, err = _start(env)
    assert code != 0, f"started with {env}: {out}"
    assert message in err.strip().splitlines()[-1], err


# Rate limits (SPEC 9: switchable off only in the testing configuration).

LIMITS = ["SHOP_RATELIMIT_LOGIN", "SHOP_RATELIMIT_REGISTER", "SHOP_RATELIMIT_PASSWORD_RESET",
          "SHOP_RATELIMIT_API", "SHOP_RATELIMIT_ORDERS", "SHOP_RATELIMIT_COUPONS"]


@pytest.mark.parametrize("name", LIMITS)
@pytest.mark.parametrize("value", ["abc", ""])
def test_a_rate_limit_flask_limiter_cannot_read_stops_the_start(name, value):
    """Flask-Limiter logged and skipped a limit it could not parse: `SHOP_RATELIMIT_API=abc`
    (or empty) let 650 API requests a minute through in production, not 600."""
    _refused({"SHOP_ENV": "production", "SECRET_KEY": GOOD_KEY, name: value},
             f"{name} must be a rate limit such as")


@pytest.mark.parametrize("name", LIMITS)
def test_a_rate_limit_of_nothing_stops_the_start(name):
    """`0 per minute` passed the check and refused every request: 429 to the whole API."""
    _refused({"SHOP_ENV": "production", "SECRET_KEY": GOOD_KEY, name: "5/second; 0 per minute"},
             f"{name} must allow at least 1 request in its period, not '5/second; 0 per minute'")


def test_a_rate_limit_in_other_words_names_the_variable():
    _refused({"SHOP_RATELIMIT_API": "600 a minute"},
             "SHOP_RATELIMIT_API must be a rate limit such as '600 per minute' (several "
             "separated by ';'), not '600 a minute'")


def test_rate_limits_in_flask_limiters_notation_are_taken():
    env = {"SHOP_RATELIMIT_LOGIN": "5/minute", "SHOP_RATELIMIT_REGISTER": "3 per hour",
           "SHOP_RATELIMIT_PASSWORD_RESET": "1/second; 20 per day",
           "SHOP_RATELIMIT_API": " 100 per minute "}
    code, out, err = _start({"SHOP_ENV": "production", "SECRET_KEY": GOOD_KEY, **env},
                            "[app.config[k] for k in ('RATELIMIT_LOGIN', 'RATELIMIT_REGISTER',"
                            " 'RATELIMIT_PASSWORD_RESET', 'RATELIMIT_API', 'RATELIMIT_ENABLED')]")
    assert code == 0, err
    assert out == repr(["5/minute", "3 per hour", "1/second; 20 per day", "100 per minute",
                        True])


def test_rate_limits_are_still_off_in_the_testing_configuration():
    code, out, err = _start({"SHOP_ENV": "testing"}, "app.config['RATELIMIT_ENABLED']")
    assert (code, out) == (0, "False"), err


# SECRET_KEY: Flask signs no session with an empty key (every page answered 500 while
# /healthz and /readyz said 200).

MAKE_KEY = "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"


@pytest.mark.parametrize("env,message", [
    ({"SECRET_KEY": ""}, "SECRET_KEY must be set (not empty) when SHOP_ENV=production"),
    ({}, "SECRET_KEY must be set (not empty) when SHOP_ENV=production"),
    ({"SECRET_KEY": "x"}, "SECRET_KEY must be at least 32 characters when SHOP_ENV=production"),
    ({"SECRET_KEY": "k" * 31}, "SECRET_KEY must be at least 32 characters"),
])
def test_production_refuses_an_empty_or_short_secret_key(env, message):
    _refused({"SHOP_ENV": "production", **env}, message)
    _refused({"SHOP_ENV": "production", **env}, f"make one with {MAKE_KEY}")


def test_production_takes_a_key_of_32_characters_or_more():
    for key in (GOOD_KEY, "k" * 64):
        code, out, err = _start({"SHOP_ENV": "production", "SECRET_KEY": key},
                                "app.secret_key")
        assert (code, out) == (0, repr(key)), err


@pytest.mark.parametrize("key", [None, ""])
def test_development_runs_without_a_secret_key(key):
    """`make run` needs no SECRET_KEY; an empty one is taken as unset there."""
    code, out, err = _start({} if key is None else {"SECRET_KEY": key}, "app.secret_key")
    assert (code, out) == (0, "'dev-only-not-secret'"), err


def test_a_short_or_empty_key_given_to_create_app_is_refused(tmp_path):
    base = {"SQLALCHEMY_DATABASE_URI": "sqlite://", "REDIS_URL": None,
            "BASE_URL": "https://shop.example.com"}
    with pytest.raises(RuntimeError, match="at least 32 characters"):
        create_app({**base, "SECRET_KEY": "k" * 31}, env="production")
    with pytest.raises(RuntimeError, match="SECRET_KEY must be set"):
        create_app({**base, "SECRET_KEY": "dev-only-not-secret"}, env="production")
    with pytest.raises(RuntimeError, match="SECRET_KEY must not be empty"):
        create_app({**base, "SECRET_KEY": ""}, env="testing")
    assert create_app({**base, "SECRET_KEY": GOOD_KEY}, env="production").secret_key == GOOD_KEY


# Money.

@pytest.mark.parametrize("value", ["usd", "XYZ", ""])
def test_a_currency_that_is_no_iso_4217_code_in_capitals_stops_the_start(value):
    """`usd` started, then GET /api/v1/products/<id> answered 500 (the API's model requires
    ^[A-Z]{3}$); `XYZ` was taken as a currency."""
    _refused({"SHOP_CURRENCY": value},
             f"SHOP_CURRENCY must be an ISO 4217 code in capitals, e.g. USD, not {value!r}")


def test_a_currency_given_to_create_app_is_checked_too():
    for value in ("jpy", "US", "US Dollar", "XTS"):
        with pytest.raises(RuntimeError, match="SHOP_CURRENCY must be an ISO 4217 code"):
            create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "CURRENCY": value},
                       env="testing")


def test_iso_4217_currencies_are_taken():
    code, out, err = _start({"SHOP_CURRENCY": "EUR"}, "app.config['CURRENCY']")
    assert (code, out) == (0, "'EUR'"), err
    for value in ("USD", "JPY", "KWD", "ZAR"):
        app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "CURRENCY": value},
                         env="testing")
        assert app.config["CURRENCY"] == value


def test_every_currency_the_money_module_knows_is_an_iso_4217_one():
    import config
    from shop.services import money

    known = money.ZERO_DECIMAL | money.THREE_DECIMAL | set(money.SYMBOLS) \
        | set(money.CARD_MINIMUM)
    assert known <= config.ISO_4217
    assert all(len(code) == 3 and code.isupper() for code in config.ISO_4217)


@pytest.mark.parametrize("value", ["8", "1", "-0.08"])
def test_a_tax_rate_that_is_no_fraction_below_one_stops_the_start(value):
    """`SHOP_TAX_RATE=8` (meaning 8%) was 800% tax."""
    _refused({"SHOP_TAX_RATE": value},
             f"SHOP_TAX_RATE must be a number from 0 to below 1, a fraction (0.08 for 8%), "
             f"not {value!r}")


def test_tax_rates_from_zero_to_below_one_are_taken():
    for value in ("0", "0.08", "0.255"):
        code, out, err = _start({"SHOP_TAX_RATE": value}, "str(app.config['TAX_RATE'])")
        assert (code, out) == (0, repr(value)), err


# Whole numbers: a variable that is no number at all is named too (it was a bare ValueError).

@pytest.mark.parametrize("name,value,bounds", [
    ("SHOP_API_TOKEN_DAYS", "-1", "of 1 or more"),
    ("SHOP_API_TOKEN_DAYS", "thirty", "of 1 or more"),
    ("SHOP_UNPAID_ORDER_TIMEOUT_MINUTES", "0", "of 1 or more"),
    ("SHOP_MAX_BODY_BYTES", "0", "of 1 or more"),
    ("SHOP_MAX_UPLOAD_BYTES", "-1", "of 1 or more"),
    ("SHOP_REMEMBER_DAYS", "0", "of 1 or more"),
    ("SHOP_CATALOG_CACHE_SECONDS", "-30", "of 0 or more"),
    ("SHOP_READ_YOUR_WRITES_SECONDS", "-5", "of 0 or more"),
    ("SHOP_PROXY_HOPS", "-1", "of 0 or more"),
    ("MAIL_PORT", "70000", "from 1 to 65535"),
])
def test_a_whole_number_out_of_range_stops_the_start(name, value, bounds):
    _refused({name: value}, f"{name} must be a whole number {bounds}, such as")


def test_whole_numbers_in_range_are_taken():
    env = {"SHOP_API_TOKEN_DAYS": "1", "SHOP_UNPAID_ORDER_TIMEOUT_MINUTES": "15",
           "SHOP_CATALOG_CACHE_SECONDS": "0", "SHOP_READ_YOUR_WRITES_SECONDS": "0",
           "SHOP_PROXY_HOPS": "1", "MAIL_PORT": "465"}
    code, out, err = _start(env, "[app.config[k] for k in ('API_TOKEN_DAYS', "
                                 "'UNPAID_ORDER_TIMEOUT_MINUTES', 'CATALOG_CACHE_SECONDS', "
                                 "'READ_YOUR_WRITES_SECONDS', 'PROXY_HOPS', 'MAIL_PORT')]")
    assert (code, out) == (0, "[1, 15, 0, 0, 1, 465]"), err


# SHOP_BASE_URL: links in mail are built on it; without it a password reset link would be
# built on whatever Host header the request for it brought (reset-link poisoning).

def test_production_refuses_to_start_without_the_shops_public_address():
    for value in ("", None):
        env = {"SHOP_ENV": "production", "SECRET_KEY": GOOD_KEY}
        env["SHOP_BASE_URL"] = value if value is not None else ""
        _refused(env, "SHOP_BASE_URL must be set when SHOP_ENV=production: the shop's public "
                      "address, such as https://shop.example.com")


@pytest.mark.parametrize("value", ["shop.example.com", "ftp://shop.example.com",
                                   "https://", "https://shop.example.com/?a=1",
                                   "https://shop.example.com/#top"])
def test_a_base_url_that_is_no_web_address_stops_the_start(value):
    for env in ("production", "development"):
        _refused({"SHOP_ENV": env, "SECRET_KEY": GOOD_KEY, "SHOP_BASE_URL": value},
                 f"SHOP_BASE_URL must be the shop's public address, such as "
                 f"https://shop.example.com, not {value!r}")


def test_development_runs_without_a_base_url_and_production_takes_one():
    code, out, err = _start({"SHOP_BASE_URL": ""}, "app.config['BASE_URL']")
    assert (code, out) == (0, "None"), err
    code, out, err = _start({"SHOP_ENV": "production", "SECRET_KEY": GOOD_KEY,
                             "SHOP_BASE_URL": "https://shop.example.com/store"},
                            "app.config['BASE_URL']")
    assert (code, out) == (0, "'https://shop.example.com/store'"), err


# Database and Redis URLs: one the shop cannot use printed a traceback from every command and
# every gunicorn worker, or "No such command" for a database without a driver.

@pytest.mark.parametrize("env, message", [
    ({"REDIS_URL": "shop:s3cret-pw@127.0.0.1:6379"},
     "REDIS_URL must start with redis://, rediss:// or unix://, such as "
     "redis://127.0.0.1:6379/0"),
    ({"REDIS_URL": "http://127.0.0.1:6379/0"}, "REDIS_URL must start with redis://"),
    ({"DATABASE_URL": "postgresql://shop:s3cret-pw@db/shop"},
     "DATABASE_URL must be a MySQL (mysql+pymysql://...) or SQLite (sqlite:///...) database, "
     "not postgresql"),
    ({"DATABASE_URL": "mysql+mysqldb://shop:s3cret-pw@db/shop"},
     "DATABASE_URL must be a MySQL (mysql+pymysql://...) or SQLite (sqlite:///...) database, "
     "not mysql+mysqldb"),
    ({"DATABASE_URL": "shop:s3cret-pw@db/shop"},
     "DATABASE_URL must be a database URL such as mysql+pymysql://USER:PASSWORD@HOST/shop or "
     "sqlite:////var/lib/shop/shop.db"),
    ({"DATABASE_REPLICA_URL": "replica.example"}, "DATABASE_REPLICA_URL must be a database URL"),
])
def test_a_database_or_redis_url_the_shop_cannot_use_stops_the_start(env, message):
    """Named in one line, without the password the value holds (the flask command here; the
    gunicorn master's check: tests/web/test_gunicorn_conf.py)."""
    result = _command([sys.executable, "-m", "flask", "--app", "wsgi", "cleanup"], env)
    assert result.returncode == 3, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"Error: {message}"), result.stderr
    assert "s3cret-pw" not in result.stderr


def test_the_database_and_redis_urls_the_shop_uses_are_taken():
    for env in ({"DATABASE_URL": "mysql+pymysql://shop:pw@db:3306/shop?charset=utf8mb4"},
                {"DATABASE_URL": "mariadb+pymysql://shop:pw@db/shop"},
                {"DATABASE_URL": "sqlite:////var/lib/shop/shop.db"},
                {"DATABASE_REPLICA_URL": "mysql+pymysql://shop:pw@replica/shop"},
                {"REDIS_URL": "redis://:pw@127.0.0.1:6379/0"},
                {"REDIS_URL": "rediss://cache.example:6380/1"},
                {"REDIS_URL": "unix:///run/redis/redis.sock?db=2"}):
        code, out, err = _run_config(env)
        assert code == 0, (env, err)


def _run_config(env: dict[str, str]) -> tuple[int, str, str]:
    """config.py read in a fresh process with `env` (no app: no server is reached)."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("SHOP_", "SECRET_KEY", "MAIL_", "DATABASE_", "REDIS_"))}
    result = subprocess.run([sys.executable, "-c", "import config"], cwd=ROOT,
                            env={**base, **env}, capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout, result.stderr


# MAIL_USE_TLS: only "1" meant yes, so MAIL_USE_TLS=true sent the SMTP password in the clear.

@pytest.mark.parametrize("value,expected", [("1", True), ("true", True), ("Yes", True),
                                            ("on", True), ("0", False), ("false", False),
                                            ("NO", False), ("off", False), ("", True)])
def test_mail_use_tls_takes_the_usual_words_for_yes_and_no(value, expected):
    code, out, err = _start({"MAIL_USE_TLS": value}, "app.config['MAIL_USE_TLS']")
    assert (code, out) == (0, repr(expected)), err


def test_mail_use_tls_that_is_neither_stops_the_start():
    _refused({"MAIL_USE_TLS": "starttls"},
             "MAIL_USE_TLS must be 1 or 0 (or true/false, yes/no, on/off), not 'starttls'")


def _command(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("SHOP_", "SECRET_KEY", "MAIL_", "DATABASE_", "REDIS_",
                                 "GUNICORN_", "WEB_CONCURRENCY"))}
    base.update({"SHOP_ENV": "production", "DATABASE_URL": "sqlite://",
                 "SHOP_BASE_URL": "https://shop.example.com", "SECRET_KEY": GOOD_KEY})
    return subprocess.run(args, cwd=ROOT, env={**base, **env}, capture_output=True, text=True,
                          timeout=90)


@pytest.mark.parametrize("env, message", [
    ({"SECRET_KEY": "short"}, "Error: SECRET_KEY must be at least 32 characters"),
    ({"SHOP_RATELIMIT_ORDERS": "bad"}, "Error: SHOP_RATELIMIT_ORDERS must be a rate limit"),
    ({"SHOP_CURRENCY": "usd"}, "Error: SHOP_CURRENCY must be an ISO 4217 code"),
])
def test_the_flask_command_names_a_bad_setting_in_one_line(env, message):
    """`flask --app wsgi db upgrade` with a setting the shop refuses printed a 30-line
    traceback (the message on its last line): an operator's cron job or deploy script now gets
    the message alone, and a failing exit status."""
    result = _command([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"], env)
    assert result.returncode == 3
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip().splitlines()[0]]
    assert result.stderr.startswith(message), result.stderr


@pytest.mark.parametrize("workers", ["1", "3"])
@pytest.mark.parametrize("env, message", [
    ({"SHOP_CURRENCY": "usd"}, "SHOP_CURRENCY must be an ISO 4217 code in capitals"),
    ({"SECRET_KEY": ""}, "SECRET_KEY must be set (not empty) when SHOP_ENV=production"),
])
def test_gunicorn_stops_on_a_setting_the_shop_refuses_with_its_one_line(workers, env, message):
    """A setting checked by create_app (not by config.py's readers): each worker wrote the
    line, and with several workers gunicorn's master (27.0.1) met the second one's exit while
    stopping for the first, and ended on a HaltServer traceback with exit status 1. The master
    now checks the settings as create_app does, before it starts any worker: the line once,
    no traceback, a failing exit status, and no worker started."""
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    result = _command([gunicorn, "-c", "gunicorn.conf.py", "wsgi:app"],
                      {**env, "GUNICORN_BIND": "127.0.0.1:0", "WEB_CONCURRENCY": workers})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.count(message) == 1, result.stderr
    assert "Booting worker" not in result.stderr, result.stderr
