"""Product CSV: export, a dry run that names every bad row, and an import that writes every
row or none. Exporting and importing the same file changes nothing."""
from __future__ import annotations

import csv
import io
import re
from decimal import Decimal
from io import BytesIO
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select

from shop.extensions import db
from shop.models import AuditLog, Product, StockAdjustment, Variant
from shop.services.product_csv import BOM
from tests import factories as f
from tests.conftest import csrf_token
from tests.web.admin_support import login_staff

HEADER = ("product_slug,product_name,description,category_slug,active,sku,options,price,"
          "compare_at_price,stock_quantity,low_stock_threshold\n")


@pytest.fixture
def staff(client, auth):
    return login_staff(auth)


@pytest.fixture
def catalogue(app):
    shirts = f.category("Shirts", slug="shirts")
    f.category("Home", slug="home")
    f.product("Linen Shirt", category=shirts, slug="linen-shirt",
              description='Breathable, "washed" linen.\nTwo lines, with commas.', variants=[
                  {"sku": "LIN-S", "options": {"size": "S", "colour": "Sand"}, "price": "30.00",
                   "compare_at_price": Decimal("39.00"), "stock": 10},
                  {"sku": "LIN-M", "options": {"size": "M", "colour": "Sand"}, "price": "32.50",
                   "stock": 0, "low_stock_threshold": 3}])
    f.product("=SUM(A1) Mug", slug="formula-mug", price="9.99", stock=4)
    f.product("Retired Poster", slug="retired-poster", price="15", stock=1, active=False)


def state() -> list[tuple]:
    """Everything the import could touch."""
    db.session.expire_all()
    rows = db.session.execute(select(Product.slug, Product.name, Product.description,
                                     Product.category_id, Product.active, Product.price,
                                     Variant.sku, Variant.options, Variant.price,
                                     Variant.compare_at_price, Variant.stock_quantity,
                                     Variant.low_stock_threshold, Variant.position)
                              .join(Variant, Variant.product_id == Product.id)
                              .order_by(Variant.sku)).all()
    ledger = db.session.execute(select(func.count(StockAdjustment.id))).scalar_one()
    return [tuple(r) for r in rows] + [("ledger", ledger)]


def check(client, content: bytes | str, name: str = "products.csv"):
    data = content.encode() if isinstance(content, str) else content
    token = csrf_token(client, "/admin/product/import")
    return client.post("/admin/product/import", data={
        "csrf_token": token, "file": (BytesIO(data), name)}, content_type="multipart/form-data")


def confirm(client, content: str):
    token = csrf_token(client, "/admin/product/import")
    return client.post("/admin/product/import", data={"csrf_token": token, "content": content})


def test_a_checked_file_is_confirmed_as_multipart_and_too_large_names_the_csv_limit(
        client, app, staff):
    """The confirm form had no enctype, so the browser URL-encoded the file's text: 6 MB of
    Japanese became 17.9 MB and a file that had passed "Check file" was refused with 413
    "An image may be at most 10 MB". The confirm is now multipart (the size of the file), and
    a body over the limit on the import URL answers the import page naming the CSV limit.
    Fails on the old code."""
    app.config.update(MAX_UPLOAD_BYTES=20 * 1024, MAX_CONTENT_LENGTH=4096)  # body: 24 KB
    content = HEADER + "".join(f"jp-{n},商品 {n},{'麻のシャツ、洗いざらし。' * 5},,yes,JP-{n},,"
                               f"10,,1,\n" for n in range(85))
    size = len(content.encode())
    assert 16 * 1024 < size < 20 * 1024 and len(urlencode({"content": content})) > 24 * 1024
    html = check(client, content).get_data(as_text=True)
    assert re.search(r'<form method="post" action="/admin/product/import" '
                     r'enctype="multipart/form-data" class="mb-3">', html)
    limit = "a CSV file may be at most 20 KB (10,000 rows)"
    refused = confirm(client, hidden_content(html))  # URL-encoded, as the old form sent it
    assert refused.status_code == 413
    page = refused.get_data(as_text=True)
    assert limit in page and "An image may be" not in page and 'id="import-file"' in page
    token = csrf_token(client, "/admin/product/import")
    response = client.post("/admin/product/import", data={
        "csrf_token": token, "content": hidden_content(html)}, content_type="multipart/form-data")
    assert response.status_code == 303
    assert db.session.execute(select(func.count(Variant.id))).scalar_one() == 85
    # A file over the limit: refused beside the file field, on the import page.
    for too_big in (content + "x" * (21 * 1024 - size), content * 2):
        response = check(client, too_big)
        assert response.status_code == 413
        page = response.get_data(as_text=True)
        assert limit in page and 'id="import-file-error"' in page


def hidden_content(html: str) -> str:
    import html as html_lib

    match = re.search(r'<textarea id="import-content" name="content" hidden>(.*?)</textarea>',
                      html, re.S)
    assert match, "no confirm form"
    return html_lib.unescape(match.group(1))


def test_export_lists_every_variant(client, staff, catalogue):
    response = client.get("/admin/product/export.csv")
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.data.startswith(b"\xef\xbb\xbf")  # UTF-8, said to Excel
    rows = list(csv.DictReader(io.StringIO(response.data.decode("utf-8-sig"))))
    by_sku = {r["sku"]: r for r in rows}
    assert len(rows) == 4 and {"LIN-S", "LIN-M"} <= set(by_sku)
    assert by_sku["LIN-S"]["options"] == "size=S; colour=Sand"
    assert by_sku["LIN-S"]["compare_at_price"] == "39.00"
    assert by_sku["LIN-M"]["stock_quantity"] == "0"
    assert by_sku["LIN-S"]["category_slug"] == "shirts"
    mug = next(r for r in rows if r["product_slug"] == "formula-mug")
    assert mug["product_name"] == "'=SUM(A1) Mug"  # a spreadsheet will not run it
    poster = next(r for r in rows if r["product_slug"] == "retired-poster")
    assert poster["active"] == "no"


def test_round_trip_export_then_import_changes_nothing(client, staff, catalogue):
    before = state()
    exported = client.get("/admin/product/export.csv").get_data()
    preview = check(client, exported)
    assert preview.status_code == 200
    html = preview.get_data(as_text=True)
    assert "4 rows: 0 to create, 0 to update, 4 unchanged." in html
    assert state() == before  # the dry run wrote nothing
    response = confirm(client, hidden_content(html))
    assert response.status_code == 303
    assert state() == before
    entries = db.session.execute(select(AuditLog.action, AuditLog.model)).all()
    assert [tuple(e) for e in entries] == [("import", "Product")]
    summary = db.session.execute(select(AuditLog.after)).scalar_one()
    assert summary == {"rows": 4, "created": 0, "updated": 0, "unchanged": 4}


