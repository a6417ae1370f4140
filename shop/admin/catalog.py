"""Catalogue screens: products (variants and images inline, CSV import and export), the
category tree, and variants running low on stock."""
from __future__ import annotations

from datetime import date
from typing import Any

from flask import (
    Response,
    current_app,
    flash,
    g,
    redirect,
    request,
    stream_with_context,
    url_for,
)
from flask_admin import expose
from flask_admin.contrib.sqla.fields import InlineModelFormList, get_obj_pk
from flask_admin.contrib.sqla.form import InlineModelConverter
from flask_admin.model.form import InlineFormAdmin
from markupsafe import Markup
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload
from wtforms.fields import FileField
from wtforms.utils import unset_value
from wtforms.validators import Length

from ..extensions import db
from ..models import Category, Product, ProductImage, Variant
from ..services import catalog, images, inventory, product_csv, reports
from ..services.errors import ShopError, StockCountChanged, ValidationError
from ..templating import money
from .base import ReadOnlyModelView, ShopModelView
from .forms import (
    FitsColumn,
    FitsText,
    ImageForm,
    Printable,
    VariantForm,
    name_args,
    slug_validators,
)
from .security import request_id, who


class ShopInlineList(InlineModelFormList):
    """A product's variants or images. Without JavaScript the form cannot add a row (the
    "Add" button is scripted): each list also renders one blank row inside <noscript>
    (blank_entry), and a new row sent blank is left out (not refused), so a form saved without
    filling it in saves as before."""

    def process(self, formdata, data=unset_value, extra_filters=None):
        super().process(formdata, data, extra_filters)
        if formdata:
            self.entries = [entry for entry in self.entries if not _left_blank(entry)]

    def populate_obj(self, obj, name):
        """Rows are matched to the product's own records by the id each row carries. A row
        whose id is not one of them (another staff member removed the record meanwhile, or an
        altered form named another product's variant) was made a new record by Flask-Admin:
        an image without a file (refused by the database with the slug/SKU message), or a
        variant whose SKU check had counted the other product's variant as its own. Such a
        row is refused beside it (the inline view's gone_field and gone_message); one ticked
        for deletion is gone already and is left out."""
        own = {get_obj_pk(record, self._pk) for record in getattr(obj, name, None) or []}
        view = self.inline_view
        kept, errors = [], {}
        for entry in self.entries:
            posted = str(entry.form.id.data or "").strip()
            if posted and posted not in own:
                if not self.should_delete(entry):
                    errors[entry.form[view.gone_field].name] = view.gone_message
                continue
            kept.append(entry)
        if errors:
            raise ValidationError(errors)
        self.entries = kept
        super().populate_obj(obj, name)

    def blank_entry(self):
        """A new row after the others, as the script would add it, unattached to the list."""
        index = self.last_index + 1
        field = self.meta.bind_field(self._form, self.unbound_field, {
            "name": f"{self.name}{self._separator}{index}",
            "id": f"{self.id}{self._separator}{index}", "_meta": self.meta,
            "translations": self._translations})
        field.index, field.short_name = index, str(index)
        field.process(None)
        for sub in field.form:
            # A blank row may be left blank: the browser must not refuse the form for its
            # empty SKU or price (the server checks a row that was filled in).
            sub.flags.required = False
        return field


def _left_blank(entry) -> bool:
    """A new row (no id) whose every field is as a blank row shows it: nothing typed, no file
    chosen, the numbers at their defaults. The hidden figures a row carries do not count."""
    form = entry.form
    if str(form.id.data or "").strip():
        return False
    for field in form:
        if field.name.endswith(("-id", "-stock_seen", "-ledger_seen", "-path", "csrf_token")):
            continue
        if isinstance(field, FileField):
            data = field.data
            if data is not None and getattr(data, "filename", None):
                return False
            continue
        raw = (field.raw_data or [""])[0]
        raw = raw.strip() if isinstance(raw, str) else raw
        if raw not in ("", None) and raw != str(field.default if field.default is not None
                                                 else ""):
            return False
    return True


