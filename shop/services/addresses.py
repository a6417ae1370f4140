"""Postal addresses: validation shared by checkout, the account pages and the API."""
from __future__ import annotations

import re
from collections.abc import Mapping

from sqlalchemy import select, update

from ..extensions import db
from ..models import ADDRESS_FIELDS, Address, User
from ..models.base import is_id
from .countries import COUNTRIES
from .database import retrying, write_transaction
from .errors import NotFound, ValidationError

REQUIRED = ("name", "line1", "city", "postal_code", "country")
LIMITS = {"name": 120, "line1": 200, "line2": 200, "city": 120, "region": 120,
          "postal_code": 32, "country": 2, "phone": 40}
LABELS = {"name": "Full name", "line1": "Address line 1", "line2": "Address line 2",
          "city": "City", "region": "State / region", "postal_code": "Postal code",
          "country": "Country", "phone": "Phone"}


# Characters no address label can print: control characters (a NUL, an escape) and the
# Unicode controls that reorder the text around them (a right-to-left override makes a
# label, an email or the back office show something other than what is stored).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# Postal codes: letters, digits, spaces and hyphens in every country, and the national form
# where a shop's shoppers most often write one.
_POSTAL_CHARS = re.compile(r"[A-Za-z0-9][A-Za-z0-9 -]*\Z")
_POSTAL_FORMS = {
    "US": (re.compile(r"\d{5}(-\d{4})?\Z"), "a ZIP code such as 62701 or 62701-1234"),
    "CA": (re.compile(r"[A-Za-z]\d[A-Za-z] ?\d[A-Za-z]\d\Z"), "a postal code such as K1A 0B1"),
    "GB": (re.compile(r"[A-Za-z]{1,2}\d[A-Za-z\d]? ?\d[A-Za-z]{2}\Z"),
           "a postcode such as N1 7AA"),
    "DE": (re.compile(r"\d{5}\Z"), "five digits such as 10115"),
    "FR": (re.compile(r"\d{5}\Z"), "five digits such as 75001"),
    "JP": (re.compile(r"\d{3}-?\d{4}\Z"), "a postal code such as 100-0001"),
}
# A phone number: digits with the usual separators, an optional leading + and extension.
_PHONE = re.compile(r"\+?[0-9 ().\-/]{5,30}((ext\.?|x) ?\d{1,6})?\Z", re.IGNORECASE)


def unprintable(value: str) -> bool:
    """Whether `value` holds a character no label or page can show as typed."""
    return _UNPRINTABLE.search(value) is not None


def clean(data: Mapping[str, object] | None, prefix: str = "") -> dict[str, str]:
    """A validated address dict; raise ValidationError naming each bad field."""
    data = data or {}
    out: dict[str, str] = {}
    errors: dict[str, str] = {}
    for name in ADDRESS_FIELDS:
        raw = data.get(name)
        if raw is not None and not isinstance(raw, str):
            errors[prefix + name] = f"{LABELS[name]} must be text."
            continue
        value = " ".join((raw or "").split())
        if name == "country":
            value = value.upper()
        if name in REQUIRED and not value:
            errors[prefix + name] = f"Enter the {LABELS[name].lower()}."
        elif len(value) > LIMITS[name]:
            errors[prefix + name] = (f"{LABELS[name]} is too long "
                                     f"(at most {LIMITS[name]} characters).")
        elif unprintable(value):
            errors[prefix + name] = (f"{LABELS[name]} has a character that cannot be printed "
                                     "on a label; please type it again.")
        elif name == "country" and value not in COUNTRIES:
            errors[prefix + name] = "Choose a country (a two-letter ISO code such as US)."
        elif name == "phone" and value and not _PHONE.match(value):
            errors[prefix + name] = ("Enter a phone number with digits, such as "
                                     "+1 217 555 0100, or leave it empty.")
        elif name == "postal_code" and value and not _POSTAL_CHARS.match(value):
            errors[prefix + name] = "A postal code has letters, digits, spaces and hyphens."
        out[name] = value
    form = _POSTAL_FORMS.get(out.get("country", ""))
    code = out.get("postal_code", "")
    if form and code and prefix + "postal_code" not in errors and not form[0].match(code):
        errors[prefix + "postal_code"] = f"Enter {form[1]}."
    elif form and code and out.get("country") in ("CA", "GB"):
        out["postal_code"] = code.upper()
    if errors:
        raise ValidationError(errors)
    return out


