"""The model view every back office screen builds on: staff-only, and every write is one
transaction on the primary that also records who changed what, before and after."""
from __future__ import annotations

import logging
import math
import re
from typing import Any

from flask import flash, redirect, request
from flask_admin.babel import gettext
from flask_admin.contrib.sqla import ModelView, tools
from flask_admin.contrib.sqla import filters as sqla_filters
from flask_admin.contrib.sqla.fields import QuerySelectField
from flask_admin.contrib.sqla.validators import Unique
from flask_admin.helpers import get_redirect_target
from flask_admin.model.filters import (
    BaseFloatFilter,
    BaseFloatListFilter,
    BaseIntFilter,
    BaseIntListFilter,
)
from sqlalchemy import Unicode, and_, inspect, or_, select, true
from sqlalchemy import cast as sql_cast
from sqlalchemy.exc import IntegrityError
from wtforms.validators import ValidationError as FieldError

from ..extensions import db
from ..models.base import MAX_ID, is_id
from ..services import audit, cache
from ..services.database import retrying, write_transaction
from ..services.errors import ShopError, ValidationError
from .forms import RelationSelectField
from .security import StaffAccess, request_id, who

log = logging.getLogger("shop.admin")


class _WholeNumberInRange:
    """An integer filter's values must fit the columns (up to MAX_ID either side of zero):
    a larger number names no row, and SQLite cannot even bind one beyond 64 bits, so
    ?flt0_rating_equals=10**25 answered 500. Out of range is refused like any bad value
    ("Invalid Filter Value", the filter left out)."""

    def clean(self, value: str) -> Any:
        cleaned = super().clean(value)  # type: ignore[misc]
        numbers = cleaned if isinstance(cleaned, list) else [cleaned]
        if any(abs(number) > MAX_ID for number in numbers):
            raise ValueError("out of range")
        return cleaned


class _FiniteNumber:
    """A number filter's values (a price) must be numbers: Python's float() takes "NaN" and
    "1e400" (infinity), which MySQL cannot compare with, so ?flt0_9=NaN on the product list
    answered 500 there. Refused like any bad value."""

    def clean(self, value: str) -> Any:
        cleaned = super().clean(value)  # type: ignore[misc]
        numbers = cleaned if isinstance(cleaned, list) else [cleaned]
        if not all(math.isfinite(number) for number in numbers):
            raise ValueError("not a number")
        return cleaned


def _bounded(filter_class: type) -> type:
    if issubclass(filter_class, (BaseIntFilter, BaseIntListFilter)):
        check: type = _WholeNumberInRange
    elif issubclass(filter_class, (BaseFloatFilter, BaseFloatListFilter)):
        check = _FiniteNumber
    else:
        return filter_class
    return type(filter_class.__name__, (check, filter_class), {})


class FilterConverter(sqla_filters.FilterConverter):
    """Flask-Admin's filters, with number values checked (_WholeNumberInRange,
    _FiniteNumber)."""

    int_filters = tuple(_bounded(f) for f in sqla_filters.FilterConverter.int_filters)
    float_filters = tuple(_bounded(f) for f in sqla_filters.FilterConverter.float_filters)


_RECORD_ID = re.compile(r"[1-9][0-9]{0,18}")
_WELL_FORMED_ID = re.compile(r"[1-9][0-9]*")


def record_id(raw: object) -> int | None:
    """A record id from a URL (?id=) or form, written as the back office writes it (digits
    only, no sign, space, dot, exponent or leading zero), or None. Flask-Admin's own parsing
    drops a dot ("1.5" named record 15) and int() takes " 15", "+15" and "1_5". An int (a
    route's <int:...> argument) is taken as it is."""
    if isinstance(raw, int):
        return raw if is_id(raw) else None
    if not isinstance(raw, str) or not _RECORD_ID.fullmatch(raw):
        return None
    number = int(raw)
    return number if is_id(number) else None


# Rows before a list page from which the page reads its rows' keys first (ShopModelView).
DEEP_OFFSET = 1000


def _single_key(model: type):
    """The model's primary key column, when it has one column."""
    keys = inspect(model).primary_key
    return keys[0] if len(keys) == 1 else None