class ShopInlineConverter(InlineModelConverter):
    inline_field_list_type = ShopInlineList


class VariantInline(InlineFormAdmin):
    """A product's variants; stock changes are collected and applied through the ledger."""

    form_label = "Variant"
    gone_field = "sku"
    gone_message = ("This variant is not one of this product's (another staff member may have "
                    "removed it meanwhile): nothing was saved. Reload the page.")

    def get_form(self):
        return VariantForm

    def on_model_change(self, form, model, is_created):
        g.setdefault("admin_stock_changes", []).append(
            (model, form.form.stock_delta(), is_created, form.form))


class ImageInline(InlineFormAdmin):
    form_label = "Image"
    gone_field = "alt"
    gone_message = ("This image was removed meanwhile (by another staff member, or it is not "
                    "this product's): nothing was saved. Reload the page.")

    def get_form(self):
        return ImageForm


def line_ends_as_lf(value: Any) -> Any:
    """A description as the shop keeps it (catalog.one_line_end): the browser sends the
    textarea's line breaks as CRLF, so saving an untouched form rewrote the text and logged
    "Changed: description"."""
    return catalog.one_line_end(value) if isinstance(value, str) else value


def _product_name(view, context, model, name) -> Markup:
    if not model.active:
        # Not in the shop: its page is the shop's 404, so no link to it.
        return Markup('{} <span class="badge badge-secondary">inactive</span>').format(
            model.name)
    link = url_for("catalog.product", slug=model.slug)
    return Markup('{} <a class="small" href="{}">view in shop</a>').format(model.name, link)


def _total_stock(view, context, model, name) -> str:
    return str(sum(v.stock_quantity for v in model.variants))


def _category_chain(category: Category) -> list[Category]:
    """The category and its ancestors, from the top down (a cycle, which the category form
    refuses, ends the chain). The parents come from the session's identity map once every
    category is loaded (category_choices), so this reads no rows."""
    chain: list[Category] = []
    current: Category | None = category
    while current is not None and current not in chain:
        chain.append(current)
        current = current.parent
    return list(reversed(chain))


def category_choices() -> list[Category]:
    """Every category for a select, in the tree's order (each after its parent, siblings by
    position, as the category list shows them)."""
    categories = list(db.session.execute(select(Category)).scalars())
    return sorted(categories, key=lambda c: [(n.position or 0, n.name.casefold(), n.id)
                                             for n in _category_chain(c)])


def category_path(category: Category) -> str:
    """A category as a select names it, by its path: "Men › Shirts" is not "Women › Shirts"
    (a name alone could be either)."""
    return " \u203a ".join(c.name for c in _category_chain(category))


def category_select_args(blank_text: str, **args: Any) -> dict[str, Any]:
    """form_args of a select of a category (a product's, a category's parent)."""
    return {"query_factory": category_choices, "get_label": category_path,
            "blank_text": blank_text, **args}