def typed_other(typed: Mapping[str, str], saved: Mapping[str, str]) -> bool:
    """Whether a form's address fields name an address other than `saved`: blank ones (the
    new address's fields left empty; the country list always sends a choice) name none, nor
    does a phone number or a second line alone (typed, the saved address was set aside and
    the form refused for a name, a street and a city the shopper had not meant to give)."""
    def shown(value: object) -> str:
        return " ".join(str(value or "").split())

    if not any(shown(typed.get(name)) for name in ("name", "line1", "city", "postal_code")):
        return False
    return any(shown(typed.get(name)) != shown(saved.get(name)) for name in ADDRESS_FIELDS)


def for_user(user_id: int) -> list[Address]:
    return list(db.session.execute(select(Address).where(Address.user_id == user_id)
                                   .order_by(Address.is_default.desc(), Address.id)).scalars())


def get_owned(user_id: int, address_id: int) -> Address:
    """The user's address; another user's is reported as not found."""
    if not is_id(address_id):
        raise NotFound("That address does not exist.")
    address = db.session.execute(select(Address).where(
        Address.id == address_id, Address.user_id == user_id)).scalar_one_or_none()
    if address is None:
        raise NotFound("That address does not exist.")
    return address


def save(user_id: int, data: Mapping[str, object], address_id: int | None = None,
         make_default: bool = False) -> Address:
    """Create or edit a saved address; the first one becomes the default. An address the
    account already has, saved again (checkout's "Save this address", the account's form sent
    twice), is that one: no copy is added. An address edited into another the book holds is
    that other one too: the edited one goes, and the default with it if it was."""
    values = clean(data)

    def attempt() -> int:
        with write_transaction():
            _lock_book(user_id)
            default = make_default
            if address_id is None:
                address = next((a for a in for_user(user_id) if a.as_dict() == values), None)
                if address is None:
                    address = Address(user_id=user_id, **values)
                    db.session.add(address)
            else:
                address = get_owned(user_id, address_id)
                twin = next((a for a in for_user(user_id)
                             if a.id != address.id and a.as_dict() == values), None)
                if twin is not None:
                    default = default or address.is_default
                    db.session.delete(address)
                    db.session.flush()
                    address = twin
                else:
                    for key, value in values.items():
                        setattr(address, key, value)
            has_default = db.session.execute(select(Address.id).where(
                Address.user_id == user_id, Address.is_default.is_(True))).first()
            if default or not has_default:
                db.session.flush()
                _set_default(user_id, address.id)
            db.session.flush()
            return address.id

    return db.session.get(Address, retrying(attempt))


def _lock_book(user_id: int) -> None:
    """Take the account's row lock: one change to its address book at a time. Two tabs
    saving addresses at once deadlocked on MySQL (a 503, and the address lost), or each
    made its own address the default under READ COMMITTED (two defaults)."""
    db.session.execute(select(User.id).where(User.id == user_id).with_for_update())


def _set_default(user_id: int, address_id: int) -> None:
    db.session.execute(update(Address).where(Address.user_id == user_id)
                       .values(is_default=(Address.id == address_id))
                       .execution_options(synchronize_session=False))


def make_default(user_id: int, address_id: int) -> None:
    def attempt() -> None:
        with write_transaction():
            _lock_book(user_id)
            get_owned(user_id, address_id)
            _set_default(user_id, address_id)

    retrying(attempt)


def delete(user_id: int, address_id: int) -> None:
    """Delete a saved address; another becomes the default if it was."""
    def attempt() -> None:
        with write_transaction():
            _lock_book(user_id)
            address = get_owned(user_id, address_id)
            was_default = address.is_default
            db.session.delete(address)
            db.session.flush()
            if was_default:
                other = db.session.execute(select(Address.id).where(Address.user_id == user_id)
                                           .order_by(Address.id)).scalar()
                if other:
                    _set_default(user_id, other)

    retrying(attempt)
