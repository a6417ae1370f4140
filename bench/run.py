"""`make bench`: the shop's speed, as a ratio to a hello-world Flask app measured in the same run.

What it does (each step prints what it is doing):
1. Seeds scratch databases with the project's own CLI: a SQLite file and a MySQL database with
   10,000 products (listing, product page, cart and checkout), and 100,000 products in another
   SQLite file and MySQL database (search). `seed --products` is timed. Then waits until the
   MySQL server has written out the seed (InnoDB's dirty pages and purge; at most 3 minutes),
   so that its background writes are not measured with the first rows.
2. Serves bench/hello.py and the shop with gunicorn, the same gunicorn.conf.py and settings for
   both (2 sync workers, SHOP_ENV=production), each on a free loopback port.
3. Loads each with wrk (-t2 -c32 -d10s unless told otherwise; 16 connections for the cart) and
   a few scripted clients:
   - listing page /products?page=50 (24 cards) and product pages, without a cache, on SQLite and
     on MySQL; the same listing with the Redis page cache;
   - search on 100,000 products: throughput under wrk, and the latency of one client
     searching alone (p50/p95), on both databases;
   - add to cart (htmx POST) on MySQL, 16 connections, one guest cart per session;
   - place order on MySQL: 16 clients, each order from its own session whose cart and
     checkout details were prepared through the real pages; then a race of 16 clients for the
     last units of one variant; then the stock invariant over every variant (units received =
     on hand + in orders that are not cancelled or refunded) and the oversold units.
4. Prints a table (requests/s, ratio to hello-world, p50, p99, target, and the CPU a request
   cost during each wrk run: the gunicorn master and workers, the local MySQL server, wrk) and
   writes bench/results/last-run.json and .md.

Usage: .venv/bin/python bench/run.py [--duration 10] [--skip-mysql] [--only listing,product]
MySQL: --mysql-url (default mysql+pymysql://root@127.0.0.1:3306/); Redis: --redis-url.
Nothing is left behind: servers stop, scratch files are removed, MySQL databases
shop_bench and shop_bench_search are dropped (--keep-data keeps them for another run with
--reuse-data), and the Redis keys written under this run's prefix are deleted.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PYTHON = sys.executable
GUNICORN = str(Path(PYTHON).with_name("gunicorn"))
WRK = shutil.which("wrk") or "/usr/bin/wrk"
LISTING = "/products?page=50"
SCRATCH = Path(tempfile.gettempdir()) / "shop-bench"  # set per run in main()
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
CSRF_HEADER = re.compile(r'"X-CSRFToken": "([^"]+)"')
HIDDEN = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"')
# Queries a shopper types: one word, two words, a prefix, a colour, a material, a product.
SEARCHES = ["lantern", "alpine mug", "merino socks", "skillet", "canvas backpack", "candl",
            "wool blanket", "coffee grinder", "notebook", "cast iron", "hoodie navy",
            "linen napkins", "travel mug", "enamel", "fountain pen", "hammock", "stoneware",
            "driftwood", "hiking socks", "cotton"]
ADDRESS = {"name": "Bench Shopper", "line1": "1 Load Street", "line2": "", "city": "Testville",
           "region": "", "postal_code": "12345", "country": "US", "phone": "+1 555 0100"}


# Results ------------------------------------------------------------------------------------

@dataclass
class Row:
    """One line of the results table."""

    key: str
    name: str
    database: str
    connections: int
    requests_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    ratio: float | None = None
    target: str = ""
    passed: bool | None = None
    errors: int = 0
    notes: str = ""
    extra: dict = field(default_factory=dict)


@dataclass
class Run:
    started: str
    machine: dict
    command: str
    settings: dict
    seeding: dict = field(default_factory=dict)
    hello: list[float] = field(default_factory=list)
    hello_cpu: list[dict] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)

    @property
    def ceiling(self) -> float:
        return statistics.mean(self.hello) if self.hello else 0.0


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# Processes ----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flask_cli(env: dict[str, str], *args: str) -> str:
    """Run `flask --app wsgi ...` against a scratch database."""
    result = subprocess.run([PYTHON, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise SystemExit(f"flask {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout.strip()


def base_env(database_url: str, redis_url: str | None = None, prefix: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DATABASE_", "REDIS_", "SHOP_", "GUNICORN_", "PROMETHEUS_"))}
    env.update({"DATABASE_URL": database_url, "SHOP_ENV": "production",
                "SHOP_BASE_URL": "https://shop.example.com",
                "SECRET_KEY": "bench-" + secrets.token_hex(16), "PYTHONDONTWRITEBYTECODE": "1",
                # Mail (order confirmations, low-stock alerts) is written to files without a
                # mail server: into the scratch directory, not the project's instance/.
                "SHOP_OUTBOX_DIR": str(SCRATCH / "outbox"),
                "SHOP_UPLOAD_DIR": str(SCRATCH / "uploads"),
                # Place order comes from one address (the benchmark's own clients).
                "SHOP_RATELIMIT_ORDERS": "1000000 per hour"})
    if redis_url:
        env["REDIS_URL"] = redis_url
        env["SHOP_CACHE_KEY_PREFIX"] = prefix + "cache:"
    return env


# gunicorn masters serving now, by base URL (their workers are their children).
SERVERS: dict[str, int] = {}


def _cpu_seconds(pid: int) -> float:
    """A process's user + system CPU seconds (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return kids


