"""CLI: `flask --app wsgi seed [--products N]`, `create-admin`, `cleanup`, `refresh-catalog`
(jobs: shop/jobs_cli.py)."""
from __future__ import annotations

import copy
import functools
import sys
from collections.abc import Callable
from typing import Any

import click
from flask import Flask, current_app
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from .services import seed as seed_service

# What a database says when the shop's tables or columns are not there (the code is newer
# than the schema): SQLite's words, MySQL's 1146 and 1054.
_NOT_UPGRADED = ("no such table", "no such column", "has no column named", "(1146,", "(1054,")
# What a driver says when it could not reach the server or lost it: SQLite's file, MySQL's
# 2002 (socket), 2003 (refused), 2006 (gone away), 2013 (lost), 2055 (lost, by PyMySQL).
_UNREACHABLE = ("unable to open database file", "(2002,", "(2003,", "(2006,", "(2013,",
                "(2055,")


def database_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """A command that meets an unreachable database, one without the shop's tables or columns
    (not upgraded), or one that refuses it (no such database, access denied), says so in one
    line and exits 1, where it printed a traceback of a hundred lines (into the cron mail
    every five minutes of an outage). Only an unreachable one is worth trying again as is."""
    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except DBAPIError as exc:
            try:
                where = make_url(current_app.config["SQLALCHEMY_DATABASE_URI"]) \
                    .render_as_string(hide_password=True)
            except Exception:
                where = "DATABASE_URL"
            text = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
            if any(mark in text for mark in _NOT_UPGRADED):
                raise click.ClickException(
                    f"The database at {where} does not have the shop's tables as this code "
                    f"needs them yet ({text}): run `flask --app wsgi db upgrade` first.") \
                    from None
            if exc.connection_invalidated or any(mark in text for mark in _UNREACHABLE):
                raise click.ClickException(
                    f"The database at {where} did not answer: {text}. Nothing was done; run "
                    f"this again once it answers.") from None
            raise click.ClickException(
                f"The database at {where} refused this: {text}. Nothing was done; check "
                f"DATABASE_URL and the database.") from None
    return run


def _migrations_say_database_errors_in_one_line(app: Flask) -> None:
    """Flask-Migrate's `db` commands (`db upgrade` begins every deploy) with database_errors,
    like the shop's own: they printed a traceback of sixty lines. This app gets a copy of the
    command group; Flask-Migrate's own, shared by every app in the process, is left as is."""
    group = app.cli.commands.get("db")
    if not isinstance(group, click.Group):
        return
    own = copy.copy(group)
    own.commands = {}
    for name, command in group.commands.items():
        said = copy.copy(command)
        if command.callback is not None:
            said.callback = database_errors(command.callback)
        own.commands[name] = said
    app.cli.add_command(own, "db")


def _ask_password() -> str:
    """The password typed twice in a terminal. Without one (cron, a deploy script, stdin from
    /dev/null or a pipe) there is no one to ask: click's prompt read nothing and the command
    said only "Aborted!"; it now says what to give instead, and exits 1."""
    if not sys.stdin.isatty():
        raise click.ClickException(
            "A password is needed: give it with --password, or run this command in a "
            "terminal to be asked for it.")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def init_app(app: Flask) -> None:
    from . import jobs_cli

    jobs_cli.init_app(app)
    _migrations_say_database_errors_in_one_line(app)

    @app.cli.command("seed")
    @click.option("--products", type=click.IntRange(min=1), default=None,
                  help="Add N generated products (a large catalogue for benchmarks).")
    @database_errors
    def seed(products: int | None) -> None:
        """Load the demo catalogue (idempotent); with --products N, add N more products."""
        if products:
            created = seed_service.bulk_products(products)
            click.echo(f"Added {created} products.")
        else:
            report = seed_service.demo()
            click.echo(f"Demo data ready: {report}")

    @app.cli.command("create-admin")
    @click.argument("email")
    @click.option("--password", default=None,
                  help="The account's password (asked for when not given, in a terminal).")
    @click.option("--role", type=click.Choice(["admin", "staff"]), default="admin",
                  show_default=True, help="admin also manages staff accounts and roles.")
    @database_errors
    def create_admin(email: str, password: str | None, role: str) -> None:
        """Create a staff account, or make the account with this email staff: an existing
        account (a customer's too) gets this password and role, and is reactivated."""
        from .services import accounts
        from .services.errors import ValidationError

        if password is None:
            password = _ask_password()
        try:
            user = accounts.create_admin(email, password, role)
        except ValidationError as exc:
            message = "; ".join(f"{k}: {v}" for k, v in exc.errors.items())
            raise click.ClickException(message) from exc
        click.echo(f"{user.email} is now {user.role}.")

    @app.cli.command("cleanup")
    @database_errors
    def cleanup() -> None:
        """Delete old idempotency records, abandoned guest carts and the record of logins
        ended whose cookies have expired (run daily from cron)."""
        from .services import maintenance

        purged = maintenance.purge_stale()
        click.echo(f"Deleted {purged.idempotency_records} idempotency records, "
                   f"{purged.guest_carts} abandoned guest carts and {purged.ended_logins} "
                   f"ended logins.")

    @app.cli.command("refresh-catalog")
    @database_errors
    def refresh_catalog() -> None:
        """After hand-written SQL changes to products or categories: recount, re-index the
        search terms and postings, move the cache version (docs/DEPLOY.md)."""
        from .services import maintenance

        try:
            count = maintenance.refresh_catalog()
        except maintenance.CacheNotInvalidated as exc:
            raise click.ClickException(
                f"Catalogue state and the search terms of {exc.products} products written "
                f"again, with every term's postings; but Redis at REDIS_URL did not answer, so "
                f"the page cache still holds the old catalogue (for up to "
                f"{current_app.config.get('CATALOG_CACHE_SECONDS')} s). Run this again once "
                f"Redis answers.") from None
        click.echo(f"Catalogue state, cache version and the search terms of {count} products "
                   f"written again, with every term's postings.")

    @app.cli.command("seed-if-empty")
    @database_errors
    def seed_if_empty() -> None:
        """Load the demo catalogue only when the shop has no products (used by `make run`)."""
        if seed_service.is_empty():
            click.echo(f"Demo data ready: {seed_service.demo()}")
        else:
            click.echo("The shop already has products; not seeding.")