def test_round_trip_of_cells_the_export_escapes_changes_nothing(client, staff, catalogue):
    """The export put an apostrophe before a cell starting with a tab or a line break, which
    the import kept (only one before = + - @ was removed): a description starting with a tab
    or CR LF came back "'..." and was reported changed. A name starting with '= lost its own
    apostrophe. The export now escapes exactly what the import undoes, an apostrophe too, so
    export -> import changes nothing. Fails on the old code."""
    f.product("Tabbed Lamp", slug="tabbed-lamp", description="\tA lamp.\nWith a tab.")
    f.product("Broken Lamp", slug="broken-lamp", description="\r\nA lamp after a break.")
    f.product("'=Quoted Lamp", slug="quoted-lamp", description="'=1+1 is two")
    f.product("'Apostrophe Lamp", slug="apostrophe-lamp", description="-- dashes")
    before = state()
    exported = client.get("/admin/product/export.csv").get_data()
    rows = {r["product_slug"]: r for r in csv.DictReader(io.StringIO(exported.decode("utf-8-sig")))}
    assert rows["quoted-lamp"]["product_name"] == "''=Quoted Lamp"
    assert rows["tabbed-lamp"]["description"] == "'\tA lamp.\nWith a tab."
    html = check(client, exported).get_data(as_text=True)
    assert "8 rows: 0 to create, 0 to update, 8 unchanged." in html, html
    assert confirm(client, hidden_content(html)).status_code == 303
    assert state() == before
    assert db.session.execute(select(Product.name).where(Product.slug == "quoted-lamp")
                              ).scalar_one() == "'=Quoted Lamp"
    # A file whose cell starts with an apostrophe before one of them imports without it.
    changed = (HEADER + "quoted-lamp,'=Quoted Lamp,x,,yes,,,,,,\n"
               + "apostrophe-lamp,''Apostrophe Lamp,y,,yes,,,,,,\n")
    assert confirm(client, changed).status_code == 303
    db.session.expire_all()
    assert sorted(db.session.execute(select(Product.name).where(
        Product.slug.in_(["quoted-lamp", "apostrophe-lamp"]))).scalars()) == [
        "'Apostrophe Lamp", "=Quoted Lamp"]


def crlf(text: str) -> str:
    """Every line break as CR LF, as a browser submits a textarea and Excel on Windows saves."""
    return re.sub(r"\r\n|\r|\n", "\r\n", text)


def test_round_trip_with_windows_line_ends_changes_nothing(client, staff, catalogue):
    """The checked file comes back in a textarea, whose line breaks the browser sends as CRLF:
    the import rewrote every multi-line description although the dry run said 0 to update.
    A file saved with CRLF line ends showed the same false updates in the dry run."""
    before = state()
    exported = client.get("/admin/product/export.csv").get_data().decode("utf-8-sig")
    assert "linen.\nTwo lines" in exported  # a description with a line break
    html = check(client, crlf(exported)).get_data(as_text=True)
    assert "4 rows: 0 to create, 0 to update, 4 unchanged." in html
    response = confirm(client, crlf(hidden_content(html)))
    assert response.status_code == 303
    assert state() == before
    entries = db.session.execute(select(AuditLog.action, AuditLog.model)).all()
    assert [tuple(e) for e in entries] == [("import", "Product")]
    # A description stored with CRLF (a textarea of the product form) is unchanged too.
    shirt = db.session.execute(select(Product).where(Product.slug == "linen-shirt")).scalar_one()
    shirt.description = crlf(shirt.description)
    db.session.commit()
    html = check(client, exported).get_data(as_text=True)
    assert "4 rows: 0 to create, 0 to update, 4 unchanged." in html


def test_a_price_change_leaves_the_products_other_fields_as_they_were(client, staff,
                                                                        catalogue):
    """Check file said "Update price" alone, but the import wrote every field of the row's
    product: a description typed in the back office (CRLF) came back with LF line ends and
    the audit log recorded a description change."""
    shirt = db.session.execute(select(Product).where(Product.slug == "linen-shirt")).scalar_one()
    shirt.description = crlf(shirt.description)
    db.session.commit()
    stored = shirt.description
    exported = client.get("/admin/product/export.csv").get_data().decode("utf-8-sig")
    changed = exported.replace(",30.00,", ",31.00,", 1)
    assert changed != exported
    html = check(client, changed).get_data(as_text=True)
    assert "4 rows: 0 to create, 1 to update, 3 unchanged." in html
    assert confirm(client, hidden_content(html)).status_code == 303
    db.session.expire_all()
    shirt = db.session.execute(select(Product).where(Product.slug == "linen-shirt")).scalar_one()
    assert shirt.description == stored and "\r\n" in stored
    assert db.session.execute(select(Variant.price).where(Variant.sku == "LIN-S")
                              ).scalar_one() == Decimal("31.00")
    for before, after in db.session.execute(select(AuditLog.before, AuditLog.after).where(
            AuditLog.model == "Product", AuditLog.action == "update")):
        assert before.get("description") == after.get("description")


def test_import_creates_and_updates_with_stock_through_the_ledger(client, staff, catalogue):
    content = (HEADER
               + "linen-shirt,Linen Shirt,\"Breathable, \"\"washed\"\" linen.\nTwo lines, with "
                 "commas.\",shirts,yes,LIN-S,size=S; colour=Sand,27.00,39.00,14,5\n"
               + "oak-board,Oak Board,A board.,home,yes,OAK-1,,45,,8,\n"
               + "oak-board,Oak Board,A board.,home,yes,OAK-2,finish=Oiled,49.50,,,\n")
    html = check(client, content).get_data(as_text=True)
    assert "3 rows: 2 to create, 1 to update, 0 unchanged." in html
    assert confirm(client, hidden_content(html)).status_code == 303
    db.session.expire_all()
    small = db.session.execute(select(Variant).where(Variant.sku == "LIN-S")).scalar_one()
    assert small.price == Decimal("27.00") and small.stock_quantity == 14
    deltas = db.session.execute(select(StockAdjustment.delta).where(
        StockAdjustment.variant_id == small.id).order_by(StockAdjustment.id)).scalars().all()
    assert deltas == [10, 4]
    board = db.session.execute(select(Product).where(Product.slug == "oak-board")).scalar_one()
    assert board.category.slug == "home" and board.price == Decimal("45.00")
    stock = {v.sku: (v.stock_quantity, v.low_stock_threshold, v.options) for v in board.variants}
    assert stock == {"OAK-1": (8, 5, {}), "OAK-2": (0, 5, {"finish": "Oiled"})}
    assert db.session.get(Product, small.product_id).price == Decimal("27.00")
    audited = {(a, m) for a, m in db.session.execute(select(AuditLog.action, AuditLog.model))}
    assert audited == {("update", "Variant"), ("create", "Product"), ("create", "Variant"),
                       ("import", "Product")}


def test_imported_products_are_found_by_their_folded_words(client, staff, catalogue):
    """A CSV import writes the terms as every writer does: "strasse" finds the "Straße
    Sign" it created, "bar" the "foo_bar" it wrote into a description."""
    content = (HEADER + "street-sign,Straße Sign,Enamel.,home,yes,SIGN-1,,12,,3,\n"
               + "linen-shirt,Linen Shirt,Model foo_bar.,shirts,yes,LIN-S,"
                 "size=S; colour=Sand,30.00,39.00,10,5\n")
    html = check(client, content).get_data(as_text=True)
    assert "2 rows: 1 to create, 1 to update, 0 unchanged." in html
    assert confirm(client, hidden_content(html)).status_code == 303
    found = client.get("/products?q=strasse").get_data(as_text=True)
    assert re.findall(r'<h3 class="card-title"><a href="/p/[^"]+">([^<]+)</a>', found) == [
        "Straße Sign"]
    found = client.get("/products?q=bar").get_data(as_text=True)
    assert re.findall(r'<h3 class="card-title"><a href="/p/[^"]+">([^<]+)</a>', found) == [
        "Linen Shirt"]


