"""CSV export of products and orders; CSV import of products.

One row per variant. The import is two steps: `preview` reads the file and reports, row by row,
what would be created or updated and every problem, writing nothing; `apply` checks the file
again inside one transaction and writes every row or, when any row is bad, none.

Import rules (also shown on the import page):
- `product_slug`, `product_name`, `sku` and `price` are required; rows sharing a product_slug
  must agree on the product's name, description, category and active flag.
- A row whose SKU exists (in any capitals) updates that variant (it must belong to the same
  product); a new SKU adds a variant; a new product_slug creates the product.
- `price` and `compare_at_price` have no more decimals than the shop's currency (refused, not
  rounded); `compare_at_price` is higher than `price`, or blank (which clears it).
- Blank `stock_quantity` / `low_stock_threshold` / `active` leave an existing value alone
  (new records get 0 / 5 / yes).
- The export writes, per variant, the stock it read (`stock_seen`) and where the variant's stock
  ledger stood (`ledger_seen`), to be left as they are: the product form's rule. A
  `stock_quantity` still equal to `stock_seen` leaves the stock alone, so units sold since the
  export stay sold; one edited adds its difference to what is on hand now (a sale since still
  comes off), and is refused when the ledger moved since (a count in the back office, or the
  same file imported already: the difference would be counted twice) or when it would take
  the stock below zero. A row without them (an older export, a file made by hand) sets the
  on-hand count, as it did; the check says "stock_quantity 65 → 68" and warns. Every stock
  change is recorded in the stock ledger.
- A column left out of the file leaves every existing value of it alone (new records get it
  blank); a blank cell in a column that is there clears description, category, options and
  compare-at price. A new price must stay below a compare-at price the file leaves alone.
- Nothing is deleted: products and variants missing from the file are left as they are.
- The file is strict CSV: a quote left open, a line break in a cell other than the
  description, or a row with more cells than the header is refused, naming the line.
- Columns are separated by commas; a header with ';' or tabs is refused with that message.
- Line ends inside a cell do not count: CR LF and CR are read as LF, and a description that
  differs from the stored one only in its line ends is unchanged.
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from flask import current_app
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value

from ..extensions import db
from ..models import (
    Category,
    Order,
    OrderLine,
    Payment,
    Product,
    Shipment,
    StockAdjustment,
    Variant,
)
from ..models.base import MAX_ID, MAX_TEXT_BYTES
from . import audit, cache, money
from .addresses import unprintable
from .catalog import (
    compare_at_problem,
    one_line_end,
    options_key,
    refresh_product_prices,
    sku_key,
    skus_in_use,
)
from .database import retrying, write_transaction
from .money import fits_unit, parse_amount, quantize
from .orders import OrderFilters

PRODUCT_COLUMNS = ("product_slug", "product_name", "description", "category_slug", "active",
                   "sku", "options", "price", "compare_at_price", "stock_quantity",
                   "low_stock_threshold", "stock_seen", "ledger_seen")
# What the export read, written for the import to work a stock edit out from (the product
# form's stock_seen and ledger_seen): both, or neither.
SEEN_COLUMNS = ("stock_seen", "ledger_seen")
REQUIRED_COLUMNS = ("product_slug", "product_name", "sku", "price")
PRODUCT_FIELDS = ("product_name", "description", "category_slug", "active")
ORDER_COLUMNS = ("number", "created_at", "status", "email", "customer_id", "items", "subtotal",
                 "discount", "shipping", "tax", "total", "currency", "coupon",
                 "shipping_method", "payment_method", "payment_status", "ship_to_name",
                 "ship_to_city", "ship_to_country", "carrier", "tracking_number")
# A file is written in one request, inside the workers' 30 s: 10,000 rows take about 11 s on
# MySQL on a slow shared machine (bench/csv_import.py), 20,000 came too close.
MAX_ROWS = 10_000
MAX_STOCK = 1_000_000
SEEN = ("the export writes it so that units sold since are kept: leave it as it is, or "
        "export again.")
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# A new product's slug of digits alone is refused: "/p/7" and GET /api/v1/products/7 read
# digits as a product's id, so a product with the slug "7" was found as another product, and
# could not be found by its slug at all. A product that has one already keeps it.
DIGITS_SLUG = "a new product's slug cannot be digits alone (/p/7 reads digits as an id)"
SKU = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
# A spreadsheet runs a cell starting with one of these as a formula: exported with a leading
# apostrophe, which the import removes again. A cell that starts with an apostrophe of its own
# gets one more, or the import would take its apostrophe for the export's ("'=x" came back as
# "=x"). ESCAPED is the whole set: the export escapes exactly what the import undoes.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
ESCAPED = (*FORMULA_START, "'")
TRUE = {"yes", "true", "1", "y"}
FALSE = {"no", "false", "0", "n"}
BATCH = 500
EXPORT_BATCH = 2000  # orders a batch of the order export (three more queries each)
BOM = "\ufeff"


def max_file_bytes() -> int:
    """The largest CSV file the import takes: the back office's upload limit
    (SHOP_MAX_UPLOAD_BYTES), which the confirm step's form carries back in the same body."""
    return int(current_app.config["MAX_UPLOAD_BYTES"])


def too_large_message() -> str:
    limit = max_file_bytes()
    size = f"{limit / (1024 * 1024):g} MB" if limit >= 1024 * 1024 else f"{limit // 1024} KB"
    return (f"The file is too large: a CSV file may be at most {size} ({MAX_ROWS:,} rows). "
            "Split it into smaller files and import each.")


