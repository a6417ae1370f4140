"""Daily housekeeping keeps what is recent and every customer's cart."""
from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from shop.extensions import db
from shop.models import Cart, IdempotencyRecord, User, utcnow
from shop.services import cart as carts
from shop.services.cart import CartOwner
from tests import factories as f

ROOT = Path(__file__).resolve().parents[2]


def test_cleanup_deletes_only_stale_records_and_guest_carts(app, runner):
    old = utcnow() - timedelta(days=40)
    variant = f.variant_of(f.product(stock=5))
    for token in ("old-guest", "new-guest"):
        carts.add_item(CartOwner(token=token), 1, variant_id=variant.id)
    customer = f.user()
    carts.add_item(CartOwner(user_id=customer.id), 1, variant_id=variant.id)
    db.session.add_all([
        IdempotencyRecord(scope="u1", key="old", request_hash="x", state="done", created_at=old),
        IdempotencyRecord(scope="u1", key="new", request_hash="x", state="done")])
    db.session.query(Cart).filter(Cart.token == "old-guest").update({"updated_at": old})
    db.session.query(Cart).filter(Cart.user_id == customer.id).update({"updated_at": old})
    db.session.commit()
    result = runner.invoke(args=["cleanup"])
    assert result.exit_code == 0, result.output
    assert ("Deleted 1 idempotency records, 1 abandoned guest carts and 0 ended logins."
            in result.output)
    assert [r.key for r in db.session.query(IdempotencyRecord)] == ["new"]
    assert {c.token for c in db.session.query(Cart)} == {"new-guest", None}


def test_refresh_catalog_catches_up_with_changes_made_by_hand_in_sql(app, runner, client):
    """Writes made in SQL bypass what the shop keeps (search terms, counts, tree revision);
    `flask refresh-catalog` works them out again."""
    from sqlalchemy import text

    f.category("Garden", slug="garden")
    f.product("Walnut Bowl", slug="walnut-bowl")
    gone = f.product("Copper Kettle", slug="copper-kettle")
    assert "Walnut Bowl" in client.get("/products?q=walnut").get_data(as_text=True)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE products SET name = 'Maple Bowl', description = 'Turned maple' "
                          "WHERE slug = 'walnut-bowl'"))
        conn.execute(text("UPDATE products SET active = :no WHERE id = :id"),
                     {"no": False, "id": gone.id})
        conn.execute(text("INSERT INTO categories (name, slug, description, position) "
                          "VALUES ('Kitchen', 'kitchen', '', 0)"))
    db.session.remove()
    # Before: the old name is still found, the new one not, the count and the nav are stale.
    assert "Maple Bowl" in client.get("/products?q=walnut").get_data(as_text=True)
    assert "Kitchen" not in client.get("/products").get_data(as_text=True)
    result = runner.invoke(args=["refresh-catalog"])
    assert result.exit_code == 0, result.output
    assert "search terms of 2 products" in result.output
    db.session.remove()
    found = client.get("/products?q=maple").get_data(as_text=True)
    assert "Maple Bowl" in found and "1 product" in found
    assert "No products found" in client.get("/products?q=walnut").get_data(as_text=True)
    assert "No products found" in client.get("/products?q=kettle").get_data(as_text=True)
    listing = client.get("/products").get_data(as_text=True)
    assert "1 product" in listing and "Kitchen" in listing


def test_refresh_catalog_writes_the_name_keys_of_names_changed_in_sql(app, runner, client):
    """A name changed by hand in SQL keeps its old sort key until `flask refresh-catalog`
    works the keys out again; then "Name: A to Z" lists it by its new name."""
    import re

    from sqlalchemy import text

    f.product("Walnut Bowl", slug="walnut-bowl")
    f.product("Oak Tray", slug="oak-tray")

    def by_name() -> list[str]:
        html = client.get("/products?sort=name").get_data(as_text=True)
        return re.findall(r'<h3 class="card-title"><a href="/p/[^"]+">([^<]+)</a>', html)

    with db.engine.begin() as conn:
        conn.execute(text("UPDATE products SET name = 'Ébène Bowl' WHERE slug = 'walnut-bowl'"))
    db.session.remove()
    assert by_name() == ["Oak Tray", "Ébène Bowl"]
    result = runner.invoke(args=["refresh-catalog"])
    assert result.exit_code == 0, result.output
    db.session.remove()
    assert by_name() == ["Ébène Bowl", "Oak Tray"]