def test_imported_products_take_their_place_in_the_name_sorts(client, staff, catalogue):
    """A CSV import writes each name's sort key as every writer does: a product it creates
    ("éclair Pan") or renames ("Fig Shirt") is listed among its letter's names, not after
    them all."""
    content = (HEADER + "eclair-pan,éclair Pan,Tinned.,home,yes,PAN-1,,12,,3,\n"
               + "linen-shirt,Fig Shirt,Linen.,shirts,yes,LIN-S,"
                 "size=S; colour=Sand,30.00,39.00,10,5\n")
    html = check(client, content).get_data(as_text=True)
    assert "2 rows: 1 to create, 1 to update, 0 unchanged." in html
    assert confirm(client, hidden_content(html)).status_code == 303
    listed = client.get("/products?sort=name").get_data(as_text=True)
    assert re.findall(r'<h3 class="card-title"><a href="/p/[^"]+">([^<]+)</a>', listed) == [
        "=SUM(A1) Mug", "éclair Pan", "Fig Shirt"]


def test_a_column_left_out_of_the_file_keeps_its_values(client, staff, catalogue):
    """A price-only file (the required columns alone) erased the description, category,
    options and compare-at price it did not mention; only a blank cell in a column that is
    there clears a value."""
    content = ("product_slug,product_name,sku,price\n"
               "linen-shirt,Linen Shirt,LIN-S,31.00\n"
               "linen-shirt,Linen Shirt,LIN-L,34.00\n"
               "oak-board,Oak Board,OAK-1,45\n")
    html = check(client, content).get_data(as_text=True)
    assert "3 rows: 2 to create, 1 to update, 0 unchanged." in html
    details = dict(re.findall(r"<tr[^>]*><td>\d+</td><td>[^<]*</td><td>([^<]*)</td>\s*"
                              r"<td>[^<]*</td>\s*<td>([^<]*)</td>", html))
    assert details["LIN-S"] == "price"  # the dry run says what the import does
    assert confirm(client, hidden_content(html)).status_code == 303
    db.session.expire_all()
    shirt = db.session.execute(select(Product).where(Product.slug == "linen-shirt")).scalar_one()
    assert shirt.description == 'Breathable, "washed" linen.\nTwo lines, with commas.'
    assert shirt.category.slug == "shirts"
    variants = {v.sku: (v.options, v.price, v.compare_at_price) for v in shirt.variants}
    assert variants == {
        "LIN-S": ({"size": "S", "colour": "Sand"}, Decimal("31.00"), Decimal("39.00")),
        "LIN-M": ({"size": "M", "colour": "Sand"}, Decimal("32.50"), None),
        "LIN-L": ({}, Decimal("34.00"), None)}
    board = db.session.execute(select(Product).where(Product.slug == "oak-board")).scalar_one()
    assert (board.description, board.category) == ("", None)

    # A blank cell in a column that is there still clears the value.
    content = ("product_slug,product_name,description,category_slug,sku,options,price,"
               "compare_at_price\nlinen-shirt,Linen Shirt,,,LIN-L,,34.00,\n")
    html = check(client, content).get_data(as_text=True)
    assert "1 rows: 0 to create, 1 to update, 0 unchanged." in html
    assert "description, category_slug" in html
    assert confirm(client, hidden_content(html)).status_code == 303
    db.session.expire_all()
    shirt = db.session.execute(select(Product).where(Product.slug == "linen-shirt")).scalar_one()
    assert (shirt.description, shirt.category) == ("", None)


def test_a_price_at_or_above_the_compare_at_price_the_file_keeps_is_refused(
        client, staff, catalogue):
    before = state()
    content = "product_slug,product_name,sku,price\nlinen-shirt,Linen Shirt,LIN-S,39.00\n"
    response = check(client, content)
    assert response.status_code == 422
    assert ("Line 2 (SKU LIN-S): price: 39.00 is this variant&#39;s compare-at price"
            in response.get_data(as_text=True))
    assert state() == before


BAD = (HEADER
       + "linen-shirt,Linen Shirt,x,shirts,yes,LIN-S,size=S,30.00,,10,5\n"          # line 2: ok
       + "new-thing,New Thing,,nowhere,yes,NEW-1,,12.00,,1,\n"                       # 3: category
       + "new-thing,New Thing,,nowhere,yes,NEW-2,,twelve,,1,\n"                      # 4: price
       + "Bad Slug,Bad,,,,BAD-1,,1,,,\n"                                               # 5: slug
       + "other-thing,,,,,OTH-1,size,5,,-2,\n"                                         # 6: several
       + "other-thing,Other,,,maybe,LIN-S,,5,,,\n"                                   # 7: dup/owner
       + "formula-mug,=SUM(A1) Mug,,,yes,LIN-M,,5,,,\n")                               # 8: owner


def test_bad_rows_are_each_named_and_nothing_is_written(client, staff, catalogue):
    before = state()
    response = check(client, BAD)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    errors = re.findall(r"<li>Line (\d+)[^:]*: ([^<]+)</li>", html)
    lines = {int(n): message for n, message in errors}
    assert sorted(lines) == [3, 4, 5, 6, 7, 8]
    assert "category_slug: there is no category" in lines[3] and "nowhere" in lines[3]
    assert "price" in lines[4] and "twelve" in lines[4]
    assert "product_slug" in lines[5]
    assert "product_name" in lines[6] and "options" in lines[6] and "stock_quantity" in lines[6]
    assert "line 2" in lines[7] and "active" in lines[7]
    assert "belongs to the product" in lines[8]
    assert "6 rows with problems: nothing was imported" in html
    assert 'name="content"' not in html  # no way to confirm a bad file
    assert state() == before
    # Posting the bad file straight to the import step writes nothing either.
    response = confirm(client, BAD)
    assert response.status_code == 422
    assert "6 rows with problems" in response.get_data(as_text=True)
    assert state() == before
    assert db.session.execute(select(func.count(AuditLog.id))).scalar_one() == 0


def test_a_price_written_as_no_one_writes_one_is_refused(client, staff, catalogue):
    """An admin audit imported 1_5 as 15.00 (and 1e3 would have been 1,000.00): the preview
    said only "Update price". Fails on the old code."""
    before = state()
    response = check(client, HEADER
                     + "linen-shirt,Linen Shirt,x,shirts,yes,LIN-S,size=S,1_5,,10,5\n"
                     + "linen-shirt,Linen Shirt,x,shirts,yes,LIN-M,size=M,1e3,,10,5\n")
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Line 2 (SKU LIN-S): price: &#34;1_5&#34; is not a price such as 10" in html
    assert "Line 3 (SKU LIN-M): price: &#34;1e3&#34; is not a price such as 10" in html
    assert state() == before