class ProductView(ShopModelView):
    list_template = "admin/product_list.html"
    column_list = ("name", "slug", "category", "price", "variants", "stock", "created_at")
    column_labels = {"price": "From", "created_at": "Added", "stock": "Units on hand"}
    column_formatters = {"name": _product_name, "price": lambda v, c, m, n: money(m.price),
                         "variants": lambda v, c, m, n: str(len(m.variants)),
                         "stock": _total_stock}
    column_sortable_list = ("name", "slug", ("category", "category.name"), "price", "created_at")
    column_searchable_list = ("name", "slug", "variants.sku")
    column_filters = ("active", "category.name", "price", "created_at")
    column_default_sort = ("created_at", True)

    def get_sortable_columns(self):
        """Name sorts by the name's key, as the shop's "Name: A to Z" does (case and accents
        aside; bytes on SQLite otherwise). Flask-Admin keys a column of the same table by its
        own name, so the list's ("name", name_key) would be a column "name_key" it never
        shows."""
        columns = super().get_sortable_columns()
        columns["name"] = Product.name_key
        return columns

    def get_query(self):
        """The list shows each product's variants and units on hand: the page's variants in
        one query, not one query per row (52 queries a page)."""
        return super().get_query().options(selectinload(Product.variants))
    form_columns = ("name", "slug", "category", "description", "active")
    form_args = {
        "name": name_args("Enter the product's name.", 160),
        "slug": {"validators": slug_validators(),
                 "description": "The product's address in the shop: /p/&lt;slug&gt;."},
        "category": category_select_args("No category"),
        "description": {"validators": [FitsText(), Printable(lines=True)],
                        "filters": [line_ends_as_lf]},
        "variants": {"min_entries": 1, "label": "Variant"},
        "images": {"label": "Image"},
    }
    inline_models = (VariantInline(Variant), ImageInline(ProductImage))
    inline_model_form_converter = ShopInlineConverter
    audit_include = ("variants", "images")
    changes_catalog = True
    integrity_message = "That slug or one of the SKUs is already used by another product."
    delete_integrity_message = "This product is still referenced, so it cannot be deleted."

    def check(self, form, model, is_created: bool) -> None:
        """Every product keeps a variant: without one the shop listed it at $0.00 with
        nothing to buy (variants ticked for deletion are in the session's deleted set)."""
        if not any(variant not in db.session.deleted for variant in model.variants):
            raise ValidationError({"variants": catalog.NO_VARIANT})
        if (model.slug or "").isdigit():
            stored = None if is_created else db.session.execute(
                select(Product.slug).where(Product.id == model.id)).scalar()
            if stored != model.slug:  # a product that has such a slug already keeps it
                raise ValidationError({"slug": "A slug of digits alone would be read as a "
                                               "product's id (/p/7): add a letter or a word."})
        self.check_removed_variants(form, model)
        self.check_skus(form, model)

    def check_removed_variants(self, form, model) -> None:
        """A variant ticked for deletion that has been ordered stays (catalog.ordered_variants):
        refused next to its SKU, and nothing is saved."""
        removed = {variant.id: variant for variant in model.variants
                   if variant in db.session.deleted and variant.id is not None}
        if not removed:
            return
        ordered = catalog.ordered_variants(removed)
        if not ordered:
            return
        fields = {str(entry.form.id.data): entry.form.sku.name
                  for entry in form.variants.entries}
        errors: dict[str, str] = {}
        for variant_id, lines in ordered.items():
            message = catalog.ordered_variant_message(removed[variant_id].sku, lines)
            name = fields.get(str(variant_id), "variants")
            errors[name] = f"{errors[name]} {message}" if name in errors else message
        raise ValidationError(errors)

    def before_delete(self, model) -> None:
        """A product that has been ordered or reviewed is deactivated, not deleted (also in
        the list's bulk delete, which deletes through delete_model one product at a time)."""
        catalog.ensure_deletable(model)

    def check_skus(self, form, model) -> None:
        """A SKU names one variant of the whole shop, whatever its capitals: refused next to
        the variant's field when another variant of the form or of another product has it
        (SQLite took "lin-s" beside "LIN-S"; MySQL refused it only at the INSERT, with a
        message over the page that named no field). And each variant has options of its own
        (catalog.options_key)."""
        inline = form.variants
        # The product's own variants, never ids the form names: an extra row naming another
        # product's variant made that variant's SKU count as this product's.
        own_ids = {variant.id for variant in model.variants if variant.id is not None}
        kept = [entry.form for entry in inline.entries if not inline.should_delete(entry)]
        errors: dict[str, str] = {}
        first: dict[str, str] = {}
        for variant in kept:
            key = catalog.sku_key(variant.sku.data or "")
            if key in first:
                errors[variant.sku.name] = (f"The variant above already has the SKU "
                                            f"{first[key]}.")
            else:
                first[key] = variant.sku.data
        taken = catalog.skus_in_use(first.values(), except_variant_ids=own_ids)
        for variant in kept:
            stored = taken.get(catalog.sku_key(variant.sku.data or ""))
            if stored is not None and variant.sku.name not in errors:
                errors[variant.sku.name] = (f"The SKU {stored} is already used by another "
                                            "product's variant.")
        first_options: dict[tuple, str] = {}
        for variant in kept:
            key = catalog.options_key(variant.options.data)
            if key in first_options and variant.options.name not in errors:
                errors[variant.options.name] = (
                    f"The variant {first_options[key]} above has the same options: give "
                    "each variant its own (a shopper could not tell them apart).")
            first_options.setdefault(key, variant.sku.data)
        if errors:
            raise ValidationError(errors)

    def start_write(self) -> None:
        g.admin_stock_changes = []

    def before_write(self, form, model, is_created: bool) -> None:
        """Stock through the ledger, then the product's "from" price."""
        actor = who()
        for variant, delta, created, fields in g.pop("admin_stock_changes", []):
            if not delta or variant.id is None:
                continue
            try:
                inventory.adjust(variant.id, delta,
                                 "initial stock" if created else "stock count (back office)",
                                 actor.user_id,
                                 ledger_seen=None if created else fields.ledger_position())
            except StockCountChanged as exc:
                raise ValidationError({fields.stock_quantity.name: (
                    f"{variant.sku}: {exc.message} Nothing was saved: reload the page and "
                    "enter the count again.")}) from None
            except ValidationError:
                raise ValidationError({"variants": (
                    f"{variant.sku}: stock cannot go below zero. Units were sold while you "
                    "edited; reload the page and enter the count again.")}) from None
        catalog.refresh_product_prices([model.id])

    def after_rollback(self) -> None:
        for path in g.pop("admin_new_uploads", []):
            images.remove(path)

    def after_commit(self, before: dict | None, after: dict | None) -> None:
        super().after_commit(before, after)
        g.pop("admin_new_uploads", None)
        kept = {i["path"] for i in (after or {}).get("images") or []}
        for image in (before or {}).get("images") or []:
            if image["path"] not in kept:
                images.remove(image["path"])

    # CSV ------------------------------------------------------------------------------------

    @expose("/export.csv")
    def export_csv(self):
        """Every product and variant as CSV (the import's format)."""
        rows, most = product_csv.count_product_rows(), \
            current_app.config["PRODUCT_EXPORT_MAX_ROWS"]
        if rows > most:
            # Written inside the request: more would be cut off by the workers' timeout,
            # leaving a file that looks whole.
            flash(f"Nothing exported: the catalogue has {rows:,} rows (one a variant), and one "
                  f"export holds at most {most:,} (SHOP_PRODUCT_EXPORT_MAX_ROWS). Read a "
                  f"catalogue this size through the API (/api/v1/products), or raise the "
                  f"limit together with the workers' timeout.", "error")
            return redirect(url_for(".index_view"), 303)
        response = Response(stream_with_context(product_csv.export_products()),
                            mimetype="text/csv")
        response.headers["Content-Disposition"] = (
            f'attachment; filename="products-{date.today().isoformat()}.csv"')
        return response

    @expose("/import", methods=("GET", "POST"))
    def import_csv(self):
        """Step 1: upload and see the dry run. Step 2: confirm; all rows or none are written."""
        if request.method == "GET":
            return self.render("admin/product_import.html", report=None, content=None,
                               columns=product_csv.PRODUCT_COLUMNS, error=None)
        if "content" in request.form:
            report = product_csv.apply(request.form["content"], who(), request_id())
            if report.written:
                counts = report.counts
                flash(f"Imported {len(report.rows)} rows: {counts['create']} created, "
                      f"{counts['update']} updated, {counts['unchanged']} unchanged.", "success")
                return redirect(url_for(".index_view"), 303)
            return self.render("admin/product_import.html", report=report, content=None,
                               columns=product_csv.PRODUCT_COLUMNS, error=None), 422
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            return self._import_error("Choose a CSV file to import."), 422
        limit = product_csv.max_file_bytes()
        content = upload.read(limit + 1)
        if len(content) > limit:
            return self._import_error(product_csv.too_large_message()), 413
        report = product_csv.preview(content)
        text, _ = product_csv.decode(content)
        status = 200 if report.ok else 422
        return self.render("admin/product_import.html", report=report,
                           content=text if report.ok else None,
                           columns=product_csv.PRODUCT_COLUMNS, error=None), status


    def _import_error(self, message: str) -> str:
        return self.render("admin/product_import.html", report=None, content=None,
                           columns=product_csv.PRODUCT_COLUMNS, error=message)

    def import_too_large(self) -> str | None:
        """The import page for a body over the limit (shop.http answers 413 with it): the
        message names the CSV file's limit, not an image's. None for someone not staff (the
        plain error page)."""
        if not self.is_accessible():
            return None
        return self._import_error(product_csv.too_large_message())