def _tie_breakers(model: type, sorted_by: Any, key: Any) -> list:
    """The columns that follow `sorted_by` in the shortest index of the model's table that
    starts with it, then the primary key `key`."""
    table = model.__table__
    name = getattr(sorted_by, "name", None)
    if getattr(sorted_by, "table", None) is table and name in table.c:
        for index in sorted(table.indexes, key=lambda index: len(index.columns)):
            columns = list(index.columns)
            if columns[0] is table.c[name]:
                return [c for c in columns[1:] if c is not key] + [key]
    return [key]


class ShopModelView(StaffAccess, ModelView):
    """Staff-only model view. Create, update and delete run inside `write_transaction` with an
    audit entry; `changes_catalog` views invalidate the catalogue cache after a write."""

    page_size = 50
    can_set_page_size = True
    page_size_options = (20, 50, 100)
    filter_converter = FilterConverter()
    # Unique fields whose `check` says who has the value already (compared as the shop
    # compares them, e.g. without case): Flask-Admin's own "Already exists." check of them,
    # which caught some repeats on MySQL only (its collation), is left out.
    checked_unique: tuple[str, ...] = ()
    # Related collections included in the audit snapshot (e.g. a product's variants).
    audit_include: tuple[str, ...] = ()
    changes_catalog = False
    # Shown when the database refuses a write (a unique value taken, a record still in use).
    integrity_message = "That could not be saved: a value that must be unique is already used."
    delete_integrity_message = "That record is still used elsewhere, so it cannot be deleted."

    def __init__(self, model: type, **kwargs: Any) -> None:
        super().__init__(model, db, **kwargs)

    # Search --------------------------------------------------------------------------------

    def exact_search(self, search: str) -> list | None:
        """Conditions finding the one thing `search` names in full (an order number, an email,
        a request id) through an index; None: Flask-Admin's search, each word anywhere in any
        searchable column. That one reads every row (no index helps "contains"): on 300,000
        orders a pasted order number took 1.7 s, twice (the count and the page)."""
        return None

    def _apply_search(self, query, count_query, joins, count_joins, search):
        exact = self.exact_search(search.strip())
        if exact is None:
            if not any(path for _, path in self._search_fields):
                return super()._apply_search(query, count_query, joins, count_joins, search)
            exact = [self._words_condition(search)]
        condition = or_(*exact)
        return (query.filter(condition),
                count_query.filter(condition) if count_query is not None else None,
                joins, count_joins)

    def _words_condition(self, search: str):
        """Flask-Admin's search (each word in one of the searchable columns), with a column
        of a related list (a product's variants' SKUs) asked through EXISTS: Flask-Admin
        joins it, so a product with three matching variants was three rows, and the list's
        count and pages counted rows (48 for 8 products, a product on two pages)."""
        words = []
        for word in search.split(" "):
            if not word:
                continue
            like = tools.parse_like_term(word)
            either = []
            for field, path in self._search_fields:
                matches = sql_cast(field, Unicode).ilike(like)
                for relation in reversed(path):
                    matches = (relation.any(matches) if relation.property.uselist
                               else relation.has(matches))
                either.append(matches)
            words.append(or_(*either))
        return and_(true(), *words)

    # Names ---------------------------------------------------------------------------------

    @property
    def audit_model(self) -> str:
        return self.model.__name__

    def snapshot(self, model: Any) -> dict:
        return audit.snapshot(model, include=self.audit_include)

    def get_one(self, id):
        """The record with this id; None (Flask-Admin's "Record does not exist.") for an id
        that is not one as the back office writes it (see record_id): on edit, details and
        delete, GET and POST alike, ?id=1.5 opened or changed record 15."""
        number = record_id(id)
        return None if number is None else super().get_one(str(number))

    def handle_action(self, return_view=None):
        """A bulk action (the list's "Delete", a view's own) on rows named by ids written as
        the back office writes them: one that is not (a crafted "15abc", which MySQL reads as
        15) stops the whole action, with Flask-Admin's "Record does not exist.". A well-formed
        id of no record (too large to be one, or deleted meanwhile) just matches nothing."""
        if not all(_WELL_FORMED_ID.fullmatch(raw) for raw in request.form.getlist("rowid")):
            flash(gettext("Record does not exist."), "error")
            return redirect(get_redirect_target() or self.get_url(".index_view"))
        return super().handle_action(return_view)

    def scaffold_form(self):
        form_class = super().scaffold_form()
        for name in self.checked_unique:
            field = getattr(form_class, name)
            field.kwargs["validators"] = [v for v in field.kwargs.get("validators") or ()
                                          if not isinstance(v, Unique)]
        for name in dir(form_class):
            field = getattr(form_class, name)
            if getattr(field, "field_class", None) is QuerySelectField:
                field.field_class = RelationSelectField
                field.kwargs.setdefault("missing_message", _missing_message(self.model, name))
        return form_class

    # Hooks for subclasses (inside the transaction) ----------------------------------------

    def check(self, form: Any, model: Any, is_created: bool) -> None:
        """Rules on the values the form put into the model, before anything is written
        (no autoflush). Raise ValidationError to refuse with a message next to the field."""

    def before_write(self, form: Any, model: Any, is_created: bool) -> None:
        """Related writes after the model was flushed, before the audit snapshot."""

    def before_delete(self, model: Any) -> None:
        """Refuse a delete by raising ShopError."""

    def start_write(self) -> None:
        """Called at the start of every attempt of a write transaction."""

    def after_rollback(self) -> None:
        """Undo side effects outside the database (e.g. files stored for a failed save)."""

    def after_commit(self, before: dict | None, after: dict | None) -> None:
        """Work after a successful write (cache invalidation, file clean-up)."""
        if self.changes_catalog:
            cache.catalog_changed()

    # Flask-Admin's write paths -------------------------------------------------------------

    def create_model(self, form):
        def run():
            self.start_write()
            with write_transaction():
                model = self.build_new_instance()
                _check_relations(form)
                with db.session.no_autoflush:
                    form.populate_obj(model)
                    self.check(form, model, True)
                db.session.add(model)
                db.session.flush()
                self.before_write(form, model, True)
                db.session.flush()
                # Related rows may have changed through UPDATE statements: read them again.
                db.session.expire_all()
                after = self.snapshot(model)
                audit.record(who(), "create", self.audit_model, self.get_pk_value(model),
                             after=after, request_id=request_id())
                return model, after

        result = self._guarded(run, form)
        if result is None:
            return False
        model, after = result
        self.after_commit(None, after)
        self.after_model_change(form, model, True)
        return model

    def update_model(self, form, model) -> bool:
        def run():
            self.start_write()
            with write_transaction():
                # The transaction started afresh: `before` is what the database holds now.
                before = self.snapshot(model)
                _check_relations(form)
                with db.session.no_autoflush:
                    form.populate_obj(model)
                    self.check(form, model, False)
                db.session.flush()
                self.before_write(form, model, False)
                db.session.flush()
                db.session.expire_all()
                after = self.snapshot(model)
                audit.record(who(), "update", self.audit_model, self.get_pk_value(model),
                             before=before, after=after, request_id=request_id())
                return before, after

        result = self._guarded(run, form)
        if result is None:
            return False
        self.after_commit(*result)
        self.after_model_change(form, model, False)
        return True

    def delete_model(self, model) -> bool:
        def run():
            with write_transaction():
                before = self.snapshot(model)
                record_id = self.get_pk_value(model)
                self.before_delete(model)
                db.session.delete(model)
                db.session.flush()
                audit.record(who(), "delete", self.audit_model, record_id, before=before,
                             request_id=request_id())
                return before

        result = self._guarded(run, None, deleting=True)
        if result is None:
            return False
        self.after_commit(result, None)
        self.after_model_delete(model)
        return True

    def _guarded(self, action, form, deleting: bool = False):
        """Run a write; turn refusals into messages (beside the field when there is one)."""
        try:
            return retrying(action)
        except ValidationError as exc:
            placed = False
            for name, message in exc.errors.items():
                field = _find_field(form, name) if form is not None else None
                if field is not None:
                    field.errors = list(field.errors or []) + [message]
                    placed = True
                else:
                    flash(message, "error")
            if placed:
                flash(exc.message, "error")
        except FieldError as exc:
            flash(str(exc), "error")
        except ShopError as exc:
            flash(exc.message, "error")
        except IntegrityError:
            log.info("admin write refused by the database", exc_info=True)
            flash(self.delete_integrity_message if deleting else self.integrity_message, "error")
        except Exception:
            log.exception("admin write failed")
            flash("Something went wrong; nothing was changed. The error has been logged.",
                  "error")
        db.session.rollback()
        self.after_rollback()
        return None

    def _get_list_extra_args(self):
        """Flask-Admin's list arguments, with a page number whose offset a database can take:
        a negative page is the first, and one past any row (MAX_ID) an empty page, as for any
        page past the end (SQLite refused the offset of ?page=10**25 with a 500)."""
        args = super()._get_list_extra_args()
        if args.search:
            # Written back into the search box: a control character made the page invalid
            # HTML (nothing holds one to be found).
            from ..templating import shown

            args.search = shown(args.search)
        if args.page:
            args.page = min(max(args.page, 0), MAX_ID // max(self.page_size_options))
        return args

    # Lists -----------------------------------------------------------------------------------

    def _apply_sorting(self, query, joins, sort_column, sort_desc):
        """Flask-Admin's sorting, then what makes it total, in the same direction: the rest
        of the index that starts with the sorted column, then the primary key. Rows with the
        same value (orders placed in the same second, a status) keep one order from page to
        page, so none shows on two pages and none on neither, and that index still gives the
        rows in order (the key alone made MySQL sort every order by status: 67 -> 527 ms)."""
        query, joins = super()._apply_sorting(query, joins, sort_column, sort_desc)
        key = _single_key(self.model)
        if key is None:
            return query, joins
        if sort_column is not None:
            field = self._sortable_columns.get(sort_column)
        else:  # the default sort's first column and direction
            order = list(self._get_default_order())
            field, sort_desc = (order[0][0], order[0][2]) if order else (None, False)
        for column in _tie_breakers(self.model, getattr(field, "expression", None), key):
            query = query.order_by(column.desc() if sort_desc else column)
        return query, joins

    def get_list(self, page, sort_column, sort_desc, search, filters, execute=True,
                 page_size=None):
        """Flask-Admin's list; a deep page (DEEP_OFFSET rows in) reads its rows' keys first,
        from the index alone, then those rows: the same page without reading every row before
        it (page 5,000 of 267,000 orders on MariaDB, docs/BENCHMARKS.md)."""
        count, query = super().get_list(page, sort_column, sort_desc, search, filters,
                                         execute=False, page_size=page_size)
        if not execute:
            return count, query
        size = self.page_size if page_size is None else page_size
        key = _single_key(self.model)
        if key is None or not page or not size or page * size < DEEP_OFFSET:
            return count, query.all()
        keys = [row[0] for row in query.enable_eagerloads(False).with_entities(key)]
        if not keys:
            return count, []
        return count, query.limit(None).offset(None).filter(key.in_(keys)).all()

    def handle_view_exception(self, exc: Exception) -> bool:
        log.exception("admin view error")
        return super().handle_view_exception(exc)


class ReadOnlyModelView(ShopModelView):
    """Lists and details only: no generic create, edit or delete."""

    can_create = False
    can_edit = False
    can_delete = False
    can_view_details = True


def _missing_message(model: type, name: str) -> str:
    """ "That category no longer exists; choose another." for a relation to Category."""
    relationship = getattr(inspect(model).relationships, name, None)
    noun = relationship.mapper.class_.__name__.lower() if relationship is not None else "choice"
    return f"That {noun} no longer exists; choose another."


def _check_relations(form: Any) -> None:
    """Each related row a select chose still exists inside the write's transaction: one
    deleted between the form's check and the write is refused beside its field, as when it
    was gone before (RelationSelectField), instead of reaching the database."""
    for field in form:
        if not isinstance(field, RelationSelectField) or field.data is None:
            continue
        state = inspect(field.data)
        mapper, key = state.mapper, state.identity  # read without loading the row again
        if key is None:
            continue
        columns = mapper.primary_key
        found = db.session.execute(select(*columns).where(
            *(column == value for column, value in zip(columns, key, strict=True)))).first()
        if found is None:
            raise ValidationError({field.name: field.missing_message})


def _find_field(form: Any, name: str):
    """A form field by name, also inside inline lists ("variants-0-sku")."""
    if form is None:
        return None
    field = getattr(form, name, None)
    if field is not None and hasattr(field, "errors"):
        return field
    for top in form:
        for entry in getattr(top, "entries", ()):
            if name.startswith(entry.name + "-"):
                return _find_field(getattr(entry, "form", None), name[len(entry.name) + 1:])
    return None