def test_a_new_slug_of_digits_alone_is_refused_on_its_line(client, staff, catalogue):
    """/p/7 and GET /api/v1/products/7 read digits as an id: a product imported with the
    slug "7" was another product there. A new product's is refused; a product that has such
    a slug already (from before the rule) is updated by it, and a name it has already, with a
    character the shop refuses now, passes: the shop's own export imports again. Fails on the
    old code."""
    before = state()
    response = check(client, HEADER + "7,Lucky Lamp,,,yes,LAMP-7,,5,,1,\n")
    assert response.status_code == 422
    assert "Line 2 (SKU LAMP-7): product_slug: a new product&#39;s slug cannot be digits " \
           "alone" in response.get_data(as_text=True)
    assert state() == before
    old = f.product("Old\u200fBook", slug="1984", price="9.00", stock=3)
    sku = old.variants[0].sku
    content = HEADER + f"1984,Old\u200fBook,,,yes,{sku},,9.50,,3,\n"
    assert check(client, content).status_code == 200
    assert confirm(client, content).status_code in (200, 302, 303)
    assert db.session.get(Variant, old.variants[0].id).price == Decimal("9.50")


def test_a_control_or_text_direction_character_is_refused_on_its_line(client, staff,
                                                                       catalogue):
    """The import took names and options with a NUL, control or text-direction override
    character the shop refuses elsewhere (addresses.unprintable). Each is named on its line
    and nothing is written. Fails on the old code."""
    before = state()
    content = (HEADER + "linen-shirt,Linen\x00Shirt,x,shirts,yes,LIN-S,size=S,30,,10,5\n"
               + "new-lamp,New Lamp,,,yes,LAMP-1,colour=\u202eRed,5,,1,\n")
    response = check(client, content)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Line 2 (SKU LIN-S): product_name: This has a character that cannot be shown" in html
    assert "Line 3 (SKU LAMP-1): options: This has a character that cannot be shown" in html
    assert confirm(client, content).status_code == 422
    assert state() == before


def test_a_description_with_a_control_or_direction_character_is_refused_on_its_line(
        client, staff, catalogue):
    """The import took a description with a NUL or a text-direction override, which the
    product page then showed (invalid HTML, or text reading backwards). Named on its line,
    nothing written; line breaks are a description's own. Fails on the old code."""
    before = state()
    content = (HEADER + 'linen-shirt,Linen Shirt,"Soft\x00linen",shirts,yes,LIN-S,size=S,30,,10,5\n'
               + 'new-lamp,New Lamp,"Warm\nlight \u202eoff",,yes,LAMP-1,,5,,1,\n')
    response = check(client, content)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Line 2 (SKU LIN-S): description: This has a character that cannot be shown" in html
    assert "Line 3 (SKU LAMP-1): description: This has a character that cannot be shown" in html
    assert confirm(client, content).status_code == 422
    assert state() == before
    fine = HEADER + 'new-lamp,New Lamp,"Warm\nlight\tbright",,yes,LAMP-1,,5,,1,\n'
    assert confirm(client, fine).status_code == 303


def test_a_price_above_the_shops_ceiling_is_refused_naming_it(client, staff, catalogue):
    """A price of 9,999,999,999.99 was imported; a cart line keeps at most 99,999,999.99
    (Numeric(10, 2)), so every add of it to a cart was a 500 on MySQL. Each row says the
    limit and nothing is written; the limit itself is imported. Fails on the old code."""
    before = state()
    content = (HEADER + "linen-shirt,Linen Shirt,x,shirts,yes,LIN-S,size=S,9999999999.99,,10,5\n"
               + "linen-shirt,Linen Shirt,x,shirts,yes,LIN-M,size=M,5,100000000,10,5\n")
    response = check(client, content)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Line 2 (SKU LIN-S): price: Enter an amount of at most 99,999,999.99." in html
    assert ("Line 3 (SKU LIN-M): compare_at_price: Enter an amount of at most 99,999,999.99."
            in html)
    assert confirm(client, content).status_code == 422
    assert state() == before
    top = HEADER + "linen-shirt,Linen Shirt,x,shirts,yes,LIN-S,size=S,99999999.99,,10,5\n"
    assert confirm(client, top).status_code == 303
    db.session.expire_all()
    assert db.session.execute(select(Variant.price).where(Variant.sku == "LIN-S")
                              ).scalar_one() == Decimal("99999999.99")


@pytest.mark.parametrize("content,message", [
    (b"", "The file is empty"),
    (b"sku,prise\nA,1\n", "Missing column(s): product_slug, product_name, price"),
    (b"product_slug,product_name,sku,price,colour\n", "Unknown column(s): colour"),
    (HEADER.encode(), "no product rows"),
    ("\xff\xfe not utf-8".encode("latin-1"), "not UTF-8"),
    # Excel's "CSV" in many locales: the message listed the right columns as both missing
    # and unknown and never said that the separator must be a comma.
    (b"product_slug;product_name;sku;price\r\nsemi-prod;Semi Prod;SEMI-1;5.00\r\n",
     "The file separates its columns with semicolons (;): the import needs commas."),
    (b"product_slug\tproduct_name\tsku\tprice\nsemi-prod\tSemi Prod\tSEMI-1\t5.00\n",
     "The file separates its columns with tabs: the import needs commas."),
])
def test_unreadable_files_are_refused(client, staff, catalogue, content, message):
    before = state()
    response = check(client, content)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert state() == before


UNCLOSED = (HEADER
            + 'qa,Qa,"Unclosed desc,,yes,QA-1,,5.00,,,\r\n'      # line 2: the quote never closes
            + "qb,Qb,ok,,yes,QB-1,,6.00,,,\r\n")


@pytest.mark.parametrize("content,message", [
    # The stray quote swallowed lines 3 and 4 into line 2's description, and line 2 was
    # imported with line 4's SKU and price.
    (UNCLOSED + 'qc,Qc,"Quoted",,yes,QC-1,,7.00,,,\r\n',
     "Line 2 (read up to line 4): a quote that is not closed where its cell ends"),
    (UNCLOSED, "Line 2 (read up to line 3): a quote opens a cell that is never closed"),
    (HEADER + 'qa,"Qa\nqb",ok,,yes,QA-1,,5.00,,,\n',
     "Line 2 (SKU QA-1): product_name: this cell has a line break; check for a quote left "
     "open on line 2."),
    (HEADER + "qa,Qa,ok,,yes,QA-1,,5.00,,,,extra\n",
     "Line 2 (SKU QA-1): This row has 12 cells; the header has 11."),
])
def test_a_malformed_file_is_refused_naming_the_line(client, staff, catalogue, content,
                                                      message):
    before = state()
    response = check(client, content)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert message in html
    assert 'name="content"' not in html
    assert state() == before
    response = confirm(client, content)  # posted straight to the import step
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert state() == before
    assert db.session.execute(select(func.count(AuditLog.id))).scalar_one() == 0


def test_a_missing_file_is_refused_next_to_the_field(client, staff):
    token = csrf_token(client, "/admin/product/import")
    response = client.post("/admin/product/import", data={"csrf_token": token},
                           content_type="multipart/form-data")
    assert response.status_code == 422
    assert 'id="import-file-error">Choose a CSV file to import.' in response.get_data(
        as_text=True)