class CategoryView(ShopModelView):
    list_template = "admin/category_list.html"
    column_list = ("name", "slug", "parent", "position")
    column_labels = {"parent": "Inside"}
    column_sortable_list = ("name", "slug", ("parent", "parent.name"), "position")
    column_searchable_list = ("name", "slug")
    column_default_sort = ("position", False)
    form_columns = ("name", "slug", "parent", "description", "position")
    form_args = {
        "name": name_args("Enter the category's name.", 120),
        "slug": {"validators": slug_validators()[:1] + [Length(max=120)] + slug_validators()[2:],
                 "description": "The category's address in the shop: /c/&lt;slug&gt;."},
        "parent": category_select_args("None (a top-level category)",
                                       label="Inside (parent category)"),
        "description": {"validators": [FitsText(), Printable(lines=True)],
                        "filters": [line_ends_as_lf]},
        "position": {"validators": [FitsColumn()]},
    }
    changes_catalog = True
    integrity_message = "That slug is already used by another category."
    delete_integrity_message = "This category is still used, so it cannot be deleted."

    def check(self, form, model, is_created: bool) -> None:
        seen: set[int] = set()
        parent = model.parent
        while parent is not None:
            if parent.id == model.id or parent.id in seen:
                raise ValidationError({"parent": "A category cannot be inside itself or one "
                                                 "of its own subcategories."})
            seen.add(parent.id)
            parent = parent.parent

    def before_delete(self, model) -> None:
        children = db.session.execute(select(func.count(Category.id))
                                      .where(Category.parent_id == model.id)).scalar_one()
        products = db.session.execute(select(func.count(Product.id))
                                      .where(Product.category_id == model.id)).scalar_one()
        if children or products:
            raise ShopError(f"\"{model.name}\" has {children} subcategories and {products} "
                            "products: move or delete them first.")

    def tree(self) -> tuple[list[Any], dict[int, int]]:
        """The category tree and the number of products directly in each category."""
        counts = dict(db.session.execute(
            select(Product.category_id, func.count(Product.id))
            .where(Product.category_id.is_not(None)).group_by(Product.category_id)).all())
        return catalog.category_tree().roots, counts


def _variant_product(view, context, model, name) -> Markup:
    return Markup('<a href="{}">{}</a>').format(
        url_for("product.edit_view", id=model.product_id, url=request.full_path),
        model.product.name)


class LowStockView(ReadOnlyModelView):
    """Variants low on stock (reports.low_stock_condition), sold out first."""

    can_view_details = False
    list_template = "admin/low_stock_list.html"
    column_list = ("product", "sku", "options", "stock_quantity", "low_stock_threshold")
    column_labels = {"stock_quantity": "On hand", "low_stock_threshold": "Threshold",
                     "sku": "SKU"}
    column_formatters = {"product": _variant_product,
                         "options": lambda v, c, m, n: m.label}
    column_sortable_list = ("sku", "stock_quantity", "low_stock_threshold",
                            ("product", "product.name"))
    column_searchable_list = ("sku",)
    column_default_sort = [("stock_quantity", False), ("sku", False)]

    def get_query(self):
        return super().get_query().filter(reports.low_stock_condition())

    def get_count_query(self):
        return super().get_count_query().filter(reports.low_stock_condition())
