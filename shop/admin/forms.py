"""Form fields and inline forms of the back office: money as Decimal, variant options as
"size=M; colour=Blue", stock changed only through the stock ledger, images checked by content."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from flask import current_app, g
from flask_admin.contrib.sqla.fields import QuerySelectField
from flask_admin.form import BaseForm, DateTimeField
from markupsafe import Markup, escape
from wtforms import fields
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, Regexp
from wtforms.validators import ValidationError as FieldError

from ..models.base import MAX_ID, MAX_TEXT_BYTES
from ..services import catalog, images, inventory
from ..services.addresses import unprintable
from ..services.errors import ValidationError
from ..services.money import parse_amount, quantize
from ..services.product_csv import (
    MAX_STOCK,
    SKU,
    SLUG,
    UNPRINTABLE,
    format_options,
    parse_options,
    price_problem,
)


class FitsColumn:
    """A whole number an INTEGER column holds (a position, a use limit): a larger one is
    refused next to its field, not by the database after the form was accepted (which only
    said "Something went wrong")."""

    message = f"Enter a number from -{MAX_ID} to {MAX_ID}."

    def __call__(self, form: Any, field: fields.Field) -> None:
        if isinstance(field.data, int) and abs(field.data) > MAX_ID:
            raise FieldError(self.message)


class FitsText:
    """Text a TEXT column holds (a description): a longer one is refused next to its field.
    MySQL refused it at the INSERT, so staff saw only "Something went wrong"."""

    message = (f"This text is too long: at most {MAX_TEXT_BYTES:,} bytes (a letter with an "
               "accent takes two, most other scripts three).")

    def __call__(self, form: Any, field: fields.Field) -> None:
        if isinstance(field.data, str) and len(field.data.encode("utf-8")) > MAX_TEXT_BYTES:
            raise FieldError(self.message)


class Printable:
    """Text a page can show as typed (addresses.unprintable, the shop's rule for reviews and
    names): a NUL, control or text-direction character is refused beside its field. A category
    name with a NUL was shown in every page's navigation (invalid HTML)."""

    message = UNPRINTABLE

    def __init__(self, lines: bool = False) -> None:
        # A description's line breaks and tabs are its own (a review's body keeps them too).
        self.lines = lines

    def __call__(self, form: Any, field: fields.Field) -> None:
        if not isinstance(field.data, str):
            return
        text = field.data
        if self.lines:
            text = text.replace("\r\n", "\n").replace("\n", " ").replace("\t", " ")
        if unprintable(text):
            raise FieldError(self.message)