def test_a_new_product_without_a_variant_is_refused(client, staff, catalogue):
    """A new product_slug on rows without a SKU created a product with no variant, which the
    shop listed at $0.00 with nothing to buy. An existing product's row without a SKU (as
    the export writes a product that has no variant) is still fine."""
    before = state()
    content = (HEADER + "bare-thing,Bare Thing,Nothing to sell.,home,yes,,,,,,\n"
               + "linen-shirt,Linen Shirt,\"Breathable, \"\"washed\"\" linen.\nTwo lines, with "
                 "commas.\",shirts,yes,,,,,,\n")
    response = check(client, content)
    assert response.status_code == 422
    errors = dict(re.findall(r"<li>Line (\d+)[^:]*: ([^<]+)</li>", response.get_data(
        as_text=True)))
    assert list(errors) == ["2"] and "a new product needs at least one variant" in errors["2"]
    assert confirm(client, content).status_code == 422
    assert state() == before
    assert db.session.execute(select(func.count(Product.id)).where(
        Product.slug == "bare-thing")).scalar_one() == 0


def test_a_sku_in_other_capitals_is_the_same_variant(client, staff, catalogue):
    """"lin-s" is the variant LIN-S. The import matched SKUs byte for byte: on SQLite it added
    a second variant "lin-s" beside LIN-S; on MySQL the dry run said "create" and the import
    then updated LIN-S (its collation matched it); and two rows "NEW-1" and "new-1" made two
    variants on SQLite, one on MySQL. Now both databases do what the dry run says."""
    content = HEADER + "linen-shirt,Linen Shirt,\"Breathable, \"\"washed\"\" linen.\nTwo " \
        "lines, with commas.\",shirts,yes,lin-s,size=S; colour=Sand,31.00,39.00,,\n"
    html = check(client, content).get_data(as_text=True)
    assert "1 rows: 0 to create, 1 to update, 0 unchanged." in html
    assert confirm(client, hidden_content(html)).status_code == 303
    db.session.expire_all()
    skus = dict(db.session.execute(select(Variant.sku, Variant.price)).all())
    assert len(skus) == 4 and skus["LIN-S"] == Decimal("31.00") and "lin-s" not in skus

    before = state()
    content = (HEADER + "new-one,New One,,home,yes,NEW-1,,5,,1,\n"
               + "new-one,New One,,home,yes,new-1,,6,,1,\n")
    response = check(client, content)
    assert response.status_code == 422
    errors = dict(re.findall(r"<li>Line (\d+)[^:]*: ([^<]+)</li>", response.get_data(
        as_text=True)))
    assert list(errors) == ["3"] and "is also on line 2" in errors["3"]
    assert confirm(client, content).status_code == 422
    assert state() == before


def test_a_description_too_long_for_its_column_is_named_in_the_dry_run(client, staff,
                                                                        catalogue):
    """MySQL refused a description over 65,535 bytes at the INSERT, and the import's confirm
    step answered 500 (the dry run had found nothing wrong)."""
    before = state()
    content = HEADER + f"long-one,Long One,{'é' * 32_768},home,yes,LONG-1,,5,,1,\n"
    response = check(client, content)
    assert response.status_code == 422
    errors = dict(re.findall(r"<li>Line (\d+)[^:]*: ([^<]+)</li>", response.get_data(
        as_text=True)))
    assert list(errors) == ["2"] and "description: at most 65,535 bytes" in errors["2"]
    assert confirm(client, content).status_code == 422
    assert state() == before


def test_an_export_says_it_is_utf8_so_excel_keeps_its_accents(client, staff, catalogue):
    """The export had no byte order mark, so Excel read it in the system's code page ("CafÃ©
    Crème") and its "CSV UTF-8" (what the import asks for) saved that garbling back: the
    round trip through Excel renamed every accented product. The export now starts with the
    mark, and the file as exported (mark included) imports as unchanged."""
    f.product("Café Crème Mug", slug="cafe-creme-mug", price="8.50", stock=3,
              description="Grès émaillé, 30 cl.")
    exported = client.get("/admin/product/export.csv").data
    assert exported.startswith("\ufeffproduct_slug,".encode())
    assert "Café Crème Mug" in exported.decode("utf-8-sig")
    before = state()
    html = check(client, exported).get_data(as_text=True)
    assert "5 rows: 0 to create, 0 to update, 5 unchanged." in html
    assert confirm(client, hidden_content(html)).status_code == 303
    assert state() == before
    assert client.get("/admin/order/export.csv").data.startswith("\ufeffnumber,".encode())


def test_a_row_with_the_options_of_another_variant_of_its_product_is_refused(
        client, staff, catalogue):
    """Two variants of one product with the same options were imported (from the file, or
    against a variant the file leaves alone), and the product page offered two choices with
    one name. The dry run now names the row and the variant it repeats."""
    before = state()
    content = (HEADER
               + "linen-shirt,Linen Shirt,\"Breathable, \"\"washed\"\" linen.\nTwo lines, "
                 "with commas.\",shirts,yes,LIN-L,colour=sand; size=s,33.00,,2,\n"
               + "oak-board,Oak Board,,home,yes,OAK-1,finish=Oiled,45,,8,\n"
               + "oak-board,Oak Board,,home,yes,OAK-2,finish=oiled,49,,8,\n")
    response = check(client, content)
    assert response.status_code == 422
    errors = dict(re.findall(r"<li>Line (\d+)[^:]*: ([^<]+)</li>", response.get_data(
        as_text=True)))
    assert sorted(errors) == ["2", "5"]
    assert "options: the same as LIN-S&#39;s (the shop)" in errors["2"]
    assert "options: the same as OAK-1&#39;s (line 4)" in errors["5"]
    assert confirm(client, content).status_code == 422
    assert state() == before
    # Swapping two variants' options in one file is fine.
    swapped = HEADER + (
        "linen-shirt,Linen Shirt,\"Breathable, \"\"washed\"\" linen.\nTwo lines, with "
        "commas.\",shirts,yes,LIN-S,size=M; colour=Sand,30.00,39.00,10,5\n"
        "linen-shirt,Linen Shirt,\"Breathable, \"\"washed\"\" linen.\nTwo lines, with "
        "commas.\",shirts,yes,LIN-M,size=S; colour=Sand,32.50,,0,3\n")
    assert check(client, swapped).status_code == 200


