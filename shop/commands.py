"""CLI: `flask --app wsgi seed [--products N]`, `create-admin`, `cleanup`, `refresh-catalog`
(jobs: shop/jobs_cli.py)."""
from __future__ import annotations

import click
from flask import Flask

from .services import seed as seed_service


def init_app(app: Flask) -> None:
    from . import jobs_cli

    jobs_cli.init_app(app)

    @app.cli.command("seed")
    @click.option("--products", type=int, default=None,
                  help="Add N generated products (a large catalogue for benchmarks).")
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
    @click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
                  help="The account's password (asked for when not given).")
    @click.option("--role", type=click.Choice(["admin", "staff"]), default="admin",
                  show_default=True, help="admin also manages staff accounts and roles.")
    def create_admin(email: str, password: str, role: str) -> None:
        """Create a staff account, or make the account with this email staff: an existing
        account (a customer's too) gets this password and role, and is reactivated."""
        from .services import accounts
        from .services.errors import ValidationError

        try:
            user = accounts.create_admin(email, password, role)
        except ValidationError as exc:
            message = "; ".join(f"{k}: {v}" for k, v in exc.errors.items())
            raise click.ClickException(message) from exc
        click.echo(f"{user.email} is now {user.role}.")

    @app.cli.command("cleanup")
    def cleanup() -> None:
        """Delete old idempotency records, abandoned guest carts and the record of logins
        ended whose cookies have expired (run daily from cron)."""
        from .services import maintenance

        purged = maintenance.purge_stale()
        click.echo(f"Deleted {purged.idempotency_records} idempotency records, "
                   f"{purged.guest_carts} abandoned guest carts and {purged.ended_logins} "
                   f"ended logins.")

    @app.cli.command("refresh-catalog")
    def refresh_catalog() -> None:
        """After hand-written SQL changes to products or categories: recount, re-index the
        search terms and postings, move the cache version (docs/DEPLOY.md)."""
        from flask import current_app

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
    def seed_if_empty() -> None:
        """Load the demo catalogue only when the shop has no products (used by `make run`)."""
        if seed_service.is_empty():
            click.echo(f"Demo data ready: {seed_service.demo()}")
        else:
            click.echo("The shop already has products; not seeding.")