def _database_server() -> int | None:
    """The local MySQL server's process (MariaDB's or MySQL's), if one runs here."""
    for name in ("mariadbd", "mysqld"):
        found = subprocess.run(["pidof", name], capture_output=True, text=True).stdout.split()
        if found:
            return int(found[0])
    return None


class CpuMeter:
    """CPU used while a wrk run lasts: the gunicorn master with its workers, the local MySQL
    server and wrk itself (the finished children of this process), to tell apart what a
    request costs the shop, the database and the load generator on the same two cores.
    `clients_here`: the load comes from this process's own threads (place order), not wrk."""

    def __init__(self, server: int | None, database: bool, clients_here: bool = False) -> None:
        self.server, self.database = server, _database_server() if database else None
        self.pids = [server, *_children(server)] if server else []
        self.who = resource.RUSAGE_SELF if clients_here else resource.RUSAGE_CHILDREN
        self.names = ("app", "database", "clients" if clients_here else "wrk")

    def _now(self) -> tuple[float, float, float]:
        usage = resource.getrusage(self.who)
        return (sum(_cpu_seconds(pid) for pid in self.pids),
                _cpu_seconds(self.database) if self.database else 0.0,
                usage.ru_utime + usage.ru_stime)

    def __enter__(self) -> CpuMeter:
        self.started = self._now()
        return self

    def __exit__(self, *exc) -> None:
        now = self._now()
        self.used = [after - before for after, before in zip(now, self.started, strict=True)]

    def per_request(self, requests: int) -> dict[str, float]:
        """Milliseconds of CPU per request: app (gunicorn), database, wrk (or clients)."""
        n = max(requests, 1)
        return {name: round(seconds * 1000 / n, 3)
                for name, seconds in zip(self.names, self.used, strict=True)}


@contextmanager
def serve(name: str, app: str, env: dict[str, str], logs: Path, health: str = "/healthz"):
    """gunicorn -c gunicorn.conf.py with 2 sync workers on a free port; yields its base URL."""
    port = free_port()
    env = dict(env, GUNICORN_BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY="2", GUNICORN_THREADS="1",
               # Recycling workers in the middle of a 10 s run would measure imports, not pages.
               GUNICORN_MAX_REQUESTS="0", GUNICORN_LOGLEVEL="warning")
    log_file = open(logs / f"{name}.log", "w")
    proc = subprocess.Popen([GUNICORN, "-c", "gunicorn.conf.py", app], cwd=ROOT, env=env,
                            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{name} did not start; see {logs / (name + '.log')}")
            try:
                status, _, _ = http("GET", base + health)
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} did not answer {health} in 60 s")
            time.sleep(0.2)
        # Both workers import the app lazily: touch them before measuring.
        for _ in range(8):
            http("GET", base + health)
        SERVERS[base] = proc.pid
        yield base
    finally:
        SERVERS.pop(base, None)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log_file.close()


# HTTP clients -------------------------------------------------------------------------------

def http(method: str, url: str, body: dict | None = None, headers: dict | None = None,
         cookies: dict | None = None) -> tuple[int, dict[str, str], str]:
    """One request, no redirects followed; cookies from Set-Cookie are merged into `cookies`."""
    parts = urlsplit(url)
    conn = HTTPConnection(parts.hostname, parts.port, timeout=60)
    hdrs = dict(headers or {})
    data = None
    if body is not None:
        data = urlencode(body)
        hdrs["Content-Type"] = "application/x-www-form-urlencoded"
    if cookies:
        hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request(method, path, body=data, headers=hdrs)
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")
        if cookies is not None:
            for value in response.headers.get_all("Set-Cookie") or []:
                pair = value.split(";", 1)[0]
                key, _, val = pair.partition("=")
                if val and "Max-Age=0" not in value and "expires=Thu, 01 Jan 1970" not in value:
                    cookies[key.strip()] = val.strip()
                else:
                    cookies.pop(key.strip(), None)
        return response.status, {k.lower(): v for k, v in response.getheaders()}, text
    finally:
        conn.close()


@dataclass
class Shopper:
    """A browser session: cookies and the CSRF token of its pages."""

    cookies: dict[str, str]
    csrf: str
    token: str = ""
    expected_total: str = ""


def new_shopper(base: str) -> Shopper:
    cookies: dict[str, str] = {}
    status, _, page = http("GET", base + "/cart", cookies=cookies)
    match = CSRF_FIELD.search(page) or CSRF_HEADER.search(page)
    if status != 200 or not match:
        raise RuntimeError(f"no CSRF token on /cart ({status})")
    return Shopper(cookies, match.group(1))