def test_a_price_with_too_many_decimals_or_a_compare_at_not_above_it_is_named_in_the_dry_run(
        client, staff, catalogue):
    """The dry run marked a row priced 5.999 "Create" without a word (imported as 6.00), and
    took a compare-at ("was") price at or below the price. Each is named on its row and
    nothing is written; a price in cents with a higher or empty compare-at price is fine."""
    content = (HEADER
               + "new-thing,New Thing,,,yes,NEW-1,size=S,5.999,,1,\n"     # 2
               + "new-thing,New Thing,,,yes,NEW-2,size=M,5.56,1.00,1,\n"  # 3
               + "linen-shirt,Linen Shirt,,shirts,,LIN-S,,30.00,30,,\n"   # 4
               + "formula-mug,=SUM(A1) Mug,,,,FM-1,,9.99,12.005,,\n")     # 5
    before = state()
    response = check(client, content)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    lines = dict((int(n), m) for n, m in re.findall(r"<li>Line (\d+)[^:]*: ([^<]+)</li>", html))
    assert sorted(lines) == [2, 3, 4, 5]
    assert "price: USD has 2 decimals: enter an amount such as 6.00." in lines[2]
    assert "compare_at_price: A compare-at price must be higher than the price" in lines[3]
    assert "compare_at_price: A compare-at price must be higher than the price" in lines[4]
    assert "compare_at_price: USD has 2 decimals: enter an amount such as 12.01." in lines[5]
    assert confirm(client, content).status_code == 422
    assert state() == before

    good = (HEADER + "new-thing,New Thing,,,yes,NEW-1,size=S,5.99,,1,\n"
            + "new-thing,New Thing,,,yes,NEW-2,size=M,5.56,7.5,1,\n")
    assert check(client, good).status_code == 200
    assert confirm(client, good).status_code == 303
    db.session.expire_all()
    assert db.session.execute(select(Variant.sku, Variant.price, Variant.compare_at_price)
                              .where(Variant.sku.like("NEW-%")).order_by(Variant.sku)).all() == [
        ("NEW-1", Decimal("5.99"), None), ("NEW-2", Decimal("5.56"), Decimal("7.50"))]


def _big_file(count: int, price: str, stock_from: int, name: str = "bulk") -> str:
    """`count` variants, two a product, each with a stock figure."""
    return HEADER + "".join(
        f"{name}-{i // 2},{name} {i // 2},A thing.,home,yes,{name.upper()}-{i},"
        f"size={'SM'[i % 2]},{price},,{stock_from + i % 7},\n" for i in range(count))


def test_a_large_import_costs_the_same_few_statements_whatever_its_size(
        app, client, staff, catalogue):
    """Written in batches: no statement per row, so a file of 10,000 rows is written in
    seconds (bench/csv_import.py times it), well inside a request's time limit."""
    from tests.web.test_query_counts import counting

    counts = []
    for count, name in ((40, "few"), (200, "bulk")):
        for price, stock_from in (("10.00", 1), ("12.00", 3)):  # created, then updated
            content = _big_file(count, price, stock_from, name)
            with counting(app) as statements:
                assert confirm(client, content).status_code == 303
            # SQLite (no round trip) has SQLAlchemy insert new rows one statement each;
            # MySQL sends them in batches.
            if db.engine.dialect.name == "sqlite":
                statements = [s for s in statements if not s.lstrip().startswith("INSERT")]
            counts.append(len(statements))
    assert counts[:2] == counts[2:], counts
    assert max(counts) <= 30, counts

    db.session.expire_all()
    variants = db.session.execute(select(Variant).where(Variant.sku.like("BULK-%"))).scalars()
    got = {v.sku: (v.price, v.stock_quantity, v.options, v.position) for v in variants}
    assert len(got) == 200
    assert got["BULK-0"] == (Decimal("12.00"), 3, {"size": "S"}, 0)
    assert got["BULK-199"] == (Decimal("12.00"), 3 + 199 % 7, {"size": "M"}, 1)
    product = db.session.execute(select(Product).where(Product.slug == "bulk-99")).scalar_one()
    assert product.price == Decimal("12.00") and product.category.slug == "home"
    # The ledger holds each variant's initial stock and then the count's difference.
    small = db.session.execute(select(Variant).where(Variant.sku == "BULK-5")).scalar_one()
    deltas = db.session.execute(select(StockAdjustment.delta, StockAdjustment.reason).where(
        StockAdjustment.variant_id == small.id).order_by(StockAdjustment.id)).all()
    assert [tuple(d) for d in deltas] == [(6, "initial stock (CSV import)"),
                                          (2, "stock count (CSV import)")]
    audited = db.session.execute(select(AuditLog.action, AuditLog.model, func.count())
                                 .group_by(AuditLog.action, AuditLog.model)).all()
    assert {(a, m): n for a, m, n in audited} == {
        ("create", "Product"): 120, ("create", "Variant"): 240,
        ("update", "Variant"): 240, ("import", "Product"): 4}


def test_a_file_over_the_row_limit_is_refused_with_what_to_do(client, staff, catalogue):
    from shop.services.product_csv import MAX_ROWS

    before = state()
    html = check(client, _big_file(MAX_ROWS + 1, "10.00", 1)).get_data(as_text=True)
    assert ("The file has more than 10,000 product rows: split it into files of at most "
            "10,000 rows and import each.") in html
    assert 'name="content"' not in html  # nothing to confirm
    assert confirm(client, _big_file(MAX_ROWS + 1, "10.00", 1)).status_code == 422
    assert state() == before


def test_a_sale_between_the_check_and_the_write_does_not_skew_the_stock_count(
        app, catalogue, monkeypatch):
    """The import reads the variants, then locks their rows to set the counts. A sale in
    between (here: 2 units of LIN-S taken after the plan read 10 on hand) must not leave the
    ledger saying one thing and the shelf another: the count the file gives (10) is what is on
    hand afterwards, and the ledger records the 2 units found. (The row changes the price too:
    a row the check found unchanged is not written at all.)"""
    from sqlalchemy import update

    from shop.services import audit, product_csv

    plan = product_csv._plan

    def plan_then_sell(rows):
        plan(rows)
        db.session.execute(update(Variant).where(Variant.sku == "LIN-S")
                           .values(stock_quantity=Variant.stock_quantity - 2)
                           .execution_options(synchronize_session=False))

    monkeypatch.setattr(product_csv, "_plan", plan_then_sell)
    content = (HEADER + "linen-shirt,Linen Shirt,\"Breathable, \"\"washed\"\" linen.\nTwo "
               "lines, with commas.\",shirts,yes,LIN-S,size=S; colour=Sand,31.00,39.00,10,5\n")
    report = product_csv.apply(content, audit.Who(user_id=None, email="staff@example.com"))
    assert report.written
    db.session.expire_all()
    small = db.session.execute(select(Variant).where(Variant.sku == "LIN-S")).scalar_one()
    deltas = db.session.execute(select(StockAdjustment.delta).where(
        StockAdjustment.variant_id == small.id).order_by(StockAdjustment.id)).scalars().all()
    assert (small.stock_quantity, deltas) == (10, [10, 2])


def test_the_same_new_product_imported_three_times_at_once_is_written_once_without_an_error(
        app, catalogue):
    """Confirms of one file at the same moment (a double click) all checked it before any
    wrote: a later one's new product then met the first one's in the unique index, and staff
    got the error page (found with 3 concurrent confirms on MySQL). Now it checks again against
    what the first wrote. SQLite takes its write lock before the check: there the imports
    cannot overlap at all."""
    from shop.services import audit, product_csv
    from tests.concurrency import raised, run_concurrently
    from tests.conftest import MYSQL_URL

    if not MYSQL_URL:
        pytest.skip("needs TEST_DATABASE_URL (MySQL): SQLite has one writer at a time")
    who = audit.Who(user_id=None, email="staff@example.com")
    for attempt in range(4):
        slug = f"oak-board-{attempt}"
        content = HEADER + f"{slug},Oak Board,A board.,home,yes,OAK-{attempt},,45,,7,\n"
        results = run_concurrently(app, [lambda c=content: product_csv.apply(c, who)] * 3)
        assert raised(results) == [], results
        assert all(report.written for report in results)
        db.session.expire_all()
        board = db.session.execute(select(Product).where(Product.slug == slug)).scalar_one()
        assert [(v.sku, v.stock_quantity) for v in board.variants] == [(f"OAK-{attempt}", 7)]
        deltas = db.session.execute(select(StockAdjustment.delta).where(
            StockAdjustment.variant_id == board.variants[0].id)).scalars().all()
        assert deltas == [7]