# A name, option or alt text holding a NUL, a control or a text-direction character (the
# rule of addresses.unprintable, as for reviews and account names): refused where it is typed.
UNPRINTABLE = ("This has a character that cannot be shown (a control or text-direction "
               "character); please type it again.")


# Options ("size=M; colour=Blue") -------------------------------------------------------------

def format_options(options: dict | None) -> str:
    """A variant's options as staff type them: "size=M; colour=Blue"."""
    return "; ".join(f"{k}={v}" for k, v in (options or {}).items())


def parse_options(text: str | None) -> dict[str, str]:
    """Read "size=M; colour=Blue"; raises ValueError with a message staff can act on."""
    options: dict[str, str] = {}
    if unprintable(text or ""):
        raise ValueError(UNPRINTABLE)
    for part in (text or "").split(";"):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise ValueError(f"Write each option as name=value (\"{part}\" has no \"=\").")
        name, value = (s.strip() for s in part.split("=", 1))
        if not name or not value:
            raise ValueError(f"Give each option a name and a value (\"{part}\").")
        if len(name) > 40 or len(value) > 80:
            raise ValueError("Keep option names under 40 and values under 80 characters.")
        if name in options:
            raise ValueError(f"The option \"{name}\" appears twice.")
        options[name] = value
    return options


# Export ---------------------------------------------------------------------------------------

def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        return str(quantize(value))
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    text = str(value)
    if text.startswith(ESCAPED):
        return "'" + text
    return text


def _uncell(text: str | None) -> str:
    """A cell as the import reads it: trimmed, line ends as LF, without the apostrophe the
    export put before a cell starting with one of ESCAPED (undone before the line ends are
    read: "'\r\n..." was a description starting with a line break)."""
    text = (text or "").strip()
    if len(text) > 1 and text[0] == "'" and text.startswith(ESCAPED, 1):
        text = text[1:]
    return one_line_end(text).strip()


def _csv_lines(rows: Iterable[Iterable[Any]]) -> Iterator[str]:
    """CSV text in chunks, starting with a byte order mark: without it Excel reads the file as
    the system's code page ("CafÃ©" for "Café"), and its "CSV UTF-8", which the import asks
    for, then saves that garbling back. The import skips the mark."""
    buffer = io.StringIO()
    buffer.write(BOM)
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in rows:
        writer.writerow([_cell(v) for v in row])
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def count_product_rows() -> int:
    """The rows export_products writes: one a variant, one for a product without any."""
    products_t, variants_t = Product.__table__, Variant.__table__
    return db.session.execute(
        select(func.count()).select_from(products_t.outerjoin(
            variants_t, variants_t.c.product_id == products_t.c.id))).scalar_one()


def export_products() -> Iterator[str]:
    """Every product and variant as CSV text, in chunks (products by id, variants by position)."""
    currency = current_app.config["CURRENCY"]

    def amount(value: Decimal | None) -> str | None:
        # In the shop's unit, as staff type it back in: "999" in JPY, "24.99" in USD.
        return money.to_string(value, currency)

    products_t, variants_t = Product.__table__, Variant.__table__
    ledger_t = StockAdjustment.__table__
    # Where each variant's stock ledger stands (inventory.last_adjustment), read by its index.
    ledger_seen = (select(func.coalesce(func.max(ledger_t.c.id), 0))
                   .where(ledger_t.c.variant_id == variants_t.c.id)
                   .scalar_subquery().label("ledger_seen"))

    def rows() -> Iterator[list[Any]]:
        # Plain rows, not ORM objects (3-5 times faster: the file is written inside one
        # request); the categories once, the variants of a batch of products in one query.
        yield list(PRODUCT_COLUMNS)
        categories = dict(db.session.execute(select(Category.id, Category.slug)).all())
        last_id = 0
        while True:
            products = db.session.execute(
                select(products_t.c.id, products_t.c.slug, products_t.c.name,
                       products_t.c.description, products_t.c.category_id, products_t.c.active)
                .where(products_t.c.id > last_id).order_by(products_t.c.id)
                .limit(EXPORT_BATCH)).all()
            if not products:
                return
            variants: dict[int, list[Any]] = {}
            for variant in db.session.execute(
                    select(variants_t.c.product_id, variants_t.c.sku, variants_t.c.options,
                           variants_t.c.price, variants_t.c.compare_at_price,
                           variants_t.c.stock_quantity, variants_t.c.low_stock_threshold,
                           ledger_seen)
                    .where(variants_t.c.product_id.in_([p.id for p in products]))
                    .order_by(variants_t.c.product_id, variants_t.c.position,
                              variants_t.c.id)):
                variants.setdefault(variant.product_id, []).append(variant)
            for product in products:
                head = [product.slug, product.name, product.description,
                        categories.get(product.category_id, ""), product.active]
                if product.id not in variants:
                    yield head + [""] * 8
                for variant in variants.get(product.id, ()):
                    yield head + [variant.sku, format_options(variant.options),
                                  amount(variant.price), amount(variant.compare_at_price),
                                  variant.stock_quantity, variant.low_stock_threshold,
                                  variant.stock_quantity, variant.ledger_seen]
            last_id = products[-1].id

    return _csv_lines(rows())


def _order_conditions(filters: OrderFilters, email: str | None) -> list:
    conditions = filters.conditions()
    if email:
        conditions.append(Order.email.contains(email.strip().lower(), autoescape=True))
    return conditions


def count_orders(filters: OrderFilters = OrderFilters(), *, email: str | None = None) -> int:
    """How many orders an export with these filters would write."""
    return db.session.execute(select(func.count()).select_from(Order).where(
        *_order_conditions(filters, email))).scalar_one()