def add_to_cart(base: str, shopper: Shopper, variant_id: int) -> None:
    status, headers, _ = http("POST", base + "/cart/add", {
        "csrf_token": shopper.csrf, "variant_id": variant_id, "quantity": 1},
        cookies=shopper.cookies)
    if status != 303 or "/cart" not in headers.get("location", ""):
        raise RuntimeError(f"add to cart failed: {status} {headers.get('location')}")


def prepare_checkout(base: str, variants: list[int]) -> Shopper:
    """A guest who filled the cart and the checkout details, on the review page."""
    shopper = new_shopper(base)
    for variant_id in variants:
        add_to_cart(base, shopper, variant_id)
    details = {"csrf_token": shopper.csrf, "email": f"bench-{uuid.uuid4().hex[:12]}@example.com",
               "shipping_method": "standard", "payment_method": "manual", **ADDRESS}
    status, headers, page = http("POST", base + "/checkout", details, cookies=shopper.cookies)
    if status != 303 or "/checkout/review" not in headers.get("location", ""):
        raise RuntimeError(f"checkout details refused: {status} {page[:300]}")
    status, _, page = http("GET", base + "/checkout/review", cookies=shopper.cookies)
    fields = dict(HIDDEN.findall(page))
    if status != 200 or "token" not in fields:
        raise RuntimeError(f"no review form: {status}")
    shopper.token = fields["token"]
    shopper.expected_total = fields.get("expected_total", "")
    return shopper


def in_parallel(count: int, make, threads: int = 8) -> list:
    """Call make(i) for i in range(count) on a few threads (preparation, not measured)."""
    out: list = [None] * count
    errors: list[BaseException] = []
    index = iter(range(count))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                i = next(index, None)
            if i is None or errors:
                return
            try:
                out[i] = make(i)
            except BaseException as exc:  # reported after the threads end
                errors.append(exc)
                return

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    return out