def test_refresh_catalog_says_so_when_redis_could_not_be_told(make_app):
    """With Redis out of reach it logged that the invalidation would be "done when redis is
    back", then said everything was written again and exited 0; the command's process ends
    there, so it never was: cached pages kept the old catalogue."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{closed}/3", CATALOG_CACHE_SECONDS=30)
    result = app.test_cli_runner().invoke(args=["refresh-catalog"])
    assert result.exit_code == 1, result.output
    assert "Redis at REDIS_URL did not answer" in result.output
    assert "up to 30 s" in result.output and "Run this again" in result.output


def test_commands_say_in_one_line_when_the_database_is_missing_or_has_no_tables(
        make_app, tmp_path):
    """They printed a traceback of a hundred lines, into the cron mail every five minutes of
    an outage; `seed --products -5` said "Added 0 products."."""
    make_app()  # the test database's app, first: the fixture empties its tables afterwards
    empty = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'empty.db'}")
    result = empty.test_cli_runner().invoke(
        args=["create-admin", "a@example.com", "--password", "Secret-pass-123"])
    assert result.exit_code == 1
    assert "does not have the shop's tables as this code needs them yet (no such table: " \
        "users): run `flask --app wsgi db upgrade` first." in result.output
    assert "Traceback" not in result.output
    gone = make_app(SQLALCHEMY_DATABASE_URI="mysql+pymysql://root@127.0.0.1:9/shop")
    for args in (["expire-orders"], ["cleanup"], ["seed-if-empty"], ["refresh-catalog"]):
        result = gone.test_cli_runner().invoke(args=args)
        assert result.exit_code == 1, args
        assert "The database at mysql+pymysql://root@127.0.0.1:9/shop did not answer: (2003, " \
            in result.output and "Nothing was done" in result.output, args
    # The database answers, but refuses: not "did not answer", not "run this again".
    missing = make_app(SQLALCHEMY_DATABASE_URI="mysql+pymysql://root@127.0.0.1:3306/"
                       "shop_no_such_database_here?charset=utf8mb4")
    result = missing.test_cli_runner().invoke(args=["cleanup"])
    if "(2003," not in result.output:  # a MySQL server on 127.0.0.1:3306
        assert result.exit_code == 1
        assert "refused this: (1049, \"Unknown database 'shop_no_such_database_here'\")" \
            in result.output and "check DATABASE_URL" in result.output
    result = gone.test_cli_runner().invoke(args=["seed", "--products", "-5"])
    assert result.exit_code == 2 and "-5 is not in the range x>=1" in result.output


def test_db_upgrade_says_in_one_line_when_the_database_does_not_answer_or_refuses(
        make_app, tmp_path):
    """`flask --app wsgi db upgrade` (Flask-Migrate's commands), the first command of every
    deploy, printed a traceback of sixty lines ending in OperationalError when the database
    did not answer, refused the shop (an unknown database, a wrong password) or was a SQLite
    file in a folder that does not exist; the shop's own commands say it in one line. Now
    the db commands do too, with the same words and exit status 1."""
    make_app()  # the test database's app, first: the fixture empties its tables afterwards
    gone = make_app(SQLALCHEMY_DATABASE_URI="mysql+pymysql://root@127.0.0.1:9/shop")
    for args in (["db", "upgrade"], ["db", "current"], ["db", "downgrade"], ["db", "stamp",
                                                                            "head"]):
        result = gone.test_cli_runner().invoke(args=args)
        assert result.exit_code == 1, (args, result.output)
        assert "The database at mysql+pymysql://root@127.0.0.1:9/shop did not answer: (2003, " \
            in result.output and "Nothing was done" in result.output, (args, result.output)
    nowhere = tmp_path / "no" / "such" / "folder" / "shop.db"
    result = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{nowhere}").test_cli_runner().invoke(
        args=["db", "upgrade"])
    assert result.exit_code == 1
    assert f"The database at sqlite:///{nowhere} did not answer: unable to open database " \
        "file." in result.output
    # The real command line: one line on stderr, no traceback.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SHOP_", "SECRET_KEY", "DATABASE_", "REDIS_"))}
    env["DATABASE_URL"] = "mysql+pymysql://shop:secret-pw@127.0.0.1:9/shop"
    run = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "Error: The database at mysql+pymysql://shop:***@127.0.0.1:9/shop did not answer: "
        "(2003, \"Can't connect to MySQL server on '127.0.0.1' ([Errno 111] Connection "
        "refused)\"). Nothing was done; run this again once it answers."], run.stderr


def _flask(database_url: str, *args: str, **kw):
    """`flask --app wsgi ARGS` as a shell starts it, on the test database, without a
    controlling terminal of its own (start_new_session): no /dev/tty to ask on."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SHOP_", "SECRET_KEY", "DATABASE_", "REDIS_"))}
    env["DATABASE_URL"] = database_url
    return subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT,
                            env=env, start_new_session=True, **kw)


def test_create_admin_without_a_password_or_a_terminal_says_what_it_needs(app, database_url):
    """`create-admin EMAIL` without --password asks for it; with no terminal to ask in (cron,
    a deploy script, stdin from /dev/null) click's prompt met the end of its input and the
    command printed only "Aborted!". It now says in one line what to give (exit 1) and makes
    no account; in a terminal it still asks twice and makes it."""
    run = _flask(database_url, "create-admin", "boss@example.com", stdin=subprocess.DEVNULL,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = run.communicate(timeout=90)
    assert run.returncode == 1, (out, err)
    assert "Aborted" not in out + err and out == ""
    assert err.strip().splitlines() == [
        "Error: A password is needed: give it with --password, or run this command in a "
        "terminal to be asked for it."]
    assert db.session.query(User).filter_by(email="boss@example.com").count() == 0

    # A terminal (a pseudo-terminal as stdin): asked, typed twice, made.
    terminal, side = pty.openpty()
    run = _flask(database_url, "create-admin", "boss@example.com", stdin=side, stdout=side,
                 stderr=side)
    os.close(side)
    said = b""

    def wait_for(text: bytes) -> None:
        nonlocal said
        deadline = time.monotonic() + 60
        while text not in said:
            ready = select.select([terminal], [], [], max(0.0, deadline - time.monotonic()))[0]
            assert ready, said
            try:
                chunk = os.read(terminal, 1024)
            except OSError:  # the command ended: the terminal closed
                break
            said += chunk

    try:
        # getpass stops the echo (flushing what was typed before) and then writes the space.
        for prompt in (b"Password: ", b"Repeat for confirmation: "):
            wait_for(prompt)
            os.write(terminal, f.PASSWORD.encode() + b"\n")
        wait_for(b"boss@example.com is now admin.")
        assert run.wait(timeout=60) == 0, said
    finally:
        if run.poll() is None:
            run.kill()
        os.close(terminal)
    assert f.PASSWORD.encode() not in said  # not echoed
    db.session.rollback()  # a new snapshot: the command's write
    assert db.session.query(User).filter_by(email="boss@example.com").one().role == "admin"