def export_orders(filters: OrderFilters = OrderFilters(), *,
                  email: str | None = None) -> Iterator[str]:
    """Orders as CSV text, newest first, optionally filtered by status, days (the filters of
    the API's order list) and email; amounts in each order's currency's unit ("1511" yen,
    "24.99" dollars).

    Written inside one request (the admin checks count_orders against ORDER_EXPORT_MAX_ROWS
    first), so it reads plain rows, not ORM objects: a batch of orders, then their item
    counts, last payments and last shipments, three queries a batch. Loading each order with
    its lines, payments and shipments managed about 2,000 orders a second, and an export of
    300,000 was cut off by the workers' timeout, silently (a scale audit)."""
    orders_t, lines_t = Order.__table__, OrderLine.__table__
    payments_t, shipments_t = Payment.__table__, Shipment.__table__
    conditions = _order_conditions(filters, email)

    def rows() -> Iterator[list[Any]]:
        yield list(ORDER_COLUMNS)
        stmt = select(orders_t.c.id, orders_t.c.number, orders_t.c.created_at,
                      orders_t.c.status, orders_t.c.email, orders_t.c.user_id,
                      orders_t.c.subtotal, orders_t.c.discount, orders_t.c.shipping,
                      orders_t.c.tax, orders_t.c.total, orders_t.c.currency,
                      orders_t.c.coupon_code, orders_t.c.shipping_method,
                      orders_t.c.payment_method, orders_t.c.shipping_address).where(*conditions)
        if filters.since or filters.until:
            # The days' orders by their index, then read by id: walking the ids down from
            # the newest to an old month read every order in between.
            low, high = db.session.execute(select(func.min(orders_t.c.id),
                                                  func.max(orders_t.c.id))
                                           .where(*filters.conditions())).one()
            if low is None:
                return
            stmt = stmt.where(orders_t.c.id.between(low, high))
        last_id = None
        while True:
            page = stmt.order_by(orders_t.c.id.desc()).limit(EXPORT_BATCH)
            if last_id is not None:
                page = page.where(orders_t.c.id < last_id)
            batch = db.session.execute(page).all()
            if not batch:
                return
            ids = [row.id for row in batch]
            items = dict(db.session.execute(
                select(lines_t.c.order_id, func.sum(lines_t.c.quantity))
                .where(lines_t.c.order_id.in_(ids)).group_by(lines_t.c.order_id)).all())
            payments = {order_id: status for order_id, status in db.session.execute(
                select(payments_t.c.order_id, payments_t.c.status)
                .where(payments_t.c.order_id.in_(ids)).order_by(payments_t.c.id))}
            shipments = {order_id: (carrier, number) for order_id, carrier, number in
                         db.session.execute(
                             select(shipments_t.c.order_id, shipments_t.c.carrier,
                                    shipments_t.c.tracking_number)
                             .where(shipments_t.c.order_id.in_(ids))
                             .order_by(shipments_t.c.id))}
            for row in batch:
                address = row.shipping_address or {}
                carrier, tracking = shipments.get(row.id, ("", ""))
                yield [row.number, row.created_at, row.status, row.email, row.user_id,
                       int(items.get(row.id) or 0),
                       *(money.to_string(value, row.currency) for value in (
                           row.subtotal, row.discount, row.shipping, row.tax, row.total)),
                       row.currency, row.coupon_code, row.shipping_method, row.payment_method,
                       payments.get(row.id, ""), address.get("name", ""),
                       address.get("city", ""), address.get("country", ""), carrier, tracking]
            last_id = ids[-1]

    return _csv_lines(rows())


# Import ---------------------------------------------------------------------------------------

@dataclass
class RowResult:
    """One data row of an import file: what it would do, or why it cannot."""

    line: int
    product_slug: str
    sku: str
    action: str = "unchanged"  # create | update | unchanged | error
    errors: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict, repr=False)
    # The row sets an existing variant's on-hand count, having no stock_seen.
    stock_counted: bool = False


@dataclass
class ImportReport:
    rows: list[RowResult] = field(default_factory=list)
    file_errors: list[str] = field(default_factory=list)
    written: bool = False

    @property
    def ok(self) -> bool:
        return not self.file_errors and not self.bad_rows

    @property
    def bad_rows(self) -> list[RowResult]:
        return [row for row in self.rows if row.errors]

    @property
    def counts(self) -> dict[str, int]:
        result = {"create": 0, "update": 0, "unchanged": 0, "error": 0}
        for row in self.rows:
            result[row.action] += 1
        return result

    @property
    def stock_counts(self) -> list[RowResult]:
        """Rows that set a count, having no stock_seen (the check page warns)."""
        return [row for row in self.rows if row.stock_counted and not row.errors]

    def summary(self) -> dict[str, int]:
        return {"rows": len(self.rows), "created": self.counts["create"],
                "updated": self.counts["update"], "unchanged": self.counts["unchanged"]}


def decode(content: bytes | str) -> tuple[str | None, str | None]:
    """The file's text, or an error message."""
    if isinstance(content, str):
        return content, None
    try:
        return content.decode("utf-8-sig"), None
    except UnicodeDecodeError:
        return None, "The file is not UTF-8 text. Save it as \"CSV UTF-8\" and try again."


def _parse_bool(raw: str) -> bool | None:
    value = raw.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ValueError("Write yes or no.")