def place_orders(base: str, shoppers: list[Shopper], clients: int, seconds: float) -> dict:
    """`clients` threads post "Place order", each time for the next prepared shopper."""
    queue = list(reversed(shoppers))
    lock = threading.Lock()
    outcomes: Counter[str] = Counter()
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    last_done = [time.perf_counter()]

    def client() -> None:
        while time.perf_counter() < deadline:
            with lock:
                if not queue:
                    return
                shopper = queue.pop()
            started = time.perf_counter()
            status, headers, _ = http("POST", base + "/checkout/place", {
                "csrf_token": shopper.csrf, "token": shopper.token,
                "expected_total": shopper.expected_total}, cookies=dict(shopper.cookies))
            finished = time.perf_counter()
            location = headers.get("location", "")
            kind = ("placed" if status == 303 and "/orders/" in location else
                    "refused" if status == 303 else f"http_{status}")
            with lock:
                outcomes[kind] += 1
                latencies.append(finished - started)
                last_done[0] = max(last_done[0], finished)

    start = time.perf_counter()
    pool = [threading.Thread(target=client) for _ in range(clients)]
    server = next((pid for url, pid in SERVERS.items() if base.startswith(url)), None)
    with CpuMeter(server, True, clients_here=True) as meter:
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    elapsed = max(1e-9, last_done[0] - start)
    latencies.sort()
    return {"elapsed_s": elapsed, "outcomes": dict(outcomes), "requests": len(latencies),
            "placed_per_s": outcomes["placed"] / elapsed,
            "requests_per_s": len(latencies) / elapsed,
            "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000, "unused_sessions": len(queue),
            # Per "Place order" request; the clients are this process's threads.
            "cpu_ms": meter.per_request(len(latencies))}


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(pct / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def sequential_latency(base: str, paths: list[str], rounds: int) -> dict:
    """One client alone: the time each request takes, without queueing behind others."""
    times = []
    for _ in range(rounds):
        for path in paths:
            started = time.perf_counter()
            status, _, _ = http("GET", base + path)
            times.append(time.perf_counter() - started)
            if status != 200:
                raise RuntimeError(f"{path}: {status}")
    return {"requests": len(times), "p50_ms": percentile(times, 50) * 1000,
            "p95_ms": percentile(times, 95) * 1000, "max_ms": max(times) * 1000}


# wrk ----------------------------------------------------------------------------------------

LUA_REPORT = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
    .. '"status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "mean_us": %.1f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
"""
LUA_ROTATE = """
local requests = {}
local i = 0
function init(args)
  for line in io.lines(args[1]) do
    local f = "([^\\t]*)"
    local method, path, cookie, csrf, body = line:match(
      f .. "\\t" .. f .. "\\t" .. f .. "\\t" .. f .. "\\t" .. f)
    local headers = {}
    if cookie ~= "" then headers["Cookie"] = cookie end
    if csrf ~= "" then headers["X-CSRFToken"] = csrf end
    if method == "POST" then
      headers["Content-Type"] = "application/x-www-form-urlencoded"
      headers["HX-Request"] = "true"
    end
    requests[#requests + 1] = wrk.format(method, path, headers, body ~= "" and body or nil)
  end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  i = math.random(#requests)
end
function request()
  i = i % #requests + 1
  return requests[i]
end
"""


def wrk(url: str, workdir: Path, seconds: int, connections: int = 32,
        lines: list[tuple[str, str, str, str, str]] | None = None, warmup: int = 2,
        mysql: bool = False) -> dict:
    """Run wrk (2 threads) and return its numbers; `lines` are requests to rotate through;
    `mysql`: count the local MySQL server's CPU too."""
    script = workdir / f"wrk-{uuid.uuid4().hex[:8]}.lua"
    args: list[str] = []
    if lines:
        data = script.with_suffix(".tsv")
        data.write_text("".join("\t".join(line) + "\n" for line in lines))
        script.write_text(LUA_ROTATE + LUA_REPORT)
        args = ["--", str(data)]
    else:
        script.write_text(LUA_REPORT)
    command = [WRK, "-t2", f"-c{connections}", "-s", str(script), "--timeout", "10s"]
    if warmup:
        subprocess.run([*command, f"-d{warmup}s", url, *args], capture_output=True, text=True,
                       timeout=warmup + 60)
    server = next((pid for base, pid in SERVERS.items() if url.startswith(base + "/")), None)
    with CpuMeter(server, mysql) as meter:
        result = subprocess.run([*command, f"-d{seconds}s", url, *args], capture_output=True,
                                text=True, timeout=seconds + 120)
    match = re.search(r"BENCH_JSON (\{.*\})", result.stdout)
    if not match:
        raise RuntimeError(f"wrk failed: {result.stdout}\n{result.stderr}")
    data = json.loads(match.group(1))
    data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
    data["errors"] = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
    data["cpu_ms"] = meter.per_request(data["requests"])
    return data


# Databases ----------------------------------------------------------------------------------

def seed(database_url: str, products: int, reuse: bool) -> float | None:
    """Migrate, load the demo catalogue and add `products` generated products; returns the
    seconds `seed --products` took (None when an existing database was reused)."""
    env = base_env(database_url)
    if reuse and count_products(database_url) >= products:
        return None
    flask_cli(env, "db", "upgrade")
    flask_cli(env, "seed")
    started = time.perf_counter()
    flask_cli(env, "seed", "--products", str(products))
    return time.perf_counter() - started


def mysql_database(server_url: str, name: str, fresh: bool) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(server_url)
    with engine.connect() as conn:
        if fresh:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        conn.execute(text(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 "
                          f"COLLATE utf8mb4_unicode_ci"))
    engine.dispose()
    return server_url.rstrip("/").split("?")[0] + f"/{name}?charset=utf8mb4"


def settle_mysql(server_url: str, limit_s: float = 180.0) -> dict[str, float]:
    """Wait until the MySQL server has written out what the seeding left it to do: InnoDB
    flushes the seed's dirty pages and purges its undo log in the background, for minutes
    after 110,000 products, and those writes (and their log flushes) would otherwise be
    measured with the first rows, place order's commits above all. Waits until fewer than
    1,000 pages are dirty and the purge is done (or `limit_s`); returns what it saw."""
    from sqlalchemy import create_engine, text

    engine = create_engine(server_url)
    started = time.monotonic()
    try:
        with engine.connect() as conn:
            while True:
                status = dict(conn.execute(text(
                    "SHOW GLOBAL STATUS WHERE Variable_name IN "
                    "('Innodb_buffer_pool_pages_dirty', 'Innodb_history_list_length')")).all())
                dirty = int(status.get("Innodb_buffer_pool_pages_dirty", 0))
                history = int(status.get("Innodb_history_list_length", 0))
                waited = time.monotonic() - started
                if (dirty < 1000 and history < 1000) or waited >= limit_s:
                    return {"waited_s": round(waited, 1), "dirty_pages": dirty,
                            "history_length": history}
                time.sleep(1)
    finally:
        engine.dispose()


def drop_mysql_database(server_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(server_url)
    with engine.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    engine.dispose()


def count_products(database_url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM products")).scalar_one())
    except Exception:
        return 0
    finally:
        engine.dispose()


def shop_app(database_url: str):
    """The shop in this process, for preparing stock and checking invariants."""
    sys.path.insert(0, str(ROOT))
    from shop import create_app

    return create_app({"SQLALCHEMY_DATABASE_URI": database_url, "REDIS_URL": None},
                      env="development")


def pick_variants(database_url: str, count: int, min_stock: int) -> list[int]:
    """Variants of single-variant products with at least `min_stock` units."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT v.id FROM variants v JOIN products p ON p.id = v.product_id "
            "WHERE p.active = 1 AND v.stock_quantity >= :n AND v.sku LIKE 'GEN-%' "
            "ORDER BY v.id LIMIT :limit"), {"n": min_stock, "limit": count}).scalars().all()
    engine.dispose()
    return list(rows)


def set_stock(database_url: str, stock: dict[int, int]) -> None:
    """Staff set stock through the inventory service (recorded in the stock ledger)."""
    app = shop_app(database_url)
    with app.app_context():
        from shop.extensions import db
        from shop.services import inventory
        from shop.services.database import write_transaction

        with write_transaction():
            for variant_id, quantity in stock.items():
                inventory.set_stock(variant_id, quantity, "benchmark")
        db.engine.dispose()


def stock_invariant(database_url: str) -> dict:
    """For every variant: units received (the stock ledger) = on hand + units in orders that
    are neither cancelled nor refunded. Oversold units are units ordered beyond those
    received."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    sql = """
      SELECT v.id, v.stock_quantity,
        COALESCE((SELECT SUM(a.delta) FROM stock_adjustments a WHERE a.variant_id = v.id), 0),
        COALESCE((SELECT SUM(l.quantity) FROM order_lines l JOIN orders o ON o.id = l.order_id
                  WHERE l.variant_id = v.id AND o.status NOT IN ('cancelled', 'refunded')), 0)
      FROM variants v"""
    with engine.connect() as conn:
        rows = conn.execute(text(sql)).all()
        orders = conn.execute(text("SELECT count(*) FROM orders")).scalar_one()
    engine.dispose()
    mismatched = [r for r in rows if int(r[2]) != int(r[1]) + int(r[3])]
    oversold = sum(max(0, int(r[3]) - int(r[2])) for r in rows) + sum(
        -int(r[1]) for r in rows if int(r[1]) < 0)
    return {"variants": len(rows), "orders": int(orders), "mismatched_variants": len(mismatched),
            "oversold_units": oversold}


def redis_cleanup(redis_url: str, prefix: str) -> int:
    """Delete this run's keys (never FLUSHDB: the Redis is shared)."""
    from redis import Redis

    conn = Redis.from_url(redis_url)
    removed = 0
    for key in conn.scan_iter(match=prefix + "*", count=500):
        removed += conn.delete(key)
    return removed


# The run ------------------------------------------------------------------------------------

def machine() -> dict:
    load = os.getloadavg()
    try:
        model = next(line.split(":", 1)[1].strip() for line in
                     Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor()
    return {"cpus": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in load], "platform": platform.platform()}


def ratio_row(run: Run, row: Row, minimum: float | None, p99_limit: float | None = 100.0) -> Row:
    row.ratio = row.requests_per_s / run.ceiling if run.ceiling else None
    checks, parts = [], []
    if minimum is not None and row.ratio is not None:
        checks.append(row.ratio >= minimum)
        parts.append(f">= {minimum:.2f}")
    if p99_limit is not None:
        checks.append(row.p99_ms < p99_limit)
        parts.append(f"p99 < {p99_limit:.0f} ms")
    row.target = ", ".join(parts)
    row.passed = all(checks) if checks else None
    if row.errors:
        row.passed = False
        row.notes = (row.notes + f" {row.errors} errors").strip()
    return row


def measure(run: Run, key: str, name: str, database: str, url: str, workdir: Path,
            seconds: int, minimum: float | None, connections: int = 32,
            lines: list | None = None, p99_limit: float | None = 100.0) -> Row:
    log(f"{name} ({database}): wrk -t2 -c{connections} -d{seconds}s")
    data = wrk(url, workdir, seconds, connections, lines, mysql=database == "mysql")
    row = Row(key, name, database, connections, requests_per_s=data["rps"],
              p50_ms=data["p50_us"] / 1000, p99_ms=data["p99_us"] / 1000, errors=data["errors"],
              extra={"wrk": data, "cpu_ms": data["cpu_ms"]})
    run.rows.append(ratio_row(run, row, minimum, p99_limit))
    log(f"  {row.requests_per_s:8.0f} req/s  ratio {row.ratio or 0:.2f}  p50 {row.p50_ms:.1f} ms"
        f"  p99 {row.p99_ms:.1f} ms  errors {row.errors}  CPU/request {_cpu_text(data['cpu_ms'])}")
    return row


def hello(run: Run, workdir: Path, logs: Path, seconds: int) -> None:
    with serve("hello", "bench.hello:app", base_env("sqlite://"), logs, health="/") as base:
        log(f"hello-world: wrk -t2 -c32 -d{seconds}s")
        data = wrk(base + "/", workdir, seconds)
        run.hello.append(data["rps"])
        run.hello_cpu.append(data["cpu_ms"])
        log(f"  {data['rps']:8.0f} req/s  p50 {data['p50_us'] / 1000:.1f} ms  "
            f"p99 {data['p99_us'] / 1000:.1f} ms  CPU/request {_cpu_text(data['cpu_ms'])}")


def product_paths(database_url: str, count: int = 500) -> list[str]:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    with engine.connect() as conn:
        slugs = conn.execute(text("SELECT slug FROM products WHERE active = 1 ORDER BY id"
                                  )).scalars().all()
    engine.dispose()
    rng = random.Random(7)
    return [f"/p/{slug}" for slug in rng.sample(list(slugs), min(count, len(slugs)))]


def get_lines(paths: list[str]) -> list[tuple[str, str, str, str, str]]:
    return [("GET", path, "", "", "") for path in paths]


def search_paths() -> list[str]:
    return ["/products?" + urlencode({"q": q}) for q in SEARCHES]


def catalogue_rows(run: Run, label: str, url: str, search_url: str, workdir: Path, logs: Path,
                   args, redis_prefix: str, targets: dict[str, float]) -> None:
    """Listing, product pages, search; then the listing again with the Redis page cache."""
    only = args.only
    if not only or "listing" in only or "product" in only:
        with serve(f"shop-{label}", "wsgi:app", base_env(url), logs) as base:
            if not only or "listing" in only:
                measure(run, f"listing_{label}", "Listing page 50 (24 cards), no cache", label,
                        base + LISTING, workdir, args.duration, targets["listing"])
            if not only or "product" in only:
                row = measure(run, f"product_{label}", "Product page (500 products), no cache",
                              label, base + "/", workdir, args.duration, targets["product"],
                              lines=get_lines(product_paths(url)))
                row.notes = "rotating over 500 product pages"
    if not only or "search" in only:
        with serve(f"shop-{label}-search", "wsgi:app", base_env(search_url), logs) as base:
            log(f"search latency ({label}, 100,000 products): one client, "
                f"{len(SEARCHES)} queries x {args.search_rounds}")
            alone = sequential_latency(base, search_paths(), args.search_rounds)
            row = measure(run, f"search_{label}", "Search, 100,000 products, no cache", label,
                          base + "/", workdir, args.duration, None,
                          lines=get_lines(search_paths()))
            row.extra["alone"] = alone
            row.notes = (f"one client alone: p50 {alone['p50_ms']:.1f} ms, "
                         f"p95 {alone['p95_ms']:.1f} ms (target p95 < 50 ms)")
            row.passed = bool(row.passed) and alone["p95_ms"] < 50
            log(f"  alone: p50 {alone['p50_ms']:.1f} ms  p95 {alone['p95_ms']:.1f} ms  "
                f"max {alone['max_ms']:.1f} ms")
    if (not only or "cached" in only) and args.redis_url:
        env = base_env(url, args.redis_url, redis_prefix + label + ":")
        with serve(f"shop-{label}-cached", "wsgi:app", env, logs) as base:
            row = measure(run, f"listing_cached_{label}", "Listing page 50, Redis page cache",
                          label, base + LISTING, workdir, args.duration, 0.7)
            row.notes = "new anonymous shoppers: no cookie, each hit makes a session and token"
            cookies = []
            for _ in range(64):
                shopper = new_shopper(base)
                cookies.append("; ".join(f"{k}={v}" for k, v in shopper.cookies.items()))
            row = measure(run, f"listing_cached_returning_{label}",
                          "Listing page 50, Redis page cache, returning visitor", label,
                          base + "/", workdir, args.duration, 0.7,
                          lines=[("GET", LISTING, c, "", "") for c in cookies])
            row.notes = "anonymous shoppers with their session cookie (64 sessions)"


def cart_rows(run: Run, url: str, workdir: Path, logs: Path, args) -> None:
    """Add to cart and place order on MySQL; then the stock invariant."""
    label = "mysql"
    variants = pick_variants(url, 2000, 50)
    hot = variants[:20]
    last = variants[20]
    ordinary = variants[21:]
    # Enough stock that the throughput run is not cut short by sold-out carts; the race below
    # is the sold-out case.
    set_stock(url, {v: 100_000 for v in hot} | {last: args.race_stock})
    with serve(f"shop-{label}-cart", "wsgi:app", base_env(url), logs) as base:
        if not args.only or "cart" in args.only:
            log("add to cart: preparing 256 guest sessions with a cart")
            shoppers = in_parallel(256, lambda i: _cart_shopper(base, ordinary, i))
            rng = random.Random(3)
            lines = []
            for shopper in shoppers:
                cookie = "; ".join(f"{k}={v}" for k, v in shopper.cookies.items())
                for variant_id in rng.sample(ordinary, 8):
                    body = urlencode({"csrf_token": shopper.csrf, "variant_id": variant_id,
                                      "quantity": 1})
                    lines.append(("POST", "/cart/add", cookie, shopper.csrf, body))
            rng.shuffle(lines)
            row = measure(run, "add_to_cart_mysql", "Add to cart (htmx POST)", label, base + "/",
                          workdir, args.duration, None, connections=16, lines=lines,
                          p99_limit=None)
            row.notes = "16 connections, 256 guest carts, random in-stock variants"
        if not args.only or "order" in args.only:
            sessions = args.order_sessions
            log(f"place order: preparing {sessions} checkouts through the pages "
                f"(cart with a hot item and another, details, review)")
            rng = random.Random(5)
            picks = [[rng.choice(hot), rng.choice(ordinary)] for _ in range(sessions)]
            started = time.perf_counter()
            shoppers = in_parallel(sessions, lambda i: prepare_checkout(base, picks[i]))
            log(f"  prepared in {time.perf_counter() - started:.0f} s")
            log(f"place order: 16 clients for up to {args.duration} s")
            result = place_orders(base, shoppers, 16, args.duration)
            row = Row("place_order_mysql", "Place order (16 clients)", label, 16,
                      requests_per_s=result["requests_per_s"], p50_ms=result["p50_ms"],
                      p99_ms=result["p99_ms"], extra={"run": result, "cpu_ms": result["cpu_ms"]})
            row.ratio = row.requests_per_s / run.ceiling if run.ceiling else None
            placed = result["outcomes"].get("placed", 0)
            failed = result["requests"] - placed
            row.notes = (f"{result['placed_per_s']:.0f} orders placed/s; {placed} placed, "
                         f"{failed} not placed {result['outcomes']}")
            if result["unused_sessions"] == 0:
                row.notes += "; ran out of prepared checkouts before the time was up"
            log(f"  {result['placed_per_s']:.0f} orders/s, outcomes {result['outcomes']}, "
                f"p50 {result['p50_ms']:.1f} ms p99 {result['p99_ms']:.1f} ms  "
                f"CPU/request {_cpu_text(result['cpu_ms'])}")
            log(f"race for the last {args.race_stock} units of one variant: "
                f"{args.race_sessions} checkouts, 16 clients")
            racers = in_parallel(args.race_sessions, lambda i: prepare_checkout(base, [last]))
            race = place_orders(base, racers, 16, 60)
            row.extra["race"] = race
            invariant = stock_invariant(url)
            row.extra["invariant"] = invariant
            race_placed = race["outcomes"].get("placed", 0)
            row.notes += (f"; race: {race_placed} of {args.race_sessions} placed for "
                          f"{args.race_stock} units; invariant over {invariant['variants']} "
                          f"variants: {invariant['mismatched_variants']} mismatched, "
                          f"oversold units {invariant['oversold_units']}")
            row.target = ">= 150 orders/s, 0 oversold"
            row.passed = (result["placed_per_s"] >= 150 and invariant["oversold_units"] == 0
                          and invariant["mismatched_variants"] == 0
                          and race_placed == args.race_stock)
            row.extra["orders_per_s"] = result["placed_per_s"]
            run.rows.append(row)
            log(f"  race placed {race_placed}; invariant {invariant}")


def _cart_shopper(base: str, variants: list[int], i: int) -> Shopper:
    shopper = new_shopper(base)
    add_to_cart(base, shopper, variants[i % len(variants)])
    return shopper


def _cpu_text(cpu: dict[str, float]) -> str:
    parts = [f"app {cpu['app']:.3f}"]
    if cpu.get("database"):
        parts.append(f"db {cpu['database']:.3f}")
    for load in ("wrk", "clients"):
        if load in cpu:
            parts.append(f"{load} {cpu[load]:.3f}")
    return " + ".join(parts)


def report(run: Run) -> str:
    lines = [f"Hello-world ceiling: {run.ceiling:.0f} req/s (runs: "
             + ", ".join(f"{x:.0f}" for x in run.hello) + "); CPU a request: "
             + "; ".join(_cpu_text(cpu) for cpu in run.hello_cpu), "",
             "CPU ms/request: what the run used, divided by its requests: app = the gunicorn "
             "master and workers, db = the local MySQL server, wrk = the load generator "
             "(clients: the benchmark's own client threads, place order).", "",
             "| scenario | db | conns | req/s | ratio | p50 ms | p99 ms | target | result "
             "| CPU ms/request | notes |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in run.rows:
        verdict = {True: "pass", False: "MISS", None: "-"}[r.passed]
        cpu = r.extra.get("cpu_ms")
        lines.append(f"| {r.name} | {r.database} | {r.connections} | {r.requests_per_s:.0f} | "
                     f"{'' if r.ratio is None else f'{r.ratio:.2f}'} | {r.p50_ms:.1f} | "
                     f"{r.p99_ms:.1f} | {r.target} | {verdict} | "
                     f"{_cpu_text(cpu) if cpu else ''} | {r.notes} |")
    seeded = [f"{k}: {v:.1f} s" for k, v in run.seeding.items() if v is not None]
    if seeded:
        lines += ["", "Seeding (`flask --app wsgi seed --products N`): " + ", ".join(seeded)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--search-products", type=int, default=100_000)
    parser.add_argument("--search-rounds", type=int, default=5,
                        help="times the lone search client goes through the queries")
    parser.add_argument("--order-sessions", type=int, default=2500)
    parser.add_argument("--race-sessions", type=int, default=120)
    parser.add_argument("--race-stock", type=int, default=30)
    parser.add_argument("--mysql-url", default="mysql+pymysql://root@127.0.0.1:3306/")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--skip-mysql", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--only", type=lambda s: set(s.split(",")), default=set(),
                        help="listing,product,search,cached,cart,order")
    parser.add_argument("--keep-data", action="store_true")
    parser.add_argument("--reuse-data", action="store_true")
    parser.add_argument("--workdir", help="scratch directory (default: a new temporary one)")
    args = parser.parse_args()
    if not Path(WRK).exists():
        sys.exit("wrk is not installed: `make bench` installs it (apt-get install wrk)")

    global SCRATCH
    workdir = SCRATCH = Path(args.workdir or tempfile.mkdtemp(prefix="shop-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    redis_prefix = f"shop-bench:{uuid.uuid4().hex[:8]}:"
    run = Run(started=datetime.now(UTC).isoformat(timespec="seconds"), machine=machine(),
              command=" ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
              settings={"wrk": f"-t2 -c32 -d{args.duration}s", "gunicorn":
                        "gunicorn.conf.py, 2 sync workers, max_requests off, SHOP_ENV=production",
                        "products": args.products, "search_products": args.search_products})
    log(f"scratch directory {workdir}; load average {os.getloadavg()}")
    mysql = {}
    try:
        sqlite_url = f"sqlite:///{workdir / 'catalog.db'}"
        sqlite_search = f"sqlite:///{workdir / 'search.db'}"
        if not args.skip_sqlite:
            log(f"seeding SQLite: {args.products} and {args.search_products} products")
            run.seeding[f"sqlite {args.products}"] = seed(sqlite_url, args.products,
                                                          args.reuse_data)
            if not args.only or "search" in args.only:
                run.seeding[f"sqlite {args.search_products}"] = seed(
                    sqlite_search, args.search_products, args.reuse_data)
        if not args.skip_mysql:
            log(f"seeding MySQL: {args.products} and {args.search_products} products")
            fresh = not args.reuse_data
            mysql["shop_bench"] = mysql_database(args.mysql_url, "shop_bench", fresh)
            run.seeding[f"mysql {args.products}"] = seed(mysql["shop_bench"], args.products,
                                                         args.reuse_data)
            if not args.only or "search" in args.only:
                mysql["shop_bench_search"] = mysql_database(args.mysql_url,
                                                            "shop_bench_search", fresh)
                run.seeding[f"mysql {args.search_products}"] = seed(
                    mysql["shop_bench_search"], args.search_products, args.reuse_data)
            settled = settle_mysql(args.mysql_url)
            run.settings["mysql_settled"] = settled
            log(f"MySQL settled after seeding: waited {settled['waited_s']} s (dirty pages "
                f"{settled['dirty_pages']}, purge history {settled['history_length']})")

        hello(run, workdir, logs, args.duration)
        if not args.skip_sqlite:
            catalogue_rows(run, "sqlite", sqlite_url, sqlite_search, workdir, logs, args,
                           redis_prefix, {"listing": 0.35, "product": 0.45})
        if not args.skip_mysql:
            catalogue_rows(run, "mysql", mysql["shop_bench"],
                           mysql.get("shop_bench_search", mysql["shop_bench"]), workdir, logs,
                           args, redis_prefix, {"listing": 0.25, "product": 0.35})
            if not args.only or {"cart", "order"} & args.only:
                cart_rows(run, mysql["shop_bench"], workdir, logs, args)
        hello(run, workdir, logs, args.duration)
        for row in run.rows:
            if row.ratio is not None:
                row.ratio = row.requests_per_s / run.ceiling
                if row.key.startswith(("listing", "product")):
                    ratio_row(run, row, _minimum(row.key), 100.0)
    finally:
        if args.redis_url:
            try:
                redis_cleanup(args.redis_url, redis_prefix)
            except Exception as exc:  # Redis down: nothing was cached either
                log(f"could not clean Redis keys {redis_prefix}*: {exc}")
        if not args.keep_data:
            for name in mysql:
                drop_mysql_database(args.mysql_url, name)
            if not args.workdir:
                shutil.rmtree(workdir, ignore_errors=True)
    run.machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    text = report(run)
    print()
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "last-run.json").write_text(json.dumps(asdict(run), indent=2, default=str))
    (RESULTS / "last-run.md").write_text(
        f"# Benchmark run {run.started}\n\nCommand: `{run.command}`\n\nMachine: "
        f"{json.dumps(run.machine)}\n\n{text}\n")
    log(f"results written to {RESULTS / 'last-run.md'}")
    return 0


def _minimum(key: str) -> float:
    return {"listing_sqlite": 0.35, "listing_mysql": 0.25, "product_sqlite": 0.45,
            "product_mysql": 0.35}.get(key, 0.7)


if __name__ == "__main__":
    sys.exit(main())