class RelationSelectField(QuerySelectField):
    """Flask-Admin's select of a related row, refusing an id that names no row. Flask-Admin's
    own field let it through as "none" when the relation is optional, so parent=99999 (or a
    parent another staff member had just deleted) moved a category to the top of the tree and
    category=99999 took a product out of its category. The empty choice still means none."""

    def __init__(self, *args: Any, missing_message: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.missing_message = missing_message or "That choice no longer exists; choose another."

    def process_formdata(self, valuelist: list[str]) -> None:
        if valuelist and self.allow_blank and valuelist[0] in ("", "__None"):
            self.data = None
            return
        super().process_formdata(valuelist)

    def pre_validate(self, form: Any) -> None:
        self.data  # noqa: B018 -- matches the sent id against the choices
        if self._formdata is not None:  # still unmatched: the id names no row
            raise FieldError(self.missing_message)
        super().pre_validate(form)


class MoneyField(fields.StringField):
    """A Decimal amount ("24.99"); blank is None unless the field is required. A price
    (`price=True`) must fit the shop's currency: no more decimals than it has (none in JPY,
    two in USD)."""

    def __init__(self, label: str | None = None, validators=None, required: bool = False,
                 price: bool = False, **kwargs: Any) -> None:
        self.price = price
        validators = list(validators or [])
        validators.insert(0, InputRequired("Enter an amount such as 24.99.") if required
                          else Optional())
        super().__init__(label, validators, **kwargs)

    typed: Decimal | None = None

    def _value(self) -> str:
        if self.raw_data:
            return self.raw_data[0]
        if self.data in (None, ""):
            return ""
        return str(quantize(self.data, current_app.config["CURRENCY"] if self.price else None))

    def process_formdata(self, valuelist: list[str]) -> None:
        if not valuelist or not valuelist[0].strip():
            self.data = None
            return
        value = parse_amount(valuelist[0])
        if value is None:
            self.data = None
            raise ValueError("Enter an amount such as 10 or 24.99 (not negative).")
        self.typed = value  # as typed, for checks that depend on other fields (a coupon's kind)
        self.data = quantize(value)
        # Checked as typed: "1.999" is refused, not saved as 2.00.
        if self.price and (problem := price_problem(value, current_app.config["CURRENCY"])):
            raise ValueError(problem)


class UtcDateTimeField(DateTimeField):
    """A moment in UTC as people type it: "2030-12-24 09:00", with or without seconds, or
    with the "T" of ISO 8601. Flask-Admin's field took seconds alone, which its picker writes;
    without the picker's script the box is plain text that shows no format, and a time typed
    without seconds was "Not a valid datetime value." A date alone is refused: a coupon that
    ends on the 24th may mean its first moment or its last, and the shop cannot tell."""

    FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M")
    message = "Enter a date and a time (UTC) such as 2030-12-24 09:00."
    EARLY = "Enter a date from the year 1000 to 9999, such as 2030-12-24 09:00."

    def __init__(self, label: str | None = None, validators=None, **kwargs: Any) -> None:
        kwargs["format"] = list(self.FORMATS)
        super().__init__(label, validators, **kwargs)

    def process_formdata(self, valuelist: list[str]) -> None:
        if not valuelist or not " ".join(valuelist).strip():
            self.data = None
            return
        typed = " ".join(valuelist).strip()
        for pattern in self.FORMATS:
            try:
                self.data = datetime.strptime(typed, pattern)
            except ValueError:
                continue
            if self.data.year < 1000:
                # Written back as "99-01-01 00:00:00" (strftime), which this field refuses:
                # the record could not be saved again. MySQL keeps years 1000 to 9999.
                self.data = None
                raise ValueError(self.EARLY)
            return
        self.data = None
        raise ValueError(self.message)


class OptionsField(fields.StringField):
    """Variant options typed as "size=M; colour=Blue"."""

    def _value(self) -> str:
        if self.raw_data:
            return self.raw_data[0]
        return format_options(self.data if isinstance(self.data, dict) else {})

    def process_formdata(self, valuelist: list[str]) -> None:
        self.data = {}
        if valuelist:
            self.data = parse_options(valuelist[0])  # ValueError becomes the field's message


class LedgerIntegerField(fields.IntegerField):
    """Shown and checked, but never copied onto the model: the view applies the change
    through the stock ledger (inventory.adjust). The units on hand now, typed without a sign:
    int() reads "+5" as 5, and staff who typed it to add 5 units set the count to 5 instead."""

    def process_formdata(self, valuelist: list[str]) -> None:
        if valuelist and str(valuelist[0]).strip().startswith("+"):
            self.data = None
            raise ValueError(SIGNED_COUNT)
        super().process_formdata(valuelist)

    def populate_obj(self, obj: Any, name: str) -> None:
        return None


class SeenField(fields.HiddenField):
    """The stock figure the form showed, so a save changes stock by what staff typed and
    not by sales made while the form was open."""

    def populate_obj(self, obj: Any, name: str) -> None:
        return None


STOCK_RANGE = f"Enter a whole number from 0 to {MAX_STOCK:,}."
SIGNED_COUNT = "Enter the units on hand now, such as 15 (to add 5 to 10, enter 15)."
DAMAGED_FORM = ("This form's record of the stock it showed is damaged, so the change cannot "
                "be worked out. Nothing was saved: reload the page and enter the count again.")


def _seen_figure(raw: object) -> int | None:
    """A hidden figure the form wrote (digits), or None when it was altered."""
    text = str(raw if raw is not None else "")
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        return None
    number = int(text)
    return number if number <= MAX_ID else None


class VariantForm(BaseForm):
    id = fields.HiddenField()
    sku = fields.StringField("SKU", [InputRequired("Enter the SKU."), Length(max=64),
                                     Regexp(SKU, message="Use letters, digits, '.', '_', '/' "
                                                         "and '-'.")])
    options = OptionsField("Options", description='For example "size=M; colour=Blue". '
                                                  "Leave empty for a product without options.")
    price = MoneyField("Price", required=True, price=True)
    compare_at_price = MoneyField("Compare-at price", price=True,
                                  description="The former price, shown crossed out.")
    stock_quantity = LedgerIntegerField(
        "Stock on hand", [InputRequired("Enter the units on hand."),
                          NumberRange(0, MAX_STOCK, STOCK_RANGE)],
        default=0, description="Changes are recorded in the stock ledger.")
    stock_seen = SeenField()
    # Where the variant's stock ledger stood when the form was made (inventory.adjust).
    ledger_seen = SeenField()
    low_stock_threshold = fields.IntegerField(
        "Low-stock threshold", [InputRequired("Enter a threshold."),
                                NumberRange(0, MAX_STOCK, STOCK_RANGE)],
        default=5)
    position = fields.IntegerField("Position", [Optional(), FitsColumn()], default=0)

    def process(self, formdata=None, obj=None, data=None, extra_filters=None, **kwargs):
        super().process(formdata, obj, data=data, extra_filters=extra_filters, **kwargs)
        if self.stock_seen.data in (None, ""):
            self.stock_seen.data = str(getattr(obj, "stock_quantity", 0) or 0) \
                if obj is not None else "0"
        if self.ledger_seen.data in (None, ""):
            variant_id = getattr(obj, "id", None)
            self.ledger_seen.data = str(inventory.last_adjustment(variant_id)) \
                if variant_id else "0"

    def validate_stock_quantity(self, field: LedgerIntegerField) -> None:
        """The change is worked out from the hidden figures the form showed: an altered one
        ("abc" was read as 0, and an unchanged form added the whole count again) refuses the
        save beside the stock field."""
        if _seen_figure(self.stock_seen.data) is None or \
                _seen_figure(self.ledger_seen.data) is None:
            raise FieldError(DAMAGED_FORM)

    def validate_compare_at_price(self, field: MoneyField) -> None:
        if problem := catalog.compare_at_problem(self.price.data, field.data):
            raise FieldError(problem)

    def ledger_position(self) -> int | None:
        """The ledger_seen figure (None when the form did not send one)."""
        return _seen_figure(self.ledger_seen.data)

    def stock_delta(self) -> int:
        """Units staff added (+) or removed (-) compared with what the form showed."""
        seen = _seen_figure(self.stock_seen.data)
        if seen is None:  # validate_stock_quantity refused the form already
            raise ValidationError({self.stock_quantity.name: DAMAGED_FORM})
        return int(self.stock_quantity.data or 0) - seen


class CurrentImageWidget:
    """The image as it is now (display only)."""

    def __call__(self, field: fields.Field, **kwargs: Any) -> Markup:
        from ..templating import image_url

        if not field.data:
            return Markup('<p class="form-control-plaintext text-muted">No image yet.</p>')
        return Markup('<p class="form-control-plaintext"><img class="admin-thumb" src="{}" '
                      'alt="" width="96" height="96"> <code>{}</code></p>').format(
            image_url(field.data), escape(field.data))


class CurrentImageField(fields.Field):
    widget = CurrentImageWidget()

    def populate_obj(self, obj: Any, name: str) -> None:
        return None


class ImageFileField(fields.FileField):
    """An image upload, checked by its content; stored when the form is saved."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.description:
            self.description = upload_description()

    def populate_obj(self, obj: Any, name: str) -> None:
        if not self.has_file():
            return
        stored = getattr(self, "_stored_path", None)
        if stored is None:  # a retried transaction does not store the file twice
            self.data.stream.seek(0)
            stored = images.store(self.data.stream, field="upload")
            self._stored_path = stored
            g.setdefault("admin_new_uploads", []).append(stored)
        obj.path = stored

    def has_file(self) -> bool:
        return bool(self.data is not None and hasattr(self.data, "stream")
                    and getattr(self.data, "filename", ""))


class ImageForm(BaseForm):
    id = fields.HiddenField()
    path = CurrentImageField("Current image")
    upload = ImageFileField("Image file")
    alt = fields.StringField("Alt text", [Length(max=255), Printable()],
                             description="What the image shows, for people who cannot see it.")
    position = fields.IntegerField("Position", [Optional(), FitsColumn()], default=0)

    def validate_upload(self, field: ImageFileField) -> None:
        if field.has_file():
            try:
                images.read_checked(field.data.stream, field="upload")
            except ValidationError as exc:
                raise FieldError(exc.errors["upload"]) from None
            finally:
                field.data.stream.seek(0)
        elif not self.id.data:
            raise FieldError("Choose an image file.")


def strip_text(value: Any) -> Any:
    """Typed text without the spaces around it: a name of spaces only is no name."""
    return value.strip() if isinstance(value, str) else value


def name_args(message: str, max_length: int) -> dict[str, Any]:
    """A required name: trimmed, and refused when nothing but spaces was typed (InputRequired
    only looks at what was sent, so "   " passed and the shop showed a product without a
    name)."""
    return {"filters": [strip_text], "validators": [DataRequired(message),
                                                     Length(max=max_length), Printable()]}


def slug_validators() -> list:
    return [InputRequired("Enter a slug."), Length(max=160),
            Regexp(SLUG, message="Use lower-case letters, digits and single hyphens, "
                                 "e.g. blue-linen-shirt.")]


def upload_description() -> str:
    limit = images.max_bytes()
    size = f"{limit / (1024 * 1024):g} MB" if limit >= 1024 * 1024 else f"{limit // 1024} KB"
    return (f"{images.ALLOWED}, at most {size} and {images.MAX_IMAGE_SIDE:,} pixels a side "
            f"({images.MAX_IMAGE_PIXELS // 1_000_000} megapixels).")
