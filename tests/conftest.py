"""Fixtures (flaskr style): `app`, `client`, `runner`, `auth`; a fresh, migrated database per
test session, emptied after each test. TEST_DATABASE_URL (MySQL) runs the same suite there."""
from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from shop import create_app
from shop.extensions import db
from shop.services import database

from . import suite_speed

suite_speed.install()

MYSQL_URL = os.environ.get("TEST_DATABASE_URL") or ""


def _worker() -> str:
    # SHOP_TEST_DB_TAG keeps two suites running at once on one server apart.
    return os.environ.get("SHOP_TEST_DB_TAG", "") + os.environ.get("PYTEST_XDIST_WORKER", "main")


def _mysql_database_url(base: str, name: str) -> str:
    """The URL of a fresh database `name` on the server of `base` (dropped and recreated)."""
    server = re.sub(r"/[^/?]*(\?|$)", r"/\1", base, count=1)
    engine = create_engine(server)
    with engine.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 "
                          f"COLLATE utf8mb4_unicode_ci"))
    engine.dispose()
    return re.sub(r"/[^/?]*(\?|$)", rf"/{name}\1", base, count=1)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    """One migrated database per test worker (SQLite file, or a MySQL database)."""
    if MYSQL_URL:
        url = _mysql_database_url(MYSQL_URL, f"shop_test_{_worker()}")
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'shop.db'}"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url}, env="testing")
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
        db.engine.dispose()
    return url


def _empty_tables() -> None:
    """Delete every row (faster than recreating the schema for each test)."""
    tables = list(reversed(db.metadata.sorted_tables))
    with db.engine.begin() as conn:
        if conn.dialect.name in ("mysql", "mariadb"):
            conn.execute(text("SET FOREIGN_KEY_CHECKS=0"))
        else:
            conn.execute(text("PRAGMA defer_foreign_keys=ON"))
        for table in tables:
            conn.execute(table.delete())
        if conn.dialect.name in ("mysql", "mariadb"):
            conn.execute(text("SET FOREIGN_KEY_CHECKS=1"))


class ShopClient(FlaskClient):
    """Serves each request in its own app context, as gunicorn does: its own `g`, its own
    database session. The test's session then starts afresh, so it sees what the request did.
    And as gunicorn does, the answer is sent whole and then closed (buffered), which runs the
    work a request leaves for after its answer (jobs.enqueue(after_response=True)); a test
    that looks in between asks for buffered=False."""

    def open(self, *args, **kwargs):
        kwargs.setdefault("buffered", True)
        with self.application.app_context():
            response = super().open(*args, **kwargs)
        from flask import has_app_context

        if has_app_context():
            db.session.rollback()
        return response


@pytest.fixture
def make_app(database_url, tmp_path):
    """Build apps on the test database with extra settings; tables are emptied afterwards."""
    apps = []

    def factory(**overrides):
        config = {"SQLALCHEMY_DATABASE_URI": database_url, "SERVER_NAME": "shop.test",
                  "OUTBOX_DIR": str(tmp_path / "outbox"), "UPLOAD_DIR": str(tmp_path / "uploads"),
                  "SECRET_KEY": "test-secret-" + uuid.uuid4().hex, "REDIS_URL": None,
                  "STRIPE_SECRET_KEY": None,
                  # Limits on a SQLite file are counted in a file beside it, which outlives
                  # the test (services.limit_store): each app counts apart.
                  "RATELIMIT_KEY_PREFIX": "test-rl-" + uuid.uuid4().hex}
        config.update(overrides)
        new = create_app(config, env="testing")
        new.test_client_class = ShopClient
        apps.append(new)
        return new

    yield factory
    for built in apps:
        with built.app_context():
            db.session.remove()
    if apps:
        with apps[0].app_context():
            _empty_tables()
    for built in apps:
        with built.app_context():
            db.engine.dispose()
            for reader in database.reader_engines(built):
                reader.dispose()


@pytest.fixture
def app(make_app):
    """The shop with testing settings, inside an app context."""
    application = make_app()
    with application.app_context():
        yield application


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def outbox(app) -> Path:
    """The folder where mail lands without a mail server."""
    return Path(app.config["OUTBOX_DIR"])


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client, path: str = "/account/login") -> str:
    """A CSRF token for the client's session, read from a real form."""
    page = client.get(path).get_data(as_text=True)
    match = CSRF.search(page)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


class AuthActions:
    """Log in and out through the real forms."""

    def __init__(self, client):
        self._client = client

    def login(self, email: str = "customer@example.com", password: str = "correct-horse-9",
              follow: bool = False):
        token = csrf_token(self._client)
        return self._client.post("/account/login", data={
            "email": email, "password": password, "csrf_token": token},
            follow_redirects=follow)

    def logout(self):
        token = csrf_token(self._client, "/")
        return self._client.post("/account/logout", data={"csrf_token": token})


@pytest.fixture
def auth(client):
    return AuthActions(client)


@pytest.hookimpl(wrapper=True)
def pytest_terminal_summary(terminalreporter):
    """Say once, at the very end, that the browser tests did not run and why
    (tests/e2e/conftest.py skips them when Chromium, Java or the npm tools are missing)."""
    result = yield
    reasons = {str(report.longrepr[2]).removeprefix("Skipped: ")
               for report in terminalreporter.stats.get("skipped", [])
               if report.nodeid.startswith("tests/e2e/")
               and isinstance(report.longrepr, (tuple, list))}
    if reasons:
        terminalreporter.section("e2e browser tests did not run", sep="=", yellow=True, bold=True)
        for reason in sorted(reasons):
            terminalreporter.line(reason, yellow=True)
    return result