def price_problem(value: Decimal | None, currency: str) -> str | None:
    """Why a price staff entered cannot be kept: more decimals than
    the currency has (a fraction of a yen in JPY, of a cent in USD). `value` is the amount
    as typed (money.parse_amount): rounded, the shop would show and charge another amount
    than staff entered; or more than the shop's ceiling (money.MAX_PRICE), which carts and
    orders could not hold."""
    if value is None:
        return None
    if value > money.MAX_PRICE:
        return f"Enter an amount of at most {money.MAX_PRICE:,}."
    if fits_unit(value, currency):
        return None
    if money.unit(currency) == money.WHOLE:
        return (f"{currency.upper()} has no decimals: enter a whole amount such as "
                f"{quantize(value, currency)}.")
    return (f"{currency.upper()} has 2 decimals: enter an amount such as "
            f"{quantize(value, currency)}.")


def _parse_int(raw: str, name: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError(f"{name}: enter a whole number from 0 to {MAX_STOCK}.") from None
    if not 0 <= value <= MAX_STOCK:
        raise ValueError(f"{name}: enter a whole number from 0 to {MAX_STOCK}.")
    return value


def _seen_figure(text: str, most: int) -> int | None:
    """A figure the export wrote (digits), or None when it was altered."""
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        return None
    number = int(text)
    return number if number <= most else None


def _clean_row(raw: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Field-level checks of one row; no database access."""
    errors: list[str] = []
    v: dict[str, Any] = {}
    slug = raw.get("product_slug", "")
    if not slug:
        errors.append("product_slug: enter the product's slug.")
    elif len(slug) > 160 or not SLUG.match(slug):
        errors.append("product_slug: use lower-case letters, digits and single hyphens "
                      "(at most 160 characters).")
    v["product_slug"] = slug
    name = raw.get("product_name", "")
    if not name:
        errors.append("product_name: enter the product's name.")
    elif len(name) > 160:
        errors.append("product_name: at most 160 characters.")
    v["product_name"] = name
    # A column left out of the file keeps the current value: its key stays out of `v`.
    if "description" in raw:
        v["description"] = raw["description"]
        if len(v["description"].encode("utf-8")) > MAX_TEXT_BYTES:
            errors.append(f"description: at most {MAX_TEXT_BYTES:,} bytes (a letter with an "
                          "accent takes two, most other scripts three).")
    if "category_slug" in raw:
        v["category_slug"] = raw["category_slug"] or None
    active = raw.get("active", "")
    try:
        v["active"] = _parse_bool(active) if active else None
    except ValueError as exc:
        errors.append(f"active: {exc}")

    sku = raw.get("sku", "")
    v["sku"] = sku
    variant_fields = ("options", "price", "compare_at_price", "stock_quantity",
                      "low_stock_threshold", *SEEN_COLUMNS)
    if not sku:
        if any(raw.get(name) for name in variant_fields):
            errors.append("sku: enter the variant's SKU.")
        return v, errors
    if len(sku) > 64 or not SKU.match(sku):
        errors.append("sku: use letters, digits, '.', '_', '/' and '-' (at most 64 characters).")
    if "options" in raw:
        try:
            # A line break has a message of its own (_read).
            v["options"] = parse_options(raw["options"].replace("\n", " "))
        except ValueError as exc:
            errors.append(f"options: {exc}")
    # Read as typed, so that a price with more decimals than the currency has is refused
    # rather than rounded ("5.999" was imported as 6.00).
    price_raw = raw.get("price", "")
    price = parse_amount(price_raw)
    if not price_raw:
        errors.append("price: enter the price.")
    elif price is None:
        errors.append(f"price: \"{price_raw}\" is not a price such as 10 or 24.99.")
    currency = current_app.config["CURRENCY"]
    if problem := price_problem(price, currency):
        errors.append(f"price: {problem}")
    v["price"] = None if price is None else quantize(price)
    if "compare_at_price" in raw:
        compare_raw = raw["compare_at_price"]
        compare = parse_amount(compare_raw)
        if compare_raw and compare is None:
            errors.append(f"compare_at_price: \"{compare_raw}\" is not a price such as 10 or "
                          "24.99.")
        if problem := price_problem(compare, currency):
            errors.append(f"compare_at_price: {problem}")
        elif problem := compare_at_problem(price, compare):
            errors.append(f"compare_at_price: {problem}")
        v["compare_at_price"] = None if compare is None else quantize(compare)
    for name in ("stock_quantity", "low_stock_threshold"):
        text = raw.get(name, "")
        try:
            v[name] = _parse_int(text, name) if text else None
        except ValueError as exc:
            errors.append(str(exc))
    if "stock_seen" in raw:  # _read checked that ledger_seen is there too
        for name, most in (("stock_seen", MAX_STOCK), ("ledger_seen", MAX_ID)):
            text = raw[name]
            v[name] = _seen_figure(text, most) if text else None
            if text and v[name] is None:
                errors.append(f"{name}: \"{text}\" is not the figure the export wrote; {SEEN}")
        if bool(raw["stock_seen"]) != bool(raw["ledger_seen"]):
            errors.append(f"stock_seen, ledger_seen: the export writes both or neither; {SEEN}")
    return v, errors


def _read(text: str) -> tuple[list[RowResult], list[str]]:
    """Parse the CSV text into rows with their field-level errors."""
    rows: list[RowResult] = []
    # Strict: a stray quote is an error, not a cell that swallows the rows after it.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    last_line = 0
    try:
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            return [], ["The file is empty: it needs a header row and at least one product."]
        # Excel saves "CSV" with semicolons in many locales; a tab-separated export is
        # common too. Read with commas, such a header is one long unknown column.
        for separator, name in ((";", "semicolons (;)"), ("\t", "tabs")):
            if any(separator in h for h in header):
                return [], [f"The file separates its columns with {name}: the import needs "
                            "commas. Save it as \"CSV UTF-8 (Comma delimited)\" and try "
                            "again."]
        columns = [h.strip().lower() for h in header]
        problems = []
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            problems.append("Missing column(s): " + ", ".join(missing) + ".")
        unknown = [c for c in columns if c and c not in PRODUCT_COLUMNS]
        if unknown:
            problems.append("Unknown column(s): " + ", ".join(unknown)
                            + ". Use: " + ", ".join(PRODUCT_COLUMNS) + ".")
        if sum(c in columns for c in SEEN_COLUMNS) == 1:
            problems.append("The columns stock_seen and ledger_seen go together (the export "
                            "writes both, for the stock each variant had): keep both as "
                            "exported, or leave both out.")
        duplicated = sorted({c for c in columns if c and columns.count(c) > 1})
        if duplicated:
            problems.append("Column(s) given twice: " + ", ".join(duplicated) + ".")
        if problems:
            return [], problems
        last_line = reader.line_num
        for cells in reader:
            # A row may span several lines (a quoted description): name it by its first line.
            line, last_line = last_line + 1, reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(rows) >= MAX_ROWS:
                return rows, [f"The file has more than {MAX_ROWS:,} product rows: split it "
                              f"into files of at most {MAX_ROWS:,} rows and import each."]
            raw = {columns[i]: _uncell(cells[i]) if i < len(cells) else ""
                   for i in range(len(columns)) if columns[i]}
            values, errors = _clean_row(raw)
            for name, cell in raw.items():
                if name != "description" and "\n" in cell:
                    errors.append(f"{name}: this cell has a line break; check for a quote "
                                  f"left open on line {line}.")
            if len(cells) > len(columns):
                errors.insert(0, f"This row has {len(cells)} cells; the header has "
                                 f"{len(columns)}.")
            rows.append(RowResult(line=line, product_slug=values.get("product_slug", ""),
                                  sku=values.get("sku", ""), errors=errors, values=values))
    except csv.Error as exc:
        return rows, [_csv_problem(exc, last_line + 1, reader.line_num)]
    if not rows:
        return [], ["The file has a header but no product rows."]
    return rows, []


def _csv_problem(exc: csv.Error, first: int, reached: int) -> str:
    """What is wrong where, for a row the csv module cannot read: it starts on line `first`
    and reading stopped on line `reached`."""
    where = f"Line {first}" if reached <= first else f"Line {first} (read up to line {reached})"
    if "end of data" in str(exc):
        return (f"{where}: a quote opens a cell that is never closed, so the cell runs to the "
                "end of the file. Close it, or write a quote inside a cell as two (\"\").")
    if "expected after" in str(exc):
        return (f"{where}: a quote that is not closed where its cell ends; a quoted cell "
                "ends with a quote followed by a comma or the end of the line. Put quotes "
                "around the whole cell and write a quote inside it as two (\"\").")
    return f"{where}: this is not valid CSV ({exc})."


def _chunks(items: list, size: int = BATCH) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _plan(rows: list[RowResult]) -> None:
    """Check the rows against each other and against the database; set each row's action."""
    slugs = sorted({r.product_slug for r in rows if r.product_slug})
    skus = sorted({r.sku for r in rows if r.sku})
    categories = sorted({r.values.get("category_slug") for r in rows
                         if r.values.get("category_slug")})
    products: dict[str, Product] = {}
    for chunk in _chunks(slugs):
        for p in db.session.execute(select(Product).options(selectinload(Product.category),
                                                            selectinload(Product.variants))
                                    .where(Product.slug.in_(chunk))).scalars():
            products[p.slug] = p
    # By sku_key: a SKU in other capitals is the same variant (as the database's own unique
    # index has it on MySQL), on every database.
    variants: dict[str, Variant] = {}
    for chunk in _chunks(sorted(skus_in_use(skus).values())):
        for v in db.session.execute(select(Variant).options(selectinload(Variant.product))
                                    .where(Variant.sku.in_(chunk))).scalars():
            variants[sku_key(v.sku)] = v
    known_categories: set[str] = set()
    for chunk in _chunks(categories):
        known_categories.update(db.session.execute(
            select(Category.slug).where(Category.slug.in_(chunk))).scalars())

    currency = current_app.config["CURRENCY"]
    first_of_product: dict[str, RowResult] = {}
    first_of_sku: dict[str, RowResult] = {}
    for row in rows:
        v = row.values
        category = v.get("category_slug")
        if category and category not in known_categories:
            row.errors.append(f"category_slug: there is no category \"{category}\".")
        first = first_of_product.get(row.product_slug)
        known = products.get(row.product_slug)
        name = v.get("product_name") or ""
        # A name the product already has passes (the shop's own export imports again).
        if unprintable(name.replace("\n", " ")) and (known is None or known.name != name):
            row.errors.append(f"product_name: {UNPRINTABLE}")
        description = v.get("description") or ""
        # Line breaks and tabs are a description's own; one the product has already passes.
        if unprintable(description.replace("\n", " ").replace("\t", " ")) and (
                known is None
                or one_line_end(known.description or "").strip() != description):
            row.errors.append(f"description: {UNPRINTABLE}")
        if first is None and row.product_slug:
            first_of_product[row.product_slug] = row
            if known is None and row.product_slug.isdigit():
                row.errors.append(f"product_slug: {DIGITS_SLUG}.")
        elif first is not None:
            for name in PRODUCT_FIELDS:
                if v.get(name) != first.values.get(name):
                    row.errors.append(f"{name}: differs from line {first.line} for the same "
                                      f"product \"{row.product_slug}\".")
        if row.sku:
            seen = first_of_sku.get(sku_key(row.sku))
            if seen is not None:
                row.errors.append(f"sku: \"{row.sku}\" is also on line {seen.line}.")
            else:
                first_of_sku[sku_key(row.sku)] = row
            existing = variants.get(sku_key(row.sku))
            if existing is not None and existing.product.slug != row.product_slug:
                row.errors.append(f"sku: \"{row.sku}\" belongs to the product "
                                  f"\"{existing.product.slug}\".")
            elif existing is not None and "compare_at_price" not in v and compare_at_problem(
                    v.get("price"), existing.compare_at_price):
                row.errors.append(
                    f"price: {money.to_string(existing.compare_at_price, currency)} is this "
                    "variant's compare-at price, which the file leaves as it is; a price at "
                    "or above it needs a compare_at_price column (higher, or blank to "
                    "clear it).")

    _check_options(rows, products)

    # A new product is sold through its variants: without one the shop would list it at 0.00.
    with_variant = {row.product_slug for row in rows if row.sku}
    for slug, first in first_of_product.items():
        if slug not in products and slug not in with_variant:
            first.errors.append("sku: a new product needs at least one variant (a row with "
                                "its SKU and price).")

    # Where the ledger stands for the variants whose stock the file edits (_stock_change).
    positions = _ledger_positions(sorted(
        variant.id for row in rows if row.sku and _edits_stock(row.values)
        and (variant := variants.get(sku_key(row.sku))) is not None))

    for row in rows:
        if row.errors:
            row.action = "error"
            continue
        v = row.values
        product = products.get(row.product_slug)
        is_first = first_of_product.get(row.product_slug) is row
        if product is None:
            row.action = "create"
            row.changes = ["product"] + (["variant"] if row.sku else [])
            continue
        if is_first:
            current = {"product_name": product.name.strip(),
                       "description": one_line_end(product.description or "").strip(),
                       "category_slug": product.category.slug if product.category else None,
                       "active": product.active}
            for name in PRODUCT_FIELDS:
                if name not in v or (name == "active" and v["active"] is None):
                    continue  # a column left out, or a blank active: kept
                if v[name] != current[name]:
                    row.changes.append(name)
        if row.sku:
            variant = variants.get(sku_key(row.sku))
            if variant is None:
                row.changes.append("variant")
            else:
                v["stored_sku"] = variant.sku
                current_v = {"options": variant.options or {}, "price": variant.price,
                             "compare_at_price": variant.compare_at_price,
                             "stock_quantity": variant.stock_quantity,
                             "low_stock_threshold": variant.low_stock_threshold}
                for name, value in current_v.items():
                    if name not in v or name == "stock_quantity":
                        continue  # a column left out: kept; the stock below
                    new = v[name]
                    if name == "low_stock_threshold" and new is None:
                        continue
                    if new != value:
                        row.changes.append(name)
                if problem := _plan_stock(row, variant, positions.get(variant.id, 0)):
                    row.errors.append(problem)
                    row.action = "error"
                    continue
        if "variant" in row.changes:
            row.action = "create"
        elif row.changes:
            row.action = "update"
        else:
            row.action = "unchanged"


def _edits_stock(v: dict[str, Any]) -> bool:
    """The row changes the stock figure it was exported with (so the ledger is read)."""
    return (v.get("stock_seen") is not None and v.get("stock_quantity") is not None
            and v["stock_quantity"] != v["stock_seen"])


def _ledger_positions(variant_ids: list[int]) -> dict[int, int]:
    """Where each variant's stock ledger stands (inventory.last_adjustment), a batch a query;
    a variant without an entry is left out (0)."""
    positions: dict[int, int] = {}
    for chunk in _chunks(variant_ids):
        positions.update(db.session.execute(
            select(StockAdjustment.variant_id, func.max(StockAdjustment.id))
            .where(StockAdjustment.variant_id.in_(chunk))
            .group_by(StockAdjustment.variant_id)).all())
    return positions


def _plan_stock(row: RowResult, variant: Variant, ledger: int) -> str | None:
    """What the row does to an existing variant's stock, shown as current -> new among its
    changes (and kept in its values for _write), or why it cannot.

    A file from an export carries the stock each variant had then (stock_seen): a
    stock_quantity still equal to it leaves the stock alone, so units sold since stay sold;
    an edited one is applied as the product form applies one (_stock_change). A file without
    it (an older export, or one made by hand) sets the count, as it always did."""
    v = row.values
    new = v.get("stock_quantity")
    if new is None:
        return None
    current = variant.stock_quantity
    if v.get("stock_seen") is None:
        v["stock_count"] = new
        if new != current:
            row.changes.append(f"stock_quantity {current} → {new}")
            row.stock_counted = True
        return None
    if not _edits_stock(v):
        return None
    if ledger > v["ledger_seen"]:
        # The ledger was read after the variant: a count committed between the two reads
        # (READ COMMITTED) moved it, and the figure read before it is older. The refusal
        # says what is on hand now.
        db.session.refresh(variant, ["stock_quantity"])
        current = variant.stock_quantity
    if problem := _stock_change(row, variant.sku, current, ledger):
        return problem
    change = f"stock_quantity {current} → {current + v['stock_change']}"
    if current != v["stock_seen"]:
        change += f" ({v['stock_change']:+}: {v['stock_seen']} → {new} in the file)"
    row.changes.append(change)
    return None


def _stock_change(row: RowResult, sku: str, on_hand: int, ledger: int) -> str | None:
    """The product form's rule for a stock figure edited in the file: the difference from
    the figure it was exported with is added to what is on hand now (`on_hand`; a sale made
    since still comes off), and kept as values["stock_change"]. Refused (the message) when
    the variant's ledger moved past ledger_seen since (a count in the back office, or the
    same file imported already: applying it would count the difference twice), or when the
    stock would go below zero or above MAX_STOCK."""
    v = row.values
    new, seen = v["stock_quantity"], v["stock_seen"]
    delta = new - seen
    if ledger > v["ledger_seen"]:
        return (f"stock_quantity: the stock count of {sku} changed since this file was "
                f"exported (a count in the back office or another import): it is now "
                f"{on_hand}, so the file's {new} (exported as {seen}) cannot be applied "
                "without counting twice. Export again and enter the count in the new file.")
    if on_hand + delta < 0:
        return (f"stock_quantity: the file takes {-delta} units off the {seen} it was "
                f"exported with (to {new}), but {on_hand} {'is' if on_hand == 1 else 'are'} "
                "on hand now (units were sold since the export) and stock cannot go below "
                "zero.")
    if on_hand + delta > MAX_STOCK:
        return (f"stock_quantity: the file adds {delta} units to the {seen} it was exported "
                f"with (to {new}), which makes {on_hand + delta:,} on hand now; at most "
                f"{MAX_STOCK:,}.")
    v["stock_change"] = delta
    return None


def _check_options(rows: list[RowResult], products: dict[str, Product]) -> None:
    """Each variant of a product has options of its own (catalog.options_key), counting the
    product's variants the file leaves alone: a row whose options another variant of the
    same product has (in the file or in the shop) is an error."""
    variants: dict[str, dict[str, tuple[tuple, RowResult | None, str]]] = {}
    for slug, product in products.items():
        for variant in product.variants:
            variants.setdefault(slug, {})[sku_key(variant.sku)] = (
                options_key(variant.options), None, variant.sku)
    in_shop = {(slug, key) for slug, by_sku in variants.items() for key in by_sku}
    for row in rows:
        if not (row.sku and row.product_slug):
            continue
        if "options" in row.values:
            options = row.values["options"]
        elif (row.product_slug, sku_key(row.sku)) not in in_shop:
            options = {}  # a new variant, from a file without an options column
        else:
            continue  # an existing variant keeps its options
        variants.setdefault(row.product_slug, {})[sku_key(row.sku)] = (
            options_key(options), row, row.sku)
    for by_sku in variants.values():
        first: dict[tuple, tuple[RowResult | None, str]] = {}
        for key, row, sku in by_sku.values():
            if key not in first:
                first[key] = (row, sku)
                continue
            other_row, other_sku = first[key]
            for mine, theirs, their_sku in ((row, other_row, other_sku), (other_row, row, sku)):
                if mine is not None:
                    where = f"line {theirs.line}" if theirs is not None else "the shop"
                    mine.errors.append(f"options: the same as {their_sku}'s ({where}); give "
                                       "each variant of a product options of its own.")
                    break


def preview(content: bytes | str) -> ImportReport:
    """The dry run: what importing the file would do, and every problem, writing nothing."""
    text, problem = decode(content)
    if problem:
        return ImportReport(file_errors=[problem])
    rows, file_errors = _read(text or "")
    report = ImportReport(rows=rows, file_errors=file_errors)
    if rows:
        _plan(rows)
    return report


def apply(content: bytes | str, who: audit.Who, request_id: str = "") -> ImportReport:
    """Import the file: every row, or nothing when any row (or the file) is bad. Checked again
    inside the transaction, so what is written is what the database holds now."""
    text, problem = decode(content)
    if problem:
        return ImportReport(file_errors=[problem])

    def run() -> ImportReport:
        report = ImportReport()
        try:
            with write_transaction():
                rows, file_errors = _read(text or "")
                report = ImportReport(rows=rows, file_errors=file_errors)
                if rows:
                    _plan(rows)
                if not report.ok:
                    return report
                _write(report, who, request_id)
                report.written = True
        except StockMovedMeanwhile:
            pass  # rolled back; the rows say why
        return report

    try:
        report = retrying(run)
    except IntegrityError:
        # Another import wrote a product or SKU this one creates first (the same file
        # confirmed twice at once): checked again, against what that one wrote.
        db.session.rollback()
        report = retrying(run)
    if report.written and (report.counts["create"] or report.counts["update"]):
        cache.catalog_changed()
    return report


class StockMovedMeanwhile(Exception):
    """A stock edit the check allowed met a newer ledger entry (or too few units) once _write
    held the variant's row lock: the import is rolled back, and the row says why."""


def _write(report: ImportReport, who: audit.Who, request_id: str) -> None:
    """Write a checked import (inside the caller's transaction), in batches: the products,
    then the variants, then the stock counts (rows locked in key order, as a checkout locks
    them), each one flush; a file of 10,000 rows is written in seconds, not minutes."""
    touched: list[RowResult] = [row for row in report.rows if row.action != "unchanged"]
    if not touched:
        audit.record(who, "import", "Product", "", after=report.summary(),
                     request_id=request_id)
        return
    categories = dict(db.session.execute(select(Category.slug, Category.id)).all())
    slugs = sorted({row.product_slug for row in touched})
    products: dict[str, Product] = {}
    for chunk in _chunks(slugs):
        for p in db.session.execute(select(Product).options(selectinload(Product.variants))
                                    .where(Product.slug.in_(chunk))).scalars():
            products[p.slug] = p

    # Products: the first row of each carries its fields.
    product_before: dict[str, dict | None] = {}
    for row in touched:
        if row.product_slug in product_before:
            continue
        v = row.values
        product = products.get(row.product_slug)
        product_before[row.product_slug] = (audit.snapshot(product) if product is not None
                                            else None)
        if product is None:
            product = Product(slug=row.product_slug, active=True, description="")
            db.session.add(product)
            products[row.product_slug] = product
        # Each field written only when it differs as the plan compares it (names trimmed,
        # line ends as one): a description typed in the back office keeps its CRLFs when
        # another row of its product changed, as Check file said ("Update price" alone).
        if (product.name or "").strip() != v["product_name"]:
            product.name = v["product_name"]
        # A column left out of the file keeps the value (a new product's is blank).
        if "description" in v and (one_line_end(product.description or "").strip()
                                   != v["description"]):
            product.description = v["description"]
        if "category_slug" in v:
            product.category_id = (categories.get(v["category_slug"])
                                   if v["category_slug"] else None)
        if v["active"] is not None:
            product.active = v["active"]
    db.session.flush()
    changes: list[tuple[str, str, object, dict | None, dict | None]] = [
        ("create" if before is None else "update", "Product", products[slug].id, before,
         audit.snapshot(products[slug])) for slug, before in product_before.items()]

    # Variants: an existing one is its product's (the plan checked), found by its stored SKU.
    next_position: dict[str, int] = {}
    by_sku: dict[str, Variant] = {}
    for slug in slugs:
        if product_before[slug] is None:
            continue  # created above: no variants yet (and no query to find that out)
        for variant in products[slug].variants:
            by_sku[variant.sku] = variant
            next_position[slug] = max(next_position.get(slug, 0), variant.position + 1)
    written: list[tuple[Variant, dict | None]] = []
    counted: dict[int, int] = {}  # existing variant id -> the stock the file sets
    changed: dict[int, RowResult] = {}  # existing variant id -> its row's stock edit
    for row in touched:
        if not row.sku:
            continue
        v = row.values
        product = products[row.product_slug]
        variant = by_sku.get(v.get("stored_sku", row.sku))
        before = audit.snapshot(variant) if variant is not None else None
        if variant is None:
            position = next_position.get(row.product_slug, 0)
            next_position[row.product_slug] = position + 1
            variant = Variant(product_id=product.id, sku=row.sku, low_stock_threshold=5,
                              position=position, stock_quantity=v["stock_quantity"] or 0)
            db.session.add(variant)
        elif "stock_count" in v:
            counted[variant.id] = v["stock_count"]
        elif "stock_change" in v:
            changed[variant.id] = row
        if "options" in v or variant.options is None:
            variant.options = v.get("options", {})
        variant.price = v["price"]
        if "compare_at_price" in v:
            variant.compare_at_price = v["compare_at_price"]
        if v["low_stock_threshold"] is not None:
            variant.low_stock_threshold = v["low_stock_threshold"]
        written.append((variant, before))

    # Stock counts set the on-hand figure, stock edits add to it; the difference goes in the
    # ledger. The rows are read locked (until the transaction ends): a checkout taking units
    # meanwhile waits, instead of being taken off the staff's count too; and an edit's ledger
    # is read again under the lock, so the same file confirmed twice at once counts once.
    ledger: list[dict] = []
    by_id = {variant.id: variant for variant, _ in written if variant.id is not None}
    refused = False
    for chunk in _chunks(sorted({*counted, *changed})):
        on_hand = dict(db.session.execute(
            select(Variant.id, Variant.stock_quantity).where(Variant.id.in_(chunk))
            .order_by(Variant.id).with_for_update()).all())
        positions = _ledger_positions([i for i in chunk if i in changed])
        for variant_id in chunk:
            if variant_id in changed:
                row = changed[variant_id]
                if problem := _stock_change(row, by_id[variant_id].sku, on_hand[variant_id],
                                            positions.get(variant_id, 0)):
                    row.errors.append(problem)
                    row.action, refused = "error", True
                    continue
                quantity = on_hand[variant_id] + row.values["stock_change"]
            else:
                quantity = counted[variant_id]
            delta = quantity - on_hand[variant_id]
            if delta:
                ledger.append({"variant_id": variant_id, "delta": delta,
                               "reason": "stock count (CSV import)"})
            # What the locked row holds now (a sale may have come after the plan read it),
            # so that the count is written whenever it differs from that.
            set_committed_value(by_id[variant_id], "stock_quantity", on_hand[variant_id])
            by_id[variant_id].stock_quantity = quantity
    if refused:
        raise StockMovedMeanwhile()
    db.session.flush()
    for variant, before in written:
        if before is None and variant.stock_quantity:
            ledger.append({"variant_id": variant.id, "delta": variant.stock_quantity,
                           "reason": "initial stock (CSV import)"})
        changes.append(("create" if before is None else "update", "Variant", variant.id,
                        before, audit.snapshot(variant)))
    audit.record_many(who, changes, request_id)
    for entry in ledger:
        entry["actor_id"] = who.user_id
    for chunk in _chunks(ledger):
        db.session.execute(insert(StockAdjustment), chunk)
    for chunk in _chunks(sorted({product.id for product in products.values()})):
        refresh_product_prices(chunk)
    audit.record(who, "import", "Product", "", after=report.summary(), request_id=request_id)