def test_a_catalogue_larger_than_one_export_is_refused_not_cut_off(app, client, staff,
                                                                    catalogue):
    """The export is written inside one request: a catalogue larger than the workers' timeout
    allows would end in a file cut short that looks whole (as the order export did, found by
    a scale audit). Above PRODUCT_EXPORT_MAX_ROWS it is refused, saying why and what to do."""
    app.config["PRODUCT_EXPORT_MAX_ROWS"] = 3  # the catalogue has 4 rows
    response = client.get("/admin/product/export.csv")
    assert response.status_code == 303 and response.headers["Location"].endswith(
        "/admin/product/")
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Nothing exported: the catalogue has 4 rows (one a variant)" in html
    app.config["PRODUCT_EXPORT_MAX_ROWS"] = 4
    response = client.get("/admin/product/export.csv")
    assert response.status_code == 200 and response.data.count(b"\r\n") == 5


# Stock sold after the export ------------------------------------------------------------------

@pytest.fixture
def jacket(app):
    return f.variant_of(f.product("Field Jacket", slug="field-jacket", price="80.00", stock=68))


def edited(exported: bytes | str, sku: str, **cells: str) -> str:
    """The exported file with some cells of one SKU's row changed, as a spreadsheet saves it."""
    text = (exported.decode("utf-8") if isinstance(exported, bytes) else exported).lstrip(BOM)
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)
    row = next(r for r in rows if r["sku"] == sku)
    row.update(cells)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=reader.fieldnames, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def details(html: str) -> dict[str, str]:
    """Each SKU's "Details" cell on the check page."""
    import html as html_lib

    return {sku: html_lib.unescape(text) for sku, text in re.findall(
        r"<tr[^>]*><td>\d+</td><td>[^<]*</td><td>([^<]*)</td>\s*<td>[^<]*</td>\s*"
        r"<td>([^<]*)</td>", html)}


def jacket_ledger(variant_id: int) -> list[tuple[int, str]]:
    db.session.expire_all()
    return [tuple(r) for r in db.session.execute(
        select(StockAdjustment.delta, StockAdjustment.reason)
        .where(StockAdjustment.variant_id == variant_id).order_by(StockAdjustment.id))]


def on_hand(variant_id: int) -> int:
    db.session.expire_all()
    return db.session.get(Variant, variant_id).stock_quantity


def sell(app, variant_id: int, quantity: int) -> None:
    """A shopper orders through the storefront (their own browser: not the staff's session)."""
    from tests.payments_helpers import buy

    assert buy(app.test_client(), variant_id, quantity, method="manual").status_code == 303


def test_units_sold_after_the_export_stay_sold_when_the_file_is_imported(
        app, client, staff, jacket):
    """Exported with 68 on hand, 3 ordered (65), the file imported with a new price only: the
    import set the count back to 68 (the ledger said +3, "stock count (CSV import)") and the
    shop offered 3 jackets that no longer exist. The export now writes the stock it read
    (stock_seen, with the ledger's position): a stock_quantity still equal to it leaves the
    stock alone. Fails on the old code."""
    from tests.payments_helpers import assert_stock_invariant

    exported = client.get("/admin/product/export.csv").get_data()
    row = next(csv.DictReader(io.StringIO(exported.decode("utf-8-sig"))))
    assert (row["stock_quantity"], row["stock_seen"]) == ("68", "68")
    assert row["ledger_seen"] == str(db.session.execute(
        select(func.max(StockAdjustment.id))).scalar_one())
    sell(app, jacket.id, 3)
    assert on_hand(jacket.id) == 65
    html = check(client, edited(exported, jacket.sku, price="84.00")).get_data(as_text=True)
    assert "1 rows: 0 to create, 1 to update, 0 unchanged." in html, html
    assert details(html)[jacket.sku] == "price" and 'id="stock-counts"' not in html
    assert confirm(client, hidden_content(html)).status_code == 303
    assert on_hand(jacket.id) == 65
    assert jacket_ledger(jacket.id) == [(68, "initial stock")]
    assert db.session.get(Variant, jacket.id).price == Decimal("84.00")
    assert_stock_invariant()


def test_a_stock_figure_edited_in_the_file_is_applied_as_the_product_form_applies_it(
        app, client, staff, jacket):
    """As in the product form: the file's change to the figure it was exported with is added
    to what is on hand now (a sale made since still comes off), and the check page shows each
    stock change as current -> new."""
    exported = client.get("/admin/product/export.csv").get_data()
    # No sale since the export: the figure in the file is the count.
    html = check(client, edited(exported, jacket.sku, stock_quantity="70")).get_data(
        as_text=True)
    assert details(html)[jacket.sku] == "stock_quantity 68 → 70"
    assert confirm(client, hidden_content(html)).status_code == 303
    assert on_hand(jacket.id) == 70
    assert jacket_ledger(jacket.id) == [(68, "initial stock"), (2, "stock count (CSV import)")]

    # After a sale: 4 more than exported is 4 more than on hand now.
    exported = client.get("/admin/product/export.csv").get_data()
    sell(app, jacket.id, 3)
    html = check(client, edited(exported, jacket.sku, stock_quantity="74")).get_data(
        as_text=True)
    assert details(html)[jacket.sku] == "stock_quantity 67 → 71 (+4: 70 → 74 in the file)"
    assert confirm(client, hidden_content(html)).status_code == 303
    assert on_hand(jacket.id) == 71
    assert jacket_ledger(jacket.id)[-1] == (4, "stock count (CSV import)")

    # Taking off more than is left now is refused, naming the figures; nothing is written.
    exported = client.get("/admin/product/export.csv").get_data()
    sell(app, jacket.id, 70)
    before = state()
    content = edited(exported, jacket.sku, stock_quantity="2", price="90.00")
    response = check(client, content)
    assert response.status_code == 422
    message = (f"Line 2 (SKU {jacket.sku}): stock_quantity: the file takes 69 units off the 71 "
               "it was exported with (to 2), but 1 is on hand now (units were sold since the "
               "export) and stock cannot go below zero.")
    assert message in response.get_data(as_text=True).replace("&#39;", "'")
    assert confirm(client, content).status_code == 422
    assert state() == before


def test_a_stock_count_changed_since_the_export_refuses_the_files_stock_edit(
        app, client, staff, jacket):
    """The product form refuses a stock edit made against a figure that staff changed since
    (a count in the back office, or this file imported already): the same edit imported twice
    added its units twice. Refused on the check page naming the SKU and both figures; a row
    whose stock the file leaves as exported still imports."""
    exported = client.get("/admin/product/export.csv").get_data()
    content = edited(exported, jacket.sku, stock_quantity="70")
    assert confirm(client, content).status_code == 303
    assert on_hand(jacket.id) == 70
    response = check(client, content)  # the same file again
    assert response.status_code == 422
    message = (f"Line 2 (SKU {jacket.sku}): stock_quantity: the stock count of {jacket.sku} "
               "changed since this file was exported (a count in the back office or another "
               "import): it is now 70, so the file's 70 (exported as 68) cannot be applied "
               "without counting twice. Export again and enter the count in the new file.")
    assert message in response.get_data(as_text=True).replace("&#39;", "'")
    before = state()
    assert confirm(client, content).status_code == 422
    assert state() == before
    # Only the price changed in the file: imported.
    html = check(client, edited(exported, jacket.sku, price="81.00")).get_data(as_text=True)
    assert details(html)[jacket.sku] == "price"
    assert confirm(client, hidden_content(html)).status_code == 303
    assert on_hand(jacket.id) == 70


def test_a_count_made_between_the_check_and_the_write_refuses_the_files_stock_edit(
        app, jacket, monkeypatch):
    """The import checks the ledger again once it holds the variants' row locks: a count saved
    (or the same file confirmed) after its check read the ledger would otherwise be counted
    twice. Nothing is written and the row says why."""
    from shop.services import audit, inventory, product_csv

    # (The count is made inside the import's transaction here, so it is rolled back with it.)
    with app.test_request_context():
        exported = "".join(product_csv.export_products())
    plan = product_csv._plan

    def plan_then_count(rows):
        plan(rows)
        inventory.adjust(jacket.id, 5, "stock count (back office)")

    monkeypatch.setattr(product_csv, "_plan", plan_then_count)
    report = product_csv.apply(edited(exported, jacket.sku, stock_quantity="70"),
                               audit.Who(user_id=None, email="staff@example.com"))
    assert not report.written
    assert "it is now 73" in report.bad_rows[0].errors[0]
    assert on_hand(jacket.id) == 68
    assert jacket_ledger(jacket.id) == [(68, "initial stock")]


def test_the_same_stock_edit_confirmed_three_times_at_once_counts_once(app, jacket):
    """Confirms of one file at the same moment all check it before any writes: each would
    add the file's +2. The row lock makes the later ones wait, read the ledger again, and
    refuse (MySQL, real row locks)."""
    from shop.services import audit, product_csv
    from tests.concurrency import raised, run_concurrently
    from tests.conftest import MYSQL_URL

    if not MYSQL_URL:
        pytest.skip("needs TEST_DATABASE_URL (MySQL): SQLite has one writer at a time")
    with app.test_request_context():
        content = edited("".join(product_csv.export_products()), jacket.sku,
                         stock_quantity="70")
    who = audit.Who(user_id=None, email="staff@example.com")
    results = run_concurrently(app, [lambda: product_csv.apply(content, who)] * 3)
    assert raised(results) == [], results
    assert sorted(report.written for report in results) == [False, False, True]
    for report in results:
        assert report.written or "it is now 70" in report.bad_rows[0].errors[0]
    assert on_hand(jacket.id) == 70
    assert jacket_ledger(jacket.id) == [(68, "initial stock"), (2, "stock count (CSV import)")]


def test_a_count_committed_while_the_file_is_checked_is_refused_with_the_count_now(
        app, jacket, monkeypatch):
    """The check reads the variants, then where their stock ledger stands. A count committed
    between the two reads (another confirm of the same file, finishing) moved the ledger, and
    the refusal gave the figure read before it: "it is now 68" when 70 were on hand (READ
    COMMITTED; seen as a flake of the test above). The refusal reads the figure again."""
    import threading

    from shop.services import audit, inventory, product_csv
    from shop.services.database import write_transaction
    from tests.conftest import MYSQL_URL

    if not MYSQL_URL:
        pytest.skip("needs TEST_DATABASE_URL (MySQL): SQLite has one writer at a time")
    with app.test_request_context():
        content = edited("".join(product_csv.export_products()), jacket.sku,
                         stock_quantity="70")
    reads = product_csv._ledger_positions

    def count_meanwhile() -> None:
        with app.app_context():
            with write_transaction():
                inventory.set_stock(jacket.id, 70, "stock count")
            db.session.remove()

    def ledger_read_after_a_count(variant_ids):
        if variant_ids and not on_hand_counted:
            on_hand_counted.append(True)
            worker = threading.Thread(target=count_meanwhile)
            worker.start()
            worker.join(timeout=60)
        return reads(variant_ids)

    on_hand_counted: list[bool] = []
    monkeypatch.setattr(product_csv, "_ledger_positions", ledger_read_after_a_count)
    db.session.rollback()
    report = product_csv.apply(content, audit.Who(user_id=None, email="staff@example.com"))
    assert on_hand_counted and not report.written
    assert "it is now 70, so the file's 70 (exported as 68)" in report.bad_rows[0].errors[0]
    assert on_hand(jacket.id) == 70


def test_a_file_without_stock_seen_sets_counts_and_the_check_page_shows_them(
        app, client, staff, jacket):
    """An older export or a hand-made file has no stock_seen column: its stock_quantity is
    the count, as before, but the check page said only "stock_quantity". It now shows the
    current figure and the file's, and warns that sales since the file was made come back."""
    sell(app, jacket.id, 3)
    content = (HEADER + f"field-jacket,Field Jacket,Field Jacket,,yes,{jacket.sku},,80.00,,68,\n"
               + "field-jacket,Field Jacket,Field Jacket,,yes,JKT-NEW,size=L,80.00,,7,\n")
    html = check(client, content).get_data(as_text=True)
    assert details(html)[jacket.sku] == "stock_quantity 65 → 68"
    assert ("1 row without stock_seen (an older export, or rows made by hand) sets "
            "stock_quantity as the count: units sold since the file was written come back on "
            "sale") in html
    assert confirm(client, hidden_content(html)).status_code == 303
    assert on_hand(jacket.id) == 68
    assert jacket_ledger(jacket.id)[-1] == (3, "stock count (CSV import)")
    new = db.session.execute(select(Variant).where(Variant.sku == "JKT-NEW")).scalar_one()
    assert new.stock_quantity == 7


@pytest.mark.parametrize("cells,message", [
    ({"stock_seen": "abc"}, "stock_seen: \"abc\" is not the figure the export wrote"),
    ({"ledger_seen": "-1"}, "ledger_seen: \"-1\" is not the figure the export wrote"),
    ({"ledger_seen": ""}, "stock_seen, ledger_seen: the export writes both"),
])
def test_an_altered_stock_seen_or_ledger_seen_is_refused_on_its_line(
        client, staff, jacket, cells, message):
    exported = client.get("/admin/product/export.csv").get_data()
    before = state()
    response = check(client, edited(exported, jacket.sku, stock_quantity="70", **cells))
    assert response.status_code == 422
    assert message in response.get_data(as_text=True).replace("&#34;", '"').replace(
        "&quot;", '"')
    assert state() == before
    # A file with one of the two columns alone is refused as a whole.
    text = exported.decode("utf-8-sig").replace(",ledger_seen", "", 1)
    text = "\r\n".join(line.rsplit(",", 1)[0] if n else line
                       for n, line in enumerate(text.split("\r\n")) if line) + "\r\n"
    html = check(client, text).get_data(as_text=True)
    assert "stock_seen and ledger_seen go together" in html
